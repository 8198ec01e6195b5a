-- bsdsocket.loop: a coroutine scheduler on S.poller().
--
--   local loop = require "bsdsocket.loop"
--   loop.spawn(function(a, b) ... end, a, b)   -- a task; returns its coroutine
--   loop.run([seconds])                        -- until no task is left, stop(),
--                                              -- or seconds have passed
--
-- Inside a task a socket call that would block suspends only that task (the
-- C core yields "bsdsocket.wait", sock, events, deadline; see API.md), so the
-- sequential code of a plain script serves thousands of clients at once.
-- loop.sleep(s), loop.wait(sock_or_fd, "r"|"w" [, timeout]), loop.stop(),
-- loop.now(), loop.count(), loop.cancel(task [, msg]), loop.join(task
-- [, timeout]). An error in a task goes to loop.onerror(err, task) when set,
-- to stderr otherwise, and the other tasks go on; so does an error that the
-- loop's machinery meets on behalf of a task (an object it cannot poll).
-- Closing a socket that tasks wait on wakes them: their calls return
-- nil, msg, "EBADF".
--
-- The scheduler itself is C (csrc/loop.c: the run queue, the tasks waiting
-- on each descriptor, the deadlines, the poller, lua_resume); this file
-- checks arguments, and does what runs once per task rather than once per
-- wake-up: spawning, joining, sleeping outside tasks, reporting errors.
local core = require "bsdsocket.core"

local monotime = core.monotime
local tasks = core._tasks
local cocreate, costatus, coyield, corunning, coclose =
  coroutine.create, coroutine.status, coroutine.yield, coroutine.running, coroutine.close
local unpack, type, error, tostring, setmetatable, getmetatable, pcall =
  table.unpack, type, error, tostring, setmetatable, getmetatable, pcall
local ready = core._ready
local traceback = debug.traceback

local M = {}

local WAIT = "bsdsocket.wait"           -- what the C core yields

-- Finished tasks' outcomes for join (weak: a task nobody holds is gone);
-- the scheduler leaves them here for a task that failed or returned values.
local outcome = setmetatable({}, { __mode = "k" })

local function report(co, err)
  local handler = M.onerror
  if handler then
    handler(err, co)
  else
    io.stderr:write("bsdsocket.loop: task failed: ", traceback(co, tostring(err)), "\n")
  end
end

-- SLEEP and JOIN: what sleep and join yield; CLOSED: what a wait on a
-- socket that was closed is resumed with; FAILED: the metatable of what a
-- wait the poller refused is resumed with ({ msg = ... })
local sched, SLEEP, JOIN, CLOSED, FAILED = core._scheduler(outcome, report)
local running = false

-- ---- the interface ----

local function intask()
  local co, main = corunning()
  return not main and tasks[co] ~= nil
end

function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local co = cocreate(fn)
  sched:spawn(co, ...)
  return co
end

local function checktask(fname, task)
  if type(task) ~= "thread" then
    error(("bad argument #1 to '%s' (task expected, got %s)"):format(fname, type(task)), 3)
  end
end

