-- luacheck: std +busted
-- bsdsocket.reader (S.reader): lines, exact reads, read_all, read_some,
-- the lines() iterator; nothing lost across recv boundaries or errors.
local S = require "bsdsocket"

-- A fake stream: hands out the given chunks one recv at a time (cut to the
-- size asked for); a table entry { msg, code } is an error returned once.
-- After the last chunk: "" (EOF).
local function stream(...)
  local chunks = { ... }
  local s = { asked = {} }
  function s.recv(_, n)
    s.asked[#s.asked + 1] = n
    local c = table.remove(chunks, 1)
    if c == nil then return "" end
    if type(c) == "table" then return nil, c[1], c[2] end
    if #c > n then table.insert(chunks, 1, c:sub(n + 1)) c = c:sub(1, n) end
    return c
  end
  return s
end
local TIMEOUT = { "recv 127.0.0.1:1: timed out", "ETIMEDOUT" }

describe("S.reader", function()
  describe(":line()", function()
    it("splits on \\n and \\r\\n and returns a last line without newline", function()
      local r = S.reader(stream("one\ntwo\r\n\nfour\r\nlast"))
      assert.equal("one", r:line())
      assert.equal("two", r:line())
      assert.equal("", r:line())
      assert.equal("four", r:line())
      assert.equal("last", r:line())
      assert.same({ nil, "line: end of stream", "EOF" }, { r:line() })
      assert.same({ nil, "line: end of stream", "EOF" }, { r:line() })
    end)

    it("keeps the newline when asked", function()
      local r = S.reader(stream("a\r\nb\nc"))
      assert.equal("a\r\n", r:line(true))
      assert.equal("b\n", r:line(true))
      assert.equal("c", r:line(true))
    end)

    it("keeps a lone \\r and strips only the one before \\n", function()
      local r = S.reader(stream("a\rb\n\r\r\n\r"))
      assert.equal("a\rb", r:line())
      assert.equal("\r", r:line())
      assert.equal("\r", r:line())
    end)

    it("finds lines across recv boundaries, \\r and \\n in different chunks", function()
      local r = S.reader(stream("par", "tial\r", "\nnext li", "ne\n"), { size = 4 })
      assert.equal("partial", r:line())
      assert.equal("next line", r:line())
      assert.same({ nil, "line: end of stream", "EOF" }, { r:line() })
    end)

    it("does not lose bytes that arrived with the previous line", function()
      local r = S.reader(stream("first\nsecond\nthird", "\nbinary:\0\1\2tail"))
      assert.equal("first", r:line())
      assert.equal("sec", r:read(3))
      assert.equal("ond", r:line())
      assert.equal("third", r:line())
      assert.equal("binary:", r:read(7))
      assert.equal("\0\1\2", r:read(3))
      assert.equal("tail", r:read_all())
    end)

    it("returns a socket error and keeps the partial line for the next call", function()
      local r = S.reader(stream("par", TIMEOUT, "tial\nrest"))
      assert.same({ nil, TIMEOUT[1], "ETIMEDOUT" }, { r:line() })
      assert.equal(3, r:buffered())
      assert.equal("partial", r:line())
      assert.equal("rest", r:line())
    end)

    it("bounds a line with maxline (EMSGSIZE) and keeps the bytes", function()
      local r = S.reader(stream("aaaaaaaaaa\nb\n"), { size = 2, maxline = 4 })
      assert.same({ nil, "line: longer than 4 bytes", "EMSGSIZE" }, { r:line() })
      assert.equal("aaaaaa", r:read(6))
      assert.equal("aaaa", r:line())
      assert.equal("b", r:line())
    end)

    it("refuses a line longer than maxline even when its newline is already buffered", function()
      local r = S.reader(stream(("x"):rep(50) .. "\nok\n"), { maxline = 10 })
      assert.same({ nil, "line: longer than 10 bytes", "EMSGSIZE" }, { r:line() })
      assert.same({ nil, "line: longer than 10 bytes", "EMSGSIZE" }, { r:line() })
      assert.equal(54, r:buffered())                  -- nothing was lost
      assert.equal(("x"):rep(50) .. "\n", r:read(51))
      assert.equal("ok", r:line())
    end)

    it("counts maxline without the \n or \r\n, also when \r and \n arrive apart", function()
      local r = S.reader(stream("abcd\r\nabcd\nabcde\n"), { maxline = 4 })
      assert.equal("abcd", r:line())
      assert.equal("abcd\n", r:line(true))
      assert.same({ nil, "line: longer than 4 bytes", "EMSGSIZE" }, { r:line() })
      r = S.reader(stream("ab", "cd\r", "\n", "abc", "d", "e", "\n"), { maxline = 4 })
      assert.equal("abcd", r:line())
      assert.same({ nil, "line: longer than 4 bytes", "EMSGSIZE" }, { r:line() })
      assert.equal("abcde\n", r:read(6))
      r = S.reader(stream("ab", "cd\r", "\n"), { maxline = 4 })
      assert.equal("abcd\r\n", r:line(true))
      -- a last line without newline is bounded too
      assert.equal("abcd", S.reader(stream("ab", "cd"), { maxline = 4 }):line())
      r = S.reader(stream("ab", "cde"), { maxline = 4 })
      assert.same({ nil, "line: longer than 4 bytes", "EMSGSIZE" }, { r:line() })
      assert.equal("abcde", r:read_all())
    end)

    it("keeps a partial line of many pieces across errors and EMSGSIZE", function()
      local r = S.reader(stream("pa", "rt", TIMEOUT, "ia", "l\nrest\n"))
      assert.same({ nil, TIMEOUT[1], "ETIMEDOUT" }, { r:line() })
      assert.equal(4, r:buffered())
      assert.equal("partial", r:line())
      r = S.reader(stream("aaaa", "aaaa", "aaaa\nrest"), { size = 4, maxline = 6 })
      assert.same({ nil, "line: longer than 6 bytes", "EMSGSIZE" }, { r:line() })
      assert.equal(8, r:buffered())
      assert.equal("aa", r:read_some(2))
      assert.equal(("a"):rep(10) .. "\n", r:read(11))
      assert.equal("rest", r:line())
    end)

    it("has a default maxline of 64 KiB and stops reading an endless line there", function()
      assert.equal(65536, require("bsdsocket.reader").MAXLINE)
      local ok = ("y"):rep(65536)
      local r = S.reader(stream(ok .. "\r\n" .. ok .. "y\n"))
      assert.equal(ok, r:line())
      assert.same({ nil, "line: longer than 65536 bytes", "EMSGSIZE" }, { r:line() })
      -- a peer that sends no newline at all: refused after about 64 KiB
      local endless = { calls = 0 }
      function endless.recv(_, n)
        endless.calls = endless.calls + 1
        assert(endless.calls < 1000, "still reading")
        return ("z"):rep(math.min(n, 1000))
      end
      r = S.reader(endless)
      assert.same({ nil, "line: longer than 65536 bytes", "EMSGSIZE" }, { r:line() })
      assert.is_true(endless.calls <= 67, endless.calls .. " recvs")
      -- math.maxinteger lifts the limit
      r = S.reader(stream(ok .. ok .. "\n"), { maxline = math.maxinteger })
      assert.equal(2 * #ok, #r:line())
    end)

    it("reads a 32 MB line in time linear in its length", function()
      -- a stream of one line of `total` bytes in 64 KiB pieces, then "\n"
      local piece = ("x"):rep(65536)
      local function longline(total)
        local left = total
        return { recv = function(_, n)
          if left < 0 then return "" end
          if left == 0 then left = -1 return "\n" end
          local k = math.min(n, left, #piece)
          left = left - k
          return k == #piece and piece or piece:sub(1, k)
        end }
      end
      -- The work, counted: the bytes allocated while reading the line (the
      -- collector stopped, so every allocation stays counted), per byte of
      -- line. Joining the pieces once costs about 1; rebuilding the line on
      -- every 64 KiB refill costs length / 128 KiB (32 for 4 MB).
      local function allocated(total)
        local r = S.reader(longline(total), { maxline = 1 << 30 })
        collectgarbage()
        collectgarbage("stop")
        local kb = collectgarbage("count")
        local t0 = os.clock()
        local line = r:line()
        local dt = os.clock() - t0
        kb = collectgarbage("count") - kb
        collectgarbage("restart")
        assert.equal(total, #line)
        return kb * 1024 / total, dt
      end
      finally(function() collectgarbage("restart") end)
      local a4, t4 = allocated(4 << 20)
      assert.is_true(a4 < 3, ("reading a 4 MB line allocated %.1f bytes per byte"):format(a4))
      local a16, t16 = allocated(16 << 20)
      local a32, t32 = allocated(32 << 20)
      print(("\n  reader: a long line: 4 MB %.3f s, 16 MB %.3f s, 32 MB %.3f s;"
        .. " allocated %.2f, %.2f, %.2f bytes per byte"):format(t4, t16, t32, a4, a16, a32))
      assert.is_true(a16 < 3 and a32 < 3, ("allocated %.1f, %.1f bytes per byte"):format(a16, a32))
      local r = S.reader(longline(32 << 20), { maxline = 32 << 20 })
      assert.equal(32 << 20, #r:line())
      assert.same({ nil, "line: end of stream", "EOF" }, { r:line() })
    end)

    it("handles a long line from many small chunks", function()
      local chunks = {}
      for i = 1, 5000 do chunks[i] = "x" end
      chunks[#chunks + 1] = "\n"
      local r = S.reader(stream(table.unpack(chunks)))
      assert.equal(("x"):rep(5000), r:line())
    end)
  end)

  describe(":read(n)", function()
    it("returns exactly n bytes, across chunks", function()
      local s = stream("abc", "defg", "hij")
      local r = S.reader(s, { size = 100 })
      assert.equal("", r:read(0))
      assert.equal("ab", r:read(2))
      assert.equal("cdefgh", r:read(6))
      assert.equal("ij", r:read(2))
    end)

    it("reads a large n without asking for more than size per recv", function()
      local big = ("0123456789"):rep(100000)
      local s = stream(big)
      local r = S.reader(s, { size = 4096 })
      assert.is_true(r:read(#big) == big)
      for _, n in ipairs(s.asked) do assert.is_true(n <= 4096) end
    end)

    it("at EOF before n bytes: nil, msg, \"EOF\", partial", function()
      local r = S.reader(stream("abc"))
      assert.same({ nil, "read: end of stream after 3 of 5 bytes", "EOF", "abc" }, { r:read(5) })
      assert.same({ nil, "read: end of stream after 0 of 1 bytes", "EOF", "" }, { r:read(1) })
    end)

    it("returns a socket error and keeps what it had read", function()
      local r = S.reader(stream("ab", TIMEOUT, "cdef"))
      assert.same({ nil, TIMEOUT[1], "ETIMEDOUT" }, { r:read(4) })
      assert.equal("abcd", r:read(4))
      assert.equal("ef", r:read_some())
    end)

    it("raises on a count that is not a non-negative integer", function()
      local r = S.reader(stream("x"))
      assert.has_error(function() r:read(-1) end)
      assert.has_error(function() r:read(1.5) end)
      assert.has_error(function() r:read("3") end)
    end)
  end)

  describe(":read_all()", function()
    it("returns the buffered bytes and everything up to EOF", function()
      local r = S.reader(stream("head\nbody ", "more ", "end"))
      assert.equal("head", r:line())
      assert.equal("body more end", r:read_all())
      assert.equal("", r:read_all())
    end)

    it("returns a socket error and loses nothing", function()
      local r = S.reader(stream("ab", TIMEOUT, "cd"))
      assert.same({ nil, TIMEOUT[1], "ETIMEDOUT" }, { r:read_all() })
      assert.equal(2, r:buffered())
      assert.equal("abcd", r:read_all())
    end)
  end)

  describe(":read_some([max])", function()
    it("hands out buffered bytes first, then one recv; \"\" at EOF", function()
      local r = S.reader(stream("line\nrest of chunk", "next"))
      assert.equal("line", r:line())
      assert.equal("rest", r:read_some(4))
      assert.equal(" of chunk", r:read_some())
      assert.equal("next", r:read_some())
      assert.equal("", r:read_some())
    end)
  end)

  describe(":lines()", function()
    it("iterates over lines and ends at EOF", function()
      local got = {}
      for l in S.reader(stream("a\nb\r\n", "c")):lines() do got[#got + 1] = l end
      assert.same({ "a", "b", "c" }, got)
      got = {}
      for l in S.reader(stream("a\nb\n")):lines(true) do got[#got + 1] = l end
      assert.same({ "a\n", "b\n" }, got)
    end)

    it("raises on a socket error", function()
      assert.has_error(function()
        for _ in S.reader(stream("a\n", TIMEOUT)):lines() do end  -- luacheck: ignore
      end, TIMEOUT[1])
    end)
  end)

  describe("over real sockets", function()
    it("reads lines from a socketpair and resumes after a timeout", function()
      local a, b = S.socketpair()
      finally(function() a:close() b:close() end)
      a:settimeout(0.05)
      local r = S.reader(a)
      assert(b:sendall("hello\r\nwor"))
      assert.equal("hello", r:line())
      local line, msg, code = r:line()
      assert.is_nil(line)
      assert.equal("ETIMEDOUT", code, msg)
      assert(b:sendall("ld\n"))
      assert.equal("world", r:line())
      b:shutdown("w")
      assert.same({ nil, "line: end of stream", "EOF" }, { r:line() })
    end)

    it("reads an HTTP-like head and a body from a TCP connection", function()
      local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
      local cli <close> = assert(S.tcp_connect("127.0.0.1", srv:getsockname().port, 5))
      local conn <close> = assert(srv:accept())
      assert(conn:sendall("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
      conn:close()
      local r = S.reader(cli)
      assert.equal("HTTP/1.1 200 OK", r:line())
      assert.equal("Content-Length: 5", r:line())
      assert.equal("", r:line())
      assert.equal("hello", r:read(5))
      assert.equal("", r:read_some())
    end)
  end)

  it("raises on a bad socket or options", function()
    assert.has_error(function() S.reader() end)
    assert.has_error(function() S.reader("sock") end)
    assert.has_error(function() S.reader(stream(), { size = 0 }) end)
    assert.has_error(function() S.reader(stream(), { maxline = -1 }) end)
    assert.has_error(function() S.reader(stream(), { maxline = 1.5 }) end)
  end)
end)
