-- The TLS examples as child processes: http_get.lua with https:// (against
-- openssl s_server -WWW, redirects both ways via spec/helpers/tls_peer.py),
-- tls_client.lua against tls_echo_server.lua, and http_server.lua --tls
-- answering curl.
local X = require "helpers.examples"
local bg = require "helpers.bg"
local certs = require "helpers.certs"

if not pcall(require, "bsdsocket.tls") then
  describe("TLS examples", function() pending("bsdsocket.tls not built") end)
  return
end

describe("TLS examples", function()
  local c, www, wport, plain, pport
  setup(function()
    c = certs.make()
    os.execute("mkdir -p " .. X.shquote(c.dir .. "/www"))
    X.writefile(c.dir .. "/www/hello.txt", "hello over https\n")
    www = bg.start("sh -c " .. X.shquote("cd " .. X.shquote(c.dir .. "/www")
      .. " && exec openssl s_server -WWW -accept 127.0.0.1:0 -cert " .. X.shquote(c.server_cert)
      .. " -key " .. X.shquote(c.server_key)), 120)
    wport = www:port()
    plain = bg.start("python3 -u -m http.server 0 --bind 127.0.0.1 --directory "
      .. X.shquote(c.dir .. "/www"), 120)
    local port, out = plain:waitfor("port (%d+)", 30)
    pport = assert(tonumber(port), "python3 -m http.server did not start: " .. tostring(out))
  end)
  teardown(function()
    if www then www.cleanup() end
    if plain then plain.cleanup() end
    if c then c:remove() end
  end)

  local function get(...)
    return X.run(X.example("http_get", { ... }))
  end

  describe("http_get.lua", function()
    it("fetches https:// with --cacert", function()
      local r = get("--cacert", c.ca, ("https://localhost:%d/hello.txt"):format(wport))
      assert.equal(0, r.code, r.err)
      assert.equal("hello over https\n", r.out)
    end)

    it("fails verification with one line and exit 1, or goes on with -k", function()
      local url = ("https://localhost:%d/hello.txt"):format(wport)
      local r = get(url)
      assert.equal(1, r.code)
      assert.equal(("http_get: tls handshake localhost:%d: certificate verify failed "
        .. "(unable to get local issuer certificate)\n"):format(wport), r.err)
      r = get("--cacert", c.ca, ("https://127.0.0.2:%d/hello.txt"):format(wport))
      assert.equal(1, r.code)
      r = get("-k", url)
      assert.equal(0, r.code, r.err)
      assert.equal("hello over https\n", r.out)
    end)

    it("follows redirects from http to https and back", function()
      local up = bg.pypeer({ "redirect", ("https://localhost:%d/hello.txt"):format(wport) }, 60)
      local down = bg.pypeer({ "redirect", ("http://127.0.0.1:%d/hello.txt"):format(pport),
        c.server_cert, c.server_key }, 60)
      finally(function() up.cleanup() down.cleanup() end)
      local r = get("-L", "--cacert", c.ca, ("http://127.0.0.1:%d/x"):format(up:port()))
      assert.equal(0, r.code, r.err)
      assert.equal("hello over https\n", r.out)
      r = get("-L", "--cacert", c.ca, ("https://localhost:%d/x"):format(down:port()))
      assert.equal(0, r.code, r.err)
      assert.equal("hello over https\n", r.out)
    end)
  end)

  it("tls_client.lua talks to tls_echo_server.lua, showing the certificate", function()
    local srv = X.spawn(X.example("tls_echo_server", { "127.0.0.1", "0", c.server_cert, c.server_key }))
    finally(srv.kill)
    local port = srv:expect("listening on 127%.0%.0%.1:(%d+)")
    local r = X.run(X.example("tls_client", { "localhost", port, "--cacert", c.ca }), "one\ntwo\n")
    assert.equal(0, r.code, r.err)
    assert.equal("one\ntwo\n", r.out)
    assert.matches("version +TLSv1%.3", r.err)
    assert.matches("subject +CN=localhost", r.err)
    assert.matches("dns names +localhost", r.err)
    assert.matches("ip names +127%.0%.0%.1, ::1", r.err)
    r = X.run(X.example("tls_client", { "localhost", port }), "x\n")
    assert.equal(1, r.code)
    assert.matches("^tls_client: tls handshake localhost:%d+: certificate verify failed", r.err)
    r = X.run(X.example("tls_client", {}))
    assert.equal(2, r.code)
  end)

  it("http_server.lua --tls serves HTTPS to curl", function()
    local srv = X.spawn(X.example("http_server", { "--tls", c.server_cert, c.server_key,
      "127.0.0.1", "0", c.dir .. "/www" }))
    finally(srv.kill)
    local port = srv:expect("listening on 127%.0%.0%.1:(%d+)")
    local r = X.run(X.native("curl -sS --cacert " .. X.shquote(c.ca)
      .. (" https://localhost:%d/hello.txt https://localhost:%d/hello.txt"):format(port, port)))
    assert.equal(0, r.code, r.err)
    assert.equal("hello over https\nhello over https\n", r.out)
  end)
end)
