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
-- On epoll a socket is registered once, edge-triggered for both directions,
-- the first time a task waits on it, and stays registered: a wait then costs
-- no system call besides the shared epoll_wait. (Edges suffice because the
-- core only waits after the call itself reported EAGAIN, and loop.wait asks
-- poll(2) first.) With poll(2) a wait arms a one-shot registration, which is
-- a change in memory only.
local core = require "bsdsocket.core"

local monotime = core.monotime
local tasks = core._tasks
local cocreate, coresume, costatus, coyield, corunning =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield, coroutine.running
local pack, unpack, select, type, error, tostring, setmetatable, pcall =
  table.pack, table.unpack, select, type, error, tostring, setmetatable, pcall
local coclose = coroutine.close
local ready = core._ready
local traceback = debug.traceback

local M = {}

local WAIT = "bsdsocket.wait"           -- what the C core yields
local SLEEP = setmetatable({}, { __name = "bsdsocket.loop.sleep" })  -- what sleep yields
local JOIN = setmetatable({}, { __name = "bsdsocket.loop.join" })    -- what join yields
-- What a waiting task is resumed with besides true (ready) and false (its
-- deadline passed): a table from `failed` when the loop could not wait for
-- it, a string from loop.cancel (the C core turns it into nil, msg,
-- "ECANCELED").
local failed = setmetatable({}, { __mode = "k" })

-- revents that wake a reader / a writer (hang-up and error wake both)
local RWAKE = core.POLLIN | core.POLLHUP | core.POLLERR | (core.POLLPRI or 0)
local WWAKE = core.POLLOUT | core.POLLHUP | core.POLLERR
local ONESHOT = { "ro", "wo", "rwo" }
-- epoll: both directions, edge-triggered; POLLPRI and POLLRDHUP too, because
-- a report of urgent data or of the peer's close tells the core that a
-- short read no longer proves the socket drained (see recvinto in socket.c)
local EDGE = core.POLLIN | core.POLLOUT | (core.POLLPRI or 0) | (core.POLLRDHUP or 0)
  | (core.EPOLLET or 0)

local poller, edge                      -- created by the first run
local registered = setmetatable({}, { __mode = "k" })  -- epoll: objects in the poller

-- The tasks waiting for an object: readers[obj] / writers[obj] is the most
-- recent one, nextw[task] the one that waited before it on the same object
-- (nchained counts those links: while it is 0, every object has one waiter).
local readers, writers, nextw = {}, {}, {}
local nchained = 0

-- Deadlines: a binary heap in parallel arrays (no table per entry), with
-- lazy deletion: an entry counts only while until[task] still equals it.
local hd, hco, hobj, hev = {}, {}, {}, {}
local hn = 0
local until_ = {}                       -- task -> deadline of its current wait
local ntimed = 0                        -- tasks in until_

-- What each task waited on last (cancel looks there; it may be stale).
local waitson = setmetatable({}, { __mode = "k" })

-- Tasks to resume from the top of the loop, with the value they get.
local rq, rv = {}, {}
local rhead, rtail = 1, 0

local ntasks = 0
local stopping, running = false, false
local NOARGS = { n = 0 }

-- Finished tasks' outcomes for join (weak: a task nobody holds is gone),
-- the tasks that wait to join a task (joiners[task] = { [co] = true }),
-- and the tasks whose end stops a run() that join started outside tasks.
local outcome = setmetatable({}, { __mode = "k" })
local joiners = {}
local stopon = setmetatable({}, { __mode = "k" })

-- ---- deadlines ----

local function hswap(i, j)
  hd[i], hd[j] = hd[j], hd[i]
  hco[i], hco[j] = hco[j], hco[i]
  hobj[i], hobj[j] = hobj[j], hobj[i]
  hev[i], hev[j] = hev[j], hev[i]
end

local function hup(i)
  while i > 1 do
    local parent = i // 2
    if hd[parent] <= hd[i] then return end
    hswap(i, parent)
    i = parent
  end
end

