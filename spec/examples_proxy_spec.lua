-- luacheck: std +busted
-- examples/tcp_proxy.lua as a child process, between clients and a python3
-- echo server (spec/helpers/peers.py) or an in-process listener.
local X = require "helpers.examples"
local backend = require "helpers.backend"
local net = require "helpers.net"
local S = net.S

local function connect(port)
  local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(s:connect("127.0.0.1", port))
  s:settimeout(10)
  return s
end

describe("examples/tcp_proxy.lua", function()
  it("relays python3 clients to a python3 echo server, 1 MiB both ways", function()
    local peer, pport = X.start_peer("tcp-echo-server")
    finally(peer.kill)
    local proxy, port = X.start_example("tcp_proxy", { "0", "127.0.0.1", pport })
    finally(proxy.kill)
    local r = X.run(X.peer("tcp-client", { port, "through the proxy\n" }))
    assert.equal(0, r.code, r.err)
    assert.equal("through the proxy\n", r.out)
    r = X.run(X.peer("tcp-client-size", { port, 1048576 }))
    assert.equal("ok 1048576\n", r.out, r.err)
  end)

  it("relays nc to nc: the client's text reaches the listener and its answer comes back", function()
    if not os.execute("command -v nc >/dev/null 2>&1") then
      pending("nc is not installed (make deps installs netcat-openbsd)")
      return
    end
    -- a free port for nc's listener (nc cannot say which one it chose)
    local probe = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(probe:bind("127.0.0.1", 0))
    local tport = probe:getsockname().port
    probe:close()
    local listener = X.spawn(X.native("nc -l 127.0.0.1 " .. tport), { stdin = "from the listener\n" })
    finally(listener.kill)
    assert(require("helpers.wait").listening(tport, 10), "nc did not listen")
    local proxy, port = X.start_example("tcp_proxy", { "0", "127.0.0.1", tport })
    finally(proxy.kill)
    -- -N: shut the socket down for writing at the end of stdin, so the
    -- listener sees EOF; -q 2: wait for the answer
    local r = X.run(X.native("nc -N -q 2 127.0.0.1 " .. port), "from the client\n")
    assert.equal("from the listener\n", r.out, r.err)
    assert.equal("from the client", listener:line())
  end)

  it("serves clients at once, passes half-closes on, and closes both sides at the end", function()
    local target, tport = net.server()
    finally(function() target:close() end)
    local proxy, port = X.start_example("tcp_proxy", { "0", "127.0.0.1", tport })
    finally(proxy.kill)
    local a, b = connect(port), connect(port)
    finally(function() net.closeall(a, b) end)
    target:settimeout(10)
    local ta = assert(target:accept())
    local tb = assert(target:accept())
    finally(function() net.closeall(ta, tb) end)
    ta:settimeout(10)
    tb:settimeout(10)
    assert(a:sendall("from a"))
    assert(b:sendall("from b"))
    local ra, rb = ta:recvall(6), tb:recvall(6)
    assert.same({ "from a", "from b" }, ra == "from a" and { ra, rb } or { rb, ra })
    local ma, mb = ta, tb                 -- the target's ends of a's and b's connections
    if ra ~= "from a" then ma, mb = tb, ta end
    -- answers go back to the right client
    assert(ma:sendall("to a"))
    assert(mb:sendall("to b"))
    assert.equal("to a", a:recvall(4))
    assert.equal("to b", b:recvall(4))
    -- the client's half-close reaches the target, which can still answer
    assert(a:shutdown("w"))
    assert.equal("", ma:recv(10))
    assert(ma:sendall("after your EOF"))
    assert(ma:shutdown("w"))
    assert.equal("after your EOF", a:recvall(14))
    assert.equal("", a:recv(10))
    -- a reset target closes the client
    mb:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 })
    mb:close()
    local data, _, code = b:recv(10)
    assert.is_truthy(data == "" or code == "ECONNRESET", tostring(code))
  end)

  it("closes a client whose target refuses, and says why", function()
    if backend.libkqueue then
      pending("libkqueue: it reads SO_ERROR to fill fflags, which clears a"
        .. " refused connect's error")
      return
    end
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(s:bind("127.0.0.1", 0))                       -- bound, never listening
    local proxy, port = X.start_example("tcp_proxy", { "0", "127.0.0.1", s:getsockname().port })
    finally(proxy.kill)
    local c <close> = connect(port)
    local data, _, code = c:recv(10)
    assert.is_truthy(data == "" or code == "ECONNRESET", tostring(code))
    assert.matches("connect 127%.0%.0%.1:%d+: Connection refused", proxy:stderr())
  end)

  it("prints a usage line and exits 2 without its arguments", function()
    local r = X.run(X.example("tcp_proxy", { "0", "127.0.0.1" }))
    assert.equal(2, r.code)
    assert.matches("^usage: tcp_proxy.lua LISTEN_PORT TARGET_HOST TARGET_PORT", r.err)
  end)
end)
