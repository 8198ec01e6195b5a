-- bsdsocket.tls under attack (issue 18): an SNI switch obeys everything the
-- chosen context says (checked with a real openssl s_client), names that
-- would turn verification off raise, Lua code in the SNI hook cannot crash
-- the process or leak, timeouts cover the whole call, and the results keep
-- their documented shape. Every s_client runs under `timeout` and is
-- killed in finally().
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local certs = require "helpers.certs"
local bg = require "helpers.bg"
local net = require "helpers.net"

local ok_tls, tls = pcall(require, "bsdsocket.tls")
if not ok_tls then
  describe("bsdsocket.tls security", function()
    pending("not built (no OpenSSL headers): " .. tostring(tls))
  end)
  return
end

local c
local q = net.shquote

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local pages = tonumber(f:read("a"):match("^%d+%s+(%d+)"))
  f:close()
  return pages * 4
end

-- One connection from `openssl s_client <args>` to a loop task serving
-- ctx: the server's handshake result and what s_client printed. The
-- server sends "secret data" once its handshake succeeded.
local function s_client(ctx, args)
  local srv = assert(S.tcp_listen("127.0.0.1", 0))
  local port = srv:getsockname().port
  local res
  loop.spawn(function()
    local conn = assert(srv:accept())
    local t = tls.wrap(conn, ctx)
    t:settimeout(10)
    res = table.pack(t:handshake())
    if res[1] then
      res.version, res.cipher, res.alpn = t:version(), t:cipher(), t:alpn()
      -- TLS 1.3: a missing client certificate shows on the first read
      local ok, msg, code = t:sendall("secret data\n")
      if ok then
        local line
        line, msg, code = S.reader(t):line()
        if not line then res = { nil, msg, code, n = 3 } end
      else
        res = { nil, msg, code, n = 3 }
      end
    end
    t:close()
  end)
  local input = c.dir .. "/in.txt"
  local f = assert(io.open(input, "w"))
  f:write("from s_client\n")
  f:close()
  local h = bg.start("sh -c " .. q("(cat " .. q(input) .. "; sleep 1) | openssl s_client"
    .. " -connect 127.0.0.1:" .. port .. " -CAfile " .. q(c.ca) .. " -quiet " .. args), 20)
  local ok, err = pcall(function()
    assert(loop.run(15))
    h:wait(5)
  end)
  local out = h.output()
  h.cleanup()
  srv:close()
  assert(ok, err)
  return res, out
end

-- a default context that switches to `secure` for SNI secure.test
local function with_secure(secure_opts, default_opts)
  local secure = c:server_ctx(secure_opts)
  local o = { sni = { ["secure.test"] = secure } }
  for k, v in pairs(default_opts or {}) do o[k] = v end
  return c:server_ctx(o)
end

local CLIENT_CERT

-- sockets opened since before (net.fds) and still open
local function newsockets(before)
  local left = {}
  for fd, what in pairs(net.newfds(before)) do
    if what:match("^socket:") then left[fd] = what end
  end
  return left
end

