-- tcp_proxy.lua: a TCP proxy on bsdsocket.loop. Every client gets its own
-- connection to the target, and two tasks move the bytes, one direction
-- each, with splice(2): socket to pipe to socket, never through Lua
-- strings (where the kernel has no splice, S.splice is nil and the bytes
-- go through recv and sendall instead). A direction that reaches EOF shuts down writing on the other
-- side (so half-closed protocols work); when both are done, both sockets
-- close. A target that refuses closes the client at once.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/tcp_proxy.lua LISTEN_PORT TARGET_HOST TARGET_PORT
-- then:  nc 127.0.0.1 LISTEN_PORT   (talks to TARGET_HOST:TARGET_PORT)
-- It listens on 127.0.0.1 (PROXY_HOST overrides it); LISTEN_PORT 0 picks a
-- free port. The first line printed names the address. It serves until
-- interrupted.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local listen_port, target_host, target_port = tonumber(arg[1]), arg[2], tonumber(arg[3])
if not (listen_port and target_host and target_port) then
  io.stderr:write("usage: tcp_proxy.lua LISTEN_PORT TARGET_HOST TARGET_PORT\n")
  os.exit(2)
end
local host = os.getenv("PROXY_HOST") or "127.0.0.1"

-- The target's addresses, resolved once (a connection tries each in turn).
local targets, rerr = S.getaddrinfo(target_host, target_port, { socktype = S.SOCK_STREAM })
if not targets then
  io.stderr:write("tcp_proxy: ", rerr, "\n")
  os.exit(1)
end

local function connect_target()
  local err
  for _, ai in ipairs(targets) do
    local sock = S.socket(ai.family, S.SOCK_STREAM)
    if sock then
      local ok, msg = sock:connect(ai.addr)
      if ok then return sock end
      err = msg
      sock:close()
    end
  end
  return nil, err
end

-- One proxied connection: the client, the target, and how many directions
-- still run.
local function finish(conn)
  if not conn.closed then
    conn.closed = true
    conn.client:close()          -- wakes a task still waiting on either (EBADF)
    conn.target:close()
  end
end

-- Moves up to 64 KiB from src to dst: bytes moved, 0 at src's EOF, or
-- nil, msg, code. splice(2) where the kernel has it, else a copy.
local move = S.splice or function(src, dst)
  local data, err, code = src:recv(65536)
  if not data then return nil, err, code end
  if data == "" then return 0 end
  local ok
  ok, err, code = dst:sendall(data)
  if not ok then return nil, err, code end
  return #data
end

-- Moves bytes from src to dst until src's EOF, then ends dst's writing; on
-- an error (a reset, a closed peer) closes both sides at once.
local function pump(conn, src, dst)
  local n
  repeat n = move(src, dst) until not n or n == 0
  if conn.closed then return end
  if n then dst:shutdown("w") else finish(conn) end
  conn.left = conn.left - 1
  if conn.left == 0 then finish(conn) end
end

local function serve(client)
  local target, err = connect_target()
  if not target then
    io.stderr:write("tcp_proxy: ", err, "\n")
    client:close()
    return
  end
  client:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
  target:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
  local conn = { client = client, target = target, left = 2, closed = false }
  loop.spawn(pump, conn, target, client)
  pump(conn, client, target)
end

local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server = assert(S.socket(family, S.SOCK_STREAM))
assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
local ok, err = server:bind(host, listen_port)
if not ok then
  io.stderr:write("tcp_proxy: ", err, "\n")
  os.exit(1)
end
assert(server:listen())
io.stdout:write("listening on ", tostring(server:getsockname()), "\n")
io.stdout:write("forwarding to ", target_host, " port ", target_port, "\n")
io.stdout:flush()

loop.spawn(function()
  while true do
    local client, aerr, code = server:accept()
    if client then
      loop.spawn(serve, client)
    elseif code == "EMFILE" or code == "ENFILE" then
      io.stderr:write(aerr, "\n")
      loop.sleep(0.1)
    end
  end
end)

loop.run()
