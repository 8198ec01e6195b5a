-- luacheck: std +busted
-- spec/helpers/finally.lua (.busted's helper): finally() keeps every
-- function a test gives it, and runs them all, last given first.
describe("finally() in a test", function()
  local ran = {}

  it("runs every function given, last first", function()
    finally(function() ran[#ran + 1] = "first" end)
    finally(function() ran[#ran + 1] = "second" end)
    finally(function() ran[#ran + 1] = "third" end)
    assert.same({}, ran)
  end)

  it("ran all three after the test before", function()
    assert.same({ "third", "second", "first" }, ran)
  end)
end)
