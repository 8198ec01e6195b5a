-- port_scan.lua: a TCP connect scan. It starts many non-blocking connects
-- at once (settimeout(0): connect returns "EINPROGRESS" at once), waits for
-- them with S.poller(), and reads each outcome with getsockopt(SO_ERROR):
-- 0 is an open port, ECONNREFUSED a closed one, and no answer within
-- TIMEOUT seconds (default 1) a filtered one. Open ports go to stdout, a
-- summary to stderr. Scan only machines you are allowed to scan.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/port_scan.lua 127.0.0.1 1-1024 0.5
local S = require "bsdsocket"

local BATCH = 256                                -- connects in flight at once

local host, range, timeout = arg[1], arg[2], tonumber(arg[3] or "1")
local first, last = (range or ""):match("^(%d+)%-(%d+)$")
first, last = tonumber(first), tonumber(last)
if not host or not first or #arg > 3 or not timeout or timeout <= 0
    or first < 1 or last > 65535 or first > last then
  io.stderr:write("usage: port_scan.lua HOST FIRST-LAST [TIMEOUT]\n")
  os.exit(2)
end

local target, err = S.addr(host, 0)              -- resolve once
if not target then
  io.stderr:write("port_scan: ", err, "\n")
  os.exit(1)
end

local open, closed, filtered = {}, 0, 0
local started = S.monotime()

-- Starts a non-blocking connect to one port. Returns the socket while the
-- connect is in progress, or nil once the outcome is known.
local function start(port)
  local sock, serr = S.socket(target.family, S.SOCK_STREAM)
  if not sock then
    io.stderr:write("port_scan: ", serr, "\n")
    os.exit(1)
  end
  sock:settimeout(0)
  local ok, cerr, code = sock:connect(S.addr(target.host, port))
  if ok then
    open[#open + 1] = port                       -- connected at once (loopback)
  elseif code == "EINPROGRESS" then
    return sock
  elseif code == "ECONNREFUSED" then
    closed = closed + 1
  else
    io.stderr:write(cerr, "\n")                  -- e.g. ENETUNREACH
    filtered = filtered + 1
  end
  sock:close()
end

local poller = S.poller()
for batch = first, last, BATCH do
  local pending, n = {}, 0                       -- socket -> port
  for port = batch, math.min(batch + BATCH - 1, last) do
    local sock = start(port)
    if sock then
      pending[sock], n = port, n + 1
      poller:add(sock, "w")                      -- writable = connect finished
    end
  end
  local deadline = S.monotime() + timeout
  while n > 0 and S.monotime() < deadline do
    for sock in poller:wait(deadline - S.monotime()) do
      local port = pending[sock]
      if port then
        -- The outcome of the connect is the socket's pending error.
        if sock:getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0 then
          open[#open + 1] = port
        else
          closed = closed + 1
        end
        poller:remove(sock)
        sock:close()
        pending[sock], n = nil, n - 1
      end
    end
  end
  for sock in pairs(pending) do                  -- no answer in time
    filtered = filtered + 1
    poller:remove(sock)
    sock:close()
  end
end

table.sort(open)
for _, port in ipairs(open) do print(port .. " open") end
io.stderr:write(("scanned %s ports %d-%d in %.2fs: %d open, %d closed, %d filtered\n")
  :format(target.host, first, last, S.monotime() - started, #open, closed, filtered))
