-- luacheck: std +busted
-- examples/port_scan.lua on 127.0.0.1: open ports are python3 listeners,
-- closed ones are ports bound here but not listening (so nobody else can
-- take them during the scan), and a "filtered" one is a listener whose
-- accept queue is full, so the kernel leaves new SYNs unanswered.
local X = require "helpers.examples"
local S = require "bsdsocket"
local backend = require "helpers.backend"
-- a closed port reads as open: the scan's connect sees no error
local REFUSAL = "libkqueue: it reads SO_ERROR to fill fflags, which clears"
  .. " a refused connect's error"

-- n consecutive ports from base, each bound (not listening) by a socket.
-- SO_REUSEADDR: a port may have old connections in TIME_WAIT; that does
-- not make it answer.
local function bound(port)
  local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(s:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
  if s:bind("127.0.0.1", port) then return s end
  s:close()
end

-- Ports below the ephemeral range (32768 and up on Linux), where a busy
-- machine's outgoing connections leave no TIME_WAIT entries.
local function reserve(n)
  math.randomseed(os.time(), S.monotime() * 1e6 // 1)
  for _ = 1, 100 do
    local base, socks = math.random(10000, 30000), {}
    for i = 0, n - 1 do
      local s = bound(base + i)
      if not s then break end
      socks[#socks + 1] = s
    end
    if #socks == n then return base, socks end
    for _, s in ipairs(socks) do s:close() end
  end
  error("no run of free ports")
end

describe("examples/port_scan.lua", function()
  it("reports the open ports among closed ones", function()
    if backend.libkqueue then pending(REFUSAL) return end
    local base, socks = reserve(20)
    -- Hand two of the ports to python3 listeners.
    local open = { base + 4, base + 13 }
    local peers = {}
    finally(function()                    -- (busted keeps only one finally)
      for _, s in ipairs(socks) do s:close() end
      for _, p in ipairs(peers) do p:kill() end
    end)
    for _, port in ipairs(open) do
      socks[port - base + 1]:close()
      local p = X.spawn(X.native("python3 -u -c %s %d"):format(X.shquote(
        "import socket,sys,time\n" ..
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n" ..
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n" ..
        "print('listening', flush=True); time.sleep(60)"), port))
      peers[#peers + 1] = p
      p:expect("^listening$")
    end
    local r = X.run(X.example("port_scan", { "127.0.0.1", ("%d-%d"):format(base, base + 19), "2" }))
    assert.equal(0, r.code, r.err)
    assert.equal(("%d open\n%d open\n"):format(open[1], open[2]), r.out)
    assert.matches(("scanned 127%%.0%%.0%%.1 ports %d%%-%d in [%%d.]+s: 2 open, 18 closed, 0 filtered")
      :format(base, base + 19), r.err)
  end)

  it("counts a port that does not answer within TIMEOUT as filtered", function()
    if backend.libkqueue then pending(REFUSAL) return end
    local base, socks = reserve(2)
    -- A listener with backlog 0 and a full queue never answers a new SYN.
    local full = socks[1]
    assert(full:listen(0))
    local fillers = {}
    finally(function()
      for _, s in ipairs(socks) do s:close() end
      for _, c in ipairs(fillers) do c:close() end
    end)
    for _ = 1, 8 do
      local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      c:settimeout(0)
      c:connect("127.0.0.1", base)
      fillers[#fillers + 1] = c
    end
    local probe <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    probe:settimeout(0.3)
    local ok, _, code = probe:connect("127.0.0.1", base)
    if ok or code ~= "ETIMEDOUT" then
      pending("this kernel answers SYNs to a full accept queue")
      return
    end
    local r = X.run(X.example("port_scan", { "127.0.0.1", ("%d-%d"):format(base, base + 1), "0.5" }))
    assert.equal(0, r.code, r.err)
    assert.equal("", r.out)
    assert.matches("0 open, 1 closed, 1 filtered", r.err)
  end)

  it("prints a usage line and exits 2 on bad arguments", function()
    for _, args in ipairs({ {}, { "127.0.0.1" }, { "127.0.0.1", "10" }, { "127.0.0.1", "20-10" },
                            { "127.0.0.1", "0-10" }, { "127.0.0.1", "1-70000" },
                            { "127.0.0.1", "1-2", "0" }, { "127.0.0.1", "1-2", "x" } }) do
      local r = X.run(X.example("port_scan", args))
      assert.equal(2, r.code, table.concat(args, " "))
      assert.matches("^usage: port_scan.lua HOST FIRST%-LAST %[TIMEOUT%]", r.err)
    end
  end)

  it("says so when the host does not resolve", function()
    local r = X.run(X.example("port_scan", { "no-such-host.invalid", "1-2" }))
    assert.equal(1, r.code)
    assert.matches("^port_scan: .*no%-such%-host%.invalid", r.err)
  end)
end)
