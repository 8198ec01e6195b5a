-- The LuaSec client of the TLS benchmarks (bench/tls/run.sh), when LuaSec
-- is installed: the same work as tls_bsd.lua, with LuaSocket + ssl.wrap
-- (verify = "peer" with the CA file; LuaSec 1.x checks no host name unless
-- asked, so this does a little less work than the others).
local socket = require "socket"
local ssl = require "ssl"

local cafile, port, kind = arg[1], tonumber(arg[2]), arg[3]
local params = { mode = "client", protocol = "any", verify = "peer", cafile = cafile,
  options = { "all" } }
local ctx = assert(ssl.newcontext(params))
local CHUNK = 65536

local function dial()
  local s = assert(socket.tcp())
  assert(s:connect("127.0.0.1", port))
  s:setoption("tcp-nodelay", true)
  local t = assert(ssl.wrap(s, ctx))
  t:sni("localhost")
  assert(t:dohandshake())
  return t
end

local t0 = socket.gettime()
if kind:match("^send:") then
  local total = tonumber(kind:match("%d+")) << 20
  local buf = string.rep("y", CHUNK)
  local t = dial()
  t0 = socket.gettime()
  for _ = 1, total // CHUNK do assert(t:send(buf)) end
  t:close()
  print(("MBps %.1f"):format(total / 1048576 / (socket.gettime() - t0)))
elseif kind == "recv" then
  local total = 0
  local t = dial()
  t0 = socket.gettime()
  while true do
    local d, err, partial = t:receive(CHUNK)
    d = d or partial
    total = total + #d
    if err then break end
  end
  t:close()
  print(("MBps %.1f"):format(total / 1048576 / (socket.gettime() - t0)))
elseif kind:match("^hs:") then
  local n = tonumber(kind:match("%d+"))
  for _ = 1, n do dial():close() end
  print(("hsps %.1f"):format(n / (socket.gettime() - t0)))
end
