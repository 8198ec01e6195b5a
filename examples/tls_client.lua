-- tls_client.lua: a small `openssl s_client`. Connects to HOST PORT over
-- TLS (verified: the chain against the system store or --cacert FILE, the
-- name against HOST), prints what was negotiated and the server's
-- certificate on stderr, then relays stdin to the server (each line as
-- soon as it is complete) and the server's answers to stdout until either
-- side closes.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/tls_client.lua localhost 4433 --cacert ca.pem --alpn h2,http/1.1
-- -k skips verification (tests only). Exit status 1 with a one-line message
-- when the connection or the verification fails, 2 for bad arguments.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local USAGE = "usage: tls_client.lua HOST PORT [--cacert FILE] [--alpn LIST] [-k]"
local host, port, opts = nil, nil, { timeout = 10 }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--cacert" and arg[i + 1] then opts.cafile, i = arg[i + 1], i + 1
    elseif a == "--alpn" and arg[i + 1] then
      opts.alpn = {}
      for p in arg[i + 1]:gmatch("[^,]+") do opts.alpn[#opts.alpn + 1] = p end
      i = i + 1
    elseif a == "-k" then opts.verify = false
    elseif not host then host = a
    elseif not port then port = tonumber(a) or a
    else host = nil break end
    i = i + 1
  end
end
if not host or not port then
  io.stderr:write(USAGE, "\n")
  os.exit(2)
end

local t, err = S.tls_connect(host, port, opts)
if not t then
  io.stderr:write("tls_client: ", err, "\n")
  os.exit(1)
end

local function info(k, v) io.stderr:write(("%-12s %s\n"):format(k, tostring(v))) end
info("version", t:version())
info("cipher", t:cipher())
info("alpn", t:alpn() or "(none)")
local cert = t:peercert()
if cert then
  info("subject", cert.subject)
  info("issuer", cert.issuer)
  info("dns names", table.concat(cert.san.dns, ", "))
  info("ip names", table.concat(cert.san.ip, ", "))
  info("expires", os.date("!%Y-%m-%d %H:%M:%S UTC", cert.not_after))
  info("sha256", cert.sha256)
end
io.stderr:flush()

-- stdin -> server in one task (stdin is read with loop.wait on fd 0, so the
-- other direction goes on meanwhile), server -> stdout in another.
-- stdin is unbuffered: a buffered read would take every line already in
-- the pipe into C's buffer, where loop.wait (which asks the descriptor)
-- cannot see them, and they would wait for the next input to go out.
io.stdin:setvbuf("no")
t:settimeout(nil)
local closed = false
local reader = loop.spawn(function()
  while true do
    local data, _, code = t:recv(65536)
    if not data then
      if code ~= "EBADF" then io.stderr:write("tls_client: ", tostring(_), "\n") end
      break
    end
    if data == "" then break end
    io.stdout:write(data)
    io.stdout:flush()
  end
  closed = true
  t:close()
  loop.stop()
end)
loop.spawn(function()
  while true do
    if not loop.wait(0, "r") then break end
    local line = io.stdin:read("L")
    if not line then break end
    if not t:sendall(line) then break end
  end
  -- stdin ended: say so with close_notify, keep reading the answers
  if not closed then t:shutdown() end
  loop.join(reader, 5)
  loop.stop()
end)
loop.run()
t:close()
