-- luacheck: std +busted
-- The loop examples as they are meant to run: each server is a child process
-- (under `timeout`, killed at the end), the clients talk to it over loopback.
local S = require "bsdsocket"
local net = require "helpers.net"

local BUILD = os.getenv("BSDSOCKET_BUILD") or "build"

local function shellquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local ENV = ("env LUA_PATH='lua/?.lua;;' LUA_CPATH=%s"):format(shellquote(BUILD .. "/?.so;;"))
local ULIMIT = "ulimit -n 16384 2>/dev/null || ulimit -n 8192 2>/dev/null;"

-- Starts an example with extra environment settings (a table, may be
-- empty); returns its port and a function that kills and reaps it.
local function server_env(env, script, ...)
  local args, vars = {}, {}
  for i, a in ipairs({ ... }) do args[i] = shellquote(a) end
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. shellquote(tostring(v)) end
  local cmd = ("%s echo $$; exec %s %s " .. net.luacmd(120) .. " %s 127.0.0.1 0 %s 2>&1")
    :format(ULIMIT, ENV, table.concat(vars, " "), script, table.concat(args, " "))
  local p = assert(io.popen(cmd, "r"))
  local pid = tonumber(p:read("l"))
  local first = p:read("l")
  local port = first and tonumber(first:match("listening on 127%.0%.0%.1:(%d+)"))
  local function stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    local rest = p:read("a")
    p:close()
    return rest
  end
  if not port then
    stop()
    error("server did not start: " .. tostring(first))
  end
  return port, stop
end

local function server(script, ...)
  return server_env({}, script, ...)
end

local function connect(port)
  local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  c:settimeout(10)
  assert(c:connect("127.0.0.1", port))
  return c
end

local function lines(sock)
  local buf = ""
  return function()
    for _ = 1, 10000 do
      local nl = buf:find("\n", 1, true)
      if nl then
        local line = buf:sub(1, nl - 1)
        buf = buf:sub(nl + 1)
        return line
      end
      local data, err = sock:recv(4096)
      if not data then return nil, err end
      if data == "" then return nil, "EOF" end
      buf = buf .. data
    end
  end
end

describe("examples/echo_server_loop.lua", function()
  it("serves 2,000 concurrent clients, every byte checked, in bounded time", function()
    local port, stop = server("examples/echo_server_loop.lua")
    local cmd = ("%s %s " .. net.luacmd(120) .. " spec/helpers/echo_load.lua %d 2000 4 2>&1")
      :format(ULIMIT, ENV, port)
    local t0 = S.monotime()
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    local ok = p:close()
    local seconds = S.monotime() - t0
    local rest = stop()
    assert(ok, out .. rest)
    local clients, open, bytes = out:match("^ok clients=(%d+) open=(%d+) bytes=(%d+)")
    assert(clients, out)
    assert.equal(2000, tonumber(clients))
    assert.equal(2000, tonumber(open))
    assert.is_true(tonumber(bytes) > 2000 * 4)
    assert.is_true(seconds < 60, "took " .. seconds .. " s")
    assert.equal("", rest)              -- the server reported no task error
    print(("\n  echo load: %s (%.2f s with start-up)"):format(out:gsub("\n$", ""), seconds))
  end)
end)

