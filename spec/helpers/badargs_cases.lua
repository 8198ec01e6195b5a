-- The table of bad-argument cases of spec/badargs_spec.lua, shared with the
-- child process that runs them all once to prove that none crashes.
--
-- Every public function of the module (require "bsdsocket") and every method
-- of the socket, poller and reader objects is enumerated from the tables
-- themselves; SIGS gives the argument kinds of those it knows, and each kind
-- has its list of bad values. A function or method without an entry still
-- gets the generic cases (no arguments, wrong types) and is reported.
--
-- A case passes when the call raises a Lua error whose message names the
-- problem, or (where `either` allows it) returns nil, message, code. A bad
-- input that is accepted, a raise with a non-string or vague message, and
-- of course a crash, fail.
local S = require "bsdsocket"

local M = {}

local NaN = 0 / 0
local LONGPATH = ("p"):rep(200)
local HUGEINT = math.maxinteger

-- Messages that name the problem (luaL_argerror, luaL_error, the Lua layer).
local NAMED = {
  "bad argument", "closed", "expected", "out of range", "NUL", "integer representation",
  "unknown", "must", "longer than", "negative", "not a", "too long", "more than", "invalid",
  "cannot",
}

local function named(msg)
  if type(msg) ~= "string" or msg == "" then return false end
  for _, p in ipairs(NAMED) do
    if msg:find(p, 1, true) then return true end
  end
  return false
end
M.named = named

