-- The poller backend the module under test was built with (make
-- BACKEND=...), and whether it is libkqueue: kqueue emulated on Linux,
-- which differs from a BSD kernel in ways ../shared/vendor/README.md lists.
-- A spec that fails only for such a difference is pending under libkqueue:
--   if backend.libkqueue then pending("libkqueue: <why>") return end
local S = require "bsdsocket"

local M = {}

local p = assert(S.poller())
M.name = p:backend()
p:close()

local uname = io.popen("uname -s")
local os_name = uname:read("l")
uname:close()
M.libkqueue = M.name == "kqueue" and os_name == "Linux"

return M
