-- pingpong.lua: bench scenarios 2 and 5 with LuaSocket (same protocol and
-- arguments as c/pingpong.c and lua/pingpong.lua).
local socket = require "socket"

local mode = arg[1]
local gettime = socket.gettime

if mode == "server" then
  local server = assert(socket.bind("127.0.0.1", 0, 128))
  local _, port = server:getsockname()
  io.stdout:write("listening on 127.0.0.1:", port, "\n")
  io.stdout:flush()
  while true do
    local c = server:accept()
    if c then
      c:setoption("tcp-nodelay", true)
      while true do
        -- LuaSocket's receive(n) waits for exactly n bytes: the messages
        -- of this scenario are 64 bytes
        local data = c:receive(64)
        if not data or not c:send(data) then break end
      end
      c:close()
    end
  end
end

if mode ~= "client" and mode ~= "count" then
  io.stderr:write("usage: pingpong.lua server | client HOST PORT SECONDS [SIZE] | count HOST PORT N [SIZE]\n")
  os.exit(1)
end

local size = math.tointeger(tonumber(arg[5] or 64))
local msg = ("abcdefghijklmnopqrstuvwxyz"):rep(size // 26 + 1):sub(1, size)
local sock = assert(socket.connect(arg[2], tonumber(arg[3])))
sock:setoption("tcp-nodelay", true)

local function roundtrip()
  sock:send(msg)
  local back = sock:receive(size)
  if back ~= msg then error("round trip failed: " .. tostring(back)) end
end

if mode == "count" then
  for _ = 1, math.tointeger(tonumber(arg[4])) do roundtrip() end
else
  local secs, n = tonumber(arg[4]), 0
  local t0 = gettime()
  local el
  repeat
    for _ = 1, 256 do roundtrip() end
    n = n + 256
    el = gettime() - t0
  until el >= secs
  print(("rate=%.0f rtt_us=%.3f"):format(n / el, el / n * 1e6))
end
sock:close()
