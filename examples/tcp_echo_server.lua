-- tcp_echo_server.lua: the classic TCP server loop, written with the plain
-- calls a C programmer knows: socket, setsockopt, bind, listen, accept,
-- recv, send. It serves one client at a time and sends back every byte it
-- receives until the client closes its side.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/tcp_echo_server.lua 127.0.0.1 7000
-- then try it with examples/tcp_echo_client.lua or any TCP client.
-- PORT 0 picks a free port; the first line printed names the address.
-- It serves until interrupted (Ctrl-C).
local S = require "bsdsocket"

local host, port = arg[1], tonumber(arg[2])
if not host or not port or #arg ~= 2 then
  io.stderr:write("usage: tcp_echo_server.lua HOST PORT\n")
  os.exit(2)
end

local function fail(msg)
  io.stderr:write("tcp_echo_server: ", msg, "\n")
  os.exit(1)
end

-- socket(): an IPv6 socket for an IPv6 host, else IPv4.
local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server, err = S.socket(family, S.SOCK_STREAM)
if not server then fail(err) end

-- SO_REUSEADDR: restart at once on the same port, even with old
-- connections still in TIME_WAIT.
server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true)

local ok
ok, err = server:bind(host, port)
if not ok then fail(err) end
ok, err = server:listen(16)
if not ok then fail(err) end

print("listening on " .. tostring(server:getsockname()))
io.stdout:flush()

while true do
  -- accept() waits for the next client and returns a new socket for it;
  -- the listening socket stays open for the clients after it.
  local client, peer = server:accept()
  if not client then
    io.stderr:write("accept: ", peer, "\n")     -- e.g. out of descriptors
  else
    print("connection from " .. tostring(peer))
    io.stdout:flush()
    local total = 0
    while true do
      local data, rerr = client:recv(4096)
      if not data then                            -- reset by the peer, ...
        io.stderr:write(rerr, "\n")
        break
      end
      if data == "" then break end                -- the client closed its side
      -- send() may send fewer bytes than asked: loop until all are out
      -- (sendall does this loop for you).
      local sent = 0
      while sent < #data do
        local n, werr = client:send(data, sent + 1)
        if not n then io.stderr:write(werr, "\n") break end
        sent = sent + n
      end
      if sent < #data then break end
      total = total + #data
    end
    client:close()
    print(("%s closed, %d bytes echoed"):format(tostring(peer), total))
    io.stdout:flush()
  end
end
