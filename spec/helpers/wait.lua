-- Waiting on an event, bounded by a deadline, instead of sleeping for a
-- guessed time: a guess is too short on a loaded machine (a flake) and too
-- long on an idle one (a slow suite).
--
--   local wait = require "helpers.wait"
--   wait.for_(f, seconds)        f() until it returns a true value
--   wait.blocked(pid, seconds)   the process sleeps in the kernel (state S)
--   wait.listening(port, s)      a TCP socket listens on 127.0.0.1/::1:port
--   wait.output(f, text, s)      f() (a string, such as a child's output)
--                                holds text
-- Each returns the last value seen: nil or false when the deadline passed.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local M = {}

function M.for_(f, seconds, step)
  local limit = S.monotime() + (seconds or 10)
  while true do
    local v = f()
    if v or S.monotime() > limit then return v end
    loop.sleep(step or 0.01)
  end
end

local function state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local st = f:read("a")
  f:close()
  return st:match("^%d+ %(.*%) (%a)")
end
M.state = state

function M.blocked(pid, seconds)
  return M.for_(function() return state(pid) == "S" end, seconds)
end

local function listens(port)
  local want = (":%04X"):format(port)
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local f = io.open(file)
    if f then
      for line in f:lines() do
        local loc, st = line:match("^%s*%d+: %x+(:%x+) %x+:%x+ (%x+)")
        if loc == want and st == "0A" then f:close() return true end
      end
      f:close()
    end
  end
  return false
end

function M.listening(port, seconds)
  return M.for_(function() return listens(port) end, seconds)
end

function M.output(f, text, seconds)
  return M.for_(function() return (f() or ""):find(text, 1, true) end, seconds)
end

return M
