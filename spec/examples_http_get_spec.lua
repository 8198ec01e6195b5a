-- luacheck: std +busted
-- examples/http_get.lua against python3's http.server (Content-Length
-- framing, HTTP/1.0 answers) and against an HTTP/1.1 server written with
-- python3's http.server module in spec/helpers/peers.py (chunked bodies,
-- close-delimited bodies, redirects, 404).
local X = require "helpers.examples"

local function pattern(n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char(i * 7 % 256) end
  return table.concat(t)
end

describe("examples/http_get.lua", function()
  local dir, www, wport, peer, pport
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. X.shquote(dir) .. " " .. X.shquote(dir .. "/sub")))
    X.writefile(dir .. "/hello.txt", "hello from python's http.server\n")
    X.writefile(dir .. "/sub/blob.bin", pattern(200000))
    -- both serve the whole file: 120 s, not the 20 s of one command
    www = X.spawn(X.native("python3 -u -m http.server 0 --bind 127.0.0.1 --directory %s"):format(X.shquote(dir)),
      { limit = 120 })
    wport = tonumber(www:expect("port (%d+)"))
    peer, pport = X.start_peer("http", nil, { limit = 120 })
  end)
  teardown(function()
    if www then www:kill() end
    if peer then peer:kill() end
    if dir then os.execute("rm -rf " .. X.shquote(dir)) end
  end)

  local function get(...)
    return X.run(X.example("http_get", { ... }))
  end

  it("gets a file from python3 -m http.server (Content-Length)", function()
    local r = get(("http://127.0.0.1:%d/hello.txt"):format(wport))
    assert.equal(0, r.code, r.err)
    assert.equal("hello from python's http.server\n", r.out)
    assert.equal("", r.err)
  end)

  it("gets 200000 binary bytes exactly", function()
    local r = get(("http://localhost:%d/sub/blob.bin"):format(wport))
    assert.equal(0, r.code, r.err)
    assert.equal(200000, #r.out)
    assert.is_true(r.out == pattern(200000))
  end)

  it("gets a page over IPv6 from http://[::1]:PORT/", function()
    local S = require "bsdsocket"
    local probe, err = S.tcp_listen("::1", 0)
    if not probe then pending("no IPv6 loopback: " .. err) return end
    probe:close()
    local www6 = X.spawn(X.native("python3 -u -m http.server 0 --bind ::1 --directory %s"):format(X.shquote(dir)))
    finally(www6.kill)
    local port = tonumber(www6:expect("port (%d+)"))
    local r = get("-v", ("http://[::1]:%d/hello.txt"):format(port))
    assert.equal(0, r.code, r.err)
    assert.equal("hello from python's http.server\n", r.out)
    assert.matches(("* connected to [::1]:%d\n"):format(port), r.err, 1, true)
    assert.matches(("> Host: [::1]:%d\n"):format(port), r.err, 1, true)
  end)

  it("shows the request and the response headers on stderr with -v", function()
    local r = get("-v", ("http://127.0.0.1:%d/hello.txt"):format(wport))
    assert.equal(0, r.code, r.err)
    assert.equal("hello from python's http.server\n", r.out)
    assert.matches("> GET /hello.txt HTTP/1.1\n", r.err, 1, true)
    assert.matches(("> Host: 127.0.0.1:%d\n"):format(wport), r.err, 1, true)
    assert.matches("< HTTP/1.0 200 OK\n", r.err, 1, true)
    assert.matches("< Content-Length: 32\n", r.err, 1, true)
  end)

  it("sends a well-formed request with a Host header", function()
    local r = get(("http://127.0.0.1:%d/headers"):format(pport))
    assert.equal(0, r.code, r.err)
    assert.matches(("Host: 127.0.0.1:%d\n"):format(pport), r.out, 1, true)
    assert.matches("Connection: close\n", r.out, 1, true)
  end)

  it("decodes a chunked body with chunk extensions and trailers", function()
    local r = get(("http://127.0.0.1:%d/chunked"):format(pport))
    assert.equal(0, r.code, r.err)
    assert.equal("hello, chunked world\n", r.out)
  end)

  it("decodes a large chunked body exactly", function()
    local r = get(("http://127.0.0.1:%d/bigchunked"):format(pport))
    assert.equal(0, r.code, r.err)
    assert.equal(300000, #r.out)
    assert.is_true(r.out == pattern(300000))
  end)

  it("reports a chunk-size line that is not hex (or too large) and exits 1", function()
    for _, target in ipairs({ "/badchunk", "/hugechunk" }) do
      local r = get(("http://127.0.0.1:%d%s"):format(pport, target))
      assert.equal(1, r.code, r.err)
      assert.equal("hello", r.out)
      assert.matches("^http_get: bad chunk size line: %w+\n$", r.err)
    end
  end)

  it("reads a body without length until the server closes", function()
    local r = get(("http://127.0.0.1:%d/close"):format(pport))
    assert.equal(0, r.code, r.err)
    assert.equal("until the server closes\n", r.out)
  end)

  it("follows up to 5 redirects with -L (absolute, path and relative)", function()
    local r = get("-L", "-v", ("http://127.0.0.1:%d/redirect/5"):format(pport))
    assert.equal(0, r.code, r.err)
    assert.equal("arrived\n", r.out)
    local n = 0
    for _ in r.err:gmatch("%* redirected to ") do n = n + 1 end
    assert.equal(5, n)
    r = get("-L", ("http://127.0.0.1:%d/dir/page"):format(pport))
    assert.equal("relative redirect ok\n", r.out, r.err)
  end)

  it("gives up after 5 redirects", function()
    local r = get("-L", ("http://127.0.0.1:%d/redirect/6"):format(pport))
    assert.equal(1, r.code)
    assert.matches("http_get: more than 5 redirects", r.err)
    r = get("-L", ("http://127.0.0.1:%d/loop"):format(pport))
    assert.equal(1, r.code)
  end)

  it("does not follow redirects without -L", function()
    local r = get("-v", ("http://127.0.0.1:%d/redirect/1"):format(pport))
    assert.equal(0, r.code, r.err)
    assert.equal("", r.out)
    assert.matches("< HTTP/1.1 302 Found\n", r.err, 1, true)
    assert.matches("< Location: /redirect/0\n", r.err, 1, true)
  end)

  it("writes the body of a 404 and exits 1", function()
    local r = get(("http://127.0.0.1:%d/missing"):format(pport))
    assert.equal(1, r.code)
    assert.equal("no such page\n", r.out)
    assert.matches("http_get: HTTP 404 Not Found", r.err)
  end)

  it("reports network errors and exits 1", function()
    local S = require "bsdsocket"
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(s:bind("127.0.0.1", 0))
    local r = get(("http://127.0.0.1:%d/"):format(s:getsockname().port))
    assert.equal(1, r.code)
    assert.matches("http_get: connect 127%.0%.0%.1:%d+: Connection refused", r.err)
  end)

  it("prints a usage line and exits 2 on bad arguments or URLs", function()
    for _, args in ipairs({ {}, { "-x", "http://a/" }, { "a", "b" }, { "ftp://example.test/" },
                            { "gopher://example.test/" }, { "http://" } }) do
      local r = get(table.unpack(args))
      assert.equal(2, r.code, table.concat(args, " "))
      assert.is_truthy(r.err:match("usage: http_get.lua") or r.err:match("only http:// and https:// URLs"), r.err)
    end
  end)
end)