local function hdown(i)
  while true do
    local l = 2 * i
    if l > hn then return end
    local m = l
    if l + 1 <= hn and hd[l + 1] < hd[l] then m = l + 1 end
    if hd[i] <= hd[m] then return end
    hswap(i, m)
    i = m
  end
end

local function hpop()
  hd[1], hco[1], hobj[1], hev[1] = hd[hn], hco[hn], hobj[hn], hev[hn]
  hd[hn], hco[hn], hobj[hn], hev[hn] = nil, nil, nil, nil
  hn = hn - 1
  if hn > 1 then hdown(1) end
end

-- drops the entries that no longer count, then restores the heap order
local function hcompact()
  local n = 0
  for i = 1, hn do
    local co, d = hco[i], hd[i]
    if until_[co] == d then
      n = n + 1
      hd[n], hco[n], hobj[n], hev[n] = d, co, hobj[i], hev[i]
    end
  end
  for i = n + 1, hn do hd[i], hco[i], hobj[i], hev[i] = nil, nil, nil, nil end
  hn = n
  for i = n // 2, 1, -1 do hdown(i) end
end

local function settimer(co, d, obj, ev)
  if until_[co] == nil then ntimed = ntimed + 1 end
  until_[co] = d
  if hn > 2 * ntimed + 64 then hcompact() end
  hn = hn + 1
  hd[hn], hco[hn], hobj[hn], hev[hn] = d, co, obj, ev
  hup(hn)
end

local function cleartimer(co)
  if until_[co] ~= nil then
    until_[co] = nil
    ntimed = ntimed - 1
  end
end

-- ---- running tasks ----

local function report(co, err)
  local handler = M.onerror
  if handler then
    handler(err, co)
  else
    io.stderr:write("bsdsocket.loop: task failed: ", traceback(co, tostring(err)), "\n")
  end
end

local function enqueue(co, value)
  rtail = rtail + 1
  rq[rtail], rv[rtail] = co, value
end

local wait, finished, joinwait  -- forward

-- what a resumed task did: finished, failed, or yielded for something
local function after(co, ok, what, obj, ev, d)
  if costatus(co) == "dead" then
    finished(co, ok, what)
  elseif what == WAIT then
    wait(co, obj, ev, d)
  elseif what == SLEEP then
    if obj then settimer(co, obj, nil, 0) else enqueue(co, true) end
  elseif what == JOIN then
    joinwait(co, obj, ev)
  else
    enqueue(co, nil)  -- a bare coroutine.yield(): run again after the others
  end
end

local function resume(co, value)
  return after(co, coresume(co, value))
end

-- the poller refused obj (not pollable, closed meanwhile): the task gets
-- the error, the loop goes on
local function cannotwait(co, list, obj, prev, err)
  list[obj] = prev
  if prev then nextw[co], nchained = nil, nchained - 1 end
  cleartimer(co)
  local f = { msg = tostring(err) }
  failed[f] = true
  enqueue(co, f)
end

-- links co as a waiter on obj for ev (1 read, 2 write) and arms the poller
function wait(co, obj, ev, d)
  local list = ev == 1 and readers or writers
  local prev = list[obj]
  waitson[co] = obj
  list[obj] = co
  if prev then
    nextw[co] = prev
    nchained = nchained + 1
  end
  if d then settimer(co, d, obj, ev) end
  if edge then
    if not registered[obj] then
      local ok, added, msg = pcall(poller.add, poller, obj, EDGE)
      if not (ok and added) then return cannotwait(co, list, obj, prev, ok and msg or added) end
      if type(obj) ~= "number" then registered[obj] = true end
    end
  else
    local mask = (readers[obj] and 1 or 0) | (writers[obj] and 2 or 0)
    local ok, added, msg = pcall(poller.add, poller, obj, ONESHOT[mask])
    if not (ok and added) then return cannotwait(co, list, obj, prev, ok and msg or added) end
  end
end

