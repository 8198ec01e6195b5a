-- pingpong.lua: bench scenarios 2 and 5 with bsdsocket — request/response
-- over one TCP connection with blocking calls (same protocol as c/pingpong.c).
--   lua5.4 pingpong.lua server                       echoes connections in turn
--   lua5.4 pingpong.lua client HOST PORT SECONDS [SIZE]  prints rate= rtt_us=
--   lua5.4 pingpong.lua count HOST PORT N [SIZE]         exactly N round trips
local S = require "bsdsocket"

local mode = arg[1]
local monotime = S.monotime

if mode == "server" then
  local server = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen())
  io.stdout:write("listening on ", tostring(server:getsockname()), "\n")
  io.stdout:flush()
  while true do
    local c = server:accept()
    if c then
      c:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
      while true do
        local data = c:recv(65536)
        if not data or data == "" or not c:sendall(data) then break end
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
local sock = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
assert(sock:connect(S.addr(arg[2], tonumber(arg[3]))))
sock:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)

local function roundtrip()
  sock:send(msg)
  local back = sock:recv(size)
  if back ~= msg then
    -- a short read (never seen on loopback) or a broken echo
    while back and #back < size do
      local more = sock:recv(size - #back)
      if not more or more == "" then break end
      back = back .. more
    end
    if back ~= msg then error("round trip failed: " .. tostring(back)) end
  end
end

if mode == "count" then
  for _ = 1, math.tointeger(tonumber(arg[4])) do roundtrip() end
else
  local secs, n = tonumber(arg[4]), 0
  local t0 = monotime()
  local el
  repeat
    for _ = 1, 256 do roundtrip() end
    n = n + 256
    el = monotime() - t0
  until el >= secs
  print(("rate=%.0f rtt_us=%.3f"):format(n / el, el / n * 1e6))
end
sock:close()
