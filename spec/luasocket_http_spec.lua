-- luacheck: std +busted
-- LuaSocket's pure-Lua modules (socket.http, socket.url, socket.smtp, ltn12,
-- installed by Debian's lua-socket) running unchanged over bsdsocket: the
-- client is started the one-line way, `lua5.4 -l bsdsocket.luasocket
-- script.lua`, against servers written with the compat layer too. Each
-- client checks first that socket.core is bsdsocket's.
local net = require "helpers.net"

-- runs Lua code as `lua5.4 -l bsdsocket.luasocket FILE` (bounded); output, ok
local function run_oneliner(code)
  local d = net.tmpdir()
  local script = d:path("client.lua")
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local p = assert(io.popen(net.childenv() .. " " .. net.luacmd(20) .. " -l bsdsocket.luasocket "
    .. net.shquote(script) .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  d:remove()
  return out, ok
end

-- a child serving `n` connections with `handler(client)` (compat layer);
-- returns the handle and the port
local function serve(n, handler_code)
  local h = net.spawn(([[
    local socket = require "bsdsocket.luasocket"
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    print("port " .. port) io.stdout:flush()
    local handle = %s
    for _ = 1, %d do
      local c = assert(server:accept())
      c:settimeout(5)
      handle(c)
      c:close()
    end
  ]]):format(handler_code, n), 20)
  local port
  for _ = 1, 250 do
    port = tonumber(h:output():match("port (%d+)"))
    if port then break end
    net.sleep(0.02)
  end
  assert(port, "server did not start: " .. h:output())
  return h, port
end

local PRELUDE = [[
  assert(package.loaded["socket.core"]._BSDSOCKET, "socket.core is not bsdsocket's")
  assert(require("socket") == package.loaded["socket.core"])
]]

describe("LuaSocket's modules over bsdsocket.luasocket", function()
  -- mime.lua needs LuaSocket's C module mime.core, built for one Lua only
  if not package.searchpath("mime.core", package.cpath) then
    pending("LuaSocket's mime.core is not installed for this Lua ("
            .. _VERSION .. "; make deps installs it for Debian's lua5.4)")
    return
  end
  local h
  after_each(function() if h then h:cleanup() h = nil end end)

  it("socket.http: GET, POST with ltn12 source and sink, chunked replies", function()
    local port
    h, port = serve(3, [[function(c)
      local request = assert(c:receive())
      local headers = {}
      while true do
        local line = assert(c:receive())
        if line == "" then break end
        local k, v = line:match("^([^:]+):%s*(.*)$")
        headers[k:lower()] = v
      end
      local body = ""
      if headers["content-length"] then body = assert(c:receive(tonumber(headers["content-length"]))) end
      if request:match("^GET /chunked ") then
        c:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
          .. "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        return
      end
      local reply = request .. "|" .. (headers["user-agent"] or "") .. "|" .. body
      c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #reply
        .. "\r\nConnection: close\r\n\r\n" .. reply)
    end]])
    local out, ok = run_oneliner(PRELUDE .. ([[
      local http, ltn12 = require "socket.http", require "ltn12"
      local base = "http://127.0.0.1:%d"
      local body, code, headers = http.request(base .. "/hello?x=1")
      print("GET", code, headers["content-type"], body)
      local t = {}
      local r, code2 = http.request{ url = base .. "/submit", method = "POST",
        source = ltn12.source.string("payload"), headers = { ["content-length"] = 7 },
        sink = ltn12.sink.table(t) }
      print("POST", r, code2, table.concat(t))
      print("CHUNKED", http.request(base .. "/chunked"))
    ]]):format(port))
    assert(ok, out)
    assert.matches("GET\t200\ttext/plain\tGET /hello%?x=1 HTTP/1%.1|LuaSocket 3[^|]*bsdsocket[^|]*|\n", out)
    assert.matches("POST\t1\t200\tPOST /submit HTTP/1%.1|[^|]*|payload\n", out)
    assert.matches("CHUNKED\thello world\t200", out)
    assert.is_true(h:wait(5))
  end)

  it("socket.http reports LuaSocket's error strings", function()
    local probe = assert(require("bsdsocket").tcp_listen("127.0.0.1", 0))
    local port = probe:getsockname().port
    probe:close()
    local out = run_oneliner(PRELUDE .. ([[
      local http = require "socket.http"
      print(http.request("http://127.0.0.1:%d/"))
      print(http.request("http://host.is.invalid/"))
    ]]):format(port))
    assert.matches("nil\tconnection refused\n", out)
    assert.matches("nil\thost or service not provided, or not known\n", out)
  end)

  it("socket.smtp sends a message through a conversation with a server", function()
    local port
    h, port = serve(1, [[function(c)
      local function reply(s) assert(c:send(s .. "\r\n")) end
      reply("220 test ESMTP")
      local data = {}
      while true do
        local line = c:receive()
        if not line then break end
        local verb = line:upper():match("^(%a+)")
        if verb == "EHLO" or verb == "HELO" then reply("250 ok")
        elseif verb == "MAIL" or verb == "RCPT" then reply("250 ok")
        elseif verb == "DATA" then
          reply("354 go on")
          while true do
            local l = assert(c:receive())
            if l == "." then break end
            data[#data + 1] = l
          end
          io.write("BODY:", table.concat(data, "|"), "\n") io.flush()
          reply("250 queued")
        elseif verb == "QUIT" then reply("221 bye") break
        else reply("500 what") end
      end
    end]])
    local out, ok = run_oneliner(PRELUDE .. ([[
      local smtp = require "socket.smtp"
      local r, err = smtp.send{ from = "<a@example.com>", rcpt = "<b@example.com>",
        server = "127.0.0.1", port = %d,
        source = smtp.message{ headers = { subject = "hi" }, body = "the body" } }
      print("SENT", r, err)
    ]]):format(port))
    assert(ok, out)
    assert.matches("SENT\t1\tnil", out)
    assert.is_true(h:wait(5))
    local body = h:output():match("BODY:([^\n]*)")
    assert.matches("|the body$", body)                    -- headers, empty line, body
    assert.matches("Subject: hi|", body, 1, true)
    assert.matches("X%-Mailer: LuaSocket 3[^|]*bsdsocket", body)
  end)

  it("socket.url needs nothing but the module table", function()
    local out = run_oneliner(PRELUDE .. [[
      local url = require "socket.url"
      local u = url.parse("http://user@example.com:8080/a/b?q=1#f")
      print(u.host, u.port, u.path, u.query, u.fragment, u.user)
    ]])
    assert.equal("example.com\t8080\t/a/b\tq=1\tf\tuser\n", out)
  end)
end)
