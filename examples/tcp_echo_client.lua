-- tcp_echo_client.lua: a TCP client. It connects, sends the MESSAGE words
-- as one line, closes its sending side (so the server sees end of input),
-- then prints everything the server sends back until it closes.
--
-- Run from a checkout (after `make`), with an echo server listening:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/tcp_echo_client.lua 127.0.0.1 7000 hello world
local S = require "bsdsocket"

local host, port = arg[1], tonumber(arg[2])
if not host or not port or #arg < 3 then
  io.stderr:write("usage: tcp_echo_client.lua HOST PORT MESSAGE...\n")
  os.exit(2)
end
local message = table.concat(arg, " ", 3) .. "\n"

local function fail(msg)
  io.stderr:write("tcp_echo_client: ", msg, "\n")
  os.exit(1)
end

-- tcp_connect resolves HOST (a name or an address), tries each address it
-- finds, and gives every attempt 5 seconds. The timeout stays on the socket,
-- so a silent server cannot hang the reads below either.
local sock <close>, err = S.tcp_connect(host, port, 5)
if not sock then fail(err) end

local ok
ok, err = sock:sendall(message)
if not ok then fail(err) end
sock:shutdown("w")                    -- "I am done sending": the server sees EOF

while true do
  local data, rerr = sock:recv(4096)
  if not data then fail(rerr) end
  if data == "" then break end        -- the server closed: all echoed
  io.stdout:write(data)
end
