-- bsdsocket: the Berkeley sockets API for Lua 5.4.
-- Everything from the C module bsdsocket.core, plus the Lua conveniences.
local core = require "bsdsocket.core"

local S = {}
for k, v in pairs(core) do S[k] = v end

-- The Lua conveniences: what most scripts write first, done once, properly.
--   S.tcp_connect(host, port [, timeout])  -> connected socket
--   S.tcp_listen(host, port [, backlog])   -> listening socket (SO_REUSEADDR)
--   S.udp([family])  /  S.udp(host, port)  -> unbound / bound UDP socket
--   S.reader(sock [, opts])                -> buffered reader (bsdsocket.reader)
-- Failures return nil, message, code like the core calls; wrong argument
-- types raise.

local reader = require "bsdsocket.reader"
S.reader = reader.new

local function checkhost(fname, host, optional)
  if host == nil and optional then return end
  if type(host) ~= "string" then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(fname, type(host)), 3)
  end
end

local function checkport(fname, port)
  local t = math.type(port)
  if t == "integer" then
    if port < 0 or port > 65535 then
      error(("bad argument #2 to '%s' (port out of range 0..65535)"):format(fname), 3)
    end
  elseif type(port) ~= "string" then
    error(("bad argument #2 to '%s' (port number or service name expected, got %s)")
      :format(fname, t == "float" and "float" or type(port)), 3)
  end
end

-- Opens a socket for one getaddrinfo result and runs setup(sock, ai) on it;
-- setup returns true or nil, msg, code. On failure the socket is closed.
local function try(ai, setup)
  local sock, msg, code = core.socket(ai.family, ai.socktype, ai.protocol)
  if not sock then return nil, msg, code end
  local ok
  ok, msg, code = setup(sock, ai)
  if ok then return sock end
  sock:close()
  return nil, msg, code
end

-- Runs try() over every getaddrinfo result in order; the first that works
-- wins, otherwise the last error comes back. The resolver is looked up in S
-- at each call, so a script (or a spec) may put its own in S.getaddrinfo.
local function first_of(host, port, hints, setup)
  local list, msg, code = S.getaddrinfo(host, port, hints)
  if not list then return nil, msg, code end
  if #list == 0 then return nil, ("getaddrinfo %s: no address"):format(host), "EAI_NONAME" end
  for _, ai in ipairs(list) do
    local sock
    sock, msg, code = try(ai, setup)
    if sock then return sock end
  end
  return nil, msg, code
end

-- Connects to host:port over TCP, trying every address getaddrinfo gives
-- (IPv6 and IPv4, in its order). timeout (seconds) bounds each attempt and
-- stays set on the returned socket, as in Python's create_connection; nil
-- means block.
function S.tcp_connect(host, port, timeout)
  checkhost("tcp_connect", host)
  checkport("tcp_connect", port)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("bad argument #3 to 'tcp_connect' (non-negative number of seconds or nil expected)", 2)
  end
  return first_of(host, port, { socktype = core.SOCK_STREAM }, function(sock, ai)
    sock:settimeout(timeout)
    return sock:connect(ai.addr)
  end)
end

-- The wildcard address for host nil or "*": IPv4 (use "::" for IPv6).
local function passive(host)
  if host == nil or host == "*" then return "0.0.0.0" end
  return host
end

-- A TCP socket bound to host:port (nil or "*": every IPv4 address; port 0:
-- a free one) with SO_REUSEADDR, listening with backlog (default SOMAXCONN).
function S.tcp_listen(host, port, backlog)
  checkhost("tcp_listen", host, true)
  checkport("tcp_listen", port)
  if backlog ~= nil and math.type(backlog) ~= "integer" then
    error("bad argument #3 to 'tcp_listen' (integer expected)", 2)
  end
  local hints = { socktype = core.SOCK_STREAM, flags = core.AI_PASSIVE }
  return first_of(passive(host), port, hints, function(sock, ai)
    local ok, msg, code = sock:setsockopt(core.SOL_SOCKET, core.SO_REUSEADDR, true)
    if ok then ok, msg, code = sock:bind(ai.addr) end
    if ok then ok, msg, code = sock:listen(backlog) end
    return ok, msg, code
  end)
end

-- S.udp() or S.udp(S.AF_INET6): an unbound UDP socket (the first sendto
-- binds it to a free port). S.udp(host [, port]): bound to host:port
-- (nil or "*": every IPv4 address; port 0 or nil: a free one).
function S.udp(host, port)
  if host == nil and port == nil then
    return core.socket(core.AF_INET, core.SOCK_DGRAM)
  elseif math.type(host) == "integer" and port == nil then
    return core.socket(host, core.SOCK_DGRAM)
  end
  checkhost("udp", host, true)
  port = port or 0
  checkport("udp", port)
  local hints = { socktype = core.SOCK_DGRAM, flags = core.AI_PASSIVE }
  return first_of(passive(host), port, hints, function(sock, ai)
    return sock:bind(ai.addr)
  end)
end

-- ---- TLS (bsdsocket.tls, loaded on first use so the core works without OpenSSL) ----

-- S.tls_connect(host, port [, opts]) -> TLS stream, handshake done.
-- tcp_connect + tls.wrap + handshake, verified against the system store (or
-- opts.cafile) and host's name, SNI = host (names only). opts: timeout
-- (each step; stays set on the stream), context (a tls.context to use),
-- servername, hostname, session, and any tls.context option (cafile, verify,
-- alpn, certfile, ...). The default context is made once and reused.
local WRAP_OPTS = { timeout = true, context = true, servername = true, hostname = true,
  session = true }
local default_ctx

function S.tls_connect(host, port, opts)
  checkhost("tls_connect", host)
  checkport("tls_connect", port)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'tls_connect' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local tls = require "bsdsocket.tls"
  local ctx, msg, code = opts.context
  if not ctx then
    local copts = {}
    for k, v in pairs(opts) do
      if not WRAP_OPTS[k] then copts[k] = v end
    end
    if next(copts) == nil then
      default_ctx = default_ctx or assert(tls.context())
      ctx = default_ctx
    else
      ctx, msg, code = tls.context(copts)
      if not ctx then return nil, msg, code end
    end
  end
  local sock
  sock, msg, code = S.tcp_connect(host, port, opts.timeout)
  if not sock then return nil, msg, code end
  local ok, t = pcall(tls.wrap, sock, ctx, {
    servername = opts.servername or host,
    hostname = opts.hostname,
    session = opts.session,
  })
  if not ok then  -- a bad name: raise as tls_connect's, the socket closed
    sock:close()
    error("tls_connect: " .. tostring(t), 2)
  end
  ok, msg, code = t:handshake()
  if not ok then
    t:close()
    return nil, msg, code
  end
  return t
end

return S
