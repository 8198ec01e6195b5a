-- udp_echo_server.lua: a UDP echo server. UDP has no connections: one
-- socket receives datagrams from anyone (recvfrom tells who sent each) and
-- answers each sender with sendto.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/udp_echo_server.lua 127.0.0.1 7000
-- then: examples/udp_echo_client.lua 127.0.0.1 7000 hello
-- PORT 0 picks a free port; the first line printed names the address.
-- It serves until interrupted (Ctrl-C).
local S = require "bsdsocket"

local host, port = arg[1], tonumber(arg[2])
if not host or not port or #arg ~= 2 then
  io.stderr:write("usage: udp_echo_server.lua HOST PORT\n")
  os.exit(2)
end

local sock, err = S.udp(host, port)     -- socket(SOCK_DGRAM) + bind
if not sock then
  io.stderr:write("udp_echo_server: ", err, "\n")
  os.exit(1)
end
print("listening on " .. tostring(sock:getsockname()))
io.stdout:flush()

while true do
  -- One recvfrom is one datagram (up to 65535 bytes), never part of one.
  local data, from = sock:recvfrom(65535)
  if data then
    print(("%d bytes from %s"):format(#data, tostring(from)))
    io.stdout:flush()
    local ok, serr = sock:sendto(data, from)
    if not ok then io.stderr:write(serr, "\n") end
  else
    io.stderr:write(from, "\n")           -- from is the error message here
  end
end
