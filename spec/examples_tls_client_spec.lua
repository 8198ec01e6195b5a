-- examples/tls_client.lua against a real TLS server (openssl s_server, which
-- prints what it receives): every stdin line reaches the server as soon as
-- it is written, while stdin stays open, not with the next input.
local S = require "bsdsocket"
local X = require "helpers.examples"
local bg = require "helpers.bg"
local certs = require "helpers.certs"

if not pcall(require, "bsdsocket.tls") then
  describe("tls_client.lua", function() pending("bsdsocket.tls not built") end)
  return
end

describe("tls_client.lua", function()
  local c
  setup(function() c = certs.make() end)
  teardown(function() if c then c:remove() end end)

  it("sends each stdin line before the next is written (openssl s_server)", function()
    -- s_server ends at the end of its own stdin: give it one that stays open
    local srv = bg.start("sh -c " .. X.shquote("sleep 60 | exec openssl s_server -naccept 1"
      .. " -accept 127.0.0.1:0 -cert " .. X.shquote(c.server_cert)
      .. " -key " .. X.shquote(c.server_key)), 60)
    local out, err = os.tmpname(), os.tmpname()
    local client
    finally(function()                    -- (busted runs only the last finally)
      srv.cleanup()                       -- the client then sees the close
      if client then client:close() end
      os.remove(out) os.remove(err)
    end)
    local port = srv:port()
    client = assert(io.popen(("exec timeout %d %s >%s 2>%s"):format(X.LIMIT,
      X.example("tls_client", { "localhost", port, "--cacert", c.ca }), out, err), "w"))
    -- the server's output: its session details, then what it received
    local function received(pattern, secs)
      local limit = S.monotime() + secs
      repeat
        local o = srv.output()
        local got = o:match("Secure Renegotiation[^\n]*\n(.*)$")
        if got and got:find(pattern) then return got end
        os.execute("sleep 0.05")
      until S.monotime() > limit
      local o = srv.output()
      return nil, (o:match("Secure Renegotiation[^\n]*\n(.*)$") or ("(no session)\n" .. o))
        .. "\nclient stderr:\n" .. X.readfile(err)
    end
    client:write("a\n")
    client:flush()
    assert(received("^a\n", 10))
    client:write("b\nc\n")                -- two lines in one write: both go now
    client:flush()
    assert(received("^a\nb\nc\n", 10))
    client:write("d\n")
    client:flush()
    assert.equal("a\nb\nc\nd\n", assert(received("^a\nb\nc\nd\n", 10)))
    client:close()
    client = nil
  end)
end)