describe("examples/chat_server.lua", function()
  it("asks for nicknames, announces joins, lines, renames and leaves", function()
    local port, stop = server("examples/chat_server.lua")
    local ok, err = pcall(function()
      local a = connect(port)
      local ra = lines(a)
      assert.equal("* welcome; your nickname?", ra())
      assert(a:sendall("alice\n"))
      assert.equal("* you are alice", ra())

      local b = connect(port)
      local rb = lines(b)
      assert.equal("* welcome; your nickname?", rb())
      assert(b:sendall("alice\r\n"))
      assert.equal("* nickname alice is taken", rb())
      assert(b:sendall("bad nick!\n"))
      assert.matches("^%* nicknames are", rb())
      assert(b:sendall("bob\n"))
      assert.equal("* you are bob", rb())
      assert.equal("* bob joined", ra())

      assert(a:sendall("hello bob\n"))
      assert.equal("alice: hello bob", rb())
      assert(b:sendall("hi alice\n/who\n"))
      assert.equal("bob: hi alice", ra())
      assert.equal("* here: alice bob", rb())

      assert(b:sendall("/nick robert\n"))
      assert.equal("* bob is now robert", ra())
      assert.equal("* bob is now robert", rb())

      -- a third client sends in pieces; the others see whole lines
      local c = connect(port)
      local rc = lines(c)
      rc()
      assert(c:sendall("ca"))
      assert(c:sendall("rol\nhel"))
      assert.equal("* you are carol", rc())
      assert.equal("* carol joined", ra())
      assert.equal("* carol joined", rb())
      assert(c:sendall("lo all\n"))
      assert.equal("carol: hello all", ra())
      assert.equal("carol: hello all", rb())

      assert(b:sendall("/quit\n"))
      assert.equal("* robert left", ra())
      assert.equal("* robert left", rc())
      assert.is_nil(rb())               -- the server closed robert
      c:close()                         -- without /quit
      assert.equal("* carol left", ra())
      a:close()
      b:close()
    end)
    local rest = stop()
    assert(ok, tostring(err) .. rest)
    assert.equal("", rest)
  end)

  it("keeps serving 200 clients chatting at once", function()
    local port, stop = server("examples/chat_server.lua")
    local ok, err = pcall(function()
      local loop = require "bsdsocket.loop"
      local N, got = 200, 0
      local clients = {}
      for i = 1, N do
        local c = connect(port)
        local r = lines(c)
        assert.equal("* welcome; your nickname?", r())
        assert(c:sendall("u" .. i .. "\n"))
        assert.equal("* you are u" .. i, r())
        clients[i] = { c, r }
      end
      -- the last one to join hears nobody join after it; the first hears N-1 joins
      local l1 = clients[1][2]
      for i = 2, N do assert.equal("* u" .. i .. " joined", l1()) end
      -- u1 speaks: every other client hears it exactly once
      assert(clients[1][1]:sendall("ping\n"))
      for i = 2, N do
        loop.spawn(function()
          local r = clients[i][2]
          local line = r()
          while line and line ~= "u1: ping" do line = r() end
          if line then got = got + 1 end
        end)
      end
      assert.is_true(loop.run(30))
      assert.equal(N - 1, got)
      for i = 1, N do clients[i][1]:close() end
    end)
    local rest = stop()
    assert(ok, tostring(err) .. rest)
  end)
end)

