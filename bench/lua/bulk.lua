-- bulk.lua: bench scenario 3 with bsdsocket — one TCP connection carrying
-- TOTAL bytes in 64 KiB chunks (the peer is c/bulk.c's sink or source).
--   lua5.4 bulk.lua send HOST PORT TOTAL   sendall 64 KiB at a time, shut down
--                                          the write side, wait for the close
--   lua5.4 bulk.lua recv HOST PORT TOTAL   recv(65536) until EOF, check count
--   lua5.4 bulk.lua recv_into HOST PORT TOTAL   recv_into a 64 KiB S.buffer
--                                          until EOF (no string per read)
-- Prints "mbps=<MiB/s>".
local S = require "bsdsocket"

local CHUNK = 65536
local mode, host, port, total = arg[1], arg[2], tonumber(arg[3]), math.tointeger(tonumber(arg[4]))
if (mode ~= "send" and mode ~= "recv" and mode ~= "recv_into") or not total then
  io.stderr:write("usage: bulk.lua send|recv|recv_into HOST PORT TOTAL\n")
  os.exit(1)
end

local t0 = S.monotime()
local sock = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
assert(sock:connect(S.addr(host, port)))
if mode == "send" then
  local chunk = ("x"):rep(CHUNK)
  local full, rest = total // CHUNK, total % CHUNK
  for _ = 1, full do assert(sock:sendall(chunk)) end
  if rest > 0 then assert(sock:sendall(chunk:sub(1, rest))) end
  assert(sock:shutdown("w"))
  assert(sock:recv(CHUNK) == "", "waiting for the sink to close")
elseif mode == "recv_into" then
  local done, recv_into, buf = 0, sock.recv_into, S.buffer(CHUNK)
  while true do
    local n = assert(recv_into(sock, buf))
    if n == 0 then break end
    done = done + n
  end
  if done ~= total then error(("received %d bytes, expected %d"):format(done, total)) end
else
  local done, recv = 0, sock.recv
  while true do
    local data = assert(recv(sock, CHUNK))
    if data == "" then break end
    done = done + #data
  end
  if done ~= total then error(("received %d bytes, expected %d"):format(done, total)) end
end
local el = S.monotime() - t0
sock:close()
print(("mbps=%.1f"):format(total / 1048576 / el))
