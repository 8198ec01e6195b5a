-- luacheck: std +busted
-- examples/tcp_echo_server.lua, tcp_echo_client.lua, udp_echo_server.lua,
-- udp_echo_client.lua and demo.lua, each run as a child process against
-- python3 peers (spec/helpers/peers.py: Python's socket module).
local X = require "helpers.examples"

describe("examples/tcp_echo_server.lua", function()
  it("echoes what python3 clients send, one client after another", function()
    local srv, port = X.start_example("tcp_echo_server", { "127.0.0.1", "0" })
    finally(srv.kill)
    local r = X.run(X.peer("tcp-client", { port, "hello from python\nsecond line\n" }))
    assert.equal(0, r.code, r.err)
    assert.equal("hello from python\nsecond line\n", r.out)
    assert.matches("^connection from 127%.0%.0%.1:%d+$", srv:line())
    assert.matches("^127%.0%.0%.1:%d+ closed, 30 bytes echoed$", srv:line())
    -- 1 MiB both ways: send() may send part of a buffer, the loop sends the rest
    r = X.run(X.peer("tcp-client-size", { port, 1048576 }))
    assert.equal("ok 1048576\n", r.out, r.err)
    srv:expect("closed, 1048576 bytes echoed")
  end)

  it("prints a usage line and exits 2 on bad arguments", function()
    local r = X.run(X.example("tcp_echo_server", { "127.0.0.1" }))
    assert.equal(2, r.code)
    assert.matches("^usage: tcp_echo_server.lua HOST PORT", r.err)
  end)

  it("says why and exits 1 when it cannot bind", function()
    local r = X.run(X.example("tcp_echo_server", { "192.0.2.1", "0" }))  -- not ours
    assert.equal(1, r.code)
    assert.matches("tcp_echo_server: bind 192%.0%.2%.1:0: .*", r.err)
  end)
end)

describe("examples/tcp_echo_client.lua", function()
  it("sends its words to a python3 echo server and prints the echo", function()
    local peer, port = X.start_peer("tcp-echo-server")
    finally(peer.kill)
    local r = X.run(X.example("tcp_echo_client", { "127.0.0.1", port, "hello,", "echo" }))
    assert.equal(0, r.code, r.err)
    assert.equal("hello, echo\n", r.out)
    r = X.run(X.example("tcp_echo_client", { "localhost", port, "by", "name" }))
    assert.equal("by name\n", r.out, r.err)
  end)

  it("talks to examples/tcp_echo_server.lua too", function()
    local srv, port = X.start_example("tcp_echo_server", { "127.0.0.1", "0" })
    finally(srv.kill)
    local r = X.run(X.example("tcp_echo_client", { "127.0.0.1", port, "lua", "to", "lua" }))
    assert.equal("lua to lua\n", r.out, r.err)
  end)

  it("reports a refused connection and exits 1; usage exits 2", function()
    local S = require "bsdsocket"
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(s:bind("127.0.0.1", 0))                  -- bound, not listening
    local r = X.run(X.example("tcp_echo_client", { "127.0.0.1", s:getsockname().port, "x" }))
    assert.equal(1, r.code)
    assert.matches("tcp_echo_client: connect 127%.0%.0%.1:%d+: Connection refused", r.err)
    r = X.run(X.example("tcp_echo_client", { "127.0.0.1", "7" }))
    assert.equal(2, r.code)
    assert.matches("^usage:", r.err)
  end)
end)

describe("examples/udp_echo_server.lua", function()
  it("answers python3 datagrams to their sender", function()
    local srv, port = X.start_example("udp_echo_server", { "127.0.0.1", "0" })
    finally(srv.kill)
    local r = X.run(X.peer("udp-client", { port, "datagram one" }))
    assert.equal(0, r.code, r.err)
    assert.equal("datagram one\n", r.out)
    assert.matches("^12 bytes from 127%.0%.0%.1:%d+$", srv:line())
  end)

  it("prints a usage line and exits 2 on bad arguments", function()
    local r = X.run(X.example("udp_echo_server", { "127.0.0.1", "x" }))
    assert.equal(2, r.code)
    assert.matches("^usage:", r.err)
  end)
end)

describe("examples/udp_echo_client.lua", function()
  it("gets its words back from a python3 UDP echo server", function()
    local peer, port = X.start_peer("udp-echo-server")
    finally(peer.kill)
    local r = X.run(X.example("udp_echo_client", { "127.0.0.1", port, "over", "udp" }))
    assert.equal(0, r.code, r.err)
    assert.equal("over udp\n", r.out)
  end)

  it("retries when the answer does not come, then exits 1", function()
    local S = require "bsdsocket"
    local silent <close> = assert(S.udp("127.0.0.1", 0))   -- receives, never answers
    local r = X.run(X.example("udp_echo_client", { "127.0.0.1", silent:getsockname().port, "lost" }))
    assert.equal(1, r.code)
    assert.matches("no answer after 1s %(try 1 of 5%)", r.err)
    assert.matches("no answer after 1s %(try 5 of 5%)", r.err)
    assert.matches("udp_echo_client: no answer from 127%.0%.0%.1:%d+", r.err)
    local n = 0
    silent:settimeout(0)
    while silent:recvfrom(100) do n = n + 1 end
    assert.equal(5, n)                                       -- five tries sent
  end)

  it("talks to examples/udp_echo_server.lua too", function()
    local srv, port = X.start_example("udp_echo_server", { "127.0.0.1", "0" })
    finally(srv.kill)
    local r = X.run(X.example("udp_echo_client", { "127.0.0.1", port, "lua" }))
    assert.equal("lua\n", r.out, r.err)
  end)
end)

describe("examples/demo.lua", function()
  it("shows a server and a client talking over loopback", function()
    local r = X.run(X.example("demo"))
    assert.equal(0, r.code, r.err)
    assert.matches("server: listening on 127%.0%.0%.1:%d+", r.out)
    assert.matches('server: got     "hello, server"', r.out)
    assert.matches('client: got     "hello, client; you said 13 bytes"', r.out)
  end)
end)
