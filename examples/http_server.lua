-- http_server.lua: a small static-file HTTP/1.1 server on bsdsocket.loop.
-- GET and HEAD, keep-alive (HTTP/1.1 by default, HTTP/1.0 on request),
-- Content-Length and Content-Type, index.html for directories, 404 for
-- what is not there, and no way out of DIR: ".." segments, NUL bytes and
-- backslashes are refused (403) after percent-decoding.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/http_server.lua [HOST [PORT [DIR]]]
-- then:  curl -v http://127.0.0.1:PORT/
-- HOST defaults to 127.0.0.1, PORT to 0 (a free port), DIR to ".";
-- the first line printed names the address. It serves until interrupted.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local host, port, root = arg[1] or "127.0.0.1", tonumber(arg[2] or 0), arg[3] or "."
root = root:gsub("/+$", "")
if root == "" then root = "/" end

local MAX_HEADER = 16384        -- request line and headers together
local IDLE = 30                 -- seconds a kept-alive connection may stay idle
local CHUNK = 65536

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
  [405] = "Method Not Allowed", [413] = "Payload Too Large",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [505] = "HTTP Version Not Supported",
}

local function mimetype(path)
  local ext = path:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

local function isdir(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local _, _, code = f:read(0)     -- reading a directory fails with EISDIR
  f:close()
  return code == 21
end

-- The request target as a file under root, or nil and a status.
local function resolve(target)
  local path = target:match("^[^?#]*")
  if path:sub(1, 1) ~= "/" then return nil, 400 end
  local bad = false
  path = path:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  if path:find("%%") then bad = true end                 -- a stray '%': malformed
  if bad then return nil, 400 end
  if path:find("[%z\\]") then return nil, 403 end
  for segment in path:gmatch("[^/]+") do
    if segment == ".." then return nil, 403 end
  end
  local file = root .. path
  if isdir(file) then
    if path:sub(-1) ~= "/" then file = file .. "/" end
    file = file .. "index.html"
  end
  return file
end

-- one response: status line, headers, and the body (a string or a file)
local function respond(sock, status, headers, body, head)
  local lines = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "") }
  for _, h in ipairs(headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  lines[#lines + 1] = "\r\n"
  local out = table.concat(lines)
  if head or body == nil then return sock:sendall(out) end
  if type(body) == "string" then return sock:sendall(out .. body) end
  local ok, err, code = sock:sendall(out)
  while ok do
    local chunk = body:read(CHUNK)
    if not chunk then break end
    ok, err, code = sock:sendall(chunk)
  end
  return ok, err, code
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
-- names). buf holds bytes read beyond the previous request (pipelining).
local function readrequest(sock, buf)
  while true do
    local stop = buf:find("\r?\n\r?\n")
    if stop then break end
    if #buf > MAX_HEADER then return nil, 431 end
    local data = sock:recv(CHUNK)
    if not data or data == "" then
      return nil, buf:find("%S") and 400 or nil     -- closed, idle, or cut short
    end
    buf = buf .. data
  end
  local head, rest = buf:match("^(.-)\r?\n\r?\n(.*)$")
  if #head > MAX_HEADER then return nil, 431 end
  local lines = {}
  for line in (head .. "\n"):gmatch("(.-)\r?\n") do lines[#lines + 1] = line end
  local method, target, version = lines[1]:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, 400 end
  local headers = {}
  for i = 2, #lines do
    local name, value = lines[i]:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, 400 end
    headers[name:lower()] = value
  end
  return { method = method, target = target, version = version, headers = headers }, rest
end

local function serve(sock)
  sock:settimeout(IDLE)
  local buf = ""
  while true do
    local req, rest = readrequest(sock, buf)
    if not req then
      if rest then errorpage(sock, rest, false) end   -- rest is a status here
      break
    end
    -- a body (none expected for GET/HEAD) is read and dropped
    local length = tonumber(req.headers["content-length"] or "0")
    if not length or length < 0 or req.headers["transfer-encoding"] then
      errorpage(sock, 400, false)
      break
    end
    if length > 1 << 20 then
      errorpage(sock, 413, false)
      break
    end
    if #rest < length then
      local more = sock:recvall(length - #rest)
      if not more then break end
      rest = rest .. more
    end
    buf = rest:sub(length + 1)

    local conn = (req.headers["connection"] or ""):lower()
    local keep
    if req.version == "1.1" then keep = not conn:find("close", 1, true)
    elseif req.version == "1.0" then keep = conn:find("keep-alive", 1, true) ~= nil
    else
      errorpage(sock, 505, false)
      break
    end
    local head = req.method == "HEAD"
    local ok
    if req.method ~= "GET" and not head then
      ok = respond(sock, 405, {
        { "Allow", "GET, HEAD" }, { "Content-Length", 0 },
        { "Connection", keep and "keep-alive" or "close" },
      })
    else
      local file, status = resolve(req.target)
      local f = file and io.open(file, "rb")
      local size = f and f:seek("end")
      if not size then
        if f then f:close() end
        ok = errorpage(sock, status or 404, keep, head)
      else
        f:seek("set")
        ok = respond(sock, 200, {
          { "Content-Type", mimetype(file) },
          { "Content-Length", size },
          { "Connection", keep and "keep-alive" or "close" },
        }, f, head)
        f:close()
      end
    end
    if not ok or not keep then break end
  end
  sock:close()
end

local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server = assert(S.socket(family, S.SOCK_STREAM))
assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
assert(server:bind(host, port))
assert(server:listen())
io.stdout:write("listening on ", tostring(server:getsockname()), " serving ", root, "\n")
io.stdout:flush()

loop.spawn(function()
  while true do
    local sock, err, code = server:accept()
    if sock then
      sock:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
      loop.spawn(serve, sock)
    elseif code == "EMFILE" or code == "ENFILE" then
      io.stderr:write(err, "\n")
      loop.sleep(0.1)
    end
  end
end)

loop.run()