-- Bad values per kind: { label, value, either = true if nil, msg, code is
-- also a right answer (the kernel or the resolver decides) }.
local MISSING = { "missing", nil }
local function wrongtypes(...)
  local t = {
    { "table", {} }, { "boolean", true }, { "function", print },
  }
  for i = 1, select("#", ...) do t[#t + 1] = select(i, ...) end
  return t
end

local INTBAD = {
  { "string", "abc" }, { "table", {} }, { "boolean", true },
  { "fraction 1.5", 1.5 }, { "NaN", NaN }, { "inf", math.huge }, { "2^63 float", 2.0 ^ 63 },
  { "fraction string", "2.5" },
}
local function intbad(required, extra)
  local t = {}
  if required then t[#t + 1] = MISSING end
  for _, v in ipairs(INTBAD) do t[#t + 1] = v end
  for _, v in ipairs(extra or {}) do t[#t + 1] = v end
  return t
end

local KINDS = {}
KINDS.int = intbad(true, { { "maxinteger", HUGEINT }, { "mininteger", math.mininteger } })
KINDS["int?"] = intbad(false, { { "maxinteger", HUGEINT }, { "mininteger", math.mininteger } })
-- a C int that the kernel checks (family, type, flags): unknown values may
-- come back as nil, msg, code
KINDS.cint = intbad(true, {
  { "maxinteger", HUGEINT }, { "2^32+2 (wraps to AF_INET)", (1 << 32) + 2 },
  { "unknown constant 12345", 12345, either = true }, { "-1", -1, either = true },
})
KINDS["cint?"] = intbad(false, {
  { "maxinteger", HUGEINT }, { "2^32+2", (1 << 32) + 2 }, { "unknown 12345", 12345, either = true },
})
KINDS.flags = intbad(false, { { "maxinteger", HUGEINT }, { "2^32", 1 << 32 } })
KINDS.port = intbad(true, { { "port -1", -1 }, { "port 65536", 65536 }, { "port maxinteger", HUGEINT } })
KINDS.size = intbad(true, { { "-1", -1 }, { "mininteger", math.mininteger } })
KINDS["size?"] = intbad(false, { { "-1", -1 }, { "mininteger", math.mininteger } })
-- send's i, j count like string.sub: any integer is valid, only types are wrong
KINDS.index = INTBAD
-- a port or a service name: a name that does not resolve is nil, msg, code
KINDS.portsvc = intbad(true, { { "port -1", -1 }, { "port 65536", 65536 }, { "port maxinteger", HUGEINT } })
for _, v in ipairs(KINDS.portsvc) do
  if type(v[2]) == "string" then v.either = true end
end
KINDS.fd = intbad(true, { { "-1", -1 }, { "2^31", 1 << 31 }, { "unopened fd", 999999, either = true } })
KINDS.str = { MISSING, table.unpack(wrongtypes()) }
KINDS["str?"] = wrongtypes()
KINDS.data = KINDS.str
-- send and sendall also take a buffer or a list of strings and buffers
KINDS.datalist = {
  MISSING, { "boolean", true }, { "function", print }, { "list with a number", { "x", 42 } },
  { "list with a table", { {} } },
  { "list of 1025", (function() local t = {} for i = 1, 1025 do t[i] = "x" end return t end)() },
}
KINDS.buffer = { MISSING, { "string", "x" }, { "table", {} }, { "boolean", true }, { "socket", "SOCK" } }
-- recv_into's n and offset, for a buffer of 8 bytes
KINDS.inton = intbad(false, { { "-1", -1 }, { "9: past the end", 9 }, { "maxinteger", HUGEINT } })
KINDS.intooff = intbad(false, { { "-1", -1 }, { "9: past the end", 9 }, { "mininteger", math.mininteger } })
local CLOSEDFILE = io.open("/dev/null", "rb")
CLOSEDFILE:close()
KINDS.file = {
  MISSING, { "string", "x" }, { "table", {} }, { "-1", -1 }, { "1.5", 1.5 }, { "2^31", 1 << 31 },
  { "closed file", CLOSEDFILE }, { "unopened fd", 999999, either = true },
}
KINDS.sockarg = { MISSING, { "string", "x" }, { "table", {} }, { "integer", 3 }, { "closed socket", "CLOSED" } }
KINDS.splicemax = intbad(false, { { "0", 0 }, { "-1", -1 }, { "mininteger", math.mininteger } })
KINDS.host = { MISSING, { "NUL in host", "local\0host" }, table.unpack(wrongtypes()) }
KINDS.path = {
  MISSING, { "NUL in path", "/tmp/a\0b" }, { "108-byte path", ("q"):rep(108) },
  { "200-byte path", LONGPATH }, { "100000-byte path", ("r"):rep(100000) },
  table.unpack(wrongtypes())
}
KINDS.bool = { MISSING, { "string", "yes" }, { "number 1", 1 }, { "table", {} } }
KINDS.timeout = {
  { "string", "soon" }, { "table", {} }, { "boolean", true }, { "NaN", NaN }, { "-1", -1 },
  { "1e10", 1e10 }, { "inf", math.huge }, { "-inf", -math.huge },
}
KINDS.how = {
  MISSING, { "unknown", "x" }, { "empty", "" }, { "7", 7 }, { "-1", -1 }, { "1.5", 1.5 },
  { "table", {} },
}
KINDS["table?"] = { { "string", "x" }, { "number", 1 }, { "boolean", true } }
-- an address argument of an AF_INET socket: addr | host, port
KINDS.inetaddr = {
  { "missing", nil, nil, n = 0 }, { "table", {}, 80 }, { "boolean", true, 80 },
  { "NUL in host", "127.0.0.1\0evil", 80 },
  { "port nil", "127.0.0.1", nil, n = 2 }, { "port -1", "127.0.0.1", -1 }, { "port 65536", "127.0.0.1", 65536 },
  { "port 1.5", "127.0.0.1", 1.5 }, { "port NaN", "127.0.0.1", NaN }, { "port string", "127.0.0.1", "http" },
  { "port table", "127.0.0.1", {} }, { "port maxinteger", "127.0.0.1", HUGEINT },
  { "unix addr to inet socket", S.addr("/tmp/bsdsocket-badargs"), either = true },
  { "unknown host", "no-such-host.invalid", 80, either = true },
}
-- an address argument of an AF_UNIX socket: addr | path
KINDS.unixaddr = {
  { "missing", nil }, { "NUL in path", "/tmp/a\0b" }, { "108-byte path", ("q"):rep(108) },
  { "200-byte path", LONGPATH }, { "100000-byte path", ("r"):rep(100000) }, { "table", {} },
  { "inet addr to unix socket", S.addr("127.0.0.1", 80), either = true },
}

-- Fresh objects a method runs on; non-blocking, so nothing waits.
local function tcp()
  local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  s:settimeout(0)
  return s
end
local function udp()
  local s = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
  s:settimeout(0)
  return s
end
local function unix()
  local s = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
  s:settimeout(0)
  return s
end
local function unixdgram()
  local s = assert(S.socket(S.AF_UNIX, S.SOCK_DGRAM))
  s:settimeout(0)
  return s
end
M.factories = { tcp = tcp, udp = udp, unix = unix }

local A = S.addr("127.0.0.1", 9)

-- Signatures: args is a list of { kind, valid value(s) }; the valid values
-- fill the other positions while one position gets its bad values.
local function arg(kind, ...) return { kind = kind, valid = table.pack(...) } end

local MODULE = {
  socket = { arg("cint", S.AF_INET), arg("cint", S.SOCK_STREAM), arg("cint?", 0) },
  socketpair = { arg("cint?", S.AF_UNIX), arg("cint?", S.SOCK_STREAM), arg("cint?", 0) },
  fromfd = { arg("fd", 999999) },
  addr = {
    { kind = "custom", cases = {
      { "no arguments" }, { "table", {} }, { "boolean", true },
      { "NUL in host", "127.0.0.1\0x", 80 }, { "NUL in path", "/tmp/a\0b" },
      { "200-byte path", LONGPATH }, { "100000-byte path", ("r"):rep(100000) },
      { "port -1", "127.0.0.1", -1 }, { "port 65536", "127.0.0.1", 65536 },
      { "port 1.5", "127.0.0.1", 1.5 }, { "port NaN", "127.0.0.1", NaN },
      { "port table", "127.0.0.1", {} }, { "port -1 on ::1", "::1", -1 },
      { "unresolvable", "no-such-host.invalid", 80, either = true },
    } },
  },
  getaddrinfo = {
    { kind = "custom", cases = {
      { "both nil" }, { "host table", {}, "80" }, { "NUL in host", "local\0host", "80" },
      { "NUL in service", "127.0.0.1", "8\0" }, { "service 1.5", "127.0.0.1", 1.5 },
      { "service NaN", "127.0.0.1", NaN }, { "service 70000", "127.0.0.1", 70000 },
      { "service -1", "127.0.0.1", -1 }, { "service table", "127.0.0.1", {} },
      { "hints string", "127.0.0.1", "80", "x" }, { "hints number", "127.0.0.1", "80", 1 },
      { "hints family string", "127.0.0.1", "80", { family = "inet" } },
      { "hints family 1.5", "127.0.0.1", "80", { family = 1.5 } },
      { "hints family NaN", "127.0.0.1", "80", { family = NaN } },
      { "hints family 2^32+2", "127.0.0.1", "80", { family = (1 << 32) + 2 } },
      { "hints socktype table", "127.0.0.1", "80", { socktype = {} } },
      { "hints flags maxinteger", "127.0.0.1", "80", { flags = HUGEINT } },
      { "hints unknown family", "127.0.0.1", "80", { family = 12345 }, either = true },
      { "hints bad flags", "127.0.0.1", "80", { flags = 0x7FFFFFF0 }, either = true },
      { "unknown host", "no-such-host.invalid", "80", either = true },
      { "unknown service", "127.0.0.1", "no-such-service", either = true },
    } },
  },
  getnameinfo = { arg("addrobj", A), arg("flags", 0) },
  if_nametoindex = { { kind = "custom", cases = {
    { "missing" }, { "table", {} }, { "NUL in name", "lo\0x" },
    { "unknown interface", "nosuchif0", either = true }, { "very long name", ("i"):rep(5000), either = true },
  } } },
  if_indextoname = { arg("ifindex", 1) },
  inet_pton = { arg("cint", S.AF_INET), arg("str", "127.0.0.1") },
  inet_ntop = { { kind = "custom", cases = {
    { "missing" }, { "family string", "x", "abcd" }, { "family 12345", 12345, "abcd" },
    { "family 2^32+2", (1 << 32) + 2, "abcd" }, { "3 bytes", S.AF_INET, "abc" },
    { "5 bytes", S.AF_INET, "abcde" }, { "15 bytes for v6", S.AF_INET6, ("x"):rep(15) },
    { "bytes table", S.AF_INET, {} },
  } } },
  htons = { arg("u16", 1) }, ntohs = { arg("u16", 1) },
  htonl = { arg("u32", 1) }, ntohl = { arg("u32", 1) },
  strerror = { { kind = "custom", cases = {
    { "missing" }, { "table", {} }, { "unknown name", "ENOSUCH" }, { "1.5", 1.5 },
    { "NaN", NaN }, { "2^32+11", (1 << 32) + 11 },
  } } },
  monotime = {},
  buffer = { { kind = "custom", cases = {
    { "missing" }, { "table", {} }, { "boolean", true }, { "-1", -1 }, { "2^40", 1 << 40 },
    { "1.5", 1.5 }, { "NaN", NaN },
  } } },
  splice = { { kind = "custom", cases = {
    { "missing" }, { "src string", "x", "SOCK" }, { "src closed", "CLOSED", "SOCK" },
    { "dst missing", "SOCK" }, { "dst closed", "SOCK", "CLOSED" }, { "dst integer", "SOCK", 3 },
    { "max 0", "SOCK", "SOCK", 0 }, { "max 1.5", "SOCK", "SOCK", 1.5 },
  } } },
  poller = { arg("table?", nil) },
  tcp_connect = { arg("host", "127.0.0.1"), arg("portsvc", 9), arg("timeout", 1) },
  tcp_listen = { arg("host", "127.0.0.1"), arg("portsvc", 0), arg("backlogL", nil) },
  -- where bsdsocket.tls is not built (no OpenSSL, `make check-musl`), a
  -- well-typed call can only fail to load it: the generic cases remain
  tls_connect = package.searchpath("bsdsocket.tls", package.cpath)
    and { arg("host", "127.0.0.1"), arg("portsvc", 9), arg("table?", nil) },
  udp = { { kind = "custom", cases = {
    { "host table", {} }, { "host boolean", true }, { "NUL in host", "127.0.0.1\0x", 0 },
    { "family 1.5", 1.5 }, { "family 2^32+2", (1 << 32) + 2 }, { "unknown family", 12345, either = true },
    { "port -1", "127.0.0.1", -1 }, { "port 65536", "127.0.0.1", 65536 }, { "port 1.5", "127.0.0.1", 1.5 },
    { "port table", "127.0.0.1", {} },
  } } },
  reader = { { kind = "custom", cases = {
    -- the reader is duck-typed (any object with recv) and reads only the
    -- fields of opts it knows: a table or a string opts is not checked
    { "missing" }, { "string", "x" }, { "table", {}, either = "any" }, { "size -1", "SOCK", { size = -1 } },
    { "size 0", "SOCK", { size = 0 } }, { "size 1.5", "SOCK", { size = 1.5 } },
    { "size NaN", "SOCK", { size = NaN } }, { "maxline -1", "SOCK", { maxline = -1 } },
    { "opts string", "SOCK", "x", either = "any" },
  } } },
}
KINDS.addrobj = { MISSING, { "string", "127.0.0.1" }, { "table", {} }, { "socket", "SOCK" } }
KINDS.ifindex = intbad(true, { { "0", 0 }, { "-1", -1 }, { "2^31", 1 << 31 } })
KINDS.u16 = intbad(true, { { "-1", -1 }, { "65536", 65536 } })
KINDS.u32 = intbad(true, { { "-1", -1 }, { "2^32", 1 << 32 } })
KINDS.backlogL = { { "1.5", 1.5 }, { "string", "x" }, { "table", {} }, { "NaN", NaN } }

-- Methods: self is the factory of the object they run on.
local SOCKET = {
  bind = { self = tcp, arg("inetaddr", "127.0.0.1", 0) },
  ["bind/unix"] = { method = "bind", self = unix, arg("unixaddr", "") },
  connect = { self = tcp, arg("inetaddr", A) },
  ["connect/unix"] = { method = "connect", self = unix, arg("unixaddr", "/nonexistent/bsdsocket") },
  listen = { self = tcp, arg("int?", 5) },
  accept = { self = tcp },
  send = { self = tcp, arg("datalist", "x"), arg("index", 1), arg("index", -1), arg("flags", 0) },
  sendall = { self = tcp, arg("datalist", "x"), arg("index", 1), arg("index", -1) },
  recv_into = { self = tcp, arg("buffer", S.buffer(8)), arg("inton", 1), arg("intooff", 0), arg("flags", 0) },
  recvfrom_into = { self = udp, arg("buffer", S.buffer(8)), arg("inton", 1), arg("intooff", 0), arg("flags", 0) },
  sendfile = { self = tcp, arg("file", io.stdin), arg("size?", 0), arg("size?", 1) },
  splice = { self = tcp, arg("sockarg", "SOCK"), arg("splicemax", 10) },
  recv = { self = tcp, arg("size", 10), arg("flags", 0) },
  recvall = { self = tcp, arg("size", 10) },
  sendto = { self = udp, arg("data", "x"), arg("inetaddr", A), arg("flags", 0) },
  ["sendto/unix"] = { method = "sendto", self = unixdgram, arg("data", "x"), arg("unixaddr", "/nonexistent/x") },
  recvfrom = { self = udp, arg("size", 10), arg("flags", 0) },
  shutdown = { self = tcp, arg("how", "rw") },
  close = { self = tcp },
  getsockname = { self = tcp }, getpeername = { self = tcp },
  setsockopt = { self = tcp, { kind = "custom", cases = {
    { "missing" }, { "level string", "x", S.SO_REUSEADDR, true },
    { "level 1.5", 1.5, S.SO_REUSEADDR, true }, { "level maxinteger", HUGEINT, S.SO_REUSEADDR, true },
    { "name NaN", S.SOL_SOCKET, NaN, true }, { "value missing", S.SOL_SOCKET, S.SO_REUSEADDR },
    { "bool option 2", S.SOL_SOCKET, S.SO_REUSEADDR, 2 }, { "bool option string", S.SOL_SOCKET, S.SO_REUSEADDR, "yes" },
    { "int option 1.5", S.SOL_SOCKET, S.SO_RCVBUF, 1.5 }, { "int option 2^40", S.SOL_SOCKET, S.SO_RCVBUF, 1 << 40 },
    { "int option table", S.SOL_SOCKET, S.SO_RCVBUF, {} },
    { "seconds -1", S.SOL_SOCKET, S.SO_RCVTIMEO, -1 }, { "seconds NaN", S.SOL_SOCKET, S.SO_RCVTIMEO, NaN },
    { "seconds inf", S.SOL_SOCKET, S.SO_RCVTIMEO, math.huge },
    { "linger not a table", S.SOL_SOCKET, S.SO_LINGER, 5 },
    { "linger 1.5", S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 1.5 } },
    { "linger 2^40", S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 1 << 40 } },
    { "membership string", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, "x" },
    { "membership no group", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, {} },
    { "membership bad group", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "nonsense" } },
    { "membership NUL group", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "239.1.1.1\0x" } },
    { "membership unknown iface", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP,
      { multiaddr = "239.1.1.1", interface = "nosuchif0" } },
    { "membership iface -1", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "239.1.1.1", interface = -1 } },
    { "membership iface 1.5", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "239.1.1.1", interface = 1.5 } },
    { "v6 membership bad group", S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, { multiaddr = "239.1.1.1" } },
    { "v6 membership table iface", S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, { multiaddr = "ff02::1", interface = {} } },
    { "multicast if not an address", S.IPPROTO_IP, S.IP_MULTICAST_IF, "nonsense" },
    { "unknown option (raw)", S.SOL_SOCKET, 99999, "abcd", either = true },
    { "unknown level (raw)", 99999, 1, "abcd", either = true },
    { "unknown option, table value", S.SOL_SOCKET, 99999, {} },
    { "raw value 100 KiB", S.SOL_SOCKET, 99999, ("x"):rep(100000), either = true },
  } } },
  getsockopt = { self = tcp, { kind = "custom", cases = {
    { "missing" }, { "level string", "x", S.SO_TYPE }, { "name 1.5", S.SOL_SOCKET, 1.5 },
    { "name maxinteger", S.SOL_SOCKET, HUGEINT },
    { "membership", S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP },
    { "raw size 0", S.SOL_SOCKET, 99999, 0 }, { "raw size -1", S.SOL_SOCKET, 99999, -1 },
    { "raw size 65537", S.SOL_SOCKET, 99999, 65537 }, { "raw size 2^40", S.SOL_SOCKET, 99999, 1 << 40 },
    { "raw size 1.5", S.SOL_SOCKET, 99999, 1.5 }, { "raw size NaN", S.SOL_SOCKET, 99999, NaN },
    { "unknown option", S.SOL_SOCKET, 99999, either = true },
  } } },
  setblocking = { self = tcp, arg("bool", true) },
  settimeout = { self = tcp, arg("timeout", 1) },
  gettimeout = { self = tcp }, fileno = { self = tcp }, detach = { self = tcp },
  pollfd = { self = tcp }, events = { self = tcp }, timeout = { self = tcp },
  sendmsg = { self = udp, { kind = "custom", cases = {
    { "missing" }, { "parts number", 5, A }, { "parts boolean", true, A },
    { "parts with a table", { "a", {} }, A }, { "parts with a number", { "a", 5 }, A },
    { "1025 parts", (function() local t = {} for i = 1, 1025 do t[i] = "x" end return t end)(), A },
    { "address port -1", "x", "127.0.0.1", -1 }, { "NUL host", "x", "127.0.0.1\0x", 9 },
    { "ancillary string", "x", A, "anc" }, { "rights string", "x", A, { rights = "x" } },
    { "rights with a string", "x", A, { rights = { "x" } } }, { "rights -1", "x", A, { rights = { -1 } } },
    { "rights 1.5", "x", A, { rights = { 1.5 } } },
    { "254 rights", "x", A, { rights = (function() local t = {} for i = 1, 254 do t[i] = 0 end return t end)() } },
    { "raw entry not a table", "x", A, { "x" } }, { "raw entry no data", "x", A, { { level = 0, type = 0 } } },
    { "raw entry level 2^40", "x", A, { { level = 1 << 40, type = 0, data = "" } } },
    { "raw data 70000 bytes", "x", A, { { level = 0, type = 0, data = ("d"):rep(70000) } } },
    { "flags 1.5", "x", A, nil, 1.5 },
  } } },
  recvmsg = { self = udp, arg("size", 10), arg("ancsize", 64), arg("flags", 0) },
  getpeercred = { self = unix },
  sendmmsg = { self = udp, { kind = "custom", cases = {
    { "missing" }, { "list string", "x", A }, { "entry number", { 5 }, A },
    { "entry empty table", { {} }, A }, { "entry bad address", { { "x", {} } } },
    { "entry port -1", { { "x", "127.0.0.1", -1 } } }, { "entry NUL host", { { "x", "127.0.0.1\0x", 9 } } },
    { "default port 65536", { "x" }, "127.0.0.1", 65536 }, { "flags NaN", { "x" }, A, NaN },
  } } },
  recvmmsg = { self = udp, arg("count", 1), arg("size", 10), arg("flags", 0) },
}
KINDS.ancsize = intbad(false, { { "-1", -1 }, { "65537", 65537 }, { "2^40", 1 << 40 } })
KINDS.count = intbad(true, { { "0", 0 }, { "-1", -1 }, { "1025", 1025 }, { "2^40", 1 << 40 } })