describe("bsdsocket.tls security", function()
  setup(function()
    c = certs.make()
    CLIENT_CERT = " -cert " .. q(c.client_cert) .. " -key " .. q(c.client_key)
  end)
  teardown(function() if c then c:remove() end end)

  describe("an SNI switch applies the whole chosen context (openssl s_client)", function()
    it("require_cert: no client certificate fails, the data never leaves", function()
      local ctx = with_secure { require_cert = true, cafile = c.ca }
      local res, out = s_client(ctx, "-servername secure.test")
      assert.is_nil(res[1])
      assert.equal("TLS_HANDSHAKE", res[3])
      assert.not_matches("secret data", out)
      -- with a certificate it passes; without SNI the default lets it in
      res, out = s_client(ctx, "-servername secure.test" .. CLIENT_CERT)
      assert.is_true(res[1], res[2])
      assert.matches("secret data", out)
      res, out = s_client(ctx, "-servername plain.test")
      assert.is_true(res[1], res[2])
      assert.matches("secret data", out)
    end)

    it("min_version TLSv1.3: s_client -tls1_2 is refused", function()
      local ctx = with_secure { min_version = "TLSv1.3" }
      local res, out = s_client(ctx, "-tls1_2 -servername secure.test")
      assert.is_nil(res[1])
      assert.equal("TLS_PROTOCOL", res[3])
      assert.matches("protocol version", out)
      assert.not_matches("secret data", out)
      res, out = s_client(ctx, "-tls1_2 -servername plain.test")
      assert.is_true(res[1], res[2])
      assert.equal("TLSv1.2", res.version)
      assert.matches("secret data", out)
    end)

    it("max_version TLSv1.2: the chosen context's ceiling holds", function()
      local ctx = with_secure { max_version = "TLSv1.2" }
      local res, out = s_client(ctx, "-tls1_3 -servername secure.test")
      assert.is_nil(res[1])
      assert.not_matches("secret data", out)
    end)

    it("ciphersuites (TLS 1.3) and ciphers (TLS 1.2) of the chosen context", function()
      local ctx = with_secure { ciphersuites = "TLS_CHACHA20_POLY1305_SHA256",
        ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305" }
      local res, out = s_client(ctx, "-servername secure.test -ciphersuites TLS_AES_128_GCM_SHA256")
      assert.is_nil(res[1])
      assert.not_matches("secret data", out)
      res = s_client(ctx, "-servername secure.test")
      assert.is_true(res[1], res[2])
      assert.equal("TLS_CHACHA20_POLY1305_SHA256", res.cipher)
      res, out = s_client(ctx, "-tls1_2 -servername secure.test -cipher ECDHE-ECDSA-AES128-GCM-SHA256")
      assert.is_nil(res[1])
      assert.not_matches("secret data", out)
      res = s_client(ctx, "-tls1_2 -servername secure.test")
      assert.is_true(res[1], res[2])
      assert.equal("ECDHE-ECDSA-CHACHA20-POLY1305", res.cipher)
      -- the default context's own list is untouched
      res = s_client(ctx, "-servername plain.test -ciphersuites TLS_AES_128_GCM_SHA256")
      assert.is_true(res[1], res[2])
    end)

    it("alpn: the chosen context's protocols", function()
      local ctx = with_secure({ alpn = { "h2" } }, { alpn = { "http/1.1" } })
      local res = s_client(ctx, "-alpn http/1.1 -servername secure.test")
      assert.is_nil(res[1])
      assert.equal("TLS_HANDSHAKE", res[3])
      res = s_client(ctx, "-alpn h2,http/1.1 -servername secure.test")
      assert.is_true(res[1], res[2])
      assert.equal("h2", res.alpn)
    end)

    it("verify_depth 0: a client certificate under an intermediate CA is too deep", function()
      local ctx = with_secure({ require_cert = true, cafile = c.ca, verify_depth = 0 },
        { require_cert = true, cafile = c.ca })
      local deep = " -cert " .. q(c.deep_client) .. " -cert_chain " .. q(c.deep_client)
        .. " -key " .. q(c.deep_client_key)
      local res, out = s_client(ctx, "-servername secure.test" .. deep)
      assert.is_nil(res[1])
      assert.equal("TLS_VERIFY", res[3])
      assert.matches("chain too long", res[2])
      assert.not_matches("secret data", out)
      res = s_client(ctx, "-servername secure.test" .. CLIENT_CERT)  -- no intermediate
      assert.is_true(res[1], res[2])
      res = s_client(ctx, "-servername plain.test" .. deep)
      assert.is_true(res[1], res[2])
    end)

    it("the CA store: a client certificate from a CA the chosen context does not trust", function()
      local ctx = with_secure({ require_cert = true, cafile = c.self_cert },
        { require_cert = true, cafile = c.ca })
      local res, out = s_client(ctx, "-servername secure.test" .. CLIENT_CERT)
      assert.is_nil(res[1])
      assert.equal("TLS_VERIFY", res[3])
      assert.not_matches("secret data", out)
    end)

    it("options: allow_truncation of the chosen context", function()
      local function run(sni)
        local srv = assert(S.tcp_listen("127.0.0.1", 0))
        local port = srv:getsockname().port
        local ctx = with_secure { allow_truncation = true }
        local got
        loop.spawn(function()
          local t = tls.wrap(assert(srv:accept()), ctx)
          t:settimeout(5)
          got = table.pack(t:recv(100))
          if got[1] == "x" then got = table.pack(t:recv(100)) end
          t:close()
        end)
        -- a client process that exits without close_notify
        local h = net.spawn(([[
          package.cpath = %q
          package.path = %q
          local S = require "bsdsocket"
          local tls = require "bsdsocket.tls"
          local ctx = assert(tls.context { cafile = %q })
          local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", %d)), ctx,
            { servername = %q, hostname = "localhost" })
          assert(t:sendall("x"))
          t:settimeout(0.3)
          t:recv(1)  -- reads the session tickets: no reset at exit
          os.exit(0, false)
        ]]):format(package.cpath, package.path, c.ca, port, sni), 10)
        local ok, err = pcall(loop.run, 10)
        h.cleanup()
        srv:close()
        assert(ok, err)
        return got
      end
      local got = run("secure.test")
      assert.equal("", got[1], tostring(got[2]))
      assert.equal("TLS_TRUNCATED", run("plain.test")[3])
    end)
  end)

  describe("names", function()
    local function wrapped(opts)
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local s = assert(S.tcp_connect("127.0.0.1", srv:getsockname().port))
      local ok, err = pcall(tls.wrap, s, c:client_ctx(), opts)
      if ok then err:close() end
      s:close()
      srv:close()
      return ok, err
    end

    it("empty, over-long, NUL-containing or invalid servername/hostname raise", function()
      for _, key in ipairs { "servername", "hostname" } do
        for _, bad in ipairs { "", ".", string.rep("a", 254), string.rep("a.", 127) .. "ab",
          "local\0host", "bad name", "a..b", "-x-\n", string.rep("l", 64) .. ".test", "[localhost]" } do
          local ok, err = wrapped { [key] = bad }
          assert.is_false(ok, key .. " " .. bad)
          assert.matches("bad argument #3", err)
          assert.matches(key, err)
        end
      end
      assert.matches("empty name", select(2, wrapped { servername = "" }))
      -- the longest name and a literal are fine
      assert.is_true((wrapped { servername = string.rep("a", 63) .. "." .. string.rep("b", 63) }))
      assert.is_true((wrapped { hostname = "127.0.0.1", servername = "localhost" }))
    end)

    it("servername = \"\" never turns verification off (tls.wrap and S.tls_connect)", function()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local sctx = c:server_ctx { certfile = c.other_cert, keyfile = c.other_key }
      loop.spawn(function()
        for _ = 1, 4 do
          local conn = srv:accept()
          if conn then
            local t = tls.wrap(conn, sctx)
            t:settimeout(2)
            t:handshake()
            t:close()
          end
        end
      end)
      local results = {}
      loop.spawn(function()
        local s = assert(S.tcp_connect("127.0.0.1", port))
        results[1] = table.pack(pcall(tls.wrap, s, c:client_ctx(), { servername = "" }))
        s:close()
        results[2] = table.pack(pcall(S.tls_connect, "127.0.0.1", port,
          { servername = "", cafile = c.ca }))
        results[3] = table.pack(pcall(S.tls_connect, "127.0.0.1", port,
          { hostname = "", cafile = c.ca }))
        -- the wrong certificate is caught with a real name
        results[4] = table.pack(S.tls_connect("127.0.0.1", port, { cafile = c.ca, timeout = 5 }))
        srv:close()
      end)
      assert(loop.run(10))
      for i = 1, 3 do
        assert.is_false(results[i][1], i)
        assert.matches("empty name", results[i][2], nil, nil, i)
      end
      assert.matches("tls_connect", results[2][2])
      assert.is_nil(results[4][1])
      assert.equal("TLS_VERIFY", results[4][3])

    end)

    it("a trailing dot: \"localhost.\" verifies as localhost and SNI goes without the dot", function()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local seen, cres
      loop.spawn(function()
        local t = tls.wrap(assert(srv:accept()), c:server_ctx())
        assert(t:handshake())
        seen = t:servername()
        t:close()
      end)
      loop.spawn(function()
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(),
          { servername = "localhost." })
        cres = table.pack(t:handshake())
        t:close()
      end)
      assert(loop.run(10))
      srv:close()
      assert.is_true(cres[1], cres[2])
      assert.equal("localhost", seen)
      -- a trailing dot does not help a wrong name through
      srv = assert(S.tcp_listen("127.0.0.1", 0))
      port = srv:getsockname().port
      loop.spawn(function()
        local t = tls.wrap(assert(srv:accept()), c:server_ctx())
        t:settimeout(2)
        t:handshake()
        t:close()
      end)
      loop.spawn(function()
        cres = table.pack(S.tls_connect("127.0.0.1", port,
          { cafile = c.ca, servername = "other.example." }))
      end)
      assert(loop.run(10))
      srv:close()
      assert.equal("TLS_VERIFY", cres[3])
    end)

    it("a bracketed IPv6 literal is the literal: verified as one, named [::1]:port once", function()
      local srv = S.tcp_listen("::1", 0)
      if not srv then return pending("no IPv6 loopback") end
      local port = srv:getsockname().port
      local sctx = c:server_ctx { certfile = c.noip_cert, keyfile = c.noip_key }
      loop.spawn(function()
        for _ = 1, 2 do
          local t = tls.wrap(assert(srv:accept()), sctx)
          t:settimeout(2)
          t:handshake()
          t:close()
        end
      end)
      local r = {}
      loop.spawn(function()
        for i, name in ipairs { "[::1]", "::1" } do
          local t = tls.wrap(assert(S.tcp_connect("::1", port)), c:client_ctx(), { hostname = name })
          r[i] = table.pack(t:handshake())
          t:close()
        end
        srv:close()
      end)
      assert(loop.run(10))
      for i = 1, 2 do
        assert.is_nil(r[i][1])
        assert.equal("TLS_VERIFY", r[i][3])
        assert.matches("IP address mismatch", r[i][2])
        assert.matches("^tls handshake %[::1%]:" .. port .. ": ", r[i][2])
      end
    end)

    it("a certificate with CN=localhost and no SAN is rejected", function()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local sctx = c:server_ctx { certfile = c.nosan_cert, keyfile = c.nosan_key }
      local r
      loop.spawn(function()
        local t = tls.wrap(assert(srv:accept()), sctx)
        t:settimeout(2)
        t:handshake()
        t:close()
      end)
      loop.spawn(function()
        r = table.pack(S.tls_connect("localhost", port, { cafile = c.ca }))
        if r[1] then r[1]:close() end
      end)
      assert(loop.run(10))
      srv:close()
      assert.is_nil(r[1])
      assert.equal("TLS_VERIFY", r[3])
      assert.matches("hostname mismatch", r[2])
    end)
  end)

  describe("context options", function()
    it("a capath that is not there returns nil, msg, code like cafile", function()
      local ctx, msg, code = tls.context { capath = c.dir .. "/nowhere" }
      assert.is_nil(ctx)
      assert.equal("ENOENT", code)
      assert.matches("capath", msg)
      ctx, msg, code = tls.context { capath = c.ca }  -- a file
      assert.is_nil(ctx)
      assert.equal("ENOTDIR", code)
      assert.matches("capath", msg)
      assert.truthy(tls.context { capath = c.dir })
    end)

    it("a negative verify_depth raises", function()
      assert.has_error(function() tls.context { cafile = c.ca, verify_depth = -1 } end,
        "tls.context: option 'verify_depth' must be 0 or more")
      assert.truthy(tls.context { cafile = c.ca, verify_depth = 0 })
    end)
  end)

  describe("Lua code in the SNI hook", function()
    -- a server whose SNI function is f(name, stream); the server's
    -- handshake result, the client's, and what f saw
    local function sni_run(f)
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local current, sres, cres
      local ctx = c:server_ctx { sni = function(name) return f(name, current) end }
      loop.spawn(function()
        current = tls.wrap(assert(srv:accept()), ctx)
        current:settimeout(5)
        sres = table.pack(current:handshake())
        sres.text = tostring(current)
        current:close()
      end)
      loop.spawn(function()
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(),
          { servername = "localhost" })
        t:settimeout(5)
        cres = table.pack(t:handshake())
        t:close()
      end)
      assert(loop.run(10))
      srv:close()
      return sres, cres
    end

    it("closing its own stream there: the close waits for the hook, the handshake fails", function()
      local closed
      local before = net.fds()
      local sres, cres = sni_run(function(_, t)
        closed = table.pack(t:close())
      end)
      assert.same({ true, n = 1 }, closed)
      assert.is_nil(sres[1])
      assert.equal("TLS_HANDSHAKE", sres[3])
      assert.equal("bsdsocket.tls (closed)", sres.text)
      assert.is_nil(cres[1])
      assert.same({}, newsockets(before))
    end)

    it("recv, send, handshake or settimeout on its own stream there raise", function()
      for _, call in ipairs {
        function(t) return t:recv(1) end,
        function(t) return t:sendall("x") end,
        function(t) return t:handshake() end,
        function(t) return t:settimeout(1) end,
        function(t) return t:getpeername() end,
      } do
        local err
        local sres = sni_run(function(_, t)
          local ok, e = pcall(call, t)
          err = not ok and e
          call(t)  -- unprotected: the hook's error fails the handshake
        end)
        assert.matches("inside its own SNI function", err)
        assert.is_nil(sres[1])
        assert.equal("TLS_HANDSHAKE", sres[3])
      end
    end)

    it("an sni table whose __index raises fails that handshake; 10,000 of them leave memory flat", function()
      local n = tonumber(os.getenv("BSDSOCKET_TLS_N") or "")
        or ((os.getenv("BSDSOCKET_VALGRIND") or os.getenv("BSDSOCKET_SANITIZE")) and 200 or 10000)
      -- ASan's quarantine and valgrind's allocator hold freed memory: RSS
      -- says nothing there (their own checks and leak reports do the work)
      local rss_counts = not (os.getenv("BSDSOCKET_SANITIZE") or os.getenv("BSDSOCKET_VALGRIND"))
      local sni = setmetatable({}, { __index = function(_, name) error("no " .. name) end })
      local sctx = c:server_ctx { sni = sni }
      local cctx = c:client_ctx()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local fails = 0
      -- the client sends its ClientHello without waiting (timeout 0), the
      -- server reads it and fails in the lookup; no loop needed
      local function once()
        local ct = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx,
          { servername = "x.test" })
        ct:settimeout(0)
        local _, _, ccode = ct:handshake()
        assert(ccode == "EAGAIN", ccode)
        local st = tls.wrap(assert(srv:accept()), sctx)
        st:settimeout(5)
        local ok, _, code = st:handshake()
        if not ok and code == "TLS_HANDSHAKE" then fails = fails + 1 end
        st:close()
        ct:close()
      end
      local warm = math.max(n // 10, 10)
      for _ = 1, warm do once() end
      collectgarbage()
      collectgarbage()
      local kb0, lua0, fds0 = rss(), collectgarbage("count"), net.fds()
      -- two halves: the allocator may keep some pages after the first,
      -- a leak grows the second as much as the first
      for _ = 1, n // 2 do once() end
      collectgarbage()
      collectgarbage()
      local kbh = rss()
      for _ = n // 2 + 1, n do once() end
      collectgarbage()
      collectgarbage()
      local kb1, lua1 = rss(), collectgarbage("count")
      srv:close()
      io.stderr:write(("\n[tls sni __index] %d failed handshakes: RSS %d -> %d -> %d KiB, Lua %.0f -> %.0f KiB\n")
        :format(n, kb0, kbh, kb1, lua0, lua1))
      assert.equal(warm + n, fails)
      assert.same({}, net.newfds(fds0))
      -- 0.5 KB per handshake would be 2.5 MB in each half at n = 10,000
      assert.is_true(not rss_counts or kb1 - kbh < 1024,
        ("RSS grew from %d to %d KiB in the second half"):format(kbh, kb1))
      assert.is_true(not rss_counts or kb1 - kb0 < 4096, ("RSS grew from %d to %d KiB"):format(kb0, kb1))
      assert.is_true(lua1 - lua0 < 512, ("Lua memory grew from %.0f to %.0f KiB"):format(lua0, lua1))
    end)
  end)

  describe("result shapes and timeouts", function()
    -- a connected TLS pair inside a loop: f(server stream, client stream)
    -- runs in a task once both handshakes are done
    local function tls_pair(f)
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local st, ct
      loop.spawn(function()
        st = tls.wrap(assert(srv:accept()), c:server_ctx())
        assert(st:handshake())
      end)
      loop.spawn(function()
        ct = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(),
          { servername = "localhost" })
        assert(ct:handshake())
      end)
      assert(loop.run(10))
      srv:close()
      local ok, err = pcall(f, st, ct)
      st:close()
      ct:close()
      assert(ok, err)
    end

    it("recvall closed by another task: nil, msg, EBADF, partial", function()
      tls_pair(function(st, ct)
        local res
        loop.spawn(function() res = table.pack(st:recvall(100)) end)
        loop.spawn(function()
          assert(ct:sendall("0123456789"))
          loop.sleep(0.2)
          st:close()
        end)
        assert(loop.run(10))
        assert.equal(4, res.n)
        assert.is_nil(res[1])
        assert.equal("EBADF", res[3])
        assert.equal("0123456789", res[4])
      end)
    end)

    it("sendall closed by another task: nil, msg, EBADF, count", function()
      tls_pair(function(_, ct)
        local res
        loop.spawn(function() res = table.pack(ct:sendall(string.rep("x", 16 << 20))) end)
        loop.spawn(function()
          loop.sleep(0.2)
          ct:close()
        end)
        assert(loop.run(10))
        assert.equal(4, res.n)
        assert.is_nil(res[1])
        assert.equal("EBADF", res[3])
        assert.is_true(math.type(res[4]) == "integer" and res[4] > 0 and res[4] < 16 << 20)
      end)
    end)

    it("out of tasks too, recvall and sendall end with their partial data or count", function()
      tls_pair(function(st, ct)
        assert(ct:sendall("0123456789"))
        st:settimeout(0.3)
        local r = table.pack(st:recvall(100))
        assert.equal(4, r.n)
        assert.same({ nil, "ETIMEDOUT", "0123456789" }, { r[1], r[3], r[4] })
        ct:settimeout(0.3)
        r = table.pack(ct:sendall(string.rep("x", 16 << 20)))
        assert.equal(4, r.n)
        assert.is_nil(r[1])
        assert.equal("ETIMEDOUT", r[3])
        assert.is_true(math.type(r[4]) == "integer" and r[4] > 0 and r[4] < 16 << 20)
      end)
    end)

    -- a peer in a child process: accepts, waits 0.7 s before its
    -- handshake, 0.7 s more before it sends
    local function slow_peer()
      local port_file = c.dir .. "/slowport"
      os.remove(port_file)
      local h = net.spawn(([[
        package.cpath = %q
        package.path = %q
        local S = require "bsdsocket"
        local tls = require "bsdsocket.tls"
        local srv = assert(S.tcp_listen("127.0.0.1", 0))
        local f = io.open(%q, "w") f:write(srv:getsockname().port) f:close()
        local ctx = assert(tls.context { mode = "server", certfile = %q, keyfile = %q })
        for _ = 1, 2 do
          local t = tls.wrap(assert(srv:accept()), ctx)
          local function sleep(s) S.poller():wait(s) end
          sleep(0.7)
          t:handshake()
          sleep(0.7)
          t:sendall("0123456789")
          sleep(0.5)
          t:close()
        end
      ]]):format(package.cpath, package.path, port_file, c.server_cert, c.server_key), 20)
      local port
      for _ = 1, 250 do
        port = tonumber(net.readfile(port_file) or "")
        if port then break end
        net.sleep(0.02)
      end
      return h, assert(port, "slow peer did not start")
    end

    it("settimeout(1) covers the handshake and the read of one recv (out of and in tasks)", function()
      local h, port = slow_peer()
      finally(h.cleanup)
      local function attempt()
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(),
          { servername = "localhost" })
        t:settimeout(1)
        local r = table.pack(t:recv(10))
        t:close()
        return r
      end
      local r = attempt()
      assert.is_nil(r[1], "recv returned data after its timeout")
      assert.equal("ETIMEDOUT", r[3])
      local rt
      loop.spawn(function() rt = attempt() end)
      assert(loop.run(10))
      assert.is_nil(rt[1], "recv returned data after its timeout")
      assert.equal("ETIMEDOUT", rt[3])
    end)

    it("recvall on a socket and on a stream: the timeout counts afresh after each part", function()
      local function drip(sendall)
        for i = 1, 3 do
          loop.sleep(0.6)
          assert(sendall(tostring(i)))
        end
      end
      -- a plain socket pair
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local a = assert(S.tcp_connect("127.0.0.1", srv:getsockname().port))
      local b = assert(srv:accept())
      srv:close()
      local got
      loop.spawn(function()
        b:settimeout(1)
        got = table.pack(b:recvall(3))
      end)
      loop.spawn(function() drip(function(d) return a:sendall(d) end) end)
      assert(loop.run(10))
      a:close()
      b:close()
      assert.equal("123", got[1])
      tls_pair(function(st, ct)
        local tgot
        loop.spawn(function()
          st:settimeout(1)
          tgot = table.pack(st:recvall(3))
        end)
        loop.spawn(function() drip(function(d) return ct:sendall(d) end) end)
        assert(loop.run(10))
        assert.equal("123", tgot[1])
      end)
    end)

    it("a second shutdown returns true at once, without waiting for the peer's close_notify", function()
      tls_pair(function(st, ct)
        local r1, r2
        loop.spawn(function()
          ct:settimeout(3)  -- the old code waited for the peer until this
          r1 = table.pack(ct:shutdown())
          r2 = table.pack(ct:shutdown())
        end)
        assert(loop.run(10))
        assert.same({ true, n = 1 }, r1)
        assert.same({ true, n = 1 }, r2)
        -- the peer sees the close_notify; its own shutdown then completes
        assert.equal("", st:recv(10))
      end)
    end)
  end)
end)
