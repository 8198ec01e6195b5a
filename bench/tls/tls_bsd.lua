-- The bsdsocket.tls client of the TLS benchmarks (bench/tls/run.sh):
--   lua5.4 tls_bsd.lua CAFILE PORT send:MB|recv|hs:N
-- the same work as tls_c.c's client, printing "MBps X" or "hsps X".
local S = require "bsdsocket"
local tls = require "bsdsocket.tls"

local cafile, port, kind = arg[1], tonumber(arg[2]), arg[3]
local ctx = assert(tls.context { cafile = cafile })
local CHUNK = 65536

local function dial()
  local s = assert(S.tcp_connect("127.0.0.1", port))
  s:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
  local t = tls.wrap(s, ctx, { servername = "localhost" })
  assert(t:handshake())
  return t
end

local t0 = S.monotime()
if kind:match("^send:") then
  local total = tonumber(kind:match("%d+")) << 20
  local buf = string.rep("y", CHUNK)
  local t = dial()
  t0 = S.monotime()
  for _ = 1, total // CHUNK do assert(t:sendall(buf)) end
  t:close()
  print(("MBps %.1f"):format(total / 1048576 / (S.monotime() - t0)))
elseif kind == "recv" then
  local total = 0
  local t = dial()
  t0 = S.monotime()
  while true do
    local d = assert(t:recv(CHUNK))
    if d == "" then break end
    total = total + #d
  end
  t:close()
  print(("MBps %.1f"):format(total / 1048576 / (S.monotime() - t0)))
elseif kind:match("^hs:") then
  local n = tonumber(kind:match("%d+"))
  for _ = 1, n do dial():close() end
  print(("hsps %.1f"):format(n / (S.monotime() - t0)))
end
