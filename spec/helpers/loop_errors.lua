-- The loop specs' fixture: inside a describe,
--   local errors = require("helpers.loop_errors")
--     .collect(before_each, after_each)
-- (busted's hooks live in the spec file's environment) makes each test
-- start with loop.onerror appending { err = tostring(err), task = task }
-- to the (emptied) list errors, and end with onerror reset and no task
-- left.
local loop = require "bsdsocket.loop"
local assert = require "luassert"

local M = {}

function M.collect(before_each, after_each)
  local errors = {}
  before_each(function()
    for i = #errors, 1, -1 do errors[i] = nil end
    loop.onerror = function(err, task)
      errors[#errors + 1] = { err = tostring(err), task = task }
    end
  end)
  after_each(function()
    loop.onerror = nil
    assert.equal(0, loop.count())
  end)
  return errors
end

return M
