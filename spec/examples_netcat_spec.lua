-- luacheck: std +busted
-- examples/netcat.lua against python3 peers (spec/helpers/peers.py), in
-- all four modes: TCP or UDP, connecting or listening; stdin from a pipe
-- (polled) and from a regular file (epoll refuses those).
local X = require "helpers.examples"
local S = require "bsdsocket"

describe("examples/netcat.lua", function()
  it("connects over TCP: stdin (a pipe) to a python3 echo server and back", function()
    local peer, port = X.start_peer("tcp-echo-server")
    finally(peer.kill)
    local r = X.run(X.example("netcat", { "127.0.0.1", port }), "one\ntwo\nlast, no newline", { pipe = true })
    assert.equal(0, r.code, r.err)
    assert.equal("one\ntwo\nlast, no newline", r.out)
  end)

  it("connects over TCP with stdin from a regular file", function()
    local peer, port = X.start_peer("tcp-echo-server")
    finally(peer.kill)
    local text = ("line %d of a longer file\n"):rep(2000):gsub("%%d", "n")
    local r = X.run(X.example("netcat", { "localhost", port }), text)
    assert.equal(0, r.code, r.err)
    assert.is_true(r.out == text)
    r = X.run(X.example("netcat", { "127.0.0.1", port }), "")   -- empty stdin
    assert.equal(0, r.code, r.err)
    assert.equal("", r.out)
  end)

  it("listens over TCP for one python3 client", function()
    local nc = X.spawn(X.example("netcat", { "-l", "127.0.0.1", "0" }),
      { stdin = "from netcat\n", merge = true })
    finally(nc.kill)
    local port = tonumber(nc:expect("^listening on 127%.0%.0%.1:(%d+)$"))
    local r = X.run(X.peer("tcp-client", { port, "from python\n" }))
    assert.equal(0, r.code, r.err)
    assert.equal("from netcat\n", r.out)
    assert.matches("^connection from 127%.0%.0%.1:%d+$", nc:line())
    local code, rest = nc:close()
    assert.equal("from python\n", rest)
    assert.equal(0, code)                 -- exits once the peer has closed
  end)

  it("sends stdin lines as UDP datagrams and prints the answers (-u -q)", function()
    local peer, port = X.start_peer("udp-sink")
    finally(peer.kill)
    local r = X.run(X.example("netcat", { "-u", "-q", "1", "127.0.0.1", port }), "a\nb\n", { pipe = true })
    assert.equal(0, r.code, r.err)
    assert.equal("ack a\nack b\n", r.out)
    assert.equal("got a", peer:line())
    assert.equal("got b", peer:line())
  end)

  it("listens over UDP and answers the first sender", function()
    local nc = X.spawn(X.example("netcat", { "-l", "-u", "-q", "1", "127.0.0.1", "0" }),
      { stdin = "reply\n", merge = true })
    finally(nc.kill)
    local port = tonumber(nc:expect("^listening on 127%.0%.0%.1:(%d+)$"))
    local r = X.run(X.peer("udp-client", { port, "hi there\n" }))
    assert.equal(0, r.code, r.err)
    assert.equal("reply\n\n", r.out)      -- the datagram, and the client's newline
    local code, rest = nc:close()
    assert.equal(0, code)
    assert.matches("^hi there\n", rest)
    assert.matches("datagram from 127%.0%.0%.1:%d+\n", rest)
  end)

  it("reports a refused connection and exits 1", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(s:bind("127.0.0.1", 0))
    local r = X.run(X.example("netcat", { "127.0.0.1", s:getsockname().port }))
    assert.equal(1, r.code)
    assert.matches("netcat: connect 127%.0%.0%.1:%d+: Connection refused", r.err)
  end)

  it("prints a usage line and exits 2 on bad arguments", function()
    for _, args in ipairs({ {}, { "127.0.0.1" }, { "-x", "h", "1" }, { "h", "1", "2" },
                            { "-q", "h", "1" }, { "h", "70000" }, { "h", "0" } }) do
      local r = X.run(X.example("netcat", args))
      assert.equal(2, r.code, table.concat(args, " "))
      assert.matches("^usage: netcat.lua", r.err)
    end
  end)
end)
