-- luacheck: std +busted
-- bsdsocket sockets used from other event libraries, as their documentation
-- promises: a cqueues controller (cqueues.poll and the pollable-object
-- protocol pollfd/events/timeout), a luv loop (uv.new_poll on fileno()), and
-- LuaSec (ssl.wrap on a bsdsocket.luasocket object: getfd/setfd/dirty).
-- The real libraries, installed by `make deps-ci` (lua-cqueues, lua-luv,
-- lua-sec). Every loop is bounded in time.
local S = require "bsdsocket"
local net = require "helpers.net"

-- Each library is a C module built for one Lua: a Lua without it (Lua 5.5,
-- musl: `make check-lua55`, `make check-musl`) marks its cases pending.
local function need(name)
  local ok, mod = pcall(require, name)
  if not ok then
    pending(name .. " is not installed for this Lua (" .. _VERSION
            .. "; make deps-ci installs it for Debian's lua5.4)")
  end
  return ok and mod
end

local function listener()
  local srv = assert(S.tcp_listen("127.0.0.1", 0))
  return srv, srv:getsockname().port
end

describe("cqueues", function()
  local cqueues = need "cqueues"
  if not cqueues then return end

  it("a controller serves bsdsocket sockets: tasks wait with cqueues.poll", function()
    local cq = cqueues.new()
    local srv, port = listener()
    srv:settimeout(0)
    local answers, served = {}, 0
    cq:wrap(function()                       -- the server: one task per client
      while served < 3 do
        local c, _, code = srv:accept()
        if c then
          served = served + 1
          c:settimeout(0)
          cq:wrap(function()
            while true do
              local data, _, rcode = c:recv(100)
              if data == "" then break end
              if data then
                assert(c:sendall(data:upper()))
              else
                assert.equal("EAGAIN", rcode)
                cqueues.poll(c)              -- waits for what events() says
              end
            end
            cqueues.cancel(c:pollfd())       -- as cqueues asks before a close
            c:close()
          end)
        else
          assert.equal("EAGAIN", code)
          cqueues.poll(srv)
        end
      end
    end)
    for i = 1, 3 do                          -- the clients, in the same controller
      cq:wrap(function()
        local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        c:settimeout(0)
        local ok, _, code = c:connect("127.0.0.1", port)
        if not ok then
          assert.equal("EINPROGRESS", code)
          assert.equal("w", c:events())      -- connecting: wait for writability
          cqueues.poll(c)
        end
        assert(c:sendall("client " .. i))
        local got
        repeat
          cqueues.poll(c)
          got = c:recv(100)
        until got
        answers[i] = got
        cqueues.cancel(c:pollfd())
        c:close()
      end)
    end
    local deadline = S.monotime() + 10
    while not cq:empty() and S.monotime() < deadline do
      assert(cq:step(0.5))
    end
    srv:close()
    assert.is_true(cq:empty())
    assert.same({ "CLIENT 1", "CLIENT 2", "CLIENT 3" }, answers)
  end)

  it("waits on a non-blocking socket until it is ready, not 'for 0 seconds'", function()
    local cq = cqueues.new()
    local a, b = net.tcp_pair()
    a:settimeout(0)                          -- non-blocking: timeout() is nil
    assert.is_nil(a:timeout())
    local waited, ready
    cq:wrap(function()
      local t0 = S.monotime()
      ready = cqueues.poll(a) == a
      waited = S.monotime() - t0
    end)
    cq:wrap(function()
      cqueues.sleep(0.2)
      b:sendall("x")
    end)
    local deadline = S.monotime() + 5
    while not cq:empty() and S.monotime() < deadline do assert(cq:step(0.5)) end
    net.closeall(a, b)
    assert.is_true(ready)
    assert.is_true(waited >= 0.15, "poll returned after " .. tostring(waited) .. " s")
  end)

  it("a socket's own timeout bounds cqueues.poll; a blocking one is polled then read", function()
    local cq = cqueues.new()
    local a, b = net.tcp_pair()
    a:settimeout(0.2)
    assert.equal(0.2, a:timeout())
    local early, waited, data
    cq:wrap(function()
      local t0 = S.monotime()
      cqueues.poll(a)                        -- nothing comes: returns after a:timeout()
      waited = S.monotime() - t0
      a:settimeout(0)
      early = select(3, a:recv(10))          -- it returned for the timeout, not for data
      a:settimeout(0.2)
      b:sendall("now")
      a:settimeout(nil)                      -- blocking: poll first, then recv cannot block
      cqueues.poll(a)
      data = a:recv(10)
    end)
    local deadline = S.monotime() + 5
    while not cq:empty() and S.monotime() < deadline do assert(cq:step(0.5)) end
    net.closeall(a, b)
    assert.equal("EAGAIN", early)
    assert.is_true(waited >= 0.15 and waited < 2, "waited " .. tostring(waited))
    assert.equal("now", data)
  end)
end)