-- resumes every task waiting on obj in list, with true
local function wakeall(list, obj, co)
  list[obj] = nil
  repeat
    local older = nextw[co]
    if older then nextw[co], nchained = nil, nchained - 1 end
    if until_[co] ~= nil then cleartimer(co) end
    resume(co, true)
    co = older
  until not co
end

-- takes co out of the chain of waiters on obj (its deadline passed)
local function unlink(list, obj, co)
  local cur = list[obj]
  if cur == co then
    local older = nextw[co]
    list[obj] = older
    if older then nextw[co], nchained = nil, nchained - 1 end
    return
  end
  while cur do
    local older = nextw[cur]
    if older == co then
      local oldest = nextw[co]
      nextw[cur] = oldest
      if oldest then nextw[co] = nil end
      nchained = nchained - 1
      return
    end
    cur = older
  end
end

local function dispatch(obj, revents)
  if revents & RWAKE ~= 0 then
    local co = readers[obj]
    if co then wakeall(readers, obj, co) end
  end
  if revents & WWAKE ~= 0 then
    local co = writers[obj]
    if co then wakeall(writers, obj, co) end
  end
  if not edge then  -- the one-shot registration fired: re-arm for who still waits
    local mask = (readers[obj] and 1 or 0) | (writers[obj] and 2 or 0)
    if mask ~= 0 then poller:add(obj, ONESHOT[mask]) end
  end
end

-- resumes the tasks whose deadline has passed, with false (true for sleep)
local function expire(now)
  while hn > 0 and hd[1] <= now do
    local d, co, obj, ev = hd[1], hco[1], hobj[1], hev[1]
    hpop()
    if until_[co] == d then
      cleartimer(co)
      if obj == nil then
        resume(co, true)
      elseif ev == 3 then
        local waiting = joiners[obj]
        if waiting then waiting[co] = nil end
        resume(co, false)
      else
        unlink(ev == 1 and readers or writers, obj, co)
        resume(co, false)
      end
    end
  end
end

local function runqueue()
  local last = rtail
  while rhead <= last do
    local co, value = rq[rhead], rv[rhead]
    rq[rhead], rv[rhead] = nil, nil
    rhead = rhead + 1
    if type(value) == "table" and value.n then  -- spawn's arguments
      after(co, coresume(co, unpack(value, 1, value.n)))
    else
      resume(co, value)
    end
    if stopping then break end
  end
  if rhead > rtail then rhead, rtail = 1, 0 end
end

-- ---- ends: finishing, joining, closing, cancelling ----

function finished(co, ok, err)
  ntasks = ntasks - 1
  tasks[co] = nil
  if not ok then
    outcome[co] = { false, err, n = 2 }
    report(co, err)
  end
  local waiting = joiners[co]
  if waiting then
    joiners[co] = nil
    for j in pairs(waiting) do
      cleartimer(j)
      enqueue(j, true)
    end
  end
  if stopon[co] then stopping = true end
end

function joinwait(co, task, d)
  if costatus(task) == "dead" then return enqueue(co, true) end
  local waiting = joiners[task]
  if not waiting then
    waiting = {}
    joiners[task] = waiting
  end
  waiting[co] = true
  waitson[co] = task
  if d then settimer(co, d, task, 3) end
end

-- what a task waiting on a socket that is closed is resumed with: the
-- C core sees the socket closed and returns nil, msg, "EBADF"
local CLOSED = setmetatable({}, { __name = "bsdsocket.loop.closed" })

-- unlinks every task waiting on obj in list and queues it with value. The
-- task that run() resumed inline still stands in readers[obj] while it
-- runs (and may be the one closing obj): it is not waiting, so not queued.
local function releaseall(list, obj, value)
  local co = list[obj]
  list[obj] = nil
  while co do
    local older = nextw[co]
    if older then nextw[co], nchained = nil, nchained - 1 end
    if costatus(co) == "suspended" then
      cleartimer(co)
      enqueue(co, value)
    end
    co = older
  end
end

-- The C core calls this when a socket some task waited on is closed.
-- Queued, not resumed: the caller is in the middle of a task's close().
local function onclose(obj)
  releaseall(readers, obj, CLOSED)
  releaseall(writers, obj, CLOSED)
