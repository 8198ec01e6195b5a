-- luacheck: std +busted
-- The readiness hint of TCP sockets in loop tasks (API.md, "Loop tasks and
-- short reads"): after a recv that returned fewer bytes than asked, the next
-- recv in a task waits for the loop's poller to report the socket instead
-- of first trying a recv that would say EAGAIN. These specs are the cases
-- where that could lose a wake-up; each would show as ETIMEDOUT (every
-- socket here has a timeout, and every run is bounded).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local net = require "helpers.net"

-- a connected TCP pair (client, accepted), both timing out after 2 s
local function pair()
  local c, a = net.tcp_pair()
  c:settimeout(2)
  a:settimeout(2)
  return c, a
end

-- runs fn as a loop task, bounded; returns what it returned
local function intask(fn)
  local results
  loop.spawn(function() results = table.pack(fn()) end)
  assert.is_true(loop.run(10), "the loop did not finish")
  return table.unpack(results, 1, results.n)
end

describe("TCP recv in a loop task", function()
  local errors
  before_each(function()
    errors = {}
    loop.onerror = function(err) errors[#errors + 1] = tostring(err) end
  end)
  after_each(function()
    loop.onerror = nil
    assert.same({}, errors)
    assert.equal(0, loop.count())
  end)

  it("reads what arrived while the task did something else after a short read", function()
    local c, a = pair()
    finally(function() c:close() a:close() end)
    local got = {}
    loop.spawn(function()
      got[1] = assert(a:recv(100))     -- short: 5 of 100 bytes
      loop.sleep(0.2)                 -- meanwhile "world" arrives and is reported
      got[2] = assert(a:recv(100))
    end)
    loop.spawn(function()
      assert(c:sendall("hello"))
      loop.sleep(0.1)
      assert(c:sendall("world"))
    end)
    assert.is_true(loop.run(10))
    assert.same({ "hello", "world" }, got)
  end)

  it("reads what arrived while the task waited to write after a short read", function()
    local c, a = pair()
    finally(function() c:close() a:close() end)
    a:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 65536)
    c:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 65536)
    local big = string.rep("x", 4 * 1024 * 1024)
    local got, drained = {}, 0
    loop.spawn(function()
      got[1] = assert(a:recv(100))
      assert(a:sendall(big))          -- blocks until the peer drains it
      got[2] = assert(a:recv(100))
    end)
    loop.spawn(function()
      assert(c:sendall("first"))
      loop.sleep(0.1)                 -- the sender is stuck on a full buffer
      assert(c:sendall("second"))     -- reported while nobody reads
      loop.sleep(0.1)
      while drained < #big do
        drained = drained + #assert(c:recv(65536))
      end
    end)
    assert.is_true(loop.run(10))
    assert.same({ "first", "second" }, got)
    assert.equal(#big, drained)
  end)

  it("sees the end of the stream that came in one report with the last data", function()
    local c, a <close> = pair()
    local got = {}
    loop.spawn(function()
      got[1] = assert(a:recv(100))     -- waits: nothing sent yet
      got[2] = assert(a:recv(100))     -- the close came with the data
    end)
    loop.spawn(function()
      assert(c:sendall("last words"))  -- data and close with no yield between:
      c:close()                        -- the reader wakes once for both
    end)
    assert.is_true(loop.run(10))
    assert.same({ "last words", "" }, got)
  end)

  it("sees a reset that came in one report with the last data", function()
    local c, a <close> = pair()
    local got, err, code
    loop.spawn(function()
      got = assert(a:recv(100))
      local second
      second, err, code = a:recv(100)
      if second == "" then code = "EOF" end
    end)
    loop.spawn(function()
      assert(c:sendall("bye"))
      assert(c:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 }))
      c:close()                        -- RST instead of FIN
    end)
    assert.is_true(loop.run(10))
    assert.equal("bye", got)
    assert.is_truthy(code == "ECONNRESET" or code == "EOF", tostring(err))
  end)

  it("reads on past urgent data, whose mark ends a read early", function()
    local c, a = pair()
    finally(function() c:close() a:close() end)
    local got = {}
    loop.spawn(function()
      got[#got + 1] = assert(a:recv(100))  -- waits, then reads up to the mark
      while table.concat(got) ~= "abcdef" do
        local data = assert(a:recv(100))
        assert.not_equal("", data)
        got[#got + 1] = data
      end
    end)
    loop.spawn(function()
      assert(c:send("abc"))
      assert(c:send("X", nil, nil, S.MSG_OOB))  -- urgent byte, out of band
      assert(c:send("def"))
    end)
    assert.is_true(loop.run(10))
    assert.equal("abcdef", table.concat(got))
  end)

  it("still times out after a short read when nothing more comes", function()
    local c, a = pair()
    finally(function() c:close() a:close() end)
    a:settimeout(0.2)
    local first, second, code, waited = intask(function()
      assert(c:sendall("only"))
      local data = assert(a:recv(100))
      local t0 = loop.now()
      local d, _, e = a:recv(100)
      return data, d, e, loop.now() - t0
    end)
    assert.equal("only", first)
    assert.is_nil(second)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(waited >= 0.19 and waited < 2, "waited " .. waited)
  end)

  it("keeps an exact stream through many short reads in both directions", function()
    local c, a = pair()
    finally(function() c:close() a:close() end)
    local N, sent, echoed = 2000, {}, {}
    loop.spawn(function()                -- echo, in reads of up to 7 bytes
      while true do
        local data = assert(a:recv(7))
        if data == "" then break end
        assert(a:sendall(data))
      end
    end)
    loop.spawn(function()
      for i = 1, N do
        local msg = ("%d;"):format(i)
        sent[#sent + 1] = msg
        assert(c:sendall(msg))
        if i % 3 == 0 then loop.sleep(0) end
        local want = #msg
        while want > 0 do
          local data = assert(c:recv(want))
          echoed[#echoed + 1] = data
          want = want - #data
        end
      end
      c:shutdown("w")
    end)
    assert.is_true(loop.run(20))
    assert.equal(table.concat(sent), table.concat(echoed))
  end)

  it("does not wait on a hint outside a task: a plain blocking recv after a short one", function()
    local c, a = pair()
    finally(function() c:close() a:close() end)
    assert(c:sendall("one"))
    assert.equal("one", a:recv(100))
    assert(c:sendall("two"))
    assert.equal("two", a:recv(100))
    a:settimeout(0)
    assert(c:sendall("three"))
    assert.equal("three", a:recv(100))
  end)
end)
