-- bsdsocket.reader: a buffered reader over a connected stream socket.
--
--   local r = S.reader(sock [, { size = 65536, maxline = 65536 }])
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
-- `size` is the most one recv asks for. `maxline` (default M.MAXLINE, 64 KiB)
-- bounds every line line() returns, not counting its "\n" or "\r\n": a
-- longer line gives nil, msg, "EMSGSIZE" as soon as that is certain (without
-- waiting for its end) and its bytes stay buffered (read them with read(n),
-- or close). `maxline = math.maxinteger` lifts the limit. A long line costs
-- time linear in its length: each recv's data is searched once for "\n" and
-- the pieces are joined once. Works over any object with recv(n) returning a
-- string, "" at EOF, or nil, msg, code.
local M = {}

M.MAXLINE = 65536               -- the default maxline

local find, sub, byte, concat = string.find, string.sub, string.byte, table.concat

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
  local maxline = opts.maxline or M.MAXLINE
  checkcount("reader", maxline, 2)
  return setmetatable({
    sock = sock, size = size, maxline = maxline,
    buf = "", pos = 1,            -- unread bytes: buf:sub(pos) ...
    more = nil, mlen = 0,         -- ... or, while line() waits for a "\n",
                                  -- the pieces of a partial line (buf = "")
  }, Reader)
end

-- Joins the pieces of a partial line into buf (once, after line() failed).
local function flatten(self)
  if self.more then
    self.buf, self.pos = concat(self.more), 1
    self.more, self.mlen = nil, 0
  end
end

function Reader:buffered()
  if self.more then return self.mlen end
  return #self.buf - self.pos + 1
end

-- Takes every buffered byte out.
local function take(self)
  flatten(self)
  local rest = sub(self.buf, self.pos)
  self.buf, self.pos = "", 1
  return rest
end

-- Puts bytes back in front of whatever is buffered.
local function unread(self, s)
  flatten(self)
  if s ~= "" then self.buf, self.pos = s .. sub(self.buf, self.pos), 1 end
end

local function toolong(max)
  return nil, ("line: longer than %d bytes"):format(max), "EMSGSIZE"
end

function Reader:line(keep_newline)
  local max = self.maxline
  local more = self.more
  if not more then
    -- the common case: the whole line is already buffered
    local buf, pos = self.buf, self.pos
    local nl = find(buf, "\n", pos, true)
    if nl then
      local last = nl - 1
      if last >= pos and byte(buf, last) == 13 then last = last - 1 end
      if last - pos >= max then return toolong(max) end     -- the bytes stay
      self.pos = nl + 1
      if self.pos > #buf then self.buf, self.pos = "", 1 end
      return sub(buf, pos, keep_newline and nl or last)
    end
    -- a partial line: from here on it grows as a list of pieces
    more = {}
    if pos <= #buf then more[1] = sub(buf, pos) end
    self.more, self.mlen = more, #buf - pos + 1
    self.buf, self.pos = "", 1
  end
  while true do
    local have = self.mlen                -- bytes in more; none is a "\n"
    -- the line is at least have bytes long, have - 1 if its last is a "\r"
    -- that a "\n" follows
    if have > max and (have - 1 > max or byte(more[#more], -1) ~= 13) then
      return toolong(max)
    end
    local data, msg, code = self.sock:recv(self.size)
    if not data then return nil, msg, code end
    if data == "" then                     -- EOF: the last line lacks a "\n"
      if have == 0 then
        self.more, self.mlen = nil, 0
        return nil, "line: end of stream", "EOF"
      end
      if have > max then return toolong(max) end
      self.more, self.mlen = nil, 0
      return concat(more)
    end
    local nl = find(data, "\n", 1, true)  -- only the new bytes are searched
    if not nl then
      more[#more + 1] = data
      self.mlen = have + #data
    else
      local cr = nl > 1 and byte(data, nl - 1) == 13
        or nl == 1 and have > 0 and byte(more[#more], -1) == 13
      if have + nl - 1 - (cr and 1 or 0) > max then  -- too long: keep it all
        more[#more + 1] = data
        self.mlen = have + #data
        flatten(self)
        return toolong(max)
      end
      if keep_newline then
        more[#more + 1] = sub(data, 1, nl)
      elseif nl > 1 then
        more[#more + 1] = sub(data, 1, cr and nl - 2 or nl - 1)
      elseif cr then
        more[#more] = sub(more[#more], 1, -2)
      end
      self.more, self.mlen = nil, 0
      if nl < #data then self.buf, self.pos = data, nl + 1 end
      return concat(more)
    end
  end
end

function Reader:read(n)
  checkcount("read", n, 1)
  flatten(self)
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
  flatten(self)
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
