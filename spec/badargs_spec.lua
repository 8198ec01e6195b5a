-- Bad arguments: every public function of the module and every method of
-- the socket (and poller, reader) objects, called with wrong types, missing
-- arguments, out-of-range numbers, NaN and fractions where integers are
-- needed, unknown constants and options, over-long Unix paths, NUL bytes in
-- host names and paths, and on closed sockets. The cases are the table of
-- spec/helpers/badargs_cases.lua, enumerated from the module and the
-- metatables, so a new function is covered (generically) the day it appears.
-- Each case must raise a Lua error that names the problem, or (where the
-- kernel or the resolver decides) return nil, msg, code; none may crash:
-- the whole table also runs once in a child process whose exit status is
-- checked.
local S = require "bsdsocket"
local net = require "helpers.net"
local cases = require "helpers.badargs_cases"

describe("bad arguments", function()
  local count, failures, uncovered

  setup(function()
    count, failures, uncovered = cases.runall()
    print(("\nbadargs: %d cases in-process, %d failures"):format(count, #failures))
    if #uncovered > 0 then
      print("badargs: no signature (generic cases only): " .. table.concat(uncovered, " "))
    end
  end)

  it("covers every public function and method with hundreds of cases", function()
    local seen = {}
    for _, c in ipairs(cases.build()) do seen[c.name:match("^(%S+)")] = true end
    for k, v in pairs(S) do
      if type(v) == "function" then assert.is_true(seen["S." .. k], "S." .. k .. " has no case") end
    end
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    for k in pairs(getmetatable(s).__index) do
      assert.is_true(seen["sock:" .. k], "sock:" .. k .. " has no case")
    end
    assert.is_true(count >= 500, "only " .. count .. " cases")
  end)

  it("every case raises a clear error or returns nil, msg, code", function()
    assert.same({}, failures)
  end)

  it("raises with messages that name the problem", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local u <close> = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
    local function err(f, ...)
      local ok, msg = pcall(f, ...)
      assert.is_false(ok)
      return msg
    end
    assert.matches("port out of range", err(s.bind, s, "127.0.0.1", 65536))
    assert.matches("port out of range", err(s.connect, s, "127.0.0.1", -1))
    assert.matches("number has no integer representation", err(s.bind, s, "127.0.0.1", 0 / 0))
    assert.matches("number has no integer representation", err(s.recv, s, 1.5))
    assert.matches("negative byte count", err(s.recv, s, -1))
    assert.matches("NUL", err(s.connect, s, "127.0.0.1\0evil", 80))
    assert.matches("NUL", err(u.bind, u, "/tmp/a\0b"))
    assert.matches("Unix path longer than 107 bytes", err(u.bind, u, ("x"):rep(200)))
    assert.matches("Unix path longer than", err(S.addr, ("x"):rep(100000)))
    assert.matches("integer out of range", err(S.socket, (1 << 32) + 2, S.SOCK_STREAM))
    assert.matches("timeout", err(s.settimeout, s, 0 / 0))
    assert.matches("\"r\", \"w\", \"rw\"", err(s.shutdown, s, 7))
    s:close()
    assert.matches("attempt to use a closed socket", err(s.send, s, "x"))
    assert.matches("attempt to use a closed socket", err(s.recv, s, 1))
  end)

  it("unknown options and constants come back as nil, msg, code", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local ok, msg, code = s:setsockopt(S.SOL_SOCKET, 99999, "abcd")
    assert.is_nil(ok)
    assert.matches("^setsockopt", msg)
    assert.equal("ENOPROTOOPT", code)
    ok, msg, code = S.socket(12345, S.SOCK_STREAM)
    assert.is_nil(ok)
    assert.matches("^socket", msg)
    assert.equal("EAFNOSUPPORT", code)
  end)

  it("the whole table runs in a child process that exits normally", function()
    local out, ok, how, rc = net.run_lua([[
      local cwd = os.getenv("PWD")
      package.path = cwd .. "/spec/?.lua;" .. package.path
      local cases = require "helpers.badargs_cases"
      local n, failures = cases.runall()
      print("cases " .. n .. " failures " .. #failures)
      os.exit(#failures == 0 and 0 or 3)
    ]], 120)
    assert.is_true(ok, ("child %s %s: %s"):format(tostring(how), tostring(rc), out))
    assert.equal(how, "exit")
    assert.equal(0, rc)
    assert.matches("cases " .. count .. " failures 0", out, 1, true)
  end)
end)
