-- bsdsocket.tls: contexts, wrap, the stream methods, inspection and the
-- failure classes, with bsdsocket.tls on both ends (tls_peers_spec talks to
-- openssl, python and curl; tls_faults_spec has bad peers).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local net = require "helpers.net"
local certs = require "helpers.certs"

local ok_tls, tls = pcall(require, "bsdsocket.tls")
if not ok_tls then
  describe("bsdsocket.tls", function()
    pending("not built (no OpenSSL headers): " .. tostring(tls))
  end)
  return
end

local c

-- a listening socket on loopback and its port
local function listener(host)
  local srv = assert(S.tcp_listen(host or "127.0.0.1", 0))
  return srv, srv:getsockname().port
end

-- runs server(tls stream) and client(port) as loop tasks; returns what
-- each returned (packed)
local function pair(sctx, server, client, host)
  local srv, port = listener(host)
  local sres, cres
  loop.spawn(function()
    local conn = assert(srv:accept())
    local t = tls.wrap(conn, sctx)
    sres = table.pack(server(t))
    t:close()
  end)
  loop.spawn(function()
    cres = table.pack(client(port))
  end)
  assert(loop.run(10))
  srv:close()
  return sres, cres
end

-- a client that connects, wraps with wrapopts, runs f(t)
local function connect_with(ctx, wrapopts, f)
  return function(port)
    local s = assert(S.tcp_connect("127.0.0.1", port))
    local t = tls.wrap(s, ctx, wrapopts)
    local r = table.pack(f(t, port))
    t:close()
    return table.unpack(r, 1, r.n)
  end
end

local function handshake_server(t) return t:handshake() end

