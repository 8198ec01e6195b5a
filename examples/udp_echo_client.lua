-- udp_echo_client.lua: a UDP client. It sends the MESSAGE words as one
-- datagram and waits for the echo. UDP may drop datagrams, so it waits
-- at most 1 second and sends again, up to 5 tries.
--
-- Run from a checkout (after `make`), with a UDP echo server listening:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/udp_echo_client.lua 127.0.0.1 7000 hello world
local S = require "bsdsocket"

local host, port = arg[1], tonumber(arg[2])
if not host or not port or #arg < 3 then
  io.stderr:write("usage: udp_echo_client.lua HOST PORT MESSAGE...\n")
  os.exit(2)
end
local message = table.concat(arg, " ", 3)
local TRIES, WAIT = 5, 1.0

local function fail(msg)
  io.stderr:write("udp_echo_client: ", msg, "\n")
  os.exit(1)
end

-- The server's address, resolved once: an addr object is the fast path.
local server, err = S.addr(host, port)
if not server then fail(err) end

local sock <close> = assert(S.udp(server.family))  -- unbound: sendto picks a port
sock:settimeout(WAIT)

for try = 1, TRIES do
  local ok, serr = sock:sendto(message, server)
  if not ok then fail(serr) end
  -- Wait for the answer; ignore datagrams from anyone but the server.
  while true do
    local data, from, code = sock:recvfrom(65535)
    if data and from == server then
      print(data)
      os.exit(0)
    elseif not data and code == "ETIMEDOUT" then
      io.stderr:write(("no answer after %gs (try %d of %d)\n"):format(WAIT, try, TRIES))
      break
    elseif not data then
      fail(from)         -- e.g. ECONNREFUSED: nothing listens on that port
    end
  end
end
fail("no answer from " .. tostring(server))
