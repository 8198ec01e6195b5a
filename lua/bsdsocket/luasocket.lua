-- bsdsocket.luasocket: LuaSocket 3.x's API (the `socket` table with its
-- `socket.core` functions) implemented on bsdsocket.
--
--   lua5.4 -l bsdsocket.luasocket script.lua    -- runs an unchanged LuaSocket script
--   local socket = require "bsdsocket.luasocket" -- the same table, from Lua
--
-- Requiring this module installs it as package.loaded["socket"] and
-- package.loaded["socket.core"] (one table, as in LuaSocket), so
-- `require "socket"` and LuaSocket's pure-Lua modules (socket.http,
-- socket.url, socket.smtp, socket.ftp, ltn12) run over bsdsocket.
-- socket.select has no limit on descriptor numbers or count (epoll/poll
-- underneath), and inside a bsdsocket.loop task every call that would block
-- suspends only that task. LUASOCKET_DEBUG=1 in the environment switches on
-- LuaSocket's debug mode (socket._DEBUG, the elapsed time as the last result
-- of receive and send), which LuaSocket's test suite requires.
-- The differences from LuaSocket are listed in API.md.
local core = require "bsdsocket.core"
local loop = require "bsdsocket.loop"

local type, tostring, tonumber, select, error, pcall, setmetatable, getmetatable =
  type, tostring, tonumber, select, error, pcall, setmetatable, getmetatable
local pack, unpack, concat = table.pack, table.unpack, table.concat
local find, sub, gsub, format, match = string.find, string.sub, string.gsub, string.format,
  string.match
local mtype, floor, huge = math.type, math.floor, math.huge
local monotime = core.monotime
local tasks = core._tasks
local corunning = coroutine.running

local AF_INET, AF_INET6, AF_UNSPEC = core.AF_INET, core.AF_INET6, core.AF_UNSPEC
local SOCK_STREAM, SOCK_DGRAM = core.SOCK_STREAM, core.SOCK_DGRAM

local socket = {}

local debugenv = os.getenv("LUASOCKET_DEBUG")
local DEBUG = debugenv ~= nil and debugenv ~= "" and debugenv ~= "0"

socket._VERSION = "LuaSocket 3.1.0 (bsdsocket)"
socket._BSDSOCKET = true            -- tells that this layer answered, not LuaSocket
socket._DEBUG = DEBUG or nil
socket._SOCKETINVALID = -1
socket._DATAGRAMSIZE = 8192
socket.BLOCKSIZE = 2048

