-- bsdsocket.tls against real peers: openssl s_server / s_client, Python's
-- ssl module (spec/helpers/tls_peer.py) and curl. Every process is started
-- under `timeout` and killed in finally().
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local certs = require "helpers.certs"
local bg = require "helpers.bg"
local net = require "helpers.net"

local ok_tls, tls = pcall(require, "bsdsocket.tls")
if not ok_tls then
  describe("bsdsocket.tls with real peers", function()
    pending("not built (no OpenSSL headers): " .. tostring(tls))
  end)
  return
end

local c
local q = net.shquote

-- connects to localhost:port over TLS with ctx; the stream, or nil, msg, code
local function dial(port, ctx, name, session)
  local s = assert(S.tcp_connect("127.0.0.1", port, 5))
  local t = tls.wrap(s, ctx, { servername = name or "localhost", session = session })
  local ok, msg, code = t:handshake()
  if not ok then
    t:close()
    return nil, msg, code
  end
  return t
end

-- openssl s_server -rev (answers each line reversed) with extra arguments
local function s_server(extra)
  return bg.start("openssl s_server -accept 127.0.0.1:0 -rev -cert " .. q(c.server_cert)
    .. " -key " .. q(c.server_key) .. " " .. (extra or ""), 30)
end

describe("bsdsocket.tls with real peers", function()
  setup(function() c = certs.make() end)
  teardown(function() if c then c:remove() end end)

  describe("client side, against openssl s_server", function()
    for _, v in ipairs { { "-tls1_2", "TLSv1.2" }, { "-tls1_3", "TLSv1.3" } } do
      it("speaks " .. v[2], function()
        local h = s_server(v[1])
        finally(h.cleanup)
        local t = assert(dial(h:port(), c:client_ctx()))
        assert.equal(v[2], t:version())
        assert(t:sendall("hello world\n"))
        local r = S.reader(t)
        assert.equal("dlrow olleh", r:line())
        t:close()
      end)
    end

    it("negotiates ALPN", function()
      local h = s_server("-alpn h2,http/1.1")
      finally(h.cleanup)
      local t = assert(dial(h:port(), c:client_ctx { alpn = { "http/1.1" } }))
      assert.equal("http/1.1", t:alpn())
      t:close()
    end)

    it("gives a client certificate to a server that demands one, and fails without", function()
      local h = s_server("-Verify 2 -verify_return_error -CAfile " .. q(c.ca))
      finally(h.cleanup)
      local port = h:port()
      local t = assert(dial(port, c:client_ctx { certfile = c.client_cert, keyfile = c.client_key }))
      assert(t:sendall("abc\n"))
      assert.equal("cba", S.reader(t):line())
      t:close()
      t = assert(dial(port, c:client_ctx()))  -- TLS 1.3: the alert follows the handshake
      local ok, msg, code = t:recv(10)
      assert.is_nil(ok)
      assert.equal("TLS_HANDSHAKE", code)
      assert.matches("certificate required", msg)
      t:close()
    end)

    it("resumes a session", function()
      local h = s_server("-tls1_2")
      finally(h.cleanup)
      local port, ctx = h:port(), c:client_ctx()
      local t = assert(dial(port, ctx))
      local session = t:session()
      t:close()
      assert.is_string(session)
      t = assert(dial(port, ctx, nil, session))
      assert.is_true(t:session_reused())
      t:close()
    end)

    it("TLS_VERIFY against the untrusted system store", function()
      local h = s_server()
      finally(h.cleanup)
      local ok, msg, code = dial(h:port(), assert(tls.context()))
      assert.is_nil(ok)
      assert.equal("TLS_VERIFY", code)
      assert.matches("^tls handshake localhost:%d+: certificate verify failed", msg)
    end)
  end)

  describe("client side, against Python's ssl", function()
    for _, v in ipairs { "TLSv1.2", "TLSv1.3" } do
      it("speaks " .. v .. ", sends SNI and ALPN the server sees", function()
        local h = bg.pypeer({ "server", c.server_cert, c.server_key, "--min", v, "--max", v,
          "--alpn", "x-test,http/1.1" })
        finally(h.cleanup)
        local t = assert(dial(h:port(), c:client_ctx { alpn = { "http/1.1" } }))
        assert.equal(v, t:version())
        assert.equal("http/1.1", t:alpn())
        assert(t:sendall("ping\n"))
        assert.equal("ping", S.reader(t):line())
        assert(t:shutdown())
        assert.equal("", t:recv(10))  -- Python's unwrap answers close_notify
        t:close()
        assert(h:waitfor("sni localhost"))
        assert(h:waitfor("alpn http/1.1"))
      end)
    end

    it("presents a client certificate the server checks", function()
      local h = bg.pypeer({ "server", c.server_cert, c.server_key, "--ca", c.ca, "--require-cert" })
      finally(h.cleanup)
      local t = assert(dial(h:port(), c:client_ctx { certfile = c.client_cert, keyfile = c.client_key }))
      assert(t:sendall("x\n"))
      assert.equal("x", S.reader(t):line())
      t:close()
      assert(h:waitfor("cert bsdsocket client"))
    end)

    it("resumes a TLS 1.3 session from a ticket", function()
      local h = bg.pypeer({ "server", c.server_cert, c.server_key })
      finally(h.cleanup)
      local port, ctx = h:port(), c:client_ctx()
      local t = assert(dial(port, ctx))
      assert(t:sendall("a\n"))
      assert.equal("a", S.reader(t):line())  -- the tickets came before it
      local session = assert(t:session())
      t:close()
      t = assert(dial(port, ctx, nil, session))
      assert.is_true(t:session_reused())
      t:close()
      assert(h:waitfor("resumed True"))
    end)

    it("STARTTLS: wraps a socket that has talked in plain text", function()
      local h = bg.pypeer({ "starttls", c.server_cert, c.server_key })
      finally(h.cleanup)
      local s = assert(S.tcp_connect("127.0.0.1", h:port(), 5))
      assert.equal("HELLO\n", s:recvall(6))
      assert(s:sendall("STARTTLS\n"))
      assert.equal("GO\n", s:recvall(3))
      local t = tls.wrap(s, c:client_ctx(), { servername = "localhost" })
      assert(t:sendall("secret\n"))
      assert.equal("secret", S.reader(t):line())
      assert.equal("TLSv1.3", t:version())
      t:close()
      assert(h:waitfor("plain STARTTLS"))
    end)

    it("a server allowing only TLS 1.2 against min_version TLSv1.3: TLS_PROTOCOL", function()
      local h = bg.pypeer({ "server", c.server_cert, c.server_key, "--max", "TLSv1.2" })
      finally(h.cleanup)
      local ok, msg, code = dial(h:port(), c:client_ctx { min_version = "TLSv1.3" })
      assert.is_nil(ok)
      assert.equal("TLS_PROTOCOL", code, msg)
    end)

    it("no shared ALPN: TLS_HANDSHAKE", function()
      local h = bg.pypeer({ "server", c.server_cert, c.server_key, "--alpn", "h2" })
      finally(h.cleanup)
      local t, msg, code = dial(h:port(), c:client_ctx { alpn = { "http/1.1" } })
      -- Python's server ignores a mismatch (no ALPN chosen) rather than failing
      if t then
        assert.is_nil(t:alpn())
        t:close()
      else
        assert.equal("TLS_HANDSHAKE", code, msg)
      end
    end)
  end)

  describe("server side", function()
    -- serves n connections on the loop: f(t) for each
    local function serve(n, ctx, f)
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local results = {}
      loop.spawn(function()
        for _ = 1, n do
          local conn = assert(srv:accept())
          loop.spawn(function()
            local t = tls.wrap(conn, ctx)
            t:settimeout(10)
            local r = table.pack(f(t))
            results[#results + 1] = r
            t:close()
          end)
        end
        srv:close()
      end)
      return port, results
    end

    local function http(t)
      local r = S.reader(t)
      local line = r:line()
      repeat local l = r:line() until not l or l == "" or l == "\r"
      local body = "hello over tls\n"
      assert(t:sendall("HTTP/1.1 200 OK\r\nContent-Length: " .. #body
        .. "\r\nConnection: close\r\n\r\n" .. body))
      t:shutdown()
      return line
    end

    it("answers curl --cacert", function()
      local port, results = serve(1, c:server_ctx { alpn = { "http/1.1" } }, http)
      local h = bg.start("curl -sS --http1.1 --cacert " .. q(c.ca) .. " https://localhost:" .. port .. "/x", 20)
      finally(h.cleanup)
      assert(loop.run(15))
      h:wait(5)
      assert.equal("hello over tls\n", h:output())
      assert.matches("^GET /x HTTP/1.1", results[1][1])
    end)

    it("answers openssl s_client, which verifies us", function()
      local port, results = serve(1, c:server_ctx(), function(t)
        local line = S.reader(t):line()
        t:sendall("echo " .. tostring(line) .. "\n")
        return line, t:version()
      end)
      local input = c.dir .. "/in.txt"
      local f = assert(io.open(input, "w"))
      f:write("from s_client\n")
      f:close()
      local h = bg.start("sh -c " .. q("(cat " .. q(input) .. "; sleep 1) | openssl s_client -connect 127.0.0.1:"
        .. port .. " -servername localhost -CAfile " .. q(c.ca) .. " -verify_return_error -quiet"), 20)
      finally(h.cleanup)
      assert(loop.run(15))
      h:wait(5)
      assert.equal("from s_client", results[1][1])
      assert.equal("TLSv1.3", results[1][2])
      assert.matches("echo from s_client", h:output())
    end)

    it("serves many Python clients and curls at once through the loop, with client certificates", function()
      local n = 12
      local port, results = serve(n + 2, c:server_ctx { cafile = c.ca, request_cert = true }, function(t)
        local r = S.reader(t)
        local line = r:line()
        if line and line:match("^GET") then
          repeat local l = r:line() until not l or l == "" or l == "\r"
          t:sendall("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
          t:shutdown()
          return "curl"
        end
        local pc = t:peercert()
        assert(t:sendall(tostring(line) .. "\n"))
        t:shutdown()
        return line, pc and pc.subject
      end)
      local hs = {}
      finally(function() for _, h in ipairs(hs) do h.cleanup() end end)
      for i = 1, n do
        local args = { "client", port, c.ca, "msg" .. i }
        if i % 2 == 0 then
          for _, a in ipairs { "--cert", c.client_cert, "--key", c.client_key } do args[#args + 1] = a end
        end
        hs[#hs + 1] = bg.pypeer(args, 20)
      end
      for _ = 1, 2 do
        hs[#hs + 1] = bg.start("curl -sS --cacert " .. q(c.ca) .. " https://127.0.0.1:" .. port .. "/", 20)
      end
      assert(loop.run(20))
      local got, withcert, curls = 0, 0, 0
      for _, r in ipairs(results) do
        if r[1] == "curl" then curls = curls + 1
        elseif r[1] then
          got = got + 1
          if r[2] == "CN=bsdsocket client" then withcert = withcert + 1 end
        end
      end
      assert.equal(n, got)
      assert.equal(n // 2, withcert)
      assert.equal(2, curls)
      for i = 1, n do
        hs[i]:wait(5)
        assert.matches("got msg" .. i, hs[i]:output())
      end
      for i = n + 1, n + 2 do
        hs[i]:wait(5)
        assert.equal("ok\n", hs[i]:output())
      end
    end)

    it("curl without our CA fails to verify us, and our server reports TLS_VERIFY", function()
      local port, results = serve(1, c:server_ctx(), function(t) return t:handshake() end)
      local h = bg.start("curl -sS https://localhost:" .. port .. "/", 20)
      finally(h.cleanup)
      assert(loop.run(15))
      h:wait(5)
      assert.is_nil(results[1][1])
      assert.equal("TLS_VERIFY", results[1][3])
      assert.matches("unknown ca", results[1][2])
    end)
  end)
end)