describe("luv", function()
  local uv = need "luv"
  if not uv then return end

  it("uv.new_poll(sock:fileno()) drives a bsdsocket echo server", function()
    local srv, port = listener()
    srv:settimeout(0)
    local clients = {}
    local function close_all()
      for c, h in pairs(clients) do
        if not h:is_closing() then h:close() end
        c:close()
      end
    end
    local lpoll = uv.new_poll(srv:fileno())
    lpoll:start("r", function()
      while true do
        local c = srv:accept()
        if not c then break end
        c:settimeout(0)
        local h = uv.new_poll(c:fileno())
        clients[c] = h
        h:start("r", function()
          local data = c:recv(4096)
          if data == "" then
            h:stop() h:close()
            clients[c] = nil
            c:close()
            uv.stop()                        -- the client is done
          elseif data then
            assert(c:sendall(data))
          end
        end)
      end
    end)
    local guard = uv.new_timer()
    guard:start(10000, 0, function() uv.stop() end)
    local h = net.spawn(([[
      local S = require "bsdsocket"
      local c = assert(S.tcp_connect("127.0.0.1", %d, 5))
      for i = 1, 3 do
        assert(c:sendall("ping " .. i .. "\n"))
        io.write(assert(c:recvall(7)))
      end
      c:close()
    ]]):format(port))
    finally(function()
      h:cleanup()
      if not lpoll:is_closing() then lpoll:close() end
      if not guard:is_closing() then guard:close() end
      close_all()
      uv.run("nowait")
      srv:close()
    end)
    uv.run("default")
    assert.is_true(h:wait(5))
    assert.equal("ping 1\nping 2\nping 3\n", h:output())
  end)
end)

describe("LuaSec", function()
  local ssl = need "ssl"
  if not ssl then return end
  local tmp, cert, key

  setup(function()
    tmp = net.tmpdir()
    cert, key = tmp:path("cert.pem"), tmp:path("key.pem")
    local ok = os.execute("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
      .. " -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
      .. " -keyout " .. net.shquote(key) .. " -out " .. net.shquote(cert) .. " >/dev/null 2>&1")
    assert(ok, "openssl could not make a test certificate")
  end)
  teardown(function() tmp:remove() end)

  it("ssl.wrap takes a bsdsocket.luasocket object's descriptor (getfd/setfd)", function()
    local h = net.spawn(([[
      local socket = require "bsdsocket.luasocket"
      local ssl = require "ssl"
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      print("port " .. port) io.stdout:flush()
      local c = assert(server:accept())
      c:settimeout(5)
      local t = assert(ssl.wrap(c, { mode = "server", protocol = "any",
        certificate = %q, key = %q }))
      print("released " .. c:getfd())
      t:settimeout(5)
      assert(t:dohandshake())
      local line = assert(t:receive())
      t:send("secure " .. line .. "\n")
      t:close()
    ]]):format(cert, key))
    finally(function() h:cleanup() end)
    local port
    for _ = 1, 250 do
      port = tonumber(h:output():match("port (%d+)"))
      if port then break end
      net.sleep(0.02)
    end
    assert(port, h:output())

    local saved = { package.loaded.socket, package.loaded["socket.core"] }
    finally(function() package.loaded.socket, package.loaded["socket.core"] = saved[1], saved[2] end)
    local socket = require "bsdsocket.luasocket"
    local conn = assert(socket.connect("127.0.0.1", port))
    local fd = conn:getfd()
    local t = assert(ssl.wrap(conn, { mode = "client", protocol = "any",
      verify = "peer", cafile = cert }))
    assert.equal(-1, conn:getfd())           -- LuaSec owns the descriptor now
    assert.equal(fd, t:getfd())
    t:settimeout(5)
    assert(t:dohandshake())
    assert(t:send("hello\n"))
    -- socket.select watches LuaSec's object through its getfd and dirty
    local r = socket.select({ t }, nil, 5)
    assert.equal(t, r[1])
    assert.equal("secure hello", t:receive())
    t:close()
    assert.is_true(h:wait(5))
    assert.matches("released %-1", h:output())
  end)

  it("ssl.https.request runs unchanged on the compat layer (lua5.4 -l bsdsocket.luasocket)", function()
    local h = net.spawn(([[
      local socket = require "bsdsocket.luasocket"
      local ssl = require "ssl"
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      print("port " .. port) io.stdout:flush()
      local c = assert(server:accept())
      local t = assert(ssl.wrap(c, { mode = "server", protocol = "any",
        certificate = %q, key = %q }))
      t:settimeout(5)
      assert(t:dohandshake())
      local request = assert(t:receive())
      repeat local line = assert(t:receive()) until line == ""
      local body = "over TLS: " .. request
      t:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
      t:close()
    ]]):format(cert, key))
    finally(function() h:cleanup() end)
    local port
    for _ = 1, 250 do
      port = tonumber(h:output():match("port (%d+)"))
      if port then break end
      net.sleep(0.02)
    end
    assert(port, h:output())
    local script = tmp:path("https_client.lua")
    local f = assert(io.open(script, "w"))
    f:write(([[
      assert(package.loaded["socket.core"]._BSDSOCKET, "socket.core is not bsdsocket's")
      local https = require "ssl.https"
      local t = {}
      local ok, code = https.request{ url = "https://127.0.0.1:%d/secret",
        sink = require("ltn12").sink.table(t), verify = "peer", cafile = %q }
      print(ok, code, table.concat(t))
    ]]):format(port, cert))
    f:close()
    local p = assert(io.popen(net.childenv() .. " " .. net.luacmd(20) .. " -l bsdsocket.luasocket "
      .. net.shquote(script) .. " 2>&1"))
    local out = p:read("a")
    p:close()
    assert.equal("1\t200\tover TLS: GET /secret HTTP/1.1\n", out)
    assert.is_true(h:wait(5))
  end)
end)