local function checktimeout(fname, arg, timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error(("bad argument #%d to '%s' (number of seconds or nil expected)"):format(arg, fname), 3)
  end
end

-- The current wait of task (a socket call, wait, sleep or join) returns
-- nil, msg, "ECANCELED"; the task decides what to do (a task that returns
-- closes its <close> variables on the way). A task that has not started
-- yet never runs. Returns true if task was waiting or queued, false if it
-- has finished.
function M.cancel(task, msg)
  checktask("cancel", task)
  if msg == nil then msg = "cancelled" end
  if type(msg) ~= "string" then
    error("bad argument #2 to 'cancel' (string expected, got " .. type(msg) .. ")", 2)
  end
  if tasks[task] == nil then return false end
  if task == corunning() then error("loop.cancel: a task cannot cancel itself", 2) end
  local r = sched:cancel(task, msg)
  if r == "new" then  -- spawned but never run: it ends here
    coclose(task)
    outcome[task] = { false, msg, n = 2 }
    return true
  end
  return r
end

local function outcomeof(task)
  local o = outcome[task]
  if not o then return true end
  return unpack(o, 1, o.n)
end

-- Waits for task to finish: true and what it returned, or false and its
-- error; nil, msg, "ETIMEDOUT" after timeout seconds. Outside tasks it runs
-- the loop until then.
function M.join(task, timeout)
  checktask("join", task)
  checktimeout("join", 2, timeout)
  if costatus(task) ~= "dead" then
    local d = timeout and monotime() + timeout
    if intask() then
      if task == corunning() then error("loop.join: a task cannot join itself", 2) end
      local r = coyield(JOIN, task, d)
      if type(r) == "string" then return nil, "join: " .. r, "ECANCELED" end
      if r == false then return nil, "join: timed out", "ETIMEDOUT" end
    else
      if running then error("loop.join: the loop is running (join from a task)", 2) end
      sched:stopon(task, true)
      local ok, err = pcall(M.run, timeout)
      sched:stopon(task, false)
      if not ok then error(err, 0) end
      if costatus(task) ~= "dead" then return nil, "join: timed out", "ETIMEDOUT" end
    end
  end
  return outcomeof(task)
end

local sleeper  -- an empty poller to sleep on outside tasks

-- true after the time; in a task, nil, msg, "ECANCELED" if cancelled
function M.sleep(seconds)
  seconds = seconds or 0
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("bad argument #1 to 'sleep' (number expected)", 2)
  end
  if intask() then
    local r = coyield(SLEEP, seconds > 0 and monotime() + seconds or nil)
    if type(r) == "string" then return nil, "sleep: " .. r, "ECANCELED" end
  elseif seconds > 0 then
    sleeper = sleeper or core.poller()
    local it = sleeper:wait(seconds)
    if it then it() end
  end
  return true
end

local EVENTS = { r = 1, w = 2, [1] = 1, [2] = 2 }
local EVNAME = { "r", "w" }

-- Waits until obj (a socket, a descriptor or a pollable object) is readable
-- ("r") or writable ("w"): true, or false once timeout seconds have passed.
-- Readiness that is already there answers at once. In a task: nil, msg,
-- "EBADF" if the socket is closed meanwhile, nil, msg, "ECANCELED" if the
-- task is cancelled.
function M.wait(obj, events, timeout)
  local ev = EVENTS[events]
  if not ev then error("bad argument #2 to 'wait' (\"r\" or \"w\" expected)", 2) end
  checktimeout("wait", 3, timeout)
  if not intask() then return ready(obj, EVNAME[ev], timeout or -1) end
  -- the loop's poller is edge-triggered: an edge consumed before this
  -- wait would never come again, so ask the descriptor itself first
  if ready(obj, EVNAME[ev]) then return true end
  local r = coyield(WAIT, obj, ev, timeout and monotime() + timeout or nil)
  if r == true or r == false then return r end
  if r == CLOSED then return nil, "wait: socket closed while waiting", "EBADF" end
  if type(r) == "string" then return nil, "wait: " .. r, "ECANCELED" end
  if getmetatable(r) == FAILED then error(r.msg, 2) end
  return r
end

function M.stop()
  sched:stop()
end

M.now = monotime

-- the number of tasks not finished yet
function M.count()
  return sched:count()
end

local function finish()
  running = false
  sched:halt()
end

-- Runs the tasks until none is left (true), stop() is called or `seconds`
-- have passed (false; run() again carries on).
function M.run(seconds)
  if running then error("loop.run: the loop is already running", 2) end
  running = true
  local _ <close> = setmetatable({}, { __close = finish })
  local stopat = seconds and monotime() + seconds
  local done, interrupted
  repeat
    -- a signal that asked Lua to run a hook (Ctrl-C) returns here: the
    -- hook runs (and raises, for Ctrl-C), then the loop carries on
    done, interrupted = sched:run(stopat)
  until not interrupted
  return done
end

return M