end
core._setclosehook(onclose)

-- takes co out of the run queue's pending value, if it is queued: true
local function requeue(co, value)
  for i = rhead, rtail do
    if rq[i] == co then
      rv[i] = value
      return true
    end
  end
  return false
end

-- ---- the interface ----

local function intask()
  local co, main = corunning()
  return not main and tasks[co] ~= nil
end

function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local co
  co = cocreate(function(...)
    outcome[co] = pack(true, fn(...))
  end)
  tasks[co] = true
  ntasks = ntasks + 1
  enqueue(co, select("#", ...) == 0 and NOARGS or pack(...))
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
  for i = rhead, rtail do
    if rq[i] == task and type(rv[i]) == "table" and rv[i].n then
      -- spawned but never run: it ends here
      for j = i, rtail - 1 do rq[j], rv[j] = rq[j + 1], rv[j + 1] end
      rq[rtail], rv[rtail] = nil, nil
      rtail = rtail - 1
      coclose(task)
      finished(task, true)
      outcome[task] = { false, msg, n = 2 }
      return true
    end
  end
  if requeue(task, msg) then return true end
  local obj = waitson[task]
  if obj ~= nil then
    unlink(readers, obj, task)
    unlink(writers, obj, task)
    local waiting = joiners[obj]
    if waiting then waiting[task] = nil end
  end
  cleartimer(task)
  enqueue(task, msg)
  return true
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
      stopon[task] = true
      local ok, err = pcall(M.run, timeout)
      stopon[task] = nil
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
  if failed[r] then error(r.msg, 2) end
  return r
end

function M.stop()
  stopping = true
end

M.now = monotime

-- the number of tasks not finished yet
function M.count()
  return ntasks
end

local function finish()
  running = false
end

-- Runs the tasks until none is left (true), stop() is called or `seconds`
-- have passed (false; run() again carries on).
function M.run(seconds)
  if running then error("loop.run: the loop is already running", 2) end
  if not poller then
    poller = assert(core.poller({ weak = true }))
    edge = poller:backend() == "epoll"
  end
  running, stopping = true, false
  core._setclosehook(onclose)
  local _ <close> = setmetatable({}, { __close = finish })
  local stopat = seconds and monotime() + seconds
  local p = poller
  local pwait = p.wait
  while ntasks > 0 do
    if rhead <= rtail then
      runqueue()
      if stopping or ntasks == 0 then break end
    end
    local timeout
    if hn > 0 or stopat then
      local now = monotime()
      if hn > 0 then expire(now) end
      if stopping or ntasks == 0 then break end
      if stopat and now >= stopat then break end
      if rhead > rtail then
        while hn > 0 and until_[hco[1]] ~= hd[1] do hpop() end  -- stale tops
        if hn > 0 then timeout = hd[1] - now end
        if stopat and (not timeout or stopat - now < timeout) then timeout = stopat - now end
        if timeout and timeout < 0 then timeout = 0 end
      end
    end
    if rhead <= rtail then timeout = 0 end
    for obj, revents in pwait(p, timeout) do
      -- The common case first, inline: the only task waiting to read obj,
      -- with no deadline, which reads and then waits to read obj again
      -- (it stays readers[obj]: nothing else ran meanwhile to change that).
      local co = edge and revents & RWAKE ~= 0 and readers[obj]
      if co and nchained == 0 and (ntimed == 0 or until_[co] == nil) then
        local ok, what, wobj, ev, d = coresume(co, true)
        if not (ok and what == WAIT and wobj == obj and ev == 1 and d == nil) then
          readers[obj] = nil
          after(co, ok, what, wobj, ev, d)
        end
        if revents & WWAKE ~= 0 then
          co = writers[obj]
          if co then wakeall(writers, obj, co) end
        end
      else
        dispatch(obj, revents)
      end
    end
    if stopping then break end
  end
  return ntasks == 0
end

return M
