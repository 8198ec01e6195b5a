-- netcat.lua: a small netcat. Lines read from stdin go to the socket and
-- whatever the socket receives goes to stdout, over TCP or UDP, as the side
-- that connects or (-l) the side that listens for one peer. It waits on
-- both at once with S.poller() (epoll/poll), the way event-driven programs
-- do: nothing blocks until the poller says a descriptor is ready.
--
-- TCP: at the end of stdin it shuts down its sending side (the peer sees
-- EOF) and exits once the peer closes. UDP has no end: each stdin line is
-- one datagram; -q SECS quits SECS seconds after the end of stdin (for TCP
-- too, without waiting for the peer). -l -u answers the first sender.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/netcat.lua -l 127.0.0.1 7000        # one terminal
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/netcat.lua 127.0.0.1 7000           # another
-- With -l, PORT 0 picks a free port; "listening on ..." goes to stderr.
local S = require "bsdsocket"

local USAGE = "usage: netcat.lua [-l] [-u] [-q SECS] HOST PORT"
local function usage()
  io.stderr:write(USAGE, "\n")
  os.exit(2)
end

local listen, udp, quit, host, port = false, false, nil, nil, nil
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "-l" then listen = true
  elseif a == "-u" then udp = true
  elseif a == "-q" then
    i = i + 1
    quit = tonumber(arg[i])
    if not quit or quit < 0 then usage() end
  elseif a:match("^%-.") then usage()
  elseif host == nil then host = a
  elseif port == nil then port = math.tointeger(tonumber(a))
  else usage() end
  i = i + 1
end
if not host or not port or port < 0 or port > 65535 or (port == 0 and not listen) then usage() end

local function fail(msg)
  io.stderr:write("netcat: ", msg, "\n")
  os.exit(1)
end
local function check(ok, err, ...)
  if not ok then fail(err) end
  return ok, err, ...
end

-- Set up the socket: sock ends up connected to the one peer.
local sock
if listen and not udp then
  local server = check(S.tcp_listen(host, port, 1))
  io.stderr:write("listening on ", tostring(server:getsockname()), "\n")
  local peer
  sock, peer = check(server:accept())
  server:close()                         -- one peer only
  io.stderr:write("connection from ", tostring(peer), "\n")
elseif listen then
  sock = check(S.udp(host, port))
  io.stderr:write("listening on ", tostring(sock:getsockname()), "\n")
  local data, peer = check(sock:recvfrom(65535))
  io.stdout:write(data)
  io.stdout:flush()
  check(sock:connect(peer))              -- from now on: only this peer
  io.stderr:write("datagram from ", tostring(peer), "\n")
elseif udp then
  local addr = check(S.addr(host, port))
  sock = check(S.udp(addr.family))
  check(sock:connect(addr))              -- sets the default destination
else
  sock = check(S.tcp_connect(host, port, 10))
  sock:settimeout(nil)                   -- the poller does the waiting
end

-- Wait on the socket and stdin. epoll refuses regular files and /dev/null
-- (always "ready"): then stdin is simply read between polls.
io.stdin:setvbuf("no")   -- unbuffered: what poll reports is what read sees
local poller = S.poller()
check(poller:add(sock, "r"))
local stdin_polled = poller:add(0, "r")
local stdin_open, deadline = true, nil

local function stdin_line()
  local line = io.stdin:read("L")
  if line then
    check(sock:sendall(line))
    return
  end
  stdin_open = false                     -- end of stdin
  if stdin_polled then poller:remove(0) end
  if not udp then sock:shutdown("w") end
  if quit then deadline = S.monotime() + quit end
end

while true do
  local wait = nil                                     -- forever
  if stdin_open and not stdin_polled then wait = 0 end
  if deadline then wait = math.max(0, deadline - S.monotime()) end
  for obj in poller:wait(wait) do
    if obj == sock then
      local data, err = sock:recv(65536)
      if not data then fail(err) end
      if data == "" and not udp then os.exit(0) end  -- the peer closed
      io.stdout:write(data)
      io.stdout:flush()
    elseif obj == 0 then
      stdin_line()
    end
  end
  if stdin_open and not stdin_polled then stdin_line() end
  if deadline and S.monotime() >= deadline then os.exit(0) end
end
