-- tls_echo_server.lua: a concurrent TLS echo server on bsdsocket.loop.
-- Each connection is a task: accept, tls.wrap with the server context, then
-- the same recv/sendall loop as a plain echo server; a handshake or a read
-- that would block suspends only its task, so a slow or stalled client
-- holds up nobody.
--
-- Run from a checkout (after `make`), with a certificate and its key:
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/tls_echo_server.lua 127.0.0.1 0 cert.pem key.pem
-- then, in another terminal:
--   openssl s_client -connect 127.0.0.1:PORT -CAfile ca.pem -servername localhost
-- PORT 0 picks a free port; the first line printed names the address. A
-- client's failed handshake is one line on stderr. It serves until interrupted.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local tls = require "bsdsocket.tls"

local host, port, certfile, keyfile = arg[1], tonumber(arg[2] or ""), arg[3], arg[4]
if not (host and port and certfile and keyfile) then
  io.stderr:write("usage: tls_echo_server.lua HOST PORT CERT KEY\n")
  os.exit(2)
end

local ctx, cerr = tls.context { mode = "server", certfile = certfile, keyfile = keyfile }
if not ctx then
  io.stderr:write("tls_echo_server: ", cerr, "\n")
  os.exit(1)
end

local server, lerr = S.tcp_listen(host, port)
if not server then
  io.stderr:write("tls_echo_server: ", lerr, "\n")
  os.exit(1)
end
io.stdout:write("listening on ", tostring(server:getsockname()), "\n")
io.stdout:flush()

local function serve(client)
  local t <close> = tls.wrap(client, ctx)
  t:settimeout(30)                     -- a client that stalls is let go
  local ok, err = t:handshake()
  if not ok then
    io.stderr:write(err, "\n")
    return
  end
  while true do
    local data = t:recv(65536)
    if not data or data == "" then break end   -- close_notify, or an error
    if not t:sendall(data) then break end
  end
  t:shutdown()
end

loop.spawn(function()
  while true do
    local client, err, code = server:accept()
    if client then
      client:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
      loop.spawn(serve, client)
    elseif code == "EMFILE" or code == "ENFILE" then
      io.stderr:write(err, "\n")
      loop.sleep(0.1)
    end
  end
end)

loop.run()
