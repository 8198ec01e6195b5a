-- http_server.lua: a small static-file HTTP/1.1 server on bsdsocket.loop.
-- GET and HEAD, keep-alive (HTTP/1.1 by default, HTTP/1.0 on request),
-- Content-Length and Content-Type, index.html for directories, 404 for
-- what is not there, and no way out of DIR: ".." segments, NUL bytes and
-- backslashes are refused (403) after percent-decoding.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/http_server.lua [--tls CERT KEY] [HOST [PORT [DIR]]] [--workers N]
-- then:  curl -v http://127.0.0.1:PORT/
-- With `--tls CERT KEY` it serves HTTPS (bsdsocket.tls): each accepted
-- connection is wrapped, and the rest is the same code on the TLS stream
-- (a TLS stream has no sendfile: files go out through sendall, read and
-- sent 64 KiB at a time, so memory does not grow with the file's size).
-- HOST defaults to 127.0.0.1, PORT to 0 (a free port), DIR to ".";
-- the first line printed names the address. It serves until interrupted.
--
-- A file is opened once per request and read once: up to 1 KiB (what Lua
-- reads without allocating). A file that small goes out with its header in
-- one gathered write (sendall of a list); of a larger one the header and
-- the bytes read go out so, and the rest with sendfile(2). Answer heads and resolved paths are cached (at
-- most 1,024 of each), so a request for a known file costs little Lua.
--
-- --workers N: N processes, each with its own loop and its own SO_REUSEPORT
-- listener on the same port (the kernel spreads connections over them). The
-- first is this process; it starts the others by running its own command line
-- (the interpreter and its options, arg[-n] .. arg[-1], then arg[0])
-- again, with a pipe to each as its standard input: a worker leaves when the
-- pipe ends, that is when this process is gone, however it went. Each
-- worker also connects back to this process over a Unix socket (an abstract
-- name on Linux) as the first thing it does; when that connection ends the
-- worker is gone: this process reaps it, says so on stderr
--   http_server: worker 2 killed by signal 9; starting another
-- and starts a new one, at most HTTP_SERVER_MAX_RESTARTS times a minute for
-- all workers together (beyond that the next start waits, and the line ends
-- "5 restarts in the last minute, the next in 42 s"), so a worker that
-- dies as it starts cannot make a crash loop.
--
-- Limits, each overridable by an environment variable (seconds, a count):
--   HTTP_SERVER_IDLE=30             a kept-alive connection may wait this long
--                                   for the first byte of its next request
--   HTTP_SERVER_HEAD_TIMEOUT=10     a request's head and body must all arrive
--                                   within this long of its first byte (one
--                                   deadline, not one per recv: a client that
--                                   sends a byte now and then gets 408 and is
--                                   closed)
--   HTTP_SERVER_MAX_CONNECTIONS=500 connections served at once; one more gets
--                                   503 and is closed (with --tls: the 503
--                                   through TLS, within 2 s, for up to 16
--                                   such connections at once; beyond that a
--                                   connection is closed without an answer)
--   HTTP_SERVER_MAX_RESTARTS=5      workers started again in a minute, for
--                                   all workers together (--workers)
-- Content-Length must be decimal digits (400 otherwise; more than 1 MiB: 413).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

-- positional HOST PORT DIR, --tls CERT KEY, and --workers N / --worker CTL
-- (a started worker, and where it reports to its parent)
local pos, nworkers, ctlname = {}, 1, nil
local tls, tlsctx, tlsfiles
do
  local i = 1
  while arg[i] do
    if arg[i] == "--tls" then
      if not (arg[i + 1] and arg[i + 2]) then
        io.stderr:write("http_server: --tls needs CERT and KEY\n")
        os.exit(2)
      end
      tlsfiles = { arg[i + 1], arg[i + 2] }
      i = i + 2
    elseif arg[i] == "--workers" then
      nworkers = math.tointeger(tonumber(arg[i + 1]))
      if not nworkers or nworkers < 1 then
        io.stderr:write("http_server: --workers needs a positive integer\n")
        os.exit(2)
      end
      i = i + 1
    elseif arg[i] == "--worker" and arg[i + 1] then
      ctlname = arg[i + 1]:gsub("^@", "\0")     -- "@name": an abstract name
      i = i + 1
    else
      pos[#pos + 1] = arg[i]
    end
    i = i + 1
  end
end
local isworker = ctlname ~= nil

-- A worker connects to its parent before anything else can fail, so that
-- the parent learns of every way it ends by this connection's end. It is
-- never used otherwise, and lives as long as the worker.
local control
if isworker then
  control = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
  assert(control:connect(ctlname))
end

if tlsfiles then
  tls = require "bsdsocket.tls"
  local msg
  tlsctx, msg = tls.context { mode = "server", certfile = tlsfiles[1], keyfile = tlsfiles[2] }
  if not tlsctx then
    io.stderr:write("http_server: ", msg, "\n")
    os.exit(1)
  end
end
local host, port, root = pos[1] or "127.0.0.1", tonumber(pos[2] or 0), pos[3] or "."
root = root:gsub("/+$", "")
if root == "" then root = "/" end

-- A positive number from the environment variable name, or default.
local function setting(name, default, integer)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if integer then n = math.tointeger(n) end
  if not n or n <= 0 then
    io.stderr:write("http_server: ", name, " must be a positive ", integer and "integer" or "number",
      ", not ", v, "\n")
    os.exit(2)
  end
  return n
end

local MAX_HEADER = 16384        -- request line and headers together
local MAX_BODY = 1 << 20        -- a request body is read and dropped
local IDLE = setting("HTTP_SERVER_IDLE", 30)
local HEAD_TIMEOUT = setting("HTTP_SERVER_HEAD_TIMEOUT", 10)
local MAX_CONNECTIONS = setting("HTTP_SERVER_MAX_CONNECTIONS", 500, true)
local MAX_RESTARTS = setting("HTTP_SERVER_MAX_RESTARTS", 5, true)
local WORKER_START = 30         -- seconds a started worker has to connect back
local MAX_REFUSING = 16         -- TLS connections being refused at once
local REFUSE_TIMEOUT = 2        -- for the handshake, the request and the 503
local CHUNK = 65536
local SMALL = 1023              -- files up to this size go out in one gathered write
local CACHED = 1024             -- entries per cache (answer heads, resolved paths)

local TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  txt = "text/plain; charset=utf-8", css = "text/css", js = "text/javascript",
  json = "application/json", xml = "application/xml", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  ico = "image/x-icon", webp = "image/webp", pdf = "application/pdf",
  wasm = "application/wasm", md = "text/markdown; charset=utf-8",
  lua = "text/plain; charset=utf-8", c = "text/plain; charset=utf-8",
}

local REASONS = {
  [200] = "OK", [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [413] = "Payload Too Large",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [503] = "Service Unavailable", [505] = "HTTP Version Not Supported",
}

local function mimetype(path)
  local ext = path:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

-- The request target as a file under root, or nil and a status.
local function resolve_uncached(target)
  local path = target:match("^[^?#]*")
  if path:sub(1, 1) ~= "/" then return nil, 400 end
  -- a '%' not followed by two hex digits is malformed; looked for before
  -- decoding, since "%25" decodes to a '%' that is part of the name
  if path:gsub("%%%x%x", ""):find("%", 1, true) then return nil, 400 end
  path = path:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  if path:find("[%z\\]") then return nil, 403 end
  for segment in path:gmatch("[^/]+") do
    if segment == ".." then return nil, 403 end
  end
  return root .. path, nil, path:sub(-1) == "/"
end

-- A cache that forgets everything when it is full: bounded, and free of
-- bookkeeping on a hit.
local function cache()
  local t, n = {}, 0
  return function(key, value)
    if value == nil then return t[key] end
    if n >= CACHED then t, n = {}, 0 end
    t[key] = value
    n = n + 1
    return value
  end
end

local resolved = cache()
local function resolve(target)
  local r = resolved(target)
  if not r then
    local file, status, slash = resolve_uncached(target)
    r = resolved(target, { file, status, slash })
  end
  return r[1], r[2], r[3]
end

-- the heads of a file's 200 answers, for its size: [true] keep-alive, [false] close
local heads = cache()
local function filehead(name, size, keep)
  local h = heads(name)
  if not h or h.size ~= size then
    local fmt = "HTTP/1.1 200 OK\r\nContent-Type: " .. mimetype(name) .. "\r\nContent-Length: "
      .. size .. "\r\nConnection: %s\r\n\r\n"
    h = heads(name, { size = size, [true] = fmt:format("keep-alive"), [false] = fmt:format("close") })
  end
  return h[keep]
end

-- Opens file and reads up to SMALL + 1 bytes (unbuffered: one read, and
-- one more that finds the end of a small file); nil for a directory.
local function openread(file)
  local f = io.open(file, "rb")
  if not f then return nil end
  f:setvbuf("no")
  local data, _, code = f:read(SMALL + 1)
  if code then                          -- EISDIR (21) or another read error
    f:close()
    return nil, code
  end
  return f, data or ""                  -- nil without a code: an empty file
end

-- The file for a resolved path, opened once: a directory's index.html
-- instead of the directory (reading a directory fails with EISDIR, 21).
-- Returns the handle, its name, its size and its first bytes (all of a
-- small file), or nothing.
local function openfile(file, slash)
  local f, data = openread(file)
  if not f and data == 21 then
    file = file .. (slash and "" or "/") .. "index.html"
    f, data = openread(file)
  end
  if not f then return nil end
  local size = #data
  if size > SMALL then
    size = f:seek("end")
    if not size then
      f:close()
      return nil
    end
  end
  return f, file, size, data
end

-- A file through a TLS stream (no sendfile): first, then count bytes of f
-- from offset, read and sent CHUNK bytes at a time, so a connection holds
-- at most one chunk of the file whatever its size.
local function sendchunks(sock, f, first, offset, count)
  local ok, err, code = sock:sendall(first)
  if not ok or count == 0 then return ok, err, code end
  f:seek("set", offset)  -- openfile left it at the end, to learn the size
  while count > 0 do
    local chunk = f:read(count < CHUNK and count or CHUNK)
    if not chunk then return nil, "file shrank while sent", "EIO" end
    ok, err, code = sock:sendall(chunk)
    if not ok then return ok, err, code end
    count = count - #chunk
  end
  return true
end

-- A 200 answer for an open file: its head and first bytes in one gathered
-- write, then the rest (if any) with sendfile.
-- parts: the connection's own two-slot list (sendall reads it again when
-- it resumes after a wait, so it must not be shared between connections)
local function sendfile(sock, f, name, size, data, keep, head, parts)
  local top = filehead(name, size, keep)
  if head then return sock:sendall(top) end
  parts[1], parts[2] = top, data
  if not sock.sendfile then  -- a TLS stream: the bytes go through OpenSSL
    return sendchunks(sock, f, top .. data, #data, size - #data)
  end
  local ok, err, code = sock:sendall(parts)
  if not ok or size == #data then return ok, err, code end
  local sent
  sent, err, code = sock:sendfile(f, #data, size - #data)
  if sent and sent < size - #data then return nil, "file shrank while sent", "EIO" end
  return sent, err, code
end

-- one response: status line, headers, and the body (a string)
local function respond(sock, status, headers, body, head)
  local lines = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "") }
  for _, h in ipairs(headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  lines[#lines + 1] = "\r\n"
  local out = table.concat(lines)
  if head or body == nil then return sock:sendall(out) end
  if not sock.sendfile then return sock:sendall(out .. body) end  -- TLS: no gathered writes
  return sock:sendall({ out, body })
end

local function errorpage(sock, status, keep, head)
  local body = ("%d %s\n"):format(status, REASONS[status])
  return respond(sock, status, {
    { "Content-Type", "text/plain; charset=utf-8" },
    { "Content-Length", #body },
    { "Connection", keep and "keep-alive" or "close" },
  }, body, head)
end

-- Reads one request head: method, target, version, headers (lower-case
-- names), and deadline: when the whole request (head and body) must be in,
-- HEAD_TIMEOUT after its first byte. buf holds bytes read beyond the previous
-- request (pipelining). On failure: nil, and the status to answer (or nil
-- when the client just went away or stayed idle).
-- The socket's timeout is IDLE on entry and on return.
local function readrequest(sock, buf)
  local deadline = buf ~= "" and S.monotime() + HEAD_TIMEOUT or nil
  local timed = false                               -- the timeout is set to the deadline
  local head, rest
  while true do
    if buf ~= "" then
      head, rest = buf:match("^(.-\r?\n)\r?\n(.*)$")
      if head then break end
    end
    if #buf > MAX_HEADER then
      if timed then sock:settimeout(IDLE) end
      return nil, 431
    end
    if deadline then
      local left = deadline - S.monotime()
      if left <= 0 then
        if timed then sock:settimeout(IDLE) end
        return nil, 408
      end
      sock:settimeout(left)
      timed = true
    end
    local data, _, code = sock:recv(CHUNK)
    if timed then sock:settimeout(IDLE) end
    timed = false
    if not data or data == "" then
      if code == "ETIMEDOUT" and deadline then return nil, 408 end
      return nil, buf:find("%S") and 400 or nil     -- closed, idle, or cut short
    end
    buf = buf .. data
    deadline = deadline or S.monotime() + HEAD_TIMEOUT
  end
  if #head > MAX_HEADER then return nil, 431 end
  -- head: the request line and the header lines, each ending in \r?\n
  local method, target, version, hpos = head:match("^(%u+) (%S+) HTTP/(%d%.%d)\r?\n()")
  if not method then return nil, 400 end
  local headers = {}
  for line in head:gmatch("([^\n]*)\n", hpos) do
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, 400 end
    name = name:lower()
    if name == "content-length" and headers[name] then return nil, 400 end
    headers[name] = value
  end
  return method, target, version, headers, deadline or S.monotime() + HEAD_TIMEOUT, rest
end

local active = 0                -- connections being served
local LEAVE = setmetatable({}, { __close = function() active = active - 1 end })

-- Serves one connection until it closes, errs or times out. The caller has
-- counted it in `active`; the socket is closed and the count given back on
-- every way out, a Lua error included.
local function serve(client)
  local _ <close> = LEAVE
  local sock <close> = client
  local buf = ""
  local parts = {}
  sock:settimeout(IDLE)                              -- between requests and for the answers
  while true do
    local method, target, version, headers, deadline, rest = readrequest(sock, buf)
    if not method then
      if target then errorpage(sock, target, false) end   -- a status here
      break
    end
    -- a body (none expected for GET/HEAD) is read and dropped; its length
    -- must be decimal digits (no sign, fraction, exponent or hex)
    local cl = headers["content-length"]
    local length = not cl and 0 or cl:match("^%d+$") and tonumber(cl)
    if not length or headers["transfer-encoding"] then
      errorpage(sock, 400, false)
      break
    end
    if length > MAX_BODY then
      errorpage(sock, 413, false)
      break
    end
    if #rest < length then
      local left = deadline - S.monotime()
      if left <= 0 then
        errorpage(sock, 408, false)
        break
      end
      sock:settimeout(left)
      local more, _, code = sock:recvall(length - #rest)
      sock:settimeout(IDLE)
      if not more then
        if code == "ETIMEDOUT" then errorpage(sock, 408, false) end
        break
      end
      rest = rest .. more
    end
    buf = length == 0 and rest or rest:sub(length + 1)

    local conn = headers["connection"]
    conn = conn and conn:lower() or ""
    local keep
    if version == "1.1" then keep = conn == "" or not conn:find("close", 1, true)
    elseif version == "1.0" then keep = conn ~= "" and conn:find("keep-alive", 1, true) ~= nil
    else
      errorpage(sock, 505, false)
      break
    end
    local head = method == "HEAD"
    local ok
    if method ~= "GET" and not head then
      ok = respond(sock, 405, {
        { "Allow", "GET, HEAD" }, { "Content-Length", 0 },
        { "Connection", keep and "keep-alive" or "close" },
      })
    else
      local file, status, slash = resolve(target)
      local f, name, size, data
      if file then f, name, size, data = openfile(file, slash) end
      local _ <close> = f
      if not f then
        ok = errorpage(sock, status or 404, keep, head)
      else
        ok = sendfile(sock, f, name, size, data, keep, head, parts)
      end
    end
    if not ok or not keep then break end
  end
end

-- The answer to a connection beyond MAX_CONNECTIONS: one try to send it,
-- without waiting, then close.
local BUSY = ("HTTP/1.1 503 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
  .. "Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n503 %s\n")
  :format(REASONS[503], #REASONS[503] + 5, REASONS[503])

local function refuse(client)
  local sock <close> = client
  sock:settimeout(0)
  sock:send(BUSY)
  sock:shutdown("w")
  sock:recv(CHUNK)              -- what already came: a close with unread data resets
end

-- Over TLS the 503 must be a TLS record too (plain text on a TLS port reads
-- as "wrong version number"), so it costs a handshake: in a task of its
-- own, within REFUSE_TIMEOUT, for at most MAX_REFUSING connections at once;
-- one more is closed without a word.
local refusing = 0
local UNREFUSE = setmetatable({}, { __close = function() refusing = refusing - 1 end })

local function refuse_tls(client)
  local _ <close> = UNREFUSE
  local t <close> = tls.wrap(client, tlsctx)
  local deadline = S.monotime() + REFUSE_TIMEOUT
  local function left() return math.max(deadline - S.monotime(), 0) end
  t:settimeout(left())
  if not t:handshake() then return end
  t:settimeout(left())
  t:recv(CHUNK)                 -- the request, so the close does not reset
  t:settimeout(left())
  t:sendall(BUSY)               -- t's close then sends close_notify
end

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The command line that ran this script, up to the script: the interpreter
-- (arg[-n], the lowest index) and its options (up to arg[-1]), quoted.
local function interpreter()
  local first = -1
  while arg[first - 1] ~= nil do first = first - 1 end
  local words = {}
  for i = first, -1 do words[#words + 1] = shquote(arg[i]) end
  return table.concat(words, " ")
end

local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server = assert(S.socket(family, S.SOCK_STREAM))
assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
if nworkers > 1 or isworker then assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEPORT, true)) end
assert(server:bind(host, port))
assert(server:listen())
if isworker then
  -- the parent holds the other end of stdin: its end (EOF) is ours
  loop.spawn(function()
    loop.wait(0, "r")
    control:close()
    os.exit(0)
  end)
else
  io.stdout:write("listening on ", tostring(server:getsockname()), " serving ", root, "\n")
  io.stdout:flush()
end

-- The other workers: this script again on the port now known, each with a
-- pipe from here as its stdin (kept open for as long as this process runs)
-- and a connection back to here, whose end says that the worker is gone:
-- it is then reaped (its popen handle closed), reported and started again,
-- at most MAX_RESTARTS times a minute for all workers together.
local restarts = {}                     -- monotime of each recent restart

-- A listener for one worker's connection: an abstract name where there are
-- such (Linux), else a path that goes once the worker has connected.
local function ctllistener(slot)
  local l = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
  local bound = server:getsockname().port
  for _ = 1, 10 do
    local name = ("\0bsdsocket-http_server-%d-%d-%08x"):format(bound, slot, math.random(0, 0x7fffffff))
    local ok, _, code = l:bind(name)
    if ok then return l, "@" .. name:sub(2) end
    if code ~= "EADDRINUSE" then break end
  end
  local path = os.tmpname()
  os.remove(path)
  assert(l:bind(path))
  return l, path, path
end

local function startworker(slot)
  local l, name, path = ctllistener(slot)
  assert(l:listen(1))
  local cmd = ("exec %s %s %s%s %d %s --worker %s"):format(interpreter(), shquote(arg[0]),
    tlsfiles and ("--tls %s %s "):format(shquote(tlsfiles[1]), shquote(tlsfiles[2])) or "",
    shquote(host), server:getsockname().port, shquote(root), shquote(name))
  local w = assert(io.popen(cmd, "w"))
  l:settimeout(WORKER_START)
  local conn = l:accept()
  l:close()
  if path then os.remove(path) end
  return w, conn
end

local function ending(how, code)
  if how == "signal" then return "killed by signal " .. code end
  return "exited with status " .. tostring(code)
end

local function supervise(slot)
  while true do
    local w, conn = startworker(slot)
    if conn then
      conn:settimeout(nil)
      conn:recv(1)                      -- "" (or an error) once it is gone
      conn:close()
    end
    local _, how, code = w:close()      -- waits for it: reaps it
    local now = S.monotime()
    while restarts[1] and restarts[1] <= now - 60 do table.remove(restarts, 1) end
    local what = conn and ending(how, code) or "did not start"
    if #restarts < MAX_RESTARTS then
      io.stderr:write(("http_server: worker %d %s; starting another\n"):format(slot, what))
    else
      local wait = restarts[1] + 60 - now
      io.stderr:write(("http_server: worker %d %s; %d restarts in the last minute, the next in %.0f s\n")
        :format(slot, what, #restarts, wait))
      loop.sleep(wait)
      now = S.monotime()
    end
    restarts[#restarts + 1] = now
  end
end

for slot = 2, nworkers do loop.spawn(supervise, slot) end

loop.spawn(function()
  while true do
    local sock, err, code = server:accept()
    if sock and active >= MAX_CONNECTIONS then
      if not tlsctx then
        refuse(sock)
      elseif refusing < MAX_REFUSING then
        refusing = refusing + 1
        loop.spawn(refuse_tls, sock)
      else
        sock:close()
      end
    elseif sock then
      sock:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
      if tlsctx then sock = tls.wrap(sock, tlsctx) end
      active = active + 1
      loop.spawn(serve, sock)
    elseif code == "EMFILE" or code == "ENFILE" then
      io.stderr:write(err, "\n")
      loop.sleep(0.1)
    end
  end
end)

loop.run()
