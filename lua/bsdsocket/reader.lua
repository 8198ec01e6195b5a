-- bsdsocket.reader: a buffered reader over a connected stream socket.
--
--   local r = S.reader(sock [, { size = 65536, maxline = nil }])
--   r:line([keep_newline])  -> a line without "\n" or "\r\n" (with it if asked);
--                              the last line may lack a newline;
--                              at EOF: nil, msg, "EOF"
--   r:read(n)               -> exactly n bytes; EOF first: nil, msg, "EOF", partial
--   r:read_all()            -> everything up to EOF
--   r:read_some([max])      -> what is buffered, else one recv (at most max);
--                              "" at EOF, like recv
--   r:lines([keep_newline]) -> iterator over lines; ends at EOF, raises on errors
--   r:buffered()            -> bytes received but not yet handed out
--
-- Errors from the socket (timeouts, resets) come back as nil, msg, code and
-- lose nothing: bytes already received stay buffered for the next call.
-- `size` is the most one recv asks for; `maxline` bounds line() (a longer
-- line: nil, msg, "EMSGSIZE", the bytes stay buffered). Works over any object
-- with recv(n) returning a string, "" at EOF, or nil, msg, code.
local M = {}

local Reader = {}
Reader.__index = Reader

local function checkcount(fname, n, argn)
  if math.type(n) ~= "integer" or n < 0 then
    error(("bad argument #%d to '%s' (non-negative integer expected)"):format(argn, fname), 3)
  end
end

function M.new(sock, opts)
  if type(sock) ~= "userdata" and type(sock) ~= "table" then
    error("bad argument #1 to 'reader' (socket expected, got " .. type(sock) .. ")", 2)
  end
  opts = opts or {}
  local size = opts.size or 65536
  checkcount("reader", size, 2)
  if size == 0 then error("bad argument #2 to 'reader' (size must be positive)", 2) end
  if opts.maxline ~= nil then checkcount("reader", opts.maxline, 2) end
  return setmetatable({
    sock = sock, size = size, maxline = opts.maxline,
    buf = "", pos = 1,            -- unread bytes: buf:sub(pos)
  }, Reader)
end

function Reader:buffered()
  return #self.buf - self.pos + 1
end

-- Takes every buffered byte out.
local function take(self)
  local rest = self.buf:sub(self.pos)
  self.buf, self.pos = "", 1
  return rest
end

-- Puts bytes back in front of whatever is buffered.
local function unread(self, s)
  if s ~= "" then self.buf, self.pos = s .. self.buf:sub(self.pos), 1 end
end

-- One recv appended to the buffer: true, false at EOF, or nil, msg, code.
local function fill(self)
  local data, msg, code = self.sock:recv(self.size)
  if not data then return nil, msg, code end
  if data == "" then return false end
  if self.pos > #self.buf then
    self.buf = data
  else
    self.buf = self.buf:sub(self.pos) .. data
  end
  self.pos = 1
  return true
end

function Reader:line(keep_newline)
  local from = self.pos
  while true do
    local buf, pos = self.buf, self.pos
    local nl = buf:find("\n", from, true)
    if nl then
      local last = nl
      if not keep_newline then
        last = nl - 1
        if last >= pos and buf:byte(last) == 13 then last = last - 1 end
      end
      self.pos = nl + 1
      if self.pos > #buf then self.buf, self.pos = "", 1 end
      return buf:sub(pos, last)
    end
    local scanned = #buf - pos + 1
    if self.maxline and scanned > self.maxline then
      return nil, ("line: longer than %d bytes"):format(self.maxline), "EMSGSIZE"
    end
    local ok, msg, code = fill(self)
    if ok == nil then return nil, msg, code end
    if ok == false then
      if scanned > 0 then return take(self) end
      return nil, "line: end of stream", "EOF"
    end
    from = self.pos + scanned
  end
end

function Reader:read(n)
  checkcount("read", n, 1)
  local have = #self.buf - self.pos + 1
  if have >= n then
    local s = self.buf:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + n
    if self.pos > #self.buf then self.buf, self.pos = "", 1 end
    return s
  end
  -- Not enough buffered: collect pieces (no quadratic concatenation).
  local parts = { take(self) }
  local got = have
  while got < n do
    local data, msg, code = self.sock:recv(math.min(self.size, n - got))
    if not data then
      unread(self, table.concat(parts))
      return nil, msg, code
    end
    if data == "" then
      return nil, ("read: end of stream after %d of %d bytes"):format(got, n), "EOF", table.concat(parts)
    end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table.concat(parts)
end

function Reader:read_all()
  local parts = { take(self) }
  while true do
    local data, msg, code = self.sock:recv(self.size)
    if not data then
      unread(self, table.concat(parts))
      return nil, msg, code
    end
    if data == "" then return table.concat(parts) end
    parts[#parts + 1] = data
  end
end

function Reader:read_some(max)
  max = max or self.size
  checkcount("read_some", max, 1)
  if self.pos <= #self.buf then
    local s = self.buf:sub(self.pos, self.pos + max - 1)
    self.pos = self.pos + #s
    if self.pos > #self.buf then self.buf, self.pos = "", 1 end
    return s
  end
  if max == 0 then return "" end
  return self.sock:recv(math.min(max, self.size))
end

function Reader:lines(keep_newline)
  return function()
    local line, msg, code = self:line(keep_newline)
    if line then return line end
    if code == "EOF" then return nil end
    error(msg, 2)
  end
end

return M
