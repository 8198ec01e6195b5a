-- udp.lua: bench scenario 4 with LuaSocket — 64-byte datagrams with
-- udp:sendto(data, ip, port) (LuaSocket has no address object).
--   lua5.4 udp.lua send HOST PORT SECONDS [SIZE]   prints "dps=<datagrams/s>"
local socket = require "socket"

if arg[1] ~= "send" or not tonumber(arg[4]) then
  io.stderr:write("usage: udp.lua send HOST PORT SECONDS [SIZE]\n")
  os.exit(1)
end
local host, port, secs = arg[2], tonumber(arg[3]), tonumber(arg[4])
local data = ("u"):rep(math.tointeger(tonumber(arg[5] or 64)))
local sock = assert(socket.udp())
local sendto, gettime = sock.sendto, socket.gettime

local n, t0 = 0, gettime()
local el
repeat
  for _ = 1, 1024 do
    local ok, err = sendto(sock, data, host, port)
    if not ok and err ~= "No buffer space available" then error(err) end
  end
  n = n + 1024
  el = gettime() - t0
until el >= secs
sock:close()
print(("dps=%.0f"):format(n / el))
