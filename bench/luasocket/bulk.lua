-- bulk.lua: bench scenario 3 with LuaSocket (same arguments and output as
-- lua/bulk.lua): send or receive TOTAL bytes in 64 KiB chunks.
local socket = require "socket"

local CHUNK = 65536
local mode, host, port, total = arg[1], arg[2], tonumber(arg[3]), math.tointeger(tonumber(arg[4]))
if (mode ~= "send" and mode ~= "recv") or not total then
  io.stderr:write("usage: bulk.lua send|recv HOST PORT TOTAL\n")
  os.exit(1)
end

local t0 = socket.gettime()
local sock = assert(socket.connect(host, port))
if mode == "send" then
  local chunk = ("x"):rep(CHUNK)
  local full, rest = total // CHUNK, total % CHUNK
  for _ = 1, full do assert(sock:send(chunk)) end
  if rest > 0 then assert(sock:send(chunk:sub(1, rest))) end
  assert(sock:shutdown("send"))
  local _, err = sock:receive(1)
  assert(err == "closed", "waiting for the sink to close")
else
  local done, receive = 0, sock.receive
  while true do
    local data, err, partial = receive(sock, CHUNK)
    data = data or partial
    done = done + #data
    if err == "closed" then break end
    if err then error(err) end
  end
  if done ~= total then error(("received %d bytes, expected %d"):format(done, total)) end
end
local el = socket.gettime() - t0
sock:close()
print(("mbps=%.1f"):format(total / 1048576 / el))
