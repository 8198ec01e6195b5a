-- dns_query.lua: a DNS client over UDP, with the wire format written and
-- read by string.pack/string.unpack (RFC 1035). It builds a query, sends it
-- to the server, retries on timeout, follows compression pointers in the
-- answer, and prints the answer records like `dig +short`. When the answer
-- does not fit in a UDP datagram the server sets the TC bit; the query is
-- then repeated over TCP, where each message has a 2-byte length in front.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/dns_query.lua example.com MX @127.0.0.1:5353
-- TYPE: A (default), AAAA, CNAME, MX, NS, TXT, PTR, SOA. The server
-- defaults to the first nameserver of /etc/resolv.conf, the port to 53.
-- Exit status: 0 with an answer (possibly empty), 1 for NXDOMAIN and other
-- errors, 2 for bad arguments.
local S = require "bsdsocket"

local USAGE = "usage: dns_query.lua NAME [TYPE] [@SERVER[:PORT]]"
local TYPES = { A = 1, NS = 2, CNAME = 5, SOA = 6, PTR = 12, MX = 15, TXT = 16, AAAA = 28 }
local TYPENAMES = {}
for k, v in pairs(TYPES) do TYPENAMES[v] = k end
local RCODES = { [1] = "FORMERR", [2] = "SERVFAIL", [3] = "NXDOMAIN", [4] = "NOTIMP", [5] = "REFUSED" }
local TRIES, WAIT = 3, 2.0

local function usage()
  io.stderr:write(USAGE, "\n")
  os.exit(2)
end

local function fail(msg)
  io.stderr:write("dns_query: ", msg, "\n")
  os.exit(1)
end

-- Arguments: NAME first, then TYPE and @SERVER in either order.
local name, qtype, server
for _, a in ipairs(arg) do
  if a:sub(1, 1) == "@" and not server then server = a:sub(2)
  elseif not name then name = a
  elseif not qtype and (TYPES[a:upper()] or a:upper():match("^TYPE%d+$")) then
    qtype = TYPES[a:upper()] or tonumber(a:upper():match("%d+"))
  else usage() end
end
if not name or name == "" or (qtype and qtype > 65535) then usage() end
qtype = qtype or TYPES.A

-- The server: @1.2.3.4, @1.2.3.4:5353, @[::1]:5353, @::1, @name[:port].
local function default_server()
  local f = io.open("/etc/resolv.conf")
  if f then
    for line in f:lines() do
      local ns = line:match("^%s*nameserver%s+(%S+)")
      if ns then f:close() return ns end
    end
    f:close()
  end
  return "127.0.0.1"
end
local host, port = server or default_server(), 53
if host:match("^%[") then
  local h, p = host:match("^%[(.+)%]:?(%d*)$")
  if not h then usage() end
  host, port = h, tonumber(p) or 53
elseif select(2, host:gsub(":", "")) == 1 then
  local h, p = host:match("^(.+):(%d+)$")
  if not h then usage() end
  host, port = h, tonumber(p)
end
if host == "" or port > 65535 then usage() end

