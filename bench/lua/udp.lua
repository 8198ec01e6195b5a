-- udp.lua: bench scenario 4 with bsdsocket — 64-byte datagrams sent with
-- sock:sendto(data, addr) to a prebuilt S.addr (the peer is c/udp.c's sink).
--   lua5.4 udp.lua send HOST PORT SECONDS [SIZE]   prints "dps=<datagrams/s>"
local S = require "bsdsocket"

if arg[1] ~= "send" or not tonumber(arg[4]) then
  io.stderr:write("usage: udp.lua send HOST PORT SECONDS [SIZE]\n")
  os.exit(1)
end
local addr = assert(S.addr(arg[2], tonumber(arg[3])))
local secs = tonumber(arg[4])
local data = ("u"):rep(math.tointeger(tonumber(arg[5] or 64)))
local sock = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
local sendto, monotime = sock.sendto, S.monotime

local n, t0 = 0, monotime()
local el
repeat
  for _ = 1, 1024 do
    local ok, msg, code = sendto(sock, data, addr)
    if not ok and code ~= "ENOBUFS" then error(msg) end
  end
  n = n + 1024
  el = monotime() - t0
until el >= secs
sock:close()
print(("dps=%.0f"):format(n / el))
