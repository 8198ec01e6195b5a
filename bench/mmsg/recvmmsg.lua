-- The Lua side of the recvmmsg benchmark, the same rounds as recv_c.c: fill
-- a loopback UDP socket with BATCH datagrams (sendmmsg, not timed), drain
-- them (timed) with recvmmsg batches of 32 ("mmsg") or one sock:recv per
-- datagram ("recv"). Prints: datagrams/second of the drain.
-- Usage: lua5.4 recvmmsg.lua mmsg|recv ROUNDS BATCH SIZE
local S = require "bsdsocket"

local mode = arg[1] or "mmsg"
local rounds, batch, size = tonumber(arg[2]) or 2000, tonumber(arg[3]) or 256, tonumber(arg[4]) or 64

local r <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
local s <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
r:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 8 << 20)
if S.SO_RCVBUFFORCE then   -- as root: past net.core.rmem_max (a raw option)
  r:setsockopt(S.SOL_SOCKET, S.SO_RCVBUFFORCE, string.pack("=i4", 8 << 20))
end
assert(r:bind("127.0.0.1", 0))
local to = r:getsockname()
local list = {}
for i = 1, batch do list[i] = string.rep("x", size) end

local t, monotime = 0, S.monotime
for _ = 1, rounds do
  local sent = 0
  while sent < batch do
    local part = sent == 0 and list or table.move(list, sent + 1, batch, 1, {})
    sent = sent + assert(s:sendmmsg(part, to))
  end
  local got = 0
  local t0 = monotime()
  if mode == "mmsg" then
    while got < batch do
      got = got + #r:recvmmsg(32, 2048)
    end
  else
    for _ = 1, batch do
      local d = r:recv(2048)
      if #d ~= size then error("short datagram") end
      got = got + 1
    end
  end
  t = t + monotime() - t0
end
print(string.format("%.0f", rounds * batch / t))
