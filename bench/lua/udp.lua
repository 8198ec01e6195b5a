-- udp.lua: bench scenario 4 with bsdsocket — 64-byte datagrams sent with
-- sock:sendto(data, addr) to a prebuilt S.addr (the peer is c/udp.c's sink).
--   lua5.4 udp.lua send HOST PORT SECONDS [SIZE]   prints "dps=<datagrams/s>"
--   lua5.4 udp.lua sendmmsg HOST PORT SECONDS [SIZE]   the same datagrams in
--                                  batches of 64 per sendmmsg call
local S = require "bsdsocket"

if (arg[1] ~= "send" and arg[1] ~= "sendmmsg") or not tonumber(arg[4]) then
  io.stderr:write("usage: udp.lua send|sendmmsg HOST PORT SECONDS [SIZE]\n")
  os.exit(1)
end
local addr = assert(S.addr(arg[2], tonumber(arg[3])))
local secs = tonumber(arg[4])
local data = ("u"):rep(math.tointeger(tonumber(arg[5] or 64)))
local sock = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
local sendto, monotime = sock.sendto, S.monotime

local n, t0 = 0, monotime()
local el
if arg[1] == "sendmmsg" then
  local batch = {}
  for i = 1, 64 do batch[i] = data end
  local sendmmsg = sock.sendmmsg
  repeat
    for _ = 1, 16 do
      local k, msg, code = sendmmsg(sock, batch, addr)
      if not k and code ~= "ENOBUFS" then error(msg) end
      n = n + (k or 0)
    end
    el = monotime() - t0
  until el >= secs
  sock:close()
  print(("dps=%.0f"):format(n / el))
  os.exit(0)
end
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