describe("bsdsocket.tls", function()
  setup(function() c = certs.make() end)
  teardown(function() if c then c:remove() end end)

  describe("contexts", function()
    it("client contexts verify by default; tostring says what they are", function()
      local ctx = assert(tls.context())
      assert.matches("bsdsocket.tls.context %(client, verifying peers%)", tostring(ctx))
      assert.matches("server, verify off", tostring(c:server_ctx()))
      assert.matches("verify off", tostring(assert(tls.context { verify = false })))
    end)

    it("bad options raise naming the option", function()
      assert.has_error(function() tls.context { nope = 1 } end, "tls.context: unknown option 'nope'")
      assert.has_error(function() tls.context { mode = "both" } end)
      assert.error_matches(function() tls.context { min_version = "SSLv3" } end, "min_version")
      assert.error_matches(function() tls.context { alpn = "h2" } end, "'alpn'")
      assert.error_matches(function() tls.context { alpn = { "" } } end, "'alpn'")
      assert.error_matches(function() tls.context { verify = "yes" } end, "'verify'")
      assert.error_matches(function() tls.context { cafile = 3 } end, "'cafile'")
      assert.error_matches(function() tls.context { mode = "server" } end, "certfile")
      assert.error_matches(function() tls.context(5) end, "table expected")
    end)

    it("unreadable files and bad keys return nil, msg, code", function()
      local ctx, msg, code = tls.context { cafile = c.dir .. "/missing.pem" }
      assert.is_nil(ctx)
      assert.equal("ENOENT", code)
      assert.matches("cafile .*missing.pem", msg)
      ctx, msg, code = tls.context { mode = "server", certfile = c.server_cert, keyfile = c.other_key }
      assert.is_nil(ctx)
      assert.equal("EINVAL", code)
      assert.matches("key", msg)
      ctx, msg, code = tls.context { mode = "server", certfile = c.ca .. ".nope" }
      assert.is_nil(ctx)
      assert.equal("ENOENT", code)
      assert.matches("certfile", msg)
      ctx, msg, code = tls.context { mode = "server", cert = "garbage", key = "garbage" }
      assert.is_nil(ctx)
      assert.equal("EINVAL", code)
      assert.matches("^tls.context cert", msg)
    end)

    it("takes PEM strings and an encrypted key with its password, never echoing it", function()
      local pw = "s3cret-pass"
      local enc = c.dir .. "/enc.key"
      assert(os.execute("openssl pkey -in " .. net.shquote(c.server_key) .. " -aes256 -passout pass:"
        .. pw .. " -out " .. net.shquote(enc)))
      assert(tls.context { mode = "server", cert = c:read(c.server_cert), key = c:read(c.server_key) })
      assert(tls.context { mode = "server", certfile = c.server_cert, keyfile = enc, password = pw })
      assert(tls.context { mode = "server", cert = c:read(c.server_cert), key = c:read(enc), password = pw })
      local ctx, msg, code = tls.context { mode = "server", certfile = c.server_cert, keyfile = enc,
        password = "wrong-" .. pw }
      assert.is_nil(ctx)
      assert.equal("EINVAL", code)
      assert.not_matches(pw, msg, 1, true)
      -- no password: a failure, never a prompt on the terminal
      ctx, msg, code = tls.context { mode = "server", certfile = c.server_cert, keyfile = enc }
      assert.is_nil(ctx)
      assert.equal("EINVAL", code, msg)
    end)
  end)

  describe("wrap", function()
    it("takes the descriptor: the socket object reads as closed afterwards", function()
      local a, b = S.socketpair()
      local t = tls.wrap(a, assert(tls.context { verify = false }))
      assert.equal("bsdsocket.socket (closed)", tostring(a))
      assert.error_matches(function() a:send("x") end, "closed socket")
      assert.matches("^bsdsocket.tls fd=%d+ client %(handshake pending%) on bsdsocket.socket", tostring(t))
      assert.error_matches(function() tls.wrap(a, assert(tls.context())) end, "closed socket")
      t:close()
      assert.equal("bsdsocket.tls (closed)", tostring(t))
      assert.error_matches(function() t:send("x") end, "closed TLS stream")
      assert(t:close())  -- idempotent
      b:close()
    end)

    it("refuses UDP, listening and closed sockets, and other objects", function()
      local ctx = assert(tls.context { verify = false })
      local u = assert(S.udp())
      assert.error_matches(function() tls.wrap(u, ctx) end, "stream socket expected")
      u:close()
      local srv = listener()
      assert.error_matches(function() tls.wrap(srv, ctx) end, "listening")
      srv:close()
      assert.error_matches(function() tls.wrap(srv, ctx) end, "closed socket")
      assert.error_matches(function() tls.wrap({}, ctx) end, "bsdsocket.socket expected")
      local a, b = S.socketpair()
      assert.error_matches(function() tls.wrap(a, {}) end, "bsdsocket.tls.context expected")
      local t = tls.wrap(a, ctx)
      assert.error_matches(function() tls.wrap(t, ctx) end, "bsdsocket.socket expected")
      t:close()
      b:close()
    end)

    it("bad arguments to the methods raise; results never crash", function()
      local a, b = S.socketpair()
      local t = tls.wrap(a, assert(tls.context { verify = false }))
      t:settimeout(0)  -- a case that got as far as I/O would not wait
      for _, call in ipairs {
        function() t:recv("x") end, function() t:recv(-1) end, function() t:recv() end,
        function() t:recvall(-1) end, function() t:recvall({}) end, function() t:send({}) end,
        function() t:send() end, function() t:send("x", "a") end, function() t:sendall({}) end,
        function() t:settimeout(-1) end, function() t:settimeout(0 / 0) end,
        function() t:setblocking("yes") end, function() t.recv(a, 1) end,
        function() t.recv(nil, 1) end, function() tls.wrap(b, assert(tls.context()), 5) end,
        function() tls.wrap(b, assert(tls.context()), { servername = 5 }) end,
      } do
        assert.has_error(call)
      end
      t:close()
      b:close()
    end)

    it("needs a name to verify over a Unix socket", function()
      local a, b = S.socketpair()
      assert.error_matches(function() tls.wrap(a, assert(tls.context())) end, "no name to verify")
      a:close()
      b:close()
    end)
  end)

  describe("a client and a server", function()
    it("talk, inspect each other, and end with close_notify", function()
      local sctx = c:server_ctx { alpn = { "h2", "http/1.1" } }
      local cctx = c:client_ctx { alpn = { "http/1.1" } }
      local sres, cres = pair(sctx, function(t)
        local got = assert(t:recv(100))
        assert(t:sendall(got:upper()))
        assert(t:shutdown())
        return got, t:servername(), t:alpn(), t:version()
      end, connect_with(cctx, { servername = "localhost" }, function(t, port)
        assert(t:handshake())
        assert.equal(5, t:send("hello"))
        local got = t:recvall(5)
        local eof = t:recv(10)
        local pc = t:peercert()
        assert.equal(port, t:getpeername().port)
        assert.equal("127.0.0.1", t:getsockname().host)
        return got, eof, t:version(), t:cipher(), t:alpn(), pc, t:session_reused(), tostring(t)
      end))
      assert.same({ "hello", "localhost", "http/1.1", "TLSv1.3" }, { sres[1], sres[2], sres[3], sres[4] })
      assert.equal("HELLO", cres[1])
      assert.equal("", cres[2])
      assert.equal("TLSv1.3", cres[3])
      assert.matches("^TLS_", cres[4])
      assert.equal("http/1.1", cres[5])
      local pc = cres[6]
      assert.equal("CN=localhost", pc.subject)
      assert.equal("CN=bsdsocket test CA", pc.issuer)
      assert.same({ "localhost" }, pc.san.dns)
      assert.same({ "127.0.0.1", "::1" }, pc.san.ip)
      assert.is_true(pc.not_before <= os.time() and os.time() < pc.not_after)
      assert.matches("^%x%x:", pc.sha256)
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE", pc.pem)
      assert.is_false(cres[7])
      assert.matches("bsdsocket.tls fd=%d+ client TLSv1.3 localhost on bsdsocket.socket", cres[8])
    end)

    it("verifies an IP literal against the IP SAN, and sends no SNI for it", function()
      local sres, cres = pair(c:server_ctx(), function(t)
        assert(t:handshake())
        return t:servername()
      end, connect_with(c:client_ctx(), { servername = "127.0.0.1" }, function(t)
        return t:handshake()
      end))
      assert.is_nil(sres[1])
      assert.is_true(cres[1])
    end)

    it("verifies the peer's address when no name is given", function()
      local _, cres = pair(c:server_ctx(), handshake_server, connect_with(c:client_ctx(), nil,
        function(t) return t:handshake() end))
      assert.is_true(cres[1])
    end)

    it("works over IPv6", function()
      local _, cres = pair(c:server_ctx(), function(t) return t:sendall("six") end,
        function(port)
          local s = assert(S.tcp_connect("::1", port))
          local t = tls.wrap(s, c:client_ctx(), { servername = "::1" })
          local r = t:recvall(3)
          t:close()
          return r
        end, "::1")
      assert.equal("six", cres[1])
    end)

    it("the first send or recv runs the handshake; S.reader works on a stream", function()
      local _, cres = pair(c:server_ctx(), function(t)
        assert(t:sendall("line one\nline two\n"))
        assert(t:recv(1) == "")
      end, connect_with(c:client_ctx(), { servername = "localhost" }, function(t)
        local r = S.reader(t)
        return r:line(), r:line()
      end))
      assert.same({ "line one", "line two" }, { cres[1], cres[2] })
    end)

    it("send takes i, j like string.sub; sends and reads huge and tiny", function()
      local big = string.rep("0123456789abcdef", 2 ^ 20 // 16 * 3)  -- 3 MiB
      local sres, cres = pair(c:server_ctx(), function(t)
        local one = t:recvall(3)
        local all = assert(t:recvall(#big))
        local parts = {}
        for i = 1, 100 do parts[i] = assert(t:recv(1)) end
        assert(t:sendall(all))
        return one, #all, all == big, table.concat(parts)
      end, connect_with(c:client_ctx(), { servername = "localhost" }, function(t)
        assert.equal(3, t:send("xxabcxx", 3, 5))
        assert(t:sendall(big))
        for i = 1, 100 do assert.equal(1, t:send(string.char(64 + i % 26))) end
        local n, chunks = 0, 0
        while n < #big do
          local d = assert(t:recv(1 << 30))
          assert(#d <= 16384)
          n, chunks = n + #d, chunks + 1
        end
        assert.equal("", t:recv(0))
        return n
      end))
      assert.equal("abc", sres[1])
      assert.equal(#big, sres[2])
      assert.is_true(sres[3])
      assert.equal(100, #sres[4])
      assert.equal(#big, cres[1])
    end)

    it("recvall at close_notify returns nil, msg, EOF, partial", function()
      local _, cres = pair(c:server_ctx(), function(t)
        assert(t:sendall("abc"))
        return t:shutdown()
      end, connect_with(c:client_ctx(), { servername = "localhost" }, function(t)
        return t:recvall(10)
      end))
      assert.is_nil(cres[1])
      assert.matches("tls recvall localhost:%d+: connection closed after 3 of 10 bytes", cres[2])
      assert.equal("EOF", cres[3])
      assert.equal("abc", cres[4])
    end)

    it("resumes a session", function()
      local sctx, cctx = c:server_ctx(), c:client_ctx()
      local srv, port = listener()
      local session, reused
      loop.spawn(function()
        for _ = 1, 2 do
          local t = tls.wrap(assert(srv:accept()), sctx)
          assert(t:sendall("x"))
          t:recv(1)
          t:close()
        end
      end)
      loop.spawn(function()
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx, { servername = "localhost" })
        assert.equal("x", t:recv(1))  -- the TLS 1.3 ticket came with it
        session = t:session()
        t:close()
        t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx,
          { servername = "localhost", session = session })
        assert.equal("x", t:recv(1))
        reused = t:session_reused()
        t:close()
      end)
      assert(loop.run(10))
      srv:close()
      assert.is_string(session)
      assert.is_true(reused)
    end)

    it("a server picks a context by SNI (table or function)", function()
      local other = c:server_ctx { certfile = c.other_cert, keyfile = c.other_key }
      for _, sni in ipairs { { ["other.example"] = other }, function(name)
        if name == "other.example" then return other end
      end } do
        local sctx = c:server_ctx { sni = sni }
        local _, cres = pair(sctx, handshake_server, connect_with(c:client_ctx(),
          { servername = "other.example" }, function(t)
            assert(t:handshake())
            return t:peercert().subject
          end))
        assert.equal("CN=other.example", cres[1])
      end
    end)

    it("an SNI function that raises fails that handshake only", function()
      local sctx = c:server_ctx { sni = function() error("boom") end }
      local sres, cres = pair(sctx, handshake_server, connect_with(c:client_ctx(),
        { servername = "localhost" }, function(t) return t:handshake() end))
      assert.is_nil(sres[1])
      assert.equal("TLS_HANDSHAKE", sres[3])
      assert.is_nil(cres[1])
      assert.is_string(cres[3])
      -- the same context without SNI from the client still works
      local _, again = pair(sctx, handshake_server, connect_with(c:client_ctx(),
        { hostname = "127.0.0.1" }, function(t) return t:handshake() end))
      assert.is_true(again[1])
    end)

    it("client certificates: required, given, and seen by the server", function()
      local sctx = c:server_ctx { cafile = c.ca, require_cert = true }
      local sres, cres = pair(sctx, function(t)
        assert(t:handshake())
        return t:peercert().subject, t:recv(10)
      end, connect_with(c:client_ctx { certfile = c.client_cert, keyfile = c.client_key },
        { servername = "localhost" }, function(t) return t:sendall("hi") end))
      assert.equal("CN=bsdsocket client", sres[1])
      assert.equal("hi", sres[2])
      assert.is_true(cres[1])
    end)
  end)

  describe("failure classes", function()
    local function client_fails(sctx, cctx, wrapopts)
      local sres, cres = pair(sctx, function(t) return t:handshake() end,
        connect_with(cctx, wrapopts, function(t)
          local ok, msg, code = t:handshake()
          if ok then ok, msg, code = t:recv(10) end  -- TLS 1.3: the server's alert comes later
          return ok, msg, code
        end))
      return cres, sres
    end

    it("untrusted chain: TLS_VERIFY", function()
      local r = client_fails(c:server_ctx(), assert(tls.context()), { servername = "localhost" })
      assert.is_nil(r[1])
      assert.matches("^tls handshake localhost:%d+: certificate verify failed "
        .. "%(unable to get local issuer certificate%)$", r[2])
      assert.equal("TLS_VERIFY", r[3])
    end)

    it("self-signed: TLS_VERIFY", function()
      local r = client_fails(c:server_ctx { certfile = c.self_cert, keyfile = c.self_key }, c:client_ctx(),
        { servername = "localhost" })
      assert.equal("TLS_VERIFY", r[3])
      assert.matches("self%-signed", r[2])
    end)

    it("expired: TLS_VERIFY", function()
      local r, s = client_fails(c:server_ctx { certfile = c.expired_cert, keyfile = c.expired_key },
        c:client_ctx(), { servername = "localhost" })
      assert.equal("TLS_VERIFY", r[3])
      assert.matches("certificate has expired", r[2])
      assert.equal("TLS_VERIFY", s[3])  -- the server hears the client's alert
    end)

    it("wrong name: TLS_VERIFY (hostname mismatch)", function()
      local r = client_fails(c:server_ctx { certfile = c.other_cert, keyfile = c.other_key },
        c:client_ctx(), { servername = "localhost" })
      assert.equal("TLS_VERIFY", r[3])
      assert.matches("^tls handshake localhost:%d+: certificate verify failed %(hostname mismatch%)$", r[2])
    end)

    it("IP literal without an IP SAN: TLS_VERIFY", function()
      local r = client_fails(c:server_ctx { certfile = c.noip_cert, keyfile = c.noip_key },
        c:client_ctx(), { servername = "127.0.0.1" })
      assert.equal("TLS_VERIFY", r[3])
      assert.matches("IP address mismatch", r[2])
    end)

    it("verify = false accepts every one of them", function()
      for _, pair_ in ipairs { { c.self_cert, c.self_key }, { c.expired_cert, c.expired_key },
                                { c.other_cert, c.other_key }, { c.noip_cert, c.noip_key } } do
        local sctx = c:server_ctx { certfile = pair_[1], keyfile = pair_[2] }
        local r = client_fails(sctx, assert(tls.context { verify = false }), { servername = "localhost" })
        assert.is_nil(r[3], r[2])
        assert.equal("", r[1])  -- the server's close_notify
      end
    end)

    it("protocol below min_version: TLS_PROTOCOL", function()
      local r, s = client_fails(c:server_ctx { max_version = "TLSv1.2" },
        c:client_ctx { min_version = "TLSv1.3" }, { servername = "localhost" })
      assert.equal("TLS_PROTOCOL", r[3])
      assert.equal("TLS_PROTOCOL", s[3])
    end)

    it("no shared ALPN: TLS_HANDSHAKE", function()
      local r, s = client_fails(c:server_ctx { alpn = { "h2" } }, c:client_ctx { alpn = { "http/1.1" } },
        { servername = "localhost" })
      assert.equal("TLS_HANDSHAKE", r[3])
      assert.matches("no application protocol", r[2])
      assert.equal("TLS_HANDSHAKE", s[3])
    end)

    it("a server requiring a client certificate that was not given: TLS_HANDSHAKE", function()
      for _, v in ipairs { "TLSv1.2", "TLSv1.3" } do
        local r, s = client_fails(c:server_ctx { cafile = c.ca, require_cert = true, max_version = v },
          c:client_ctx(), { servername = "localhost" })
        assert.equal("TLS_HANDSHAKE", r[3])
        assert.equal("TLS_HANDSHAKE", s[3])
      end
    end)

    it("clears OpenSSL's error queue: a failure does not leak into the next call", function()
      client_fails(c:server_ctx { certfile = c.other_cert, keyfile = c.other_key }, c:client_ctx(),
        { servername = "localhost" })
      local _, cres = pair(c:server_ctx(), handshake_server, connect_with(c:client_ctx(),
        { servername = "localhost" }, function(t) return t:handshake() end))
      assert.is_true(cres[1])
    end)
  end)

  describe("timeouts, non-blocking mode and the loop", function()
    it("a handshake against a silent peer times out (ETIMEDOUT) within its timeout", function()
      local srv, port = listener()
      local s = assert(S.tcp_connect("127.0.0.1", port))
      local t = tls.wrap(s, c:client_ctx(), { servername = "localhost" })
      assert(t:settimeout(0.2))
      assert.equal(0.2, t:gettimeout())
      assert.equal(0.2, t:timeout())
      local dt, ok, msg, code = net.timed(t.handshake, t)
      assert.is_nil(ok)
      assert.equal("ETIMEDOUT", code)
      assert.matches("^tls handshake localhost:%d+: ", msg)
      assert.is_true(dt >= 0.19 and dt < 2, "took " .. dt)
      t:close()
      srv:close()
    end)

    it("non-blocking: EAGAIN with events() telling what to wait for; pending()", function()
      local srv, port = listener()
      local sctx = c:server_ctx()
      local s = assert(S.tcp_connect("127.0.0.1", port))
      local t = tls.wrap(s, c:client_ctx(), { servername = "localhost" })
      assert(t:setblocking(false))
      assert.is_nil(t:timeout())
      local ok, _, code = t:handshake()
      assert.is_nil(ok)
      assert.equal("EAGAIN", code)
      assert.equal("r", t:events())
      assert.equal(t:fileno(), t:pollfd())
      -- the server side, blocking, in a child's stead: accept and handshake here
      local conn = tls.wrap(assert(srv:accept()), sctx)
      conn:settimeout(0.05)
      conn:handshake()  -- reads the hello, answers, then waits for the finish
      local p = S.poller()
      local done = false
      for _ = 1, 200 do
        ok = t:handshake()
        if ok then done = true break end
        p:add(t, t:events() == "w" and "wo" or "ro")
        p:wait(0.05)
        p:remove(t)
        conn:handshake()
      end
      assert.is_true(done)
      assert(conn:sendall("ab"))
      local got
      for _ = 1, 100 do
        got = t:recv(1)
        if got then break end
        S.poller():wait(0.01)
      end
      assert.equal("a", got)
      assert.equal(1, t:pending())
      assert.equal("b", t:recv(10))
      conn:close()
      t:close()
      srv:close()
    end)

    it("many clients at once on one loop, and one whose peer stalls does not hold the others", function()
      local sctx, cctx = c:server_ctx(), c:client_ctx()
      local srv, port = listener()
      local served, done, stalled = 0, 0, nil
      loop.spawn(function()
        while served < 21 do
          local conn = assert(srv:accept())
          served = served + 1
          loop.spawn(function()
            local t = tls.wrap(conn, sctx)
            local line = t:recv(100)
            if line then t:sendall(line) end
            t:close()
          end)
        end
      end)
      -- a stalled server: a plain TCP accept that never answers the hello
      local quiet, qport = listener()
      loop.spawn(function()
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", qport)), cctx, { servername = "localhost" })
        t:settimeout(1)
        local _, _, code = t:handshake()
        stalled = code
        t:close()
      end)
      for i = 1, 20 do
        loop.spawn(function()
          local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx, { servername = "localhost" })
          t:settimeout(5)
          assert(t:sendall("n" .. i))
          assert.equal("n" .. i, t:recv(100))
          done = done + 1
          t:close()
        end)
      end
      loop.spawn(function()  -- the 21st accept
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx, { servername = "localhost" })
        t:close()
      end)
      local dt = net.timed(loop.run, 10)
      assert.equal(20, done)
      assert.equal("ETIMEDOUT", stalled)
      assert.is_true(dt < 5)
      srv:close()
      quiet:close()
    end)

    it("STARTTLS inside loop tasks: sockets the loop waited on, then wrapped", function()
      local srv, port = listener()
      local sctx, cctx = c:server_ctx(), c:client_ctx()
      local got, plain
      loop.spawn(function()
        local conn = assert(srv:accept())
        plain = conn:recv(100)              -- waits: the loop registers conn
        assert(conn:sendall("GO\n"))
        local t = tls.wrap(conn, sctx)
        local line = assert(t:recv(100))    -- waits again, now on the stream
        assert(t:sendall(line:upper()))
        t:recv(1)
        t:close()
      end)
      loop.spawn(function()
        local s = assert(S.tcp_connect("127.0.0.1", port))
        loop.sleep(0.05)
        assert(s:sendall("STARTTLS\n"))
        assert.equal("GO\n", s:recv(100))  -- waits on the plain socket
        local t = tls.wrap(s, cctx, { servername = "localhost" })
        t:settimeout(5)
        assert(t:sendall("secret"))
        got = t:recv(100)
        t:close()
      end)
      assert(loop.run(10))
      srv:close()
      assert.equal("STARTTLS\n", plain)
      assert.equal("SECRET", got)
    end)

    it("closing a stream wakes a task waiting on it (EBADF)", function()
      local srv, port = listener()
      local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(), { servername = "localhost" })
      local code
      loop.spawn(function()
        local _, _, cd = t:handshake()
        code = cd
      end)
      loop.spawn(function()
        loop.sleep(0.1)
        t:close()
      end)
      assert(loop.run(5))
      assert.equal("EBADF", code)
      srv:close()
    end)

    it("loop.wait and the poller take a stream", function()
      local srv, port = listener()
      local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(), { servername = "localhost" })
      local res
      loop.spawn(function() res = table.pack(loop.wait(t, "w", 1)) end)
      assert(loop.run(5))
      assert.is_true(res[1])
      t:close()
      srv:close()
    end)
  end)

  describe("resources", function()
    it("unclosed streams are closed by the collector", function()
      local before = net.fds()
      do
        for _ = 1, 20 do
          local a, b = S.socketpair()
          tls.wrap(a, assert(tls.context { verify = false }))
          b:close()
        end
      end
      assert.same({}, net.newfds(before))
    end)

    it("S.tls_connect: connect, wrap and handshake, verified, SNI = host", function()
      local srv, port = listener()
      local name, got
      loop.spawn(function()
        local t = tls.wrap(assert(srv:accept()), c:server_ctx())
        t:handshake()
        name = t:servername()
        got = t:recv(10)
        t:sendall("ok")
        t:close()
        t = tls.wrap(assert(srv:accept()), c:server_ctx())  -- the untrusted attempt
        t:handshake()
        t:close()
      end)
      loop.spawn(function()
        local t = assert(S.tls_connect("localhost", port, { cafile = c.ca, timeout = 5 }))
        assert(t:sendall("via"))
        assert.equal("ok", t:recv(10))
        t:close()
        local ok, msg, code = S.tls_connect("localhost", port, { timeout = 5 })
        assert.is_nil(ok)
        assert.equal("TLS_VERIFY", code, msg)
      end)
      assert(loop.run(10))
      assert.equal("localhost", name)
      assert.equal("via", got)
      srv:close()
      assert.error_matches(function() S.tls_connect(1, 2) end, "string expected")
    end)
  end)
end)
