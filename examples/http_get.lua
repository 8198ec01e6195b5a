-- http_get.lua: an HTTP/1.1 client over a plain TCP socket. It shows what a
-- browser does under the hood: resolve and connect (tcp_connect), send a
-- request, read the status line and headers line by line (a buffered
-- reader), then the body in one of HTTP's three framings: Content-Length,
-- chunked transfer-coding, or "read until the server closes".
-- The body goes to stdout; -v shows the request and response headers on
-- stderr; -L follows up to 5 redirects (between http and https too). Exit
-- status: 0 for a 1xx-3xx answer, 1 for 4xx/5xx or a network error, 2 for
-- bad arguments.
--
-- https:// URLs go over TLS (bsdsocket.tls, S.tls_connect): the server's
-- certificate chain is verified against the system store (or --cacert FILE)
-- and its name against the URL's host; a failure is one line and exit 1.
-- -k skips verification (as curl's -k does: for tests only).
--
-- Run from a checkout (after `make`), with a server to ask, e.g.
-- `python3 -m http.server 8000` in some directory:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/http_get.lua -v http://127.0.0.1:8000/
local S = require "bsdsocket"

local USAGE = "usage: http_get.lua [-v] [-L] [-k] [--cacert FILE] URL"
  .. "   (URL: http[s]://HOST[:PORT][/PATH])"
local MAX_REDIRECTS, TIMEOUT = 5, 10

local verbose, follow, insecure, cacert, url = false, false, false, nil, nil
do
  local i, bad = 1, false
  while i <= #arg do
    local a = arg[i]
    if a == "-v" then verbose = true
    elseif a == "-L" then follow = true
    elseif a == "-k" then insecure = true
    elseif a == "--cacert" and arg[i + 1] then cacert, i = arg[i + 1], i + 1
    elseif not url and not a:match("^%-") then url = a
    else bad = true end
    i = i + 1
  end
  if bad then url = nil end
end
if not url then
  io.stderr:write(USAGE, "\n")
  os.exit(2)
end

local function fail(msg)
  io.stderr:write("http_get: ", msg, "\n")
  os.exit(1)
end

-- http[s]://host:port/path -> host, port, path, the Host header's value,
-- and whether it is https.
local function parse_url(u)
  local scheme, hostport, path = u:match("^([hH][tT][tT][pP][sS]?)://([^/?#]+)([^#]*)")
  if not hostport then return nil end
  local tls = #scheme == 5
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")   -- [::1]:8080
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  if not host then return nil end
  port = tonumber(port) or (tls and 443 or 80)
  if port > 65535 then return nil end
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  return host, port, path, hostport, tls
end

-- A Location header relative to the URL it came from.
local function resolve(base, location)
  if location:match("^%a[%w+.-]*://") then return location end
  local root, path = base:match("^(%a[%w+.-]*://[^/?#]+)([^?#]*)")
  if location:sub(1, 2) == "//" then return base:match("^(%a[%w+.-]*:)") .. location end
  if location:sub(1, 1) == "/" then return root .. location end
  return root .. (path:match("^(.*/)") or "/") .. location
end

-- Reads the status line and the headers. Returns status, reason, headers
-- (a table by lower-case name; repeated headers joined with ", ").
local function read_head(r)
  local line, err = r:line()
  if not line then fail("reading the status line: " .. err) end
  if verbose then io.stderr:write("< ", line, "\n") end
  local status, reason = line:match("^HTTP/%d%.%d (%d%d%d) ?(.*)$")
  if not status then fail("not an HTTP response: " .. line) end
  local headers = {}
  while true do
    line, err = r:line()
    if not line then fail("reading headers: " .. err) end
    if line == "" then break end
    if verbose then io.stderr:write("< ", line, "\n") end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      headers[name] = headers[name] and headers[name] .. ", " .. value or value
    end
  end
  return tonumber(status), reason, headers
end

-- Copies exactly n bytes of body to stdout, 64 KiB at a time.
local function copy(r, n)
  while n > 0 do
    local data, err = r:read(math.min(n, 65536))
    if not data then fail("reading the body: " .. err) end
    io.stdout:write(data)
    n = n - #data
  end
end

local function read_body(r, status, headers)
  if status == 204 or status == 304 then return end
  local te = (headers["transfer-encoding"] or ""):lower()
  if te:find("chunked", 1, true) then
    -- chunked: "<hex size>[;ext]\r\n<data>\r\n" ... "0\r\n<trailers>\r\n"
    while true do
      local line, err = r:line()
      if not line then fail("reading a chunk size: " .. err) end
      -- hex digits, then an extension or nothing; at most 15 digits, so the
      -- size fits an integer (tonumber wraps longer ones round to negatives)
      local hex = line:match("^%s*(%x+)%s*$") or line:match("^%s*(%x+)%s*;")
      local size = hex and #hex <= 15 and tonumber(hex, 16)
      if not size then fail("bad chunk size line: " .. line) end
      if size == 0 then break end
      copy(r, size)
      line, err = r:line()
      if line ~= "" then fail("chunk not followed by CRLF: " .. tostring(line or err)) end
    end
    repeat                                         -- trailers, then an empty line
      local line, err = r:line()
      if not line then fail("reading trailers: " .. err) end
    until line == ""
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"]:match("^%d+$"))
    if not n then fail("bad Content-Length: " .. headers["content-length"]) end
    copy(r, n)
  else
    while true do                                  -- until the server closes
      local data, err = r:read_some()
      if not data then fail("reading the body: " .. err) end
      if data == "" then break end
      io.stdout:write(data)
    end
  end
end

for _ = 0, follow and MAX_REDIRECTS or 0 do
  local host, port, path, hostheader, tls = parse_url(url)
  if not host then
    if url:match("^%a[%w+.-]*://") and not url:match("^[hH][tT][tT][pP][sS]?://") then
      io.stderr:write("http_get: only http:// and https:// URLs\n")
    else
      io.stderr:write("http_get: bad URL: ", url, "\n", USAGE, "\n")
    end
    os.exit(2)
  end

  -- https: verified unless -k; the name checked is the URL's host
  local function connect()
    if not tls then return S.tcp_connect(host, port, TIMEOUT) end
    local opts = { timeout = TIMEOUT, cafile = cacert, alpn = { "http/1.1" } }
    if insecure then opts.verify = false end
    return S.tls_connect(host, port, opts)
  end
  local sock <close>, err = connect()
  if not sock then fail(err) end
  if verbose then
    io.stderr:write("* connected to ", tostring(sock:getpeername()), "\n")
    if tls then io.stderr:write("* ", sock:version(), " ", sock:cipher(), "\n") end
  end

  local request = table.concat({
    "GET " .. path .. " HTTP/1.1",
    "Host: " .. hostheader,
    "User-Agent: bsdsocket-http_get/1",
    "Accept: */*",
    "Connection: close",               -- one request per connection: simple
    "", "" }, "\r\n")
  if verbose then io.stderr:write((request:gsub("([^\r\n]+)\r\n", "> %1\n"):gsub("\r\n$", ""))) end
  local ok
  ok, err = sock:sendall(request)
  if not ok then fail(err) end

  local r = S.reader(sock)
  local status, reason, headers = read_head(r)
  while status >= 100 and status < 200 do          -- 100 Continue and friends
    status, reason, headers = read_head(r)
  end

  local location = headers.location
  if follow and location and (status == 301 or status == 302 or status == 303
      or status == 307 or status == 308) then
    url = resolve(url, location)
    if verbose then io.stderr:write("* redirected to ", url, "\n") end
  else
    read_body(r, status, headers)
    io.stdout:flush()
    if status >= 400 then fail(("HTTP %d %s"):format(status, reason)) end
    os.exit(0)
  end
end
fail(("more than %d redirects"):format(MAX_REDIRECTS))
