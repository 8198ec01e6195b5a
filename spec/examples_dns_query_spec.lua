-- luacheck: std +busted
-- examples/dns_query.lua against dnsmasq (Debian's dnsmasq-base, installed
-- by `make deps`), started here on a free loopback port with its own
-- configuration: no upstream servers, no /etc/hosts, records below.
local X = require "helpers.examples"
local S = require "bsdsocket"

local RECORDS = [[
local=/example.test/
host-record=www.example.test,192.0.2.10,2001:db8::10
cname=alias.example.test,www.example.test
mx-host=example.test,mail.example.test,10
mx-host=example.test,mx2.example.test,20
txt-record=example.test,"v=spf1 -all","second string"
dns-rr=example.test,2,036e7331076578616d706c65047465737400
]]

-- A port free for both UDP and TCP on 127.0.0.1 (dnsmasq serves both).
local function free_port()
  for _ = 1, 50 do
    local u <close> = assert(S.udp("127.0.0.1", 0))
    local port = u:getsockname().port
    local t <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    if t:bind("127.0.0.1", port) then return port end
  end
  error("no free port")
end

describe("examples/dns_query.lua", function()
  local dir, dnsmasq, port
  setup(function()
    assert(os.execute("command -v dnsmasq >/dev/null || test -x /usr/sbin/dnsmasq"),
      "dnsmasq is missing: run `make deps` (Debian package dnsmasq-base)")
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 755 " .. X.shquote(dir)))
    port = free_port()
    local big = {}
    for i = 1, 30 do        -- ~1.6 KB of TXT: too big for a 512-byte UDP answer
      big[i] = ('txt-record=big.example.test,"record %02d padding padding padding padding"'):format(i)
    end
    X.writefile(dir .. "/dnsmasq.conf", table.concat({
      "port=" .. port, "listen-address=127.0.0.1", "bind-interfaces",
      "no-resolv", "no-hosts", "no-poll", "pid-file=", "log-facility=-",
      RECORDS, table.concat(big, "\n"), "" }, "\n"))
    local bin = os.execute("command -v dnsmasq >/dev/null") and "dnsmasq" or "/usr/sbin/dnsmasq"
    dnsmasq = X.spawn(X.native("%s -k -C %s"):format(bin, X.shquote(dir .. "/dnsmasq.conf")),
      { limit = 120 })   -- it serves the whole file
    -- Ready once it accepts TCP connections.
    for _ = 1, 100 do
      local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      if c:connect("127.0.0.1", port) then return end
      os.execute("sleep 0.1")
    end
    error("dnsmasq did not start: " .. dnsmasq:stderr())
  end)
  teardown(function()
    if dnsmasq then dnsmasq:kill() end
    if dir then os.execute("rm -rf " .. X.shquote(dir)) end
  end)

  local function query(...)
    local args = { ... }
    args[#args + 1] = "@127.0.0.1:" .. port
    return X.run(X.example("dns_query", args))
  end

  it("gets A and AAAA records", function()
    local r = query("www.example.test")
    assert.equal(0, r.code, r.err)
    assert.equal("192.0.2.10\n", r.out)
    r = query("www.example.test", "AAAA")
    assert.equal("2001:db8::10\n", r.out, r.err)
  end)

  it("prints a CNAME and the address it leads to (name compression)", function()
    local r = query("alias.example.test", "A")
    assert.equal(0, r.code, r.err)
    assert.equal("www.example.test.\n192.0.2.10\n", r.out)
    r = query("alias.example.test", "cname")
    assert.equal("www.example.test.\n", r.out, r.err)
  end)

  it("gets MX, NS and TXT records", function()
    local r = query("example.test", "MX")
    assert.equal(0, r.code, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "10 mail.example.test.", "20 mx2.example.test." }, lines)
    r = query("example.test", "NS")
    assert.equal("ns1.example.test.\n", r.out, r.err)
    r = query("example.test", "TXT")
    assert.equal('"v=spf1 -all" "second string"\n', r.out, r.err)
  end)

  it("takes @SERVER before TYPE and a trailing dot on the name", function()
    local r = X.run(X.example("dns_query", { "www.example.test.", "@127.0.0.1:" .. port, "AAAA" }))
    assert.equal("2001:db8::10\n", r.out, r.err)
  end)

  it("falls back to TCP when the UDP answer is truncated", function()
    local r = query("big.example.test", "TXT")
    assert.equal(0, r.code, r.err)
    assert.matches("truncated, retrying over TCP", r.err)
    local got = {}
    for n in r.out:gmatch('"record (%d%d) padding padding padding padding"\n') do
      got[#got + 1] = tonumber(n)
    end
    table.sort(got)
    assert.equal(30, #got)
    for i = 1, 30 do assert.equal(i, got[i]) end
  end)

  it("reports NXDOMAIN and exits 1", function()
    local r = query("nothing.example.test")
    assert.equal(1, r.code)
    assert.equal("", r.out)
    assert.matches("dns_query: nothing%.example%.test A: NXDOMAIN", r.err)
  end)

  it("prints nothing and exits 0 for a name without records of the type", function()
    local r = query("www.example.test", "MX")
    assert.equal(0, r.code, r.err)
    assert.equal("", r.out)
  end)

  it("sends the query again when the first datagram is lost", function()
    local relay, rport = X.start_peer("udp-drop-first", { port })
    finally(relay.kill)
    local r = X.run(X.example("dns_query", { "www.example.test", "@127.0.0.1:" .. rport }))
    assert.equal(0, r.code, r.err)
    assert.equal("192.0.2.10\n", r.out)
    assert.matches("^dropped %d+$", relay:line())
  end)

  it("gives up after 3 tries when nothing answers", function()
    local silent <close> = assert(S.udp("127.0.0.1", 0))
    local r = X.run(X.example("dns_query",
      { "www.example.test", "@127.0.0.1:" .. silent:getsockname().port }))
    assert.equal(1, r.code)
    assert.matches("dns_query: no answer from 127%.0%.0%.1:%d+ after 3 tries", r.err)
  end)

  it("prints a usage line and exits 2 on bad arguments", function()
    for _, args in ipairs({ {}, { "a", "BOGUS" }, { "a", "@1.2.3.4:x" }, { "a", "A", "MX" } }) do
      local r = X.run(X.example("dns_query", args))
      assert.equal(2, r.code, table.concat(args, " "))
      assert.matches("^usage: dns_query.lua NAME", r.err)
    end
  end)
end)
