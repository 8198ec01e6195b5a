-- Faults: what the network and the operating system do to a connection,
-- and what a script sees: a peer that resets mid-stream (SO_LINGER 0), a
-- refused connect, a connect into a black hole (a listener whose backlog
-- is full: Linux drops the SYNs, so the connect times out), a half-close,
-- EOF in the middle of recvall, signals arriving during a blocking recv
-- (EINTR is retried and the call still returns the data) and writes to a
-- closed peer (EPIPE, never a SIGPIPE death).
local S = require "bsdsocket"
local net = require "helpers.net"

local spawn_env = require("helpers.child").spawn
local cshim = require "helpers.cshim"

-- waits until the child printed `what`; true if it did within s seconds
local function await(h, what, s)
  local limit = S.monotime() + (s or 10)
  while not h.output():find(what, 1, true) do
    if S.monotime() > limit or h.status() then return false end
    net.sleep(0.02)
  end
  return true
end

-- waits until the child sleeps in the kernel (state S) after printing
local function blocked(h)
  local limit = S.monotime() + 5
  repeat net.sleep(0.05) until h.state() == "S" or S.monotime() > limit
  net.sleep(0.1)
  return h.state() == "S"
end

-- A shared object that installs a SIGUSR1 handler WITHOUT SA_RESTART in the
-- child, so a blocking recv really fails with EINTR (plain Lua cannot
-- install handlers). Built once with the C compiler; nil if there is none.
local sigshim = cshim.new("sigshim", [[
#include <signal.h>
#include <string.h>
#include <unistd.h>
static void onusr1(int sig) { (void)sig; write(2, "[SIGUSR1]", 9); }
__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onusr1;          /* no SA_RESTART: blocking calls get EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
}
]])

describe("faults", function()
  teardown(function() sigshim:remove() end)

  it("a peer that resets mid-stream (SO_LINGER 0, close) gives ECONNRESET", function()
    local cli, srv = net.tcp_pair()
    finally(function() net.closeall(cli, srv) end)
    assert(cli:sendall(("a"):rep(1000)))
    assert.equal(1000, #assert(srv:recvall(1000)))
    assert(srv:sendall("unread by the client"))   -- unread data: close sends RST anyway
    assert(cli:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 }))
    local lg = cli:getsockopt(S.SOL_SOCKET, S.SO_LINGER)
    assert.is_true(lg.onoff)
    assert.equal(0, lg.linger)
    cli:close()
    srv:settimeout(2)
    local data, msg, code = srv:recv(100)
    assert.is_nil(data)
    assert.equal("ECONNRESET", code)
    assert.matches("^recv", msg)
    -- and the next write fails cleanly too (EPIPE once the reset is known)
    local n, _, code2 = srv:send("more")
    assert.is_nil(n)
    assert.is_truthy(code2 == "EPIPE" or code2 == "ECONNRESET", code2)
  end)

  it("a reset while the other side is blocked in recvall ends it with ECONNRESET and the partial data", function()
    local cli, srv = net.tcp_pair()
    finally(function() net.closeall(cli, srv) end)
    assert(cli:sendall("12345"))
    assert(cli:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 }))
    cli:close()
    srv:settimeout(2)
    local data, msg, code, partial = srv:recvall(10)
    assert.is_nil(data)
    assert.is_string(msg)
    -- the bytes read before the reset come back as the partial data
    -- (they used to be dropped: recvall returned only nil, msg, code)
    assert.equal("ECONNRESET", code)
    assert.equal("12345", partial)
  end)

  it("a refused connect gives ECONNREFUSED naming the peer", function()
    local srv, port = net.server()
    srv:close()   -- nobody listens there any more
    local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local ok, msg, code = c:connect("127.0.0.1", port)
    assert.is_nil(ok)
    assert.equal("ECONNREFUSED", code)
    assert.equal("connect 127.0.0.1:" .. port .. ": Connection refused", msg)
    -- also with a timeout and non-blocking
    local c2 <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    c2:settimeout(1)
    ok, msg, code = c2:connect("127.0.0.1", port)
    assert.is_nil(ok)
    assert.equal("ECONNREFUSED", code)
    assert.matches("^connect 127.0.0.1:" .. port, msg)
  end)

  it("a connect into a black hole (full backlog, SYNs dropped) times out after settimeout(0.5)", function()
    local srv <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(srv:bind("127.0.0.1", 0))
    assert(srv:listen(0))
    local port = srv:getsockname().port
    local socks = {}
    finally(function() net.closeall(table.unpack(socks)) end)
    -- fill the accept queue (backlog 0 holds one) until a connect hangs
    local ok, msg, code, dt
    for _ = 1, 10 do
      local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      socks[#socks + 1] = c
      c:settimeout(0.5)
      dt, ok, msg, code = net.timed(c.connect, c, "127.0.0.1", port)
      if not ok then break end
    end
    assert.is_nil(ok)
    assert.equal("ETIMEDOUT", code)
    assert.equal("connect 127.0.0.1:" .. port .. ": timed out", msg)
    assert.is_true(dt >= 0.45 and dt < 2, "took " .. dt)
    -- non-blocking: EINPROGRESS, and the socket never becomes writable
    local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    socks[#socks + 1] = c
    c:settimeout(0)
    ok, msg, code = c:connect("127.0.0.1", port)
    assert.is_nil(ok)
    assert.equal("EINPROGRESS", code, msg)
    if S.poller then
      local p <close> = S.poller()
      assert(p:add(c, "w"))
      local n = 0
      for _ in p:wait(0.3) do n = n + 1 end
      assert.equal(0, n)
    end
  end)

  it("half-close: shutdown('w') gives the peer EOF, and the peer can still send back", function()
    local cli, srv = net.tcp_pair()
    finally(function() net.closeall(cli, srv) end)
    assert(cli:sendall("request"))
    assert(cli:shutdown("w"))
    srv:settimeout(2)
    assert.equal("request", srv:recvall(7))
    assert.equal("", srv:recv(10))           -- EOF
    assert.equal("", srv:recv(10))           -- and stays EOF
    assert(srv:sendall(("r"):rep(100000)))   -- the other direction still works
    cli:settimeout(2)
    assert.equal(("r"):rep(100000), cli:recvall(100000))
    assert(srv:shutdown(S.SHUT_WR))
    assert.equal("", cli:recv(10))
    -- writing on the shut-down side fails cleanly
    local n, _, code = cli:send("late")
    assert.is_nil(n)
    assert.equal("EPIPE", code)
  end)

  it("EOF in the middle of recvall: nil, msg, 'EOF', partial; blocking and with a timeout", function()
    for _, timeout in ipairs({ false, 2 }) do
      local cli, srv = net.tcp_pair()
      finally(function() net.closeall(cli, srv) end)
      if timeout then srv:settimeout(timeout) end
      assert(cli:sendall("half"))
      assert(cli:shutdown("w"))
      local data, msg, code, partial = srv:recvall(8)
      assert.is_nil(data)
      assert.equal("EOF", code)
      assert.equal("half", partial)
      assert.matches("connection closed after 4 of 8 bytes", msg, 1, true)
      net.closeall(cli, srv)
    end
  end)

  it("SIGSTOP/SIGCONT, SIGWINCH and SIGCHLD during a blocking recv: the data still arrives", function()
    local lsn <close>, port = net.server()
    for _, variant in ipairs({ "plain", "SO_RCVTIMEO", "settimeout", "recvall" }) do
      local h = spawn_env("", ([[
        local S = require "bsdsocket"
        local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        assert(c:connect("127.0.0.1", %d))
        local variant = %q
        -- SO_RCVTIMEO makes Linux fail a recv stopped and continued with EINTR
        if variant == "SO_RCVTIMEO" then assert(c:setsockopt(S.SOL_SOCKET, S.SO_RCVTIMEO, 30)) end
        if variant == "settimeout" then c:settimeout(30) end
        print("ready") io.stdout:flush()
        local data, msg = (variant == "recvall" and c.recvall or c.recv)(c, 7)
        print("got " .. tostring(data or msg))
      ]]):format(port, variant))
      finally(h.cleanup)
      local conn <close> = assert(lsn:accept())
      assert.is_true(await(h, "ready"), h.output())
      assert.is_true(blocked(h), "child not blocked in recv")
      for _ = 1, 3 do
        h:signal("STOP")
        net.sleep(0.05)
        h:signal("CONT")
        net.sleep(0.05)
        h:signal("WINCH")
        h:signal("CHLD")
      end
      assert.is_nil(h.status(), "child exited early: " .. h.output())
      assert(conn:sendall("payload"))
      assert.equal(0, h:wait(10), h.output())
      assert.matches("got payload", h.output(), 1, true)
      h.cleanup()
    end
  end)

  it("SIGUSR1 with a handler (no SA_RESTART) during a blocking recv, accept and recvall: EINTR is retried", function()
    local so = sigshim:path()
    if not so then
      print("faults: no C compiler, the SIGUSR1 EINTR case is skipped")
      return
    end
    local preload = os.getenv("LD_PRELOAD")
    local env = "LD_PRELOAD=" .. net.shquote((preload and preload .. ":" or "") .. so)
    local lsn <close>, port = net.server()
    local h = spawn_env(env, ([[
      local S = require "bsdsocket"
      local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(c:connect("127.0.0.1", %d))
      print("ready1") io.stdout:flush()
      print("got " .. assert(c:recv(7))) io.stdout:flush()
      print("ready2") io.stdout:flush()
      print("all " .. assert(c:recvall(6))) io.stdout:flush()
      local l = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(l:bind("127.0.0.1", 0))
      assert(l:listen())
      print("port " .. l:getsockname().port .. " ready3") io.stdout:flush()
      local a = assert(l:accept())
      print("accepted " .. assert(a:recvall(2)))
    ]]):format(port))
    finally(h.cleanup)
    local conn <close> = assert(lsn:accept())
    local function interrupt(step)
      assert.is_true(await(h, step), h.output())
      assert.is_true(blocked(h), "child not blocked at " .. step)
      for _ = 1, 5 do
        h:signal("USR1")
        net.sleep(0.03)
      end
    end
    interrupt("ready1")
    assert(conn:sendall("payload"))
    interrupt("ready2")
    assert(conn:sendall("abc"))
    net.sleep(0.05)
    h:signal("USR1")
    net.sleep(0.05)
    assert(conn:sendall("def"))
    interrupt("ready3")
    local cport = assert(tonumber(h.output():match("port (%d+)")))
    local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(c:connect("127.0.0.1", cport))
    assert(c:sendall("ok"))
    assert.equal(0, h:wait(10), h.output())
    local out = h.output()
    assert.matches("[SIGUSR1]", out, 1, true)   -- the handler ran
    assert.matches("got payload", out, 1, true)
    assert.matches("all abcdef", out, 1, true)
    assert.matches("accepted ok", out, 1, true)
  end)

  it("writing to a closed peer returns EPIPE and never kills the process with SIGPIPE", function()
    local out, ok, how, rc = net.run_lua([[
      local S = require "bsdsocket"
      -- SIGPIPE must be at its default (deadly) disposition for this to prove anything
      local f = io.open("/proc/self/status")   -- (spec/platform_spec.lua
      if f then                                 -- checks it without /proc)
        local ign = tonumber(f:read("a"):match("SigIgn:%s*(%x+)"), 16)
        f:close()
        assert(ign & (1 << 12) == 0, "SIGPIPE is ignored in the child")
      end
      local codes = {}
      -- TCP: the peer closes; the first send may still succeed, later ones fail
      local l = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(l:bind("127.0.0.1", 0)) assert(l:listen())
      local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(c:connect(l:getsockname()))
      local a = assert(l:accept())
      a:close()
      local n, msg, code
      for _ = 1, 100 do
        n, msg, code = c:send(("x"):rep(1000))
        if not n then break end
      end
      assert(n == nil, "send kept succeeding")
      codes[#codes + 1] = code
      n, msg, code = c:sendall(("y"):rep(100000))
      codes[#codes + 1] = code
      if c.sendmsg then
        n, msg, code = c:sendmsg({ "a", "b" })
        codes[#codes + 1] = code
      end
      -- Unix stream pair: EPIPE at once
      local u1, u2 = S.socketpair()
      u2:close()
      n, msg, code = u1:send("z")
      codes[#codes + 1] = code
      n, msg, code = u1:sendall(("z"):rep(300000))
      codes[#codes + 1] = code
      print(table.concat(codes, " "))
      print("alive")
    ]], 20)
    assert.is_true(ok, ("child %s %s: %s"):format(tostring(how), tostring(rc), out))
    assert.equal(0, rc)
    assert.matches("alive", out, 1, true)
    for code in out:match("^([^\n]*)"):gmatch("%S+") do
      assert.is_truthy(code == "EPIPE" or code == "ECONNRESET", code)
    end
  end)
end)