-- A name as labels: 3www7example3com0.
local function encode_name(n)
  if n == "." then return "\0" end
  local out = {}
  for label in (n:gsub("%.$", "") .. "."):gmatch("(.-)%.") do
    if #label == 0 or #label > 63 then fail("bad name: " .. n) end
    out[#out + 1] = string.pack("s1", label)
  end
  local wire = table.concat(out) .. "\0"
  if #wire > 255 then fail("name too long: " .. n) end
  return wire
end

-- The query: a 12-byte header (id, flags with RD "recursion desired",
-- one question), then the question: name, type, class IN.
math.randomseed(os.time(), math.floor(S.monotime() * 1e6))
local id = math.random(0, 0xFFFF)
local query = string.pack(">I2I2I2I2I2I2", id, 0x0100, 1, 0, 0, 0)
  .. encode_name(name) .. string.pack(">I2I2", qtype, 1)

-- Reads a possibly compressed name at pos: labels, ending in a zero byte
-- or a pointer (two bytes 11xxxxxx xxxxxxxx: an offset into the message).
-- Returns the name with a trailing dot and the position after it.
local function read_name(msg, pos)
  local labels, after, jumps = {}, nil, 0
  while true do
    local len = msg:byte(pos)
    if not len then error("name runs past the end") end
    if len >= 0xC0 then
      jumps = jumps + 1
      if jumps > 64 then error("compression loop") end
      after = after or pos + 2
      pos = (string.unpack(">I2", msg, pos) & 0x3FFF) + 1
    elseif len == 0 then
      return (#labels == 0 and "." or table.concat(labels, ".") .. "."), after or pos + 1
    else
      local label = msg:sub(pos + 1, pos + len)
      if #label ~= len then error("label runs past the end") end
      labels[#labels + 1] = label:gsub("[%c%s\"\\.]", function(c)
        return ("\\%03d"):format(c:byte())
      end)
      pos = pos + 1 + len
    end
  end
end

-- One record's data as dig +short shows it.
local function show(msg, rtype, pos, len)
  local rdata = msg:sub(pos, pos + len - 1)
  if #rdata ~= len then error("record runs past the end") end
  if rtype == TYPES.A and len == 4 then return S.inet_ntop(S.AF_INET, rdata)
  elseif rtype == TYPES.AAAA and len == 16 then return S.inet_ntop(S.AF_INET6, rdata)
  elseif rtype == TYPES.CNAME or rtype == TYPES.NS or rtype == TYPES.PTR then
    return (read_name(msg, pos))
  elseif rtype == TYPES.MX then
    local pref = string.unpack(">I2", msg, pos)
    return pref .. " " .. read_name(msg, pos + 2)
  elseif rtype == TYPES.TXT then
    local strings, p = {}, 1
    while p <= len do
      local s
      s, p = string.unpack("s1", rdata, p)
      strings[#strings + 1] = '"' .. s:gsub('[%c"\\\128-\255]', function(c)
        return c == '"' and '\\"' or c == "\\" and "\\\\" or ("\\%03d"):format(c:byte())
      end) .. '"'
    end
    return table.concat(strings, " ")
  elseif rtype == TYPES.SOA then
    local mname, p = read_name(msg, pos)
    local rname
    rname, p = read_name(msg, p)
    return ("%s %s %d %d %d %d %d"):format(mname, rname, string.unpack(">I4I4I4I4I4", msg, p))
  end
  return ("\\# %d %s"):format(len, rdata:gsub(".", function(c) return ("%02X"):format(c:byte()) end))
end

-- Checks a response and returns its answer lines; raises on malformed data.
local function parse(msg)
  local rid, flags, qd, an = string.unpack(">I2I2I2I2", msg)
  if rid ~= id or flags & 0x8000 == 0 then error("not the answer to our query") end
  local pos = 13
  for _ = 1, qd do                       -- skip the question(s) echoed back
    local _, p = read_name(msg, pos)
    pos = p + 4
  end
  local lines = {}
  for _ = 1, an do
    local rtype, len, _
    _, pos = read_name(msg, pos)
    rtype, _, _, len, pos = string.unpack(">I2I2I4I2", msg, pos)
    lines[#lines + 1] = show(msg, rtype, pos, len)
    pos = pos + len
  end
  return lines, flags & 0x000F, flags & 0x0200 ~= 0
end

local target, err = S.addr(host, port)
if not target then fail(err) end

-- Over UDP: send, wait WAIT seconds, send again; a datagram from elsewhere
-- or with another id is ignored.
local function ask_udp()
  local sock <close> = assert(S.udp(target.family))
  sock:settimeout(WAIT)
  for _ = 1, TRIES do
    local ok, serr = sock:sendto(query, target)
    if not ok then fail(serr) end
    while true do
      local data, from, code = sock:recvfrom(65535)
      if not data then
        if code ~= "ETIMEDOUT" then fail(from) end
        break
      end
      if from == target and #data >= 12 and string.unpack(">I2", data) == id then
        return data
      end
    end
  end
  fail(("no answer from %s after %d tries"):format(tostring(target), TRIES))
end

-- Over TCP: the same message, with its length as 2 bytes in front.
local function ask_tcp()
  local sock <close>, cerr = S.tcp_connect(target.host, target.port, WAIT * TRIES)
  if not sock then fail(cerr) end
  local ok, serr = sock:sendall(string.pack(">s2", query))
  if not ok then fail(serr) end
  local len, rerr = sock:recvall(2)
  if not len then fail(rerr) end
  local data
  data, rerr = sock:recvall(string.unpack(">I2", len))
  if not data then fail(rerr) end
  return data
end

local function answer(data)
  local ok, lines, rcode, truncated = pcall(parse, data)
  if not ok then fail("malformed response: " .. tostring(lines)) end
  return lines, rcode, truncated
end

local lines, rcode, truncated = answer(ask_udp())
if truncated then
  io.stderr:write(";; truncated, retrying over TCP\n")
  lines, rcode = answer(ask_tcp())
end
if rcode ~= 0 then
  fail(("%s %s: %s"):format(name, TYPENAMES[qtype] or qtype, RCODES[rcode] or "rcode " .. rcode))
end
for _, line in ipairs(lines) do print(line) end
