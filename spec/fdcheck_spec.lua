-- luacheck: std +busted
-- The descriptor leak check that the leak specs use (helpers.net: fds,
-- newfds, gonefds): it counts only descriptors opened during the check and
-- still open, so descriptors that other specs opened, or that their garbage
-- closes in the middle of a check, cannot make it fail, and it still sees a
-- leak that takes over a number freed meanwhile.
local net = require "helpers.net"
local S = net.S

describe("the descriptor leak check (net.fds / net.newfds)", function()
  it("ignores a descriptor of another spec that its garbage closes during the check", function()
    -- a socket another spec forgot: still referenced when the check starts,
    -- garbage by the time it ends (a count would drop by one)
    local holder = { assert(S.socket(S.AF_INET, S.SOCK_STREAM)) }
    local before = net.fds()
    holder[1] = nil
    for _ = 1, 20 do
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(s:fileno() >= 0)
    end
    assert.is_nil(next(holder))
    assert.same({}, net.newfds(before))
  end)

  it("ignores descriptors opened before the check and left open", function()
    local other <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    local before = net.fds()
    local s = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
    s:close()
    assert.same({}, net.newfds(before))
    assert.is_nil(net.gonefds(before)[other:fileno()])
  end)

  it("sees a leaked socket that took over the number of one closed meanwhile", function()
    local other = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local before = net.fds()
    other:close()
    local leak <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local fd = leak:fileno()
    local added = net.newfds(before, 0)
    assert.equal(1, #added)
    assert.equal(fd .. " -> " .. net.fdtarget(fd), added[1])
    assert.is_true(net.issocket(net.fdtarget(fd)), net.fdtarget(fd))
  end)

  it("reports a real leak after looking again for the time given, no longer", function()
    local before = net.fds()
    local leak <close> = assert(S.socket(S.AF_INET6, S.SOCK_DGRAM))
    local t0 = S.monotime()
    local added = net.newfds(before, 0.3)
    local dt = S.monotime() - t0
    assert.same({ leak:fileno() .. " -> " .. net.fdtarget(leak:fileno()) }, added)
    assert.is_true(dt >= 0.3 and dt < 3, dt .. " s")
  end)
end)