describe("examples/http_server.lua", function()
  local dir, port, stop
  local index = "<html><body>hello</body></html>\n"
  local binary

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. shellquote(dir .. "/sub") .. " " .. shellquote(dir .. "/empty")))
    local function write(name, data)
      local f = assert(io.open(dir .. "/" .. name, "wb"))
      f:write(data)
      f:close()
    end
    local parts = {}
    for i = 0, 300000 do parts[#parts + 1] = string.char(i * 7 % 256) end
    binary = table.concat(parts)
    write("index.html", index)
    write("sub/notes.txt", "notes\n")
    write("data.bin", binary)
    write("style.css", "body{}\n")
    port, stop = server("examples/http_server.lua", dir)
  end)

  teardown(function()
    local rest = stop and stop() or ""
    os.execute("rm -rf " .. shellquote(dir))
    assert.equal("", rest)
  end)

  -- reads one response: status, headers (lower-case names), body
  local function response(sock, buf, head)
    buf = buf or ""
    while not buf:find("\r\n\r\n", 1, true) do
      local d = assert(sock:recv(65536))
      if d == "" then return nil end
      buf = buf .. d
    end
    local top, rest = buf:match("^(.-)\r\n\r\n(.*)$")
    local status = tonumber(top:match("^HTTP/1%.1 (%d%d%d) "))
    local headers = {}
    for name, value in top:gmatch("\r\n([^:]+): ([^\r]*)") do headers[name:lower()] = value end
    local length = head and 0 or tonumber(headers["content-length"])
    if #rest < length then rest = rest .. assert(sock:recvall(length - #rest)) end
    return status, headers, rest:sub(1, length), rest:sub(length + 1)
  end

  local function get(target, extra)
    local c <close> = connect(port)
    assert(c:sendall("GET " .. target .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" .. (extra or "") .. "\r\n"))
    return response(c)
  end
  -- the descriptor of the request's socket must not stay open: the server
  -- closes it after the answer (the client sees EOF)
  local function closed(c)
    local d, err = c:recv(100)
    return d == "", "after the answer: " .. tostring(d or err)
  end

  it("answers 400 and closes for a Content-Length that is not decimal digits", function()
    for _, value in ipairs({ "0.5", "1.5", "0x2", "-1", "+2", "2 2", "", "1e1", "2.0", "\t2x" }) do
      local c <close> = connect(port)
      c:settimeout(3)
      assert(c:sendall("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: " .. value .. "\r\n\r\nxx"))
      assert.equal(400, (response(c)), value)
      assert(closed(c))
    end
    local c <close> = connect(port)
    c:settimeout(3)
    assert(c:sendall("GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nxx"))
    assert.equal(400, (response(c)), "two Content-Length headers")
    assert(closed(c))
    -- decimal digits: the body is read and dropped, the next request served
    local k <close> = connect(port)
    k:settimeout(3)
    assert(k:sendall("GET / HTTP/1.1\r\nContent-Length: 002\r\n\r\nxx"
      .. "GET /sub/notes.txt HTTP/1.1\r\nConnection: close\r\n\r\n"))
    local status, _, body, rest = response(k)
    assert.equal(200, status)
    assert.equal(index, body)
    status, _, body = response(k, rest)
    assert.equal(200, status)
    assert.equal("notes\n", body)
    assert(closed(k))
    assert.equal(413, get("/", "Content-Length: 99999999999999999999999\r\n"))
  end)

  it("serves files with Content-Length and Content-Type", function()
    local status, h, body = get("/")
    assert.equal(200, status)
    assert.equal(index, body)
    assert.equal(tostring(#index), h["content-length"])
    assert.equal("text/html; charset=utf-8", h["content-type"])
    status, h, body = get("/data.bin")
    assert.equal(200, status)
    assert.equal("application/octet-stream", h["content-type"])
    assert.equal(#binary, tonumber(h["content-length"]))
    assert.is_true(body == binary)
    status, h, body = get("/sub/notes.txt?x=1")
    assert.equal(200, status)
    assert.equal("notes\n", body)
    assert.equal("text/plain; charset=utf-8", h["content-type"])
    assert.equal("text/css", select(2, get("/style.css"))["content-type"])
    assert.equal(200, get("/sub%2Fnotes.txt"))
  end)

  it("answers 404, 405, 400, and never leaves DIR", function()
    assert.equal(404, get("/missing.txt"))
    assert.equal(404, get("/empty/"))
    for _, target in ipairs({ "/../../../../etc/passwd", "/sub/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                              "/sub/%2E%2E/%2E%2E/etc/hostname", "/..", "/a%00b", "/x\\..\\y" }) do
      local status, _, body = get(target)
      assert.equal(403, status, target)
      assert.not_matches("root:", body)
    end
    local c <close> = connect(port)
    assert(c:sendall("DELETE /index.html HTTP/1.1\r\nHost: x\r\n\r\n"))
    local status, h = response(c)
    assert.equal(405, status)
    assert.equal("GET, HEAD", h["allow"])
    local d <close> = connect(port)
    assert(d:sendall("NONSENSE\r\n\r\n"))
    assert.equal(400, (response(d)))
    assert.equal(400, get("relative"))
  end)

  it("keeps the connection alive, also for pipelined requests and HEAD", function()
    local c <close> = connect(port)
    assert(c:sendall("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    local status, h, body, rest = response(c)
    assert.equal(200, status)
    assert.equal("keep-alive", h["connection"])
    assert.equal(index, body)
    assert.equal("text/html; charset=utf-8", h["content-type"])
    -- three at once; the answers come in order on the same connection
    assert(c:sendall("GET /sub/notes.txt HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"))
    status, h, body, rest = response(c, rest)
    assert.equal(200, status)
    assert.equal("6", h["content-length"])
    assert.equal("notes\n", body)
    status, h, body, rest = response(c, rest, true)
    assert.equal(200, status)
    assert.equal(tostring(#binary), h["content-length"])
    assert.equal("", body)
    status, h, body, rest = response(c, rest)
    assert.equal(404, status)
    assert.equal(h["content-length"], tostring(#body))
    assert.equal("", rest)
    -- HTTP/1.0 closes unless asked
    assert(c:sendall("GET / HTTP/1.0\r\n\r\n"))
    status, h, body, rest = response(c, rest)
    assert.equal(200, status)
    assert.equal(index, body)
    assert.equal("close", h["connection"])
    assert.equal("", rest .. assert(c:recv(10)))
  end)

  describe("with HTTP_SERVER_HEAD_TIMEOUT=1 and HTTP_SERVER_MAX_CONNECTIONS=3", function()
    local lport, lstop
    setup(function()
      lport, lstop = server_env({ HTTP_SERVER_HEAD_TIMEOUT = 1, HTTP_SERVER_MAX_CONNECTIONS = 3 },
        "examples/http_server.lua", dir)
    end)
    teardown(function()
      local rest = lstop and lstop() or ""
      assert.equal("", rest)
    end)

    it("gives a request head one deadline: a client sending a byte at a time gets 408 and is closed", function()
      local c <close> = connect(lport)
      c:settimeout(0.2)
      local t0 = S.monotime()
      assert(c:sendall("GET / HTTP/1.1\r\n"))
      local got, err = "", nil
      -- one header byte every 0.2 s, each well inside any per-recv limit;
      -- bounded: 40 rounds (8 s)
      for i = 1, 40 do
        local ok, _, code = c:send(("X-Slow: abcdefghijklmnopqrstuvwxyz\r\n"):sub(i, i))
        if not ok then err = code break end
        local d, _, rcode = c:recv(4096)
        if d == "" then break end
        if d then got = got .. d
        elseif rcode ~= "ETIMEDOUT" then err = rcode break end
      end
      local held = S.monotime() - t0
      assert.is_true(held < 3, ("the server held the connection %.1f s (deadline 1 s)"):format(held))
      -- the 408 comes first, unless our next byte crossed the close (a reset)
      if err == nil or got ~= "" then
        assert.matches("^HTTP/1%.1 408 Request Timeout\r\n", got)
      end
      -- a request that arrives in time is served as usual
      local d <close> = connect(lport)
      assert(d:sendall("GET /sub/notes.txt HTTP/1.1\r\nConnection: close\r\n\r\n"))
      assert.equal(200, (response(d)))
    end)

    it("serves 3 connections at once, answers a 4th with 503 and closes it, reuses a freed slot", function()
      local held = {}
      for i = 1, 3 do
        local c = connect(lport)
        held[i] = c
        assert(c:sendall("GET /sub/notes.txt HTTP/1.1\r\n\r\n"))   -- kept alive
        assert.equal(200, (response(c)))
      end
      local ok, err = pcall(function()
        local extra <close> = connect(lport)
        extra:settimeout(3)
        local status, h, body = response(extra)
        assert.equal(503, status)
        assert.equal("close", h["connection"])
        assert.equal("503 Service Unavailable\n", body)
        assert(closed(extra))
        -- a slot comes free when a client leaves (bounded retries)
        held[1]:close()
        local got
        for _ = 1, 50 do
          local c <close> = connect(lport)
          c:settimeout(3)
          assert(c:sendall("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
          got = response(c)
          if got == 200 then break end
          require("helpers.net").sleep(0.05)
        end
        assert.equal(200, got)
      end)
      for i = 1, 3 do held[i]:close() end
      assert(ok, err)
    end)
  end)

  local curl = io.popen("command -v curl"):read("l")
  local itcurl = curl and it or pending
  itcurl("works with curl, reusing one connection", function()
    local url = "http://127.0.0.1:" .. port
    local out = os.tmpname()
    local cmd = ("curl -sS -v --max-time 20 -o %s %s/data.bin -o /dev/null %s/ 2>&1")
      :format(shellquote(out), url, url)
    local p = assert(io.popen(cmd, "r"))
    local log = p:read("a")
    assert.is_true(p:close(), log)
    local f = assert(io.open(out, "rb"))
    local body = f:read("a")
    f:close()
    os.remove(out)
    assert.is_true(body == binary)
    assert.matches("Re%-using existing connection", log)
    local code = io.popen(("curl -s -o /dev/null -w '%%{http_code}' --max-time 20 --path-as-is %s/../../etc/passwd")
      :format(url)):read("a")
    assert.equal("403", code)
  end)
end)