-- _SETSIZE: LuaSocket's select takes at most FD_SETSIZE descriptors; this
-- one takes as many as the process may open (RLIMIT_NOFILE's soft limit).
do
  local n
  local f = io.open("/proc/self/limits")
  if f then
    local text = f:read("a")
    f:close()
    local soft = text:match("Max open files%s+(%S+)")
    n = soft == "unlimited" and 2 ^ 31 - 1 or tonumber(soft)
  end
  socket._SETSIZE = math.tointeger(n) or 1024
end

-- ---- errors: bsdsocket's codes to LuaSocket's strings ----

local ERRSTR = {
  EAGAIN = "timeout", EWOULDBLOCK = "timeout", ETIMEDOUT = "timeout",
  EINPROGRESS = "timeout", EALREADY = "timeout",
  EOF = "closed", EPIPE = "closed", ECONNRESET = "closed", ECONNABORTED = "closed",
  EBADF = "closed",   -- another task closed the object while this call waited
  ECONNREFUSED = "connection refused",
  EADDRINUSE = "address already in use",
  EISCONN = "already connected",
  EACCES = "permission denied",
  EAI_NONAME = "host or service not provided, or not known",
  EAI_AGAIN = "temporary failure in name resolution",
  EAI_FAIL = "non-recoverable failure in name resolution",
  EAI_SERVICE = "service not supported for socket type",
  EAI_FAMILY = "ai_family not supported",
  EAI_SOCKTYPE = "ai_socktype not supported",
  EAI_MEMORY = "memory allocation failure",
  EAI_BADFLAGS = "invalid value for ai_flags",
}

-- LuaSocket's message for a bsdsocket failure (msg, code)
local function errstr(msg, code)
  local s = ERRSTR[code]
  if s then return s end
  if code and not find(code, "^EAI_") then
    local ok, text = pcall(core.strerror, code)
    if ok and text then return text end
  end
  return (msg and msg:match(":%s*([^:]+)$")) or msg or "unknown error"
end

-- ---- clock and sleep ----

local walloffset  -- wall clock minus monotonic clock, measured once
function socket.gettime()
  if not walloffset then
    local now
    local p = io.popen("date +%s.%N 2>/dev/null")
    if p then
      now = tonumber(p:read("a"))
      p:close()
    end
    walloffset = (now or os.time()) - monotime()
  end
  return walloffset + monotime()
end

function socket.sleep(n)
  n = tonumber(n)
  if not n or n ~= n or n <= 0 then return end
  if n > 2 ^ 31 then n = 2 ^ 31 end
  loop.sleep(n)
end

-- ---- small helpers of socket.core ----

function socket.skip(d, ...)
  return select(d + 1, ...)
end

local WRAPPED = {}  -- metatable of the errors newtry raises
local function iswrapped(e) return type(e) == "table" and getmetatable(e) == WRAPPED end

function socket.newtry(finalizer)
  return function(...)
    local ok = ...
    if ok then return ... end
    if finalizer then pcall(finalizer) end
    error(setmetatable({ (select(2, ...)) }, WRAPPED), 0)
  end
end

function socket.protect(f)
  return function(...)
    local r = pack(pcall(f, ...))
    if r[1] then return unpack(r, 2, r.n) end
    local e = r[2]
    if iswrapped(e) then return nil, e[1] end
    error(e, 0)
  end
end

-- ---- addresses ----

local FAMILY = { [AF_INET] = "inet", [AF_INET6] = "inet6" }
local FAMILYARG = { inet = AF_INET, inet6 = AF_INET6, unspec = AF_UNSPEC }

local function portarg(port)
  if port == nil then return nil end
  local n = tonumber(port)
  if n then return math.tointeger(n) or floor(n) end
  return tostring(port)
end

local function hostarg(host, family)
  if host == "*" then return family == AF_INET6 and "::" or "0.0.0.0" end
  return host
end

-- getaddrinfo for a socket call: array of results or nil, LuaSocket message
local function resolve(host, port, family, socktype, passive)
  host = hostarg(host, family)
  if type(host) ~= "string" then
    error("bad argument #1 (string expected, got " .. type(host) .. ")", 3)
  end
  local list, msg, code = core.getaddrinfo(host, portarg(port) or 0, {
    family = family or AF_UNSPEC, socktype = socktype,
    flags = passive and core.AI_PASSIVE or nil })
  if not list then return nil, errstr(msg, code) end
  if #list == 0 then return nil, ERRSTR.EAI_NONAME end
  return list
end

-- ---- the objects ----
-- A LuaSocket object is a table: sock (the bsdsocket socket, nil before it
-- is created and after close), family, buf (bytes read ahead by "*l" and
-- "*a"), tb/tt (block and total timeouts, -1 for none), stats. Its class is
-- its metatable; the class's method table has `class`, as in LuaSocket.

local CLASSES = {}     -- metatable -> true, for every class
local classmt = {}     -- class name -> metatable

local function newclass(name, methods)
  local index = { class = name }
  for k, f in pairs(methods) do index[k] = f end
  local mt = {
    __index = index,
    __name = name,
    __tostring = function(o) return name .. ": " .. format("%p", o) end,
    __close = function(o) if o.sock then o.sock:close() o.sock = nil end end,
  }
  CLASSES[mt] = true
  classmt[name] = mt
  return mt
end

local function badself(method, expected)
  return function(self)
    local got = getmetatable(self)
    got = got and got.__name or type(self)
    error(format("calling '%s' on bad self (%s expected, got %s)", method, expected, got), 2)
  end
end

local function isobj(o) return CLASSES[getmetatable(o)] == true end

-- objects whose read-ahead buffer holds data (select reports them readable)
local dirtyset = setmetatable({}, { __mode = "k" })

local ndirty = 0   -- how many entries dirtyset may hold (too many after a collection)

local function setbuf(self, b)
  self.buf = b
  if b == "" then
    if dirtyset[self] then
      dirtyset[self] = nil
      ndirty = ndirty - 1
    end
  elseif not dirtyset[self] then
    dirtyset[self] = true
    ndirty = ndirty + 1
  end
end

local invalidate  -- select's cache of an object's registration (defined with select)

-- rn: the count of the last receive(n), for the fast path; NaN equals no
-- pattern
local NORN = 0 / 0

local function newobj(mt, sock, family)
  return setmetatable({ sock = sock, family = family, buf = "", tb = -1, tt = -1,
    fast = true, nb = false, rn = NORN, nrecv = 0, nsent = 0, birth = monotime() }, mt)
end

-- the native timeout for the next wait of a call that started at t0
local function native(self, t0)
  local tb, tt = self.tb, self.tt
  if tt < 0 then return tb >= 0 and tb or nil end
  local left = tt - (monotime() - t0)
  if left < 0 then left = 0 end
  if tb >= 0 and tb < left then return tb end
  return left
end

-- applies the block timeout to the socket (the total one is set per call)
local function applytimeout(self)
  -- fast: no total timeout and not non-blocking, so receive(n) and send(data)
  -- are one recvall / sendall of the core; nb: non-blocking (block timeout
  -- 0, no total timeout), so receive(n) is one recv
  self.fast = self.tt < 0 and self.tb ~= 0
  self.nb = self.tt < 0 and self.tb == 0
  local sock = self.sock
  if not sock then return end
  if self.tt >= 0 then sock:settimeout(0)
  elseif self.tb >= 0 then sock:settimeout(self.tb)
  else sock:settimeout(nil) end
end

-- creates the socket of a lazily created object for family
local function ensure(self, family, socktype)
  if self.sock then return self.sock end
  local sock, msg, code = core.socket(family, socktype)
  if not sock then return nil, errstr(msg, code) end
  if family == AF_INET6 then sock:setsockopt(core.IPPROTO_IPV6, core.IPV6_V6ONLY, true) end
  self.sock, self.family = sock, family
  applytimeout(self)
  if invalidate then invalidate(self) end
  return sock
end

-- ---- methods shared by TCP and UDP ----

local common = {}

function common.close(self)
  local sock = self.sock
  if sock then sock:close() end
  self.sock, self.closed = nil, true
  setbuf(self, "")
  return 1
end

function common.getfd(self)
  local sock = self.sock
  return sock and sock:fileno() or -1
end

function common.setfd(self, fd)
  fd = math.tointeger(tonumber(fd))
  if not fd then error("bad argument #1 to 'setfd' (number expected)", 2) end
  if self.sock then self.sock:detach() end
  self.sock = nil
  if fd >= 0 then
    local sock = core.fromfd(fd)
    if sock then
      self.sock = sock
      applytimeout(self)
    end
  end
  invalidate(self)
end

function common.dirty(self)
  return #self.buf > 0
end

function common.getfamily(self)
  return self.family == AF_INET6 and "inet6" or "inet4"
end

function common.settimeout(self, t, mode)
  t = tonumber(t)
  if not t or t < 0 or t ~= t then t = -1 end
  if t > 1e8 then t = 1e8 end   -- the core takes at most 1e9 s; over three years is forever
  mode = mode or "b"
  local m = sub(tostring(mode), 1, 1)
  if m == "b" then self.tb = t
  elseif m == "t" or m == "r" then self.tt = t
  else error("bad argument #2 to 'settimeout' (invalid timeout mode)", 2) end
  applytimeout(self)
  return 1
end

function common.gettimeout(self)
  return self.tb, self.tt
end

local function nameof(addr)
  return addr.host, addr.port, FAMILY[addr.family] or "unix"
end

-- getsockname / getpeername: host, port, family of that end
local function endname(self, which)
  local sock = self.sock
  if not sock then return nil, core.strerror("EBADF") end
  local addr, msg, code = sock[which](sock)
  if not addr then return nil, errstr(msg, code) end
  return nameof(addr)
end

function common.getsockname(self)
  return endname(self, "getsockname")
end

function common.getpeername(self)
  return endname(self, "getpeername")
end

-- ---- options ----

local SOL, TCP, IP, IP6 = core.SOL_SOCKET, core.IPPROTO_TCP, core.IPPROTO_IP, core.IPPROTO_IPV6
local function opt(level, name, kind) return { level = level, name = name, kind = kind or "value" } end

local OPTIONS = {
  keepalive = opt(SOL, core.SO_KEEPALIVE),
  reuseaddr = opt(SOL, core.SO_REUSEADDR),
  reuseport = opt(SOL, core.SO_REUSEPORT),
  broadcast = opt(SOL, core.SO_BROADCAST),
  dontroute = opt(SOL, core.SO_DONTROUTE),
  linger = opt(SOL, core.SO_LINGER, "linger"),
  error = opt(SOL, core.SO_ERROR, "error"),
  ["recv-buffer-size"] = opt(SOL, core.SO_RCVBUF),
  ["send-buffer-size"] = opt(SOL, core.SO_SNDBUF),
  ["tcp-nodelay"] = opt(TCP, core.TCP_NODELAY),
  ["tcp-keepidle"] = opt(TCP, core.TCP_KEEPIDLE),
  ["tcp-keepcnt"] = opt(TCP, core.TCP_KEEPCNT),
  ["tcp-keepintvl"] = opt(TCP, core.TCP_KEEPINTVL),
  ["tcp-defer-accept"] = opt(TCP, core.TCP_DEFER_ACCEPT, "int"),
  ["tcp-fastopen"] = opt(TCP, core.TCP_FASTOPEN, "int"),
  ["tcp-fastopen-connect"] = opt(TCP, core.TCP_FASTOPEN_CONNECT, "int"),
  ["ip-multicast-ttl"] = opt(IP, core.IP_MULTICAST_TTL),
  ["ip-multicast-loop"] = opt(IP, core.IP_MULTICAST_LOOP),
  ["ip-multicast-if"] = opt(IP, core.IP_MULTICAST_IF),
  ["ip-add-membership"] = opt(IP, core.IP_ADD_MEMBERSHIP, "membership"),
  ["ip-drop-membership"] = opt(IP, core.IP_DROP_MEMBERSHIP, "membership"),
  ["ipv6-unicast-hops"] = opt(IP6, core.IPV6_UNICAST_HOPS),
  ["ipv6-multicast-hops"] = opt(IP6, core.IPV6_MULTICAST_HOPS),
  ["ipv6-multicast-loop"] = opt(IP6, core.IPV6_MULTICAST_LOOP),
  ["ipv6-add-membership"] = opt(IP6, core.IPV6_JOIN_GROUP, "membership"),
  ["ipv6-drop-membership"] = opt(IP6, core.IPV6_LEAVE_GROUP, "membership"),
  ["ipv6-v6only"] = opt(IP6, core.IPV6_V6ONLY),
}

local function option(name, which)
  local o = OPTIONS[name]
  if not o or not o.name then
    error(format("bad argument #1 to '%s' (unsupported option `%s')", which, tostring(name)), 3)
  end
  return o
end

function common.setoption(self, name, value)
  local o = option(name, "setoption")
  local sock = self.sock
  if not sock then return nil, "setsockopt failed" end
  if o.kind == "linger" then
    if type(value) ~= "table" then error("bad argument #2 to 'setoption' (table expected)", 2) end
    value = { onoff = value.on and true or false, linger = math.tointeger(value.timeout) or 0 }
  elseif o.kind == "membership" then
    if type(value) ~= "table" then error("bad argument #2 to 'setoption' (table expected)", 2) end
    local iface = value.interface
    if iface == "*" then iface = o.level == IP and "0.0.0.0" or 0 end
    value = { multiaddr = value.multiaddr, interface = iface }
  elseif o.kind == "int" or (mtype(value) ~= nil) then
    value = math.tointeger(value) or value
  elseif o.name == core.IP_MULTICAST_IF and value == "*" then
    value = "0.0.0.0"
  end
  local ok, msg, code = sock:setsockopt(o.level, o.name, value)
  if not ok then return nil, errstr(msg, code) end
  return 1
end

function common.getoption(self, name)
  local o = option(name, "getoption")
  local sock = self.sock
  if not sock then return nil, "getsockopt failed" end
  local v, msg, code = sock:getsockopt(o.level, o.name)
  if v == nil then return nil, errstr(msg, code) end
  if o.kind == "linger" then return { on = v.onoff, timeout = v.linger } end
  if o.kind == "error" then
    if v == 0 then return nil end
    return errstr(nil, core.errno[v])
  end
  if o.kind == "int" and type(v) == "string" then return (string.unpack("=i", v)) end
  return v
end

-- ---- TCP ----

local tcp = setmetatable({}, { __index = common })

-- the object's own class change (master -> client / server)
local function setclass(self, name) return setmetatable(self, classmt[name]) end

-- tries every address until one connects (creating the socket per family
-- when the object has none yet); LuaSocket's inet_tryconnect
local function tryconnect(self, host, port, socktype)
  local list, err = resolve(host, port, self.family, socktype)
  if not list then return nil, err end
  local t0 = monotime()
  for _, ai in ipairs(list) do
    local fresh = self.sock == nil
    local sock
    sock, err = ensure(self, ai.family, socktype)
    if not sock then return nil, err end
    if self.tt >= 0 then sock:settimeout(native(self, t0)) end
    local ok, msg, code = sock:connect(ai.addr)
    if ok then return 1 end
    if code == "EISCONN" and self.connecting then self.connecting = nil return 1 end
    err = errstr(msg, code)
    if code == "EINPROGRESS" or code == "EAGAIN" or code == "EALREADY" then
      self.connecting = true
      return nil, err
    end
    if fresh then sock:close() self.sock = nil end
  end
  return nil, err
end

-- binds to the first address that works (LuaSocket's inet_trybind)
local function trybind(self, host, port, socktype)
  local list, err = resolve(host, port, self.family, socktype, true)
  if not list then return nil, err end
  for _, ai in ipairs(list) do
    local fresh = self.sock == nil
    local sock
    sock, err = ensure(self, ai.family, socktype)
    if not sock then return nil, err end
    local ok, msg, code = sock:bind(ai.addr)
    if ok then return 1 end
    err = errstr(msg, code)
    if fresh then sock:close() self.sock = nil end
  end
  return nil, err
end

function tcp.connect(self, host, port)
  local ok, err = tryconnect(self, host, port, SOCK_STREAM)
  setclass(self, "tcp{client}")   -- even when it failed, as LuaSocket (non-blocking connects)
  if ok then return ok end
  return nil, err
end

function tcp.bind(self, host, port)
  return trybind(self, host, port, SOCK_STREAM)
end

tcp.setpeername = tcp.connect
tcp.setsockname = tcp.bind

-- without a descriptor (socket.tcp() before bind, or closed) there is
-- nothing to listen on: LuaSocket's listen(-1) fails with EBADF's text
function tcp.listen(self, backlog)
  local sock = self.sock
  if not sock then return nil, core.strerror("EBADF") end
  local ok, msg, code = sock:listen(math.tointeger(tonumber(backlog)) or 32)
  if not ok then return nil, errstr(msg, code) end
  setclass(self, "tcp{server}")
  return 1
end

function tcp.accept(self)
  local sock = self.sock
  if not sock then return nil, "closed" end
  if self.tt >= 0 then sock:settimeout(native(self, monotime())) end
  local c, msg, code = sock:accept()
  if not c then return nil, errstr(msg, code) end
  return newobj(classmt["tcp{client}"], c, self.family)
end

local SHUT = { both = "rw", send = "w", receive = "r" }
function tcp.shutdown(self, how)
  how = how or "both"
  local h = SHUT[how]
  if not h then error("bad argument #1 to 'shutdown' (invalid shutdown method)", 2) end
  local sock = self.sock
  if sock then sock:shutdown(h) end   -- LuaSocket ignores shutdown's errors
  return 1
end

function tcp.getstats(self)
  return self.nrecv, self.nsent, monotime() - self.birth
end

function tcp.setstats(self, r, s, age)
  self.nrecv = tonumber(r) or self.nrecv
  self.nsent = tonumber(s) or self.nsent
  if tonumber(age) then self.birth = monotime() - tonumber(age) end
  return 1
end

local CHUNK = 65536

-- one read of at most max bytes for a call that started at t0: data, or
-- nil, LuaSocket error ("closed" at EOF)
local function readsome(self, sock, max, t0)
  if self.tt >= 0 then sock:settimeout(native(self, t0)) end
  local data, msg, code = sock:recv(max)
  if not data then return nil, errstr(msg, code) end
  if data == "" then return nil, "closed" end
  self.nrecv = self.nrecv + #data
  return data
end

local function stripcr(s)
  if find(s, "\r", 1, true) then s = gsub(s, "\r", "") end
  return s
end

local function recvline(self, sock, prefix, t0)
  local buf = self.buf
  local i = find(buf, "\n", 1, true)
  if i then
    setbuf(self, sub(buf, i + 1))
    return prefix .. stripcr(sub(buf, 1, i - 1))
  end
  local parts, n = { prefix, stripcr(buf) }, 2
  if buf ~= "" then setbuf(self, "") end
  while true do
    local data, err = readsome(self, sock, CHUNK, t0)
    if not data then return nil, err, concat(parts, "", 1, n) end
    i = find(data, "\n", 1, true)
    n = n + 1
    if i then
      parts[n] = stripcr(sub(data, 1, i - 1))
      setbuf(self, sub(data, i + 1))
      return concat(parts, "", 1, n)
    end
    parts[n] = stripcr(data)
  end
end

local function recvall(self, sock, prefix, t0)
  local parts, n = { prefix, self.buf }, 2
  local total = #self.buf
  setbuf(self, "")
  while true do
    local data, err = readsome(self, sock, CHUNK, t0)
    if not data then
      if err == "closed" and total > 0 then return concat(parts, "", 1, n) end
      return nil, err, concat(parts, "", 1, n)
    end
    n = n + 1
    parts[n] = data
    total = total + #data
  end
end

local function recvraw(self, sock, wanted, prefix, t0)
  local buf = self.buf
  local have = #buf
  if have >= wanted then
    setbuf(self, have == wanted and "" or sub(buf, wanted + 1))
    return prefix .. sub(buf, 1, wanted)
  end
  if have > 0 then setbuf(self, "") end
  wanted = wanted - have
  if self.tb == 0 and self.tt < 0 then
    -- non-blocking: one recv; less than wanted is a timeout with a partial
    -- result (what LuaSocket's next recv would say, without the system call)
    local data, msg, code = sock:recv(wanted)
    if not data then return nil, errstr(msg, code), prefix .. buf end
    if data == "" then return nil, "closed", prefix .. buf end
    local got = #data
    self.nrecv = self.nrecv + got
    if got == wanted then return prefix .. buf .. data end
    return nil, "timeout", prefix .. buf .. data
  end
  if self.tt < 0 then
    -- the fast path: the core reads exactly what is missing, keeping a
    -- partial result on a timeout, an error or EOF
    local data, msg, code, partial = sock:recvall(wanted)
    if data then
      self.nrecv = self.nrecv + wanted
      return prefix .. buf .. data
    end
    partial = partial or ""
    self.nrecv = self.nrecv + #partial
    return nil, errstr(msg, code), prefix .. buf .. partial
  end
  local parts, n = { prefix, buf }, 2
  while wanted > 0 do
    local data, err = readsome(self, sock, wanted, t0)
    if not data then return nil, err, concat(parts, "", 1, n) end
    n = n + 1
    parts[n] = data
    wanted = wanted - #data
  end
  return concat(parts, "", 1, n)
end

-- receive(n)'s count as an integer, nil when LuaSocket rejects it
-- (negative, NaN). A count no integer holds (math.huge) means as many bytes
-- as come before the close or the timeout: LuaSocket converts it to size_t,
-- which C leaves undefined (x86-64 makes it 0, arm64 the largest size_t).
local function bytecount(n)
  if n < 0 or n ~= n then return nil end
  if n >= 0x1p63 then return math.maxinteger end
  return floor(n)
end

-- receive's string patterns: LuaSocket 3.0 reads the letter after the "*"
-- ("*line" is "*l"); the letter alone ("l", "a") is LuaSocket 3.1's form
local PATTERN = { l = "line", a = "all" }
local function patternkind(p)
  return type(p) == "string" and PATTERN[match(p, "^%*?(.)") or ""]
end

function tcp.receive(self, pattern, prefix)
  local sock = self.sock
  if pattern == self.rn and prefix == nil and self.nb and self.buf == "" and sock then
    -- the server loop's call: a non-blocking receive(n) with the count of
    -- the last receive(n) (rn: a positive integer), nothing buffered. One
    -- recv; fewer than n bytes is a timeout with a partial result (what
    -- LuaSocket's next recv would say, without the system call).
    local n = self.rn
    local data, msg, code = sock:recv(n)
    if not data then return nil, errstr(msg, code), "" end
    local got = #data
    if got == 0 then return nil, "closed", "" end
    self.nrecv = self.nrecv + got
    if got == n then return data end
    return nil, "timeout", data
  end
  if prefix == nil and self.buf == "" and type(pattern) == "number" and self.tt < 0 and sock then
    -- the common cases first: receive(n), nothing buffered, no total timeout
    local n = bytecount(pattern) or 0
    if n > 0 then
      if n == pattern then self.rn = n end
      if self.tb ~= 0 then
        -- blocking (with or without a block timeout): the core reads n
        -- bytes. A large n starts with one recv (the core's reused buffer,
        -- often all of it at once), recvall reads what is missing.
        local first = ""
        if n > 4096 then
          local data, msg, code = sock:recv(n)
          if not data then return nil, errstr(msg, code), "" end
          local got = #data
          if got == 0 then return nil, "closed", "" end
          self.nrecv = self.nrecv + got
          if got == n then return data end
          first, n = data, n - got
        end
        local data, msg, code, partial = sock:recvall(n)
        if data then
          self.nrecv = self.nrecv + n
          return first .. data
        end
        partial = partial or ""
        self.nrecv = self.nrecv + #partial
        return nil, errstr(msg, code), first .. partial
      end
      -- non-blocking: one recv; fewer than n bytes is a timeout with a
      -- partial result (what LuaSocket's next recv would say, without the
      -- system call)
      local data, msg, code = sock:recv(n)
      if not data then return nil, errstr(msg, code), "" end
      local got = #data
      if got == 0 then return nil, "closed", "" end
      self.nrecv = self.nrecv + got
      if got == n then return data end
      return nil, "timeout", data
    end
  end
  local t0 = self.tt >= 0 and monotime() or 0   -- only a total timeout needs the start
  if prefix == nil then prefix = ""
  elseif type(prefix) ~= "string" then
    if type(prefix) == "number" then prefix = tostring(prefix)
    else error("bad argument #2 to 'receive' (string expected, got " .. type(prefix) .. ")", 2) end
  end
  local n = tonumber(pattern)
  if n then
    n = bytecount(n)
    if not n then error("bad argument #1 to 'receive' (invalid receive pattern)", 2) end
    if #prefix > 0 and n <= #prefix then return prefix end
    if not sock then return nil, "closed", prefix end
    if n == 0 then
      -- as LuaSocket: an empty buffer is filled once (which may wait)
      if #self.buf == 0 then
        local data, err = readsome(self, sock, CHUNK, t0)
        if not data then return nil, err, prefix end
        setbuf(self, data)
      end
      return prefix
    end
    return recvraw(self, sock, n - #prefix, prefix, t0)
  end
  local kind = patternkind(pattern or "*l")
  if kind == "line" then
    if not sock then return nil, "closed", prefix end
    return recvline(self, sock, prefix, t0)
  elseif kind == "all" then
    if not sock then return nil, "closed", prefix end
    return recvall(self, sock, prefix, t0)
  end
  error("bad argument #1 to 'receive' (invalid receive pattern)", 2)
end

function tcp.send(self, data, i, j)
  local sock = self.sock
  if (i == nil or i == 1) and j == nil and self.tt < 0 and sock and type(data) == "string" then
    -- the common case: all of data, no total timeout (a non-blocking
    -- sendall stops at a full buffer and tells how much it sent)
    local ok, msg, code, sent = sock:sendall(data)
    if ok then
      local n = #data
      self.nsent = self.nsent + n
      return n
    end
    sent = sent or 0
    self.nsent = self.nsent + sent
    return nil, errstr(msg, code), sent
  end
  local t0 = self.tt >= 0 and monotime() or 0
  if type(data) ~= "string" then
    if type(data) == "number" then data = tostring(data)
    else error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2) end
  end
  local size = #data
  i = i and floor(tonumber(i)) or 1
  j = j and floor(tonumber(j)) or -1
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  if not sock then return nil, "closed", i - 1 end
  if i > j then return i - 1 end
  local chunk = (i == 1 and j == size) and data or sub(data, i, j)
  if self.tt < 0 then
    local ok, msg, code, sent = sock:sendall(chunk)
    if ok then
      self.nsent = self.nsent + #chunk
      return j
    end
    sent = sent or 0
    self.nsent = self.nsent + sent
    return nil, errstr(msg, code), i - 1 + sent
  end
  -- a total timeout: each wait gets what is left of it
  local pos, last = 1, #chunk
  while pos <= last do
    sock:settimeout(native(self, t0))
    local n, msg, code = sock:send(chunk, pos)
    if not n then
      self.nsent = self.nsent + pos - 1
      return nil, errstr(msg, code), i + pos - 2
    end
    pos = pos + n
  end
  self.nsent = self.nsent + last
  return j
end

-- ---- UDP ----

local udp = setmetatable({}, { __index = common })

function udp.setsockname(self, host, port)
  return trybind(self, host, port, SOCK_DGRAM)
end

-- setpeername("*") dissolves the association: the socket is replaced by a
-- fresh one of the same family bound to the same local address (options
-- set on the old one are not carried over)
function udp.setpeername(self, host, port)
  if host == "*" then
    local sock = self.sock
    if sock and getmetatable(self) == classmt["udp{connected}"] then
      local here = sock:getsockname()
      sock:close()
      self.sock = nil
      local fresh, err = ensure(self, self.family, SOCK_DGRAM)
      if not fresh then return nil, err end
      if here then
        local ok, msg, code = fresh:bind(here)
        if not ok then return nil, errstr(msg, code) end
      end
    end
    setclass(self, "udp{unconnected}")
    return 1
  end
  local ok, err = tryconnect(self, host, port, SOCK_DGRAM)
  if not ok then return nil, err end
  setclass(self, "udp{connected}")
  return 1
end

local function udpresult(self, data, msg, code)
  if not data then return nil, errstr(msg, code) end
  self.nrecv = self.nrecv + #data
  return data
end

-- On a closed object LuaSocket's receive answers "" (its closed status
-- reads as an empty datagram); receivefrom there formats an address that
-- was never filled in, so this one says "closed" instead (API.md).
function udp.receive(self, size)
  local sock = self.sock
  if not sock then return "" end
  if self.tt >= 0 then sock:settimeout(native(self, monotime())) end
  size = math.tointeger(tonumber(size)) or socket._DATAGRAMSIZE
  return udpresult(self, sock:recv(size))
end

function udp.receivefrom(self, size)
  local sock = self.sock
  if not sock then return nil, "closed" end
  if self.tt >= 0 then sock:settimeout(native(self, monotime())) end
  size = math.tointeger(tonumber(size)) or socket._DATAGRAMSIZE
  local data, from, code = sock:recvfrom(size)
  if not data then return nil, errstr(from, code) end
  if from and from.host then return data, from.host, from.port end
  return data
end

-- LuaSocket's word for a send on a closed UDP object (its "closed" error
-- on UDP means the destination was not accepted)
local REFUSED = "refused"

function udp.send(self, data)
  local sock = self.sock
  if not sock then return nil, REFUSED end
  if self.tt >= 0 then sock:settimeout(native(self, monotime())) end
  local n, msg, code = sock:send(data)
  if not n then return nil, errstr(msg, code) end
  self.nsent = self.nsent + n
  return n
end

-- sendto caches the address of the last (ip, port) it was given. As in
-- LuaSocket, the first sendto creates the descriptor only while the family
-- is still unknown (socket.udp() never used); an object that had one and
-- was closed stays closed: "refused".
function udp.sendto(self, data, ip, port)
  if type(data) ~= "string" then error("bad argument #1 to 'sendto' (string expected)", 2) end
  if type(ip) ~= "string" then error("bad argument #2 to 'sendto' (string expected)", 2) end
  if not self.sock and self.family ~= AF_UNSPEC then return nil, REFUSED end
  port = portarg(port)
  local addr = self.lastaddr
  if not (addr and self.lastip == ip and self.lastport == port) then
    local list, err = resolve(ip, port, self.sock and self.family or AF_UNSPEC, SOCK_DGRAM)
    if not list then return nil, err end
    addr = list[1].addr
    self.lastaddr, self.lastip, self.lastport = addr, ip, port
  end
  local sock, err = ensure(self, addr.family, SOCK_DGRAM)
  if not sock then return nil, err end
  if self.tt >= 0 then sock:settimeout(native(self, monotime())) end
  local n, msg, code = sock:sendto(data, addr)
  if not n then return nil, errstr(msg, code) end
  self.nsent = self.nsent + n
  return n
end

-- ---- the classes ----

-- a class's method table: the shared methods, then those of its kind,
-- then the ones this class refuses (LuaSocket's "bad self" errors)
local function methods(kind, bad)
  local t = {}
  for k, f in pairs(common) do t[k] = f end
  for k, f in pairs(kind) do t[k] = f end
  for method, expected in pairs(bad) do t[method] = badself(method, expected) end
  return t
end

local CLIENT, MASTER, SERVER = "tcp{client}", "tcp{master}", "tcp{server}"
newclass(MASTER, methods(tcp, {
  accept = SERVER, receive = CLIENT, send = CLIENT, shutdown = CLIENT,
  getstats = CLIENT, setstats = CLIENT }))
newclass(CLIENT, methods(tcp, { accept = SERVER, bind = MASTER, listen = MASTER,
  setsockname = MASTER }))
newclass(SERVER, methods(tcp, {
  receive = CLIENT, send = CLIENT, shutdown = CLIENT, bind = MASTER, listen = MASTER,
  setsockname = MASTER, getstats = CLIENT, setstats = CLIENT }))
local UNCONNECTED, CONNECTED = "udp{unconnected}", "udp{connected}"
newclass(UNCONNECTED, methods(udp, { send = CONNECTED, getpeername = CONNECTED }))
newclass(CONNECTED, methods(udp, { sendto = UNCONNECTED, setsockname = UNCONNECTED }))

-- LuaSocket's debug mode: receive and send return the seconds the call took
-- as one more result
if DEBUG then
  for _, name in ipairs({ MASTER, CLIENT, SERVER }) do
    local index = classmt[name].__index
    for _, m in ipairs({ "receive", "send" }) do
      local f = index[m]
      index[m] = function(self, ...)
        local t0 = monotime()
        local a, b, c = f(self, ...)
        return a, b, c, monotime() - t0
      end
    end
  end
end

-- ---- constructors ----

-- socket.tcp() has no descriptor until bind or connect picks the family
-- (as LuaSocket 3); tcp4/tcp6 create it at once (tcp6 with IPV6_V6ONLY).
local function create(classname, family, socktype)
  local o = newobj(classmt[classname], nil, family)
  if family ~= AF_UNSPEC then
    local sock, err = ensure(o, family, socktype)
    if not sock then return nil, err end
  end
  return o
end

function socket.tcp() return create(MASTER, AF_UNSPEC, SOCK_STREAM) end
function socket.tcp4() return create(MASTER, AF_INET, SOCK_STREAM) end
function socket.tcp6() return create(MASTER, AF_INET6, SOCK_STREAM) end
function socket.udp() return create(UNCONNECTED, AF_UNSPEC, SOCK_DGRAM) end
function socket.udp4() return create(UNCONNECTED, AF_INET, SOCK_DGRAM) end
function socket.udp6() return create(UNCONNECTED, AF_INET6, SOCK_DGRAM) end

-- socket.connect(address, port [, laddress [, lport [, family]]])
function socket.connect(address, port, laddress, lport, family)
  local fam = FAMILYARG[family or "unspec"]
  if not fam then error("bad argument #5 to 'connect' (invalid family)", 2) end
  local o = newobj(classmt[MASTER], nil, fam)
  if laddress then
    local ok, err = trybind(o, laddress, lport or 0, SOCK_STREAM)
    if not ok then o:close() return nil, err end
  end
  local ok, err = tryconnect(o, address, port, SOCK_STREAM)
  if not ok then
    if o.sock then o.sock:close() end
    return nil, err
  end
  return setclass(o, CLIENT)
end

function socket.connect4(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet")
end

function socket.connect6(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet6")
end

-- socket.bind(host, port [, backlog]): a listening server with reuseaddr
function socket.bind(host, port, backlog)
  if host == "*" then host = "0.0.0.0" end
  local list, err = socket.dns.getaddrinfo(host)
  if not list then return nil, err end
  err = "no info on address"
  for _, alt in ipairs(list) do
    local sock
    if alt.family == "inet" then sock, err = socket.tcp4() else sock, err = socket.tcp6() end
    if not sock then return nil, err end
    sock:setoption("reuseaddr", true)
    local res
    res, err = sock:bind(alt.addr, port)
    if not res then
      sock:close()
    else
      res, err = sock:listen(backlog)
      if res then return sock end
      sock:close()
    end
  end
  return nil, err
end

-- ---- dns ----

local dns = {}
socket.dns = dns

local function isnumeric(host)
  return core.inet_pton(AF_INET, host) ~= nil or core.inet_pton(AF_INET6, host) ~= nil
end

-- dns.toip(name) -> first IPv4 address, { name =, alias = {}, ip = {...} }
function dns.toip(name)
  if type(name) ~= "string" then error("bad argument #1 to 'toip' (string expected)", 2) end
  local list = core.getaddrinfo(name, nil, { family = AF_INET, socktype = SOCK_STREAM,
    flags = core.AI_CANONNAME })
  if not list or #list == 0 then return nil, "host not found" end
  local ips = {}
  for _, ai in ipairs(list) do ips[#ips + 1] = ai.addr.host end
  return ips[1], { name = list[1].canonname or name, alias = {}, ip = ips }
end

-- dns.tohostname(address or name) -> canonical name, resolved table
function dns.tohostname(addr)
  if type(addr) ~= "string" then error("bad argument #1 to 'tohostname' (string expected)", 2) end
  local ip, resolved = addr, nil
  if not isnumeric(addr) then
    ip, resolved = dns.toip(addr)
    if not ip then return nil, resolved end
  end
  local host = core.getnameinfo(core.addr(ip, 0), core.NI_NAMEREQD)
  if not host then return nil, "host not found" end
  return host, { name = host, alias = {}, ip = resolved and resolved.ip or { ip } }
end

function dns.gethostname()
  local f = io.open("/proc/sys/kernel/hostname")
  if f then
    local name = f:read("l")
    f:close()
    if name then return name end
  end
  local p = io.popen("hostname 2>/dev/null")
  local name = p and p:read("l")
  if p then p:close() end
  return name or nil, name and nil or "gethostname failed"
end

-- dns.getaddrinfo(host) -> { { family = "inet"|"inet6", addr = "..." }, ... }
function dns.getaddrinfo(host)
  if type(host) ~= "string" then error("bad argument #1 to 'getaddrinfo' (string expected)", 2) end
  local list, msg, code = core.getaddrinfo(host, nil, { socktype = SOCK_STREAM })
  if not list then return nil, errstr(msg, code) end
  local t = {}
  for _, ai in ipairs(list) do
    t[#t + 1] = { family = FAMILY[ai.family], addr = ai.addr.host }
  end
  return t
end

-- dns.getnameinfo(host, port) -> { names }, service
function dns.getnameinfo(host, port)
  if host == nil and port == nil then error("bad argument #1 to 'getnameinfo' (host or port expected)", 2) end
  local list, msg, code = core.getaddrinfo(host or "0.0.0.0", portarg(port) or 0,
    { socktype = SOCK_STREAM })
  if not list then return nil, errstr(msg, code) end
  local names, service = {}, nil
  for _, ai in ipairs(list) do
    local h, s = core.getnameinfo(ai.addr)
    if h then names[#names + 1] = h end
    service = service or s
  end
  return host and names or nil, port and service or nil
end

-- ---- select ----
-- One level-triggered poller per thread (the main one and each loop task);
-- a socket is registered the first time it is selected and stays so.
-- A call walks each set once, comparing it with a shadow: for each set
-- table (per thread and direction) select keeps an array of the objects it
-- saw at each index, so an unchanged set costs one comparison per socket
-- (about 190 instructions of the interpreter) plus one epoll_wait; only
-- an index whose object changed takes the slow path (learn: register the
-- socket, remember its index in pos). A report for an object is kept only
-- if the set still holds it at its remembered index (set[pos[o]] == o);
-- other reports narrow or drop the registration. Objects that are not this
-- module's (anything with getfd, e.g. LuaSec's) are registered by
-- descriptor for the one call. Nothing limits descriptor numbers or count.
--
-- LuaSocket reads a set up to its first nil. A shadow is sh[1..m], the
-- objects last seen, and sh[m + 1] == MARK, which no set element equals,
-- so the walk's first mismatch at or after m + 1 finds the end. Shadows
-- hold their objects weakly (a long-lived set keeps nothing alive that it
-- dropped), so a collection may clear an entry, and a cleared entry (nil)
-- would hide a nil in the set. Every clearing happens in a collection,
-- and each collection also clears `probe`'s one entry (a fresh table held
-- by nothing else): while the probe stands, no entry was cleared; when it
-- falls, `epoch` moves on and the next walk of each shadow checks for nil
-- at every index.

local POLLIN, POLLOUT, POLLHUP, POLLERR = core.POLLIN, core.POLLOUT, core.POLLHUP, core.POLLERR
local RWAKE = POLLIN | POLLHUP | POLLERR | (core.POLLPRI or 0)
local WWAKE = POLLOUT | POLLHUP | POLLERR
local EVNAME = { "r", "w", "rw" }

local WEAKK, WEAKV = { __mode = "k" }, { __mode = "v" }
local function weak() return setmetatable({}, WEAKK) end
local states = weak()     -- thread -> its select state
local selected = weak()   -- objects some select has seen

local MARK = {}           -- a shadow entry that no set element equals
local probe, epoch = setmetatable({ {} }, WEAKV), 0

local function state()
  local co = corunning()
  local st = states[co]
  if not st then
    st = { p = assert(core.poller({ weak = true })),
      owner = weak(),   -- socket (or a foreign descriptor) -> object
      reg = weak(),     -- socket -> registered events (1 r, 2 w, 3 rw)
      rsets = weak(), wsets = weak() }  -- set table -> its shadow record
    states[co] = st
  end
  return st
end

-- a set's shadow record: sh (weak values), pos (object -> index), m
local function newrec()
  return { sh = setmetatable({ MARK }, WEAKV), pos = weak(), m = 0, epoch = epoch }
end

-- the walks of st no longer trust o's entries (its socket or its
-- registration changed): they take the slow path for it next time
local function forget(st, o)
  for _, recs in ipairs({ st.rsets, st.wsets }) do
    for _, rec in pairs(recs) do
      local i = rec.pos[o]
      if i and rec.sh[i] == o then rec.sh[i] = MARK end
    end
  end
end

function invalidate(o)
  if selected[o] then
    for _, st in pairs(states) do forget(st, o) end
  end
end

-- a foreign object's descriptor and whether it holds buffered data
local function foreignkey(o)
  local ok, fd = pcall(function() return o:getfd() end)
  fd = ok and math.tointeger(tonumber(fd))
  if not fd or fd < 0 then return nil end
  local okd, d = pcall(function() return o.dirty and o:dirty() end)
  return fd, okd and d and true or false
end

local function addresult(t, o)
  if t[o] == nil then
    local n = #t + 1
    t[n] = o
    t[o] = n
  end
end

-- raises unless t is a table (level: select's caller's)
local function checkset(t, n, level)
  if t ~= nil and type(t) ~= "table" then
    error(format("bad argument #%d to 'select' (table expected, got %s)", n, type(t)), level)
  end
end

-- the slow path for o, found at set[i] where the shadow differs: notes it
-- there and registers its socket for bit (1 read, 2 write), or notes a
-- foreign object's descriptor (its entry stays MARK: looked at on every
-- call); true if that one has buffered data
local function learn(st, rec, o, i, bit, foreign)
  local sh = rec.sh
  if i > rec.m then
    rec.m = i
    sh[i + 1] = MARK
  end
  if isobj(o) then
    sh[i] = o
    rec.pos[o] = i
    selected[o] = true
    local key = o.sock
    if key ~= nil then
      st.owner[key] = o
      local m = st.reg[key] or 0
      if m & bit == 0 then
        m = m | bit
        if st.p:add(key, EVNAME[m]) then st.reg[key] = m end
      end
    end
    return false, foreign
  end
  sh[i] = MARK
  local fd, dirty = foreignkey(o)
  if fd then
    foreign = foreign or {}
    foreign[fd] = (foreign[fd] or 0) | bit
    st.owner[fd] = o
  end
  return dirty and bit == 1, foreign
end

-- the set ended at i (set[i] == nil): the shadow ends there too
local function cut(rec, i)
  local m = rec.m
  if i <= m then
    local sh = rec.sh
    for k = i + 1, m + 1 do sh[k] = nil end
    sh[i] = MARK
    rec.m = i - 1
  end
end

-- walks set (recvt or sendt, bit 1 or 2) against its shadow rec from
-- index i on, checking for nil at every index (a collection may have
-- cleared entries since the last walk); r: the results so far (nil for
-- none), to which foreign objects with buffered data are added. Returns r
-- and the foreign descriptors.
local function walk(st, set, rec, bit, i, r, foreign)
  local sh = rec.sh
  rec.epoch = epoch
  for k = i, huge do
    local o = set[k]
    if o == nil then cut(rec, k) break end
    if o ~= sh[k] then
      local dirty
      dirty, foreign = learn(st, rec, o, k, bit, foreign)
      if dirty then
        if r == nil then r = { o, [o] = 1 } else addresult(r, o) end
      end
    end
  end
  return r, foreign
end

-- whether set (walked just now, its shadow rec) holds o: at its
-- remembered index, before the set's first nil
local function holds(set, rec, o)
  if not set then return false end
  local i = rec.pos[o]
  return i ~= nil and i <= rec.m and set[i] == o
end

-- In a task, select({ o }, nil [, t]) on one socket of this module (what a
-- copas-style task does to wait for its socket): the loop waits on the
-- socket itself, without the task's poller. Nil when it cannot answer
-- (closed meanwhile, cancelled): the general path takes over.
local function waitone(o, timeout)
  if o.buf ~= "" then return { o, [o] = 1 }, {} end
  local sock = o.sock
  if sock == nil then return nil end
  local ok = loop.wait(sock, "r", timeout)
  if ok then return { o, [o] = 1 }, {} end
  if ok == false then return {}, {}, "timeout" end
  return nil
end

-- what select does in a task when the poller has nothing yet: the loop
-- waits for the poller's own descriptor (poll(2) builds: a 10 ms nap)
local function taskwait(p, wait)
  local pfd = p:fileno()
  if pfd then loop.wait(pfd, "r", wait)
  else loop.sleep(wait and math.min(wait, 0.01) or 0.01) end
end

-- walks set (argument argn of select, bit 1 read or 2 write) against its
-- shadow in recs: compares up to the first difference, walks from there.
-- Returns r (results so far, nil for none), foreign, and the set's record.
local function scan(st, recs, set, argn, bit, r, foreign)
  local rec = recs[set]
  if rec and rec.epoch == epoch then
    local sh = rec.sh
    for i = 1, huge do
      if set[i] ~= sh[i] then
        -- the end of an unchanged set is nil against MARK at m + 1
        if set[i] ~= nil or i <= rec.m then r, foreign = walk(st, set, rec, bit, i, r, foreign) end
        break
      end
    end
  else
    if not rec then
      checkset(set, argn, 4)
      rec = newrec()
      recs[set] = rec
    end
    r, foreign = walk(st, set, rec, bit, 1, r, foreign)
  end
  return r, foreign, rec
end

local mainst  -- the main thread's state

function socket.select(recvt, sendt, timeout)
  if timeout ~= nil then
    timeout = tonumber(timeout)
    if timeout and timeout < 0 then timeout = nil end
  end
  if probe[1] == nil then
    epoch = epoch + 1
    probe = setmetatable({ {} }, WEAKV)
  end
  local co, ismain = corunning()
  local st, intask
  if ismain then
    st, intask = mainst, false
    if not st then
      st = states[co] or state()
      mainst = st
    end
  else
    intask = tasks[co] ~= nil
    if intask and type(recvt) == "table" and recvt[2] == nil
        and (sendt == nil or type(sendt) == "table" and sendt[1] == nil) then
      local o = recvt[1]
      if o ~= nil and isobj(o) then
        local t0 = timeout and monotime()
        local r, w, err = waitone(o, timeout)
        if r then return r, w, err end
        if timeout then
          timeout = timeout - (monotime() - t0)
          if timeout < 0 then timeout = 0 end
        end
      end
    end
    st = states[co] or state()
  end
  local r, foreign, rrec, wrec, rp, wp, rm, wm = nil, nil, nil, nil, nil, nil, 0, 0
  if recvt ~= nil then
    local rec = st.rsets[recvt]
    if rec and rec.epoch == epoch then
      -- scan's common case, inline: an unchanged set costs one comparison
      -- per socket
      local sh = rec.sh
      for i = 1, huge do
        if recvt[i] ~= sh[i] then
          if recvt[i] ~= nil or i <= rec.m then r, foreign = walk(st, recvt, rec, 1, i, r, foreign) end
          break
        end
      end
    else
      r, foreign, rec = scan(st, st.rsets, recvt, 1, 1, r, foreign)
    end
    rrec, rp, rm = rec, rec.pos, rec.m
  end
  if sendt ~= nil then
    r, foreign, wrec = scan(st, st.wsets, sendt, 2, 2, r, foreign)
    wp, wm = wrec.pos, wrec.m
  end
  if ndirty > 0 and recvt then
    -- objects with data in their buffer are readable at once
    if next(dirtyset) == nil then ndirty = 0 end
    for o in pairs(dirtyset) do
      if holds(recvt, rrec, o) then
        if r == nil then r = { o, [o] = 1 } else addresult(r, o) end
      end
    end
  end
  local immediate = r ~= nil
  local nr, nw = immediate and #r or 0, 0
  local w
  local p, owner = st.p, st.owner
  if foreign then
    for fd, m in pairs(foreign) do p:add(fd, EVNAME[m]) end
  end
  local simple = wp == nil and foreign == nil   -- reports can only be reads
  local deadline = timeout and monotime() + timeout
  local fixes
  while true do
    local wait
    if immediate then wait = 0
    elseif deadline then
      wait = deadline - monotime()
      if wait < 0 then wait = 0 end
    end
    if intask and wait ~= 0 then
      taskwait(p, wait)
      wait = 0
    end
    for key, rev in p:wait(wait) do
      local o = owner[key]
      -- a member: at its remembered index, before the set's end
      local i = rp and rp[o]
      if simple and i ~= nil and rev & RWAKE ~= 0 and i <= rm and recvt[i] == o then
        -- the common case: a socket of recvt, readable
        if r == nil then r, nr = { o, [o] = 1 }, 1
        elseif r[o] == nil then
          nr = nr + 1
          r[nr] = o
          r[o] = nr
        end
      else
        local hit = false
        if o ~= nil then
          local fm = foreign and foreign[key]
          local inr, inw
          if fm then inr, inw = fm & 1 ~= 0, fm & 2 ~= 0
          else
            inr = i ~= nil and i <= rm and recvt[i] == o
            i = wp and wp[o]
            inw = i ~= nil and i <= wm and sendt[i] == o
          end
          if inr and rev & RWAKE ~= 0 then
            hit = true
            if r == nil then r, nr = { o, [o] = 1 }, 1
            elseif r[o] == nil then
              nr = nr + 1
              r[nr] = o
              r[o] = nr
            end
          end
          if inw and rev & WWAKE ~= 0 then
            hit = true
            if w == nil then w, nw = { o, [o] = 1 }, 1
            elseif w[o] == nil then
              nw = nw + 1
              w[nw] = o
              w[o] = nw
            end
          end
        end
        if not hit then
          fixes = fixes or {}
          fixes[#fixes + 1] = key
        end
      end
    end
    if fixes then
      local reg = st.reg
      for k = #fixes, 1, -1 do
        local key = fixes[k]
        fixes[k] = nil
        if not (foreign and foreign[key]) then
          local o = owner[key]
          local m = o and ((holds(recvt, rrec, o) and 1 or 0) | (holds(sendt, wrec, o) and 2 or 0)) or 0
          if m == 0 then
            p:remove(key)
            reg[key] = nil
          else
            p:modify(key, EVNAME[m])
            reg[key] = m
          end
          if o then forget(st, o) end
        end
      end
    end
    if nr > 0 or nw > 0 or immediate then break end
    if deadline and monotime() >= deadline then break end
  end
  if foreign then
    for fd in pairs(foreign) do
      p:remove(fd)
      owner[fd] = nil
    end
  end
  if nr == 0 and nw == 0 then return r or {}, w or {}, "timeout" end
  return r or {}, w or {}
end

-- ---- sources and sinks (LTN12), as in LuaSocket's socket.lua ----

function socket.choose(tbl)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = tbl[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3) end
    return f(opt1, opt2)
  end
end

local sourcet, sinkt = {}, {}
socket.sourcet, socket.sinkt = sourcet, sinkt

local function fdproxy(sock, call)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, { __call = call })
end

sinkt["close-when-done"] = function(sock)
  return fdproxy(sock, function(_, chunk)
    if not chunk then
      sock:close()
      return 1
    end
    return sock:send(chunk)
  end)
end

sinkt["keep-open"] = function(sock)
  return fdproxy(sock, function(_, chunk)
    if chunk then return sock:send(chunk) end
    return 1
  end)
end
sinkt.default = sinkt["keep-open"]
socket.sink = socket.choose(sinkt)

sourcet["by-length"] = function(sock, length)
  return fdproxy(sock, function()
    if length <= 0 then return nil end
    local chunk, err = sock:receive(math.min(socket.BLOCKSIZE, length))
    if err then return nil, err end
    length = length - #chunk
    return chunk
  end)
end

sourcet["until-closed"] = function(sock)
  local done
  return fdproxy(sock, function()
    if done then return nil end
    local chunk, err, partial = sock:receive(socket.BLOCKSIZE)
    if not err then return chunk end
    if err == "closed" then
      sock:close()
      done = 1
      return partial
    end
    return nil, err
  end)
end
sourcet.default = sourcet["until-closed"]
socket.source = socket.choose(sourcet)

socket.try = socket.newtry()

-- socket.__unload exists in LuaSocket's core; nothing to release here
function socket.__unload() end

-- ---- installation ----

package.loaded["socket.core"] = socket
package.loaded["socket"] = socket

return socket
