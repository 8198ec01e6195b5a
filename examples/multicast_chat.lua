-- multicast_chat.lua: a chat on a multicast group. Every line typed is sent
-- to the group; every message sent to the group by anyone is printed.
--
-- Run from a checkout (after `make`), in as many terminals as you like:
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/multicast_chat.lua GROUP PORT [NAME [INTERFACE]]
-- e.g.  ... multicast_chat.lua 239.255.1.2 5000 alice
--       ... multicast_chat.lua ff02::1:2 5000 bob lo
-- INTERFACE: for IPv4 the address of the interface (127.0.0.1 to stay on this
-- machine), for IPv6 its name or index (lo). End with Ctrl-D.
--
-- Two processes, so neither waits on the other: this one reads the terminal
-- and sends; a listener child it starts joins the group and prints. At the
-- end a private quit message (a token only the child knows) stops the child;
-- should it be lost, the child also notices within seconds that the parent's
-- loopback socket is gone (its heartbeat send fails with ECONNREFUSED).
local S = require "bsdsocket"

local function shellquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function setup(group, iface)
  local v6 = group:find(":", 1, true) ~= nil
  local family = v6 and S.AF_INET6 or S.AF_INET
  local mreq = { multiaddr = group, interface = iface }
  if v6 then
    mreq.interface = tonumber(iface) or iface
    return family, S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, S.IPV6_LEAVE_GROUP, mreq
  end
  return family, S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, S.IP_DROP_MEMBERSHIP, mreq
end

-- the listener: join, tell the parent we are ready, print until our quit token
local function listen(group, port, iface, token, readyport)
  local family, level, join, leave, mreq = setup(group, iface)
  local sock <close> = assert(S.socket(family, S.SOCK_DGRAM))
  assert(sock:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
  assert(sock:bind(family == S.AF_INET6 and "::" or "0.0.0.0", port))
  assert(sock:setsockopt(level, join, mreq))
  local parent <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
  assert(parent:connect("127.0.0.1", readyport))
  assert(parent:send("ready"))
  sock:settimeout(1)
  while true do
    local data, from, code = sock:recvfrom(65536)
    if not data then
      if code ~= "ETIMEDOUT" then io.stderr:write(from, "\n") break end
      local _, _, why = parent:send("?")         -- heartbeat: is the parent there?
      if why == "ECONNREFUSED" then break end
      data = "\0"
    end
    if data == "\0quit " .. token then break end
    if data:byte(1) ~= 0 then                    -- others' control messages are not chat
      io.write(("[%s] %s\n"):format(tostring(from), data))
      io.stdout:flush()
    end
  end
  sock:setsockopt(level, leave, mreq)
end

local function chat(group, port, name, iface)
  local family = setup(group, iface)
  local out <close> = assert(S.socket(family, S.SOCK_DGRAM))
  if family == S.AF_INET then
    assert(out:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_TTL, 1))
    if iface then assert(out:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_IF, iface)) end
  else
    assert(out:setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_HOPS, 1))
    if iface then
      assert(out:setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_IF,
                            tonumber(iface) or assert(S.if_nametoindex(iface))))
    end
  end
  local to = assert(S.addr(group, port))
  local ready <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
  assert(ready:bind("127.0.0.1", 0))
  ready:settimeout(5)
  local token = ("%d-%d"):format(math.random(1, 1e9), ready:getsockname().port)
  local child = assert(io.popen(("%s %s --listen %s %d %s %s %d"):format(
    shellquote(arg[-1] or "lua5.4"), shellquote(arg[0]), shellquote(group), port,
    shellquote(iface or "-"), shellquote(token), ready:getsockname().port), "w"))
  assert(ready:recvfrom(16), "the listener did not start")
  io.stderr:write(("joined %s port %d as %s; type lines, Ctrl-D ends\n"):format(group, port, name))
  for line in io.lines() do
    local ok, err = out:sendto(name .. ": " .. line, to)
    if not ok then io.stderr:write(err, "\n") end
  end
  out:sendto(name .. " left", to)
  out:sendto("\0quit " .. token, to)
  ready:close()                                  -- the heartbeat fails from now on
  child:close()
end

if arg[1] == "--listen" then
  local iface = arg[4] ~= "-" and arg[4] or nil
  listen(arg[2], tonumber(arg[3]), iface, arg[5], tonumber(arg[6]))
else
  local group, port = arg[1], tonumber(arg[2])
  if not group or not port then
    io.stderr:write("usage: lua5.4 multicast_chat.lua GROUP PORT [NAME [INTERFACE]]\n")
    os.exit(2)
  end
  math.randomseed(os.time(), math.floor(os.clock() * 1e6))
  chat(group, port, arg[3] or os.getenv("USER") or "someone", arg[4])
end