local POLLER = {
  add = { arg("pobj", "SOCK"), arg("events", "r") },
  modify = { arg("pobj", "SOCK"), arg("events", "r") },
  remove = { arg("pobjrm", "SOCK") },
  wait = { arg("waittimeout", 0) },
  close = {}, fileno = {}, backend = {},
}
KINDS.pobj = {
  MISSING, { "string", "x" }, { "table", {} }, { "fd -1", -1 }, { "fd 1.5", 1.5 }, { "fd 2^31", 1 << 31 },
  { "closed socket", "CLOSED" }, { "unopened fd", 999999, either = true },
}
-- removing a closed socket is a no-op by design (the kernel dropped it)
KINDS.pobjrm = {}
for _, v in ipairs(KINDS.pobj) do
  if v[2] ~= "CLOSED" then KINDS.pobjrm[#KINDS.pobjrm + 1] = v end
end
KINDS.events = {
  MISSING, { "unknown letter", "rz" }, { "table", {} }, { "1.5", 1.5 }, { "-1", -1 }, { "bit 2^40", 1 << 40 },
}
KINDS.waittimeout = { { "NaN", NaN }, { "string", "x" }, { "table", {} } }

local READER = {
  line = {}, read = { arg("size", 1) }, read_all = {}, read_some = { arg("size?", 1) },
  lines = {}, buffered = {},
}

-- Generic cases for functions without a signature: never a crash.
local GENERIC = {
  { "no arguments" }, { "nil", nil, n = 1 }, { "table", {} }, { "boolean", true }, { "NUL string", "\0" },
  { "-1", -1 }, { "NaN", NaN }, { "maxinteger", HUGEINT }, { "two tables", {}, {} },
}

-- Replaces the placeholders "SOCK" / "CLOSED" by fresh sockets.
local function materialize(vals, opened)
  local out = { n = vals.n }
  for i = 1, vals.n do
    local v = vals[i]
    if v == "SOCK" or v == "CLOSED" then
      local s = tcp()
      opened[#opened + 1] = s
      if v == "CLOSED" then s:close() end
      v = s
    end
    out[i] = v
  end
  return out
end

-- The n of a case row { label, v1, v2, ... }: explicit n, else highest index.
local function rowvals(row)
  local n = row.n
  if not n then
    n = 0
    for k in pairs(row) do
      if math.type(k) == "integer" and k > 1 and k - 1 > n then n = k - 1 end
    end
  end
  local t = { n = n }
  for i = 1, n do t[i] = row[i + 1] end
  return t
end

-- Builds the argument list from per-position value lists.
local function concat(lists)
  local t, n = {}, 0
  for _, l in ipairs(lists) do
    for i = 1, l.n do t[n + i] = l[i] end
    n = n + l.n
  end
  t.n = n
  return t
end

-- Expands a signature into rows { label, args (packed), either }.
local function expand(sig)
  local rows = {}
  for i, a in ipairs(sig) do
    if a.kind == "custom" then
      for _, row in ipairs(a.cases) do
        rows[#rows + 1] = { row[1], rowvals(row), row.either }
      end
    else
      local bads = assert(KINDS[a.kind], a.kind)
      for _, bad in ipairs(bads) do
        local lists = {}
        for j, b in ipairs(sig) do
          if j == i then lists[j] = rowvals(bad) else lists[j] = b.valid end
        end
        if bad[1] == "missing" and not bad.n then
          -- a missing argument: nothing at this position or after it
          for j = i, #sig do lists[j] = { n = 0 } end
        end
        rows[#rows + 1] = { ("arg %d %s: %s"):format(i, a.kind, bad[1]), concat(lists), bad.either }
      end
    end
  end
  return rows
end

local function sorted(t)
  local keys = {}
  for k, v in pairs(t) do
    if type(v) == "function" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- The objects whose methods are covered, and a way to get each method table.
local function methods_of(obj)
  local mt = getmetatable(obj)
  local idx = mt and mt.__index
  return type(idx) == "table" and idx or {}
end

-- All cases: { name, run = function() -> pcall results, either, kind }.
-- `uncovered` lists public functions without a signature.
function M.build()
  local cases, uncovered = {}, {}
  local function add(name, either, fn, expect)
    cases[#cases + 1] = { name = name, either = either, fn = fn, expect = expect }
  end

  -- module functions
  for _, fname in ipairs(sorted(S)) do
    local f = S[fname]
    local sig = MODULE[fname]
    local rows
    if sig then
      rows = expand(sig)
      -- a function of no arguments ignores extra ones
      if #rows == 0 then rows[1] = { "extra arguments", table.pack({}, 0 / 0), "any" } end
    else
      uncovered[#uncovered + 1] = "S." .. fname
      rows = {}
      for _, g in ipairs(GENERIC) do rows[#rows + 1] = { g[1], rowvals(g), "any" } end
    end
    for _, row in ipairs(rows) do
      local vals = row[2]
      add("S." .. fname .. " " .. row[1], row[3], function(opened)
        local a = materialize(vals, opened)
        return f(table.unpack(a, 1, a.n))
      end)
    end
  end

  -- socket methods: every name in the metatable's __index
  local probe = tcp()
  local smethods = methods_of(probe)
  probe:close()
  local sigs = {}
  for name, sig in pairs(SOCKET) do
    local m = sig.method or name
    sigs[m] = sigs[m] or {}
    table.insert(sigs[m], sig)
  end
  for _, mname in ipairs(sorted(smethods)) do
    local f = smethods[mname]
    local list = sigs[mname]
    if not list then
      uncovered[#uncovered + 1] = "sock:" .. mname
      list = { { self = tcp } }
      for _, g in ipairs(GENERIC) do
        add("sock:" .. mname .. " generic " .. g[1], "any", function(opened)
          local s = tcp()
          opened[#opened + 1] = s
          local a = materialize(rowvals(g), opened)
          return f(s, table.unpack(a, 1, a.n))
        end)
      end
    end
    for _, sig in ipairs(list) do
      for _, row in ipairs(expand(sig)) do
        local vals = row[2]
        add("sock:" .. mname .. " " .. row[1], row[3], function(opened)
          local s = sig.self()
          opened[#opened + 1] = s
          local a = materialize(vals, opened)
          return f(s, table.unpack(a, 1, a.n))
        end)
      end
    end
    -- wrong self: nothing, a number, a string, a table, a foreign userdata,
    -- our own address and poller objects, a light userdata
    local selves = {
      { "nil self", function() return nil end }, { "number self", function() return 3 end },
      { "string self", function() return "sock" end }, { "table self", function() return {} end },
      { "io.stdout self", function() return io.stdout end },
      { "addr self", function() return A end },
      { "light userdata self", function() return debug.upvalueid(methods_of, 1) end },
    }
    if S.poller then
      selves[#selves + 1] = { "poller self", function(opened)
        local p = S.poller()
        opened[#opened + 1] = p
        return p
      end }
    end
    for _, sv in ipairs(selves) do
      add("sock:" .. mname .. " " .. sv[1], false, function(opened)
        return f(sv[2](opened))
      end)
    end
    -- closed socket: must raise (close and __tostring are the exceptions)
    if mname ~= "close" then
      local valid = {}
      local sig = list[1]
      for _, a in ipairs(sig) do
        if a.valid then for i = 1, a.valid.n do valid[#valid + 1] = a.valid[i] end end
      end
      add("sock:" .. mname .. " on a closed socket", false, function()
        local s = (sig.self or tcp)()
        s:close()
        return f(s, table.unpack(valid))
      end, "closed")
    end
  end

  -- poller methods
  if S.poller then
    local p0 = S.poller()
    local pmethods = methods_of(p0)
    p0:close()
    for _, mname in ipairs(sorted(pmethods)) do
      local f = pmethods[mname]
      local sig = POLLER[mname]
      if not sig then
        uncovered[#uncovered + 1] = "poller:" .. mname
        sig = {}
      end
      for _, row in ipairs(expand(sig)) do
        local vals = row[2]
        add("poller:" .. mname .. " " .. row[1], row[3], function(opened)
          local p = S.poller()
          opened[#opened + 1] = p
          local a = materialize(vals, opened)
          return f(p, table.unpack(a, 1, a.n))
        end)
      end
      add("poller:" .. mname .. " table self", false, function() return f({}) end)
      add("poller:" .. mname .. " socket self", false, function(opened)
        local s = tcp()
        opened[#opened + 1] = s
        return f(s)
      end)
      if mname ~= "close" and mname ~= "backend" then
        add("poller:" .. mname .. " on a closed poller", false, function(opened)
          local p = S.poller()
          p:close()
          local a = materialize(concat((function()
            local l = {}
            for i, x in ipairs(sig) do l[i] = x.valid end
            return l
          end)()), opened)
          return f(p, table.unpack(a, 1, a.n))
        end, "closed")
      end
    end
  end

  -- reader methods (Lua layer)
  if S.reader then
    local s0 = tcp()
    local r0 = S.reader(s0)
    local rmethods = getmetatable(r0) and getmetatable(r0).__index or {}
    s0:close()
    if type(rmethods) ~= "table" then rmethods = {} end
    for _, mname in ipairs(sorted(rmethods)) do
      local f = rmethods[mname]
      local sig = READER[mname]
      if not sig then
        uncovered[#uncovered + 1] = "reader:" .. mname
        sig = {}
      end
      for _, row in ipairs(expand(sig)) do
        local vals = row[2]
        add("reader:" .. mname .. " " .. row[1], row[3], function(opened)
          local s = tcp()
          opened[#opened + 1] = s
          local a = materialize(vals, opened)
          return f(S.reader(s), table.unpack(a, 1, a.n))
        end)
      end
      -- methods of a Lua object on a wrong self raise Lua's own errors
      add("reader:" .. mname .. " table self", "any", function() return f({}) end)
    end
  end

  -- bsdsocket.loop's entry points that take arguments
  local ok, loop = pcall(require, "bsdsocket.loop")
  if ok and type(loop) == "table" then
    local lcases = {
      { "spawn", "not a function", { "x" } }, { "spawn", "nothing", {} },
      { "sleep", "string", { "x" } }, { "sleep", "table", { {} } },
      { "wait", "bad events", { "SOCK", "z" } }, { "wait", "table events", { "SOCK", {} } },
    }
    for _, c in ipairs(lcases) do
      if type(loop[c[1]]) == "function" then
        add("loop." .. c[1] .. " " .. c[2], "any", function(opened)
          local a = materialize(table.pack(table.unpack(c[3])), opened)
          return loop[c[1]](table.unpack(a, 1, a.n))
        end)
      end
    end
  end

  return cases, uncovered
end

-- Runs one case. Returns nil when it passed, else a description.
-- either: true (nil, msg, code also right), false (must raise),
-- "any" (no signature: anything but a crash).
function M.run(case)
  local opened = {}
  local r = table.pack(pcall(case.fn, opened))
  for _, o in ipairs(opened) do pcall(o.close, o) end
  for i = 2, r.n do  -- whatever an accepted call opened, close it
    local mt = getmetatable(r[i])
    if type(r[i]) == "userdata" and mt and type(mt.__index) == "table" and mt.__index.close then
      pcall(r[i].close, r[i])
    end
  end
  if case.either == "any" then return nil end
  if not r[1] then
    local msg = r[2]
    if not named(msg) then return "raised an unclear error: " .. tostring(msg) end
    if case.expect and not msg:find(case.expect, 1, true) then
      return "raised, but not about '" .. case.expect .. "': " .. msg
    end
    return nil
  end
  if r[2] == nil and type(r[3]) == "string" and r[3] ~= "" and type(r[4]) == "string" then
    if case.either then return nil end
    return "returned nil, msg, code instead of raising: " .. r[3]
  end
  local shown = {}
  for i = 2, math.min(r.n, 4) do shown[#shown + 1] = tostring(r[i]) end
  return "accepted the bad input, returned " .. table.concat(shown, ", ")
end

-- Runs every case; returns the count and the list of failures.
function M.runall()
  local cases, uncovered = M.build()
  local failures = {}
  for _, c in ipairs(cases) do
    local why = M.run(c)
    if why then failures[#failures + 1] = c.name .. ": " .. why end
  end
  collectgarbage()
  return #cases, failures, uncovered
end

return M
