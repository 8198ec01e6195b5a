-- luacheck: std +busted
-- Ctrl-C: lua5.4 answers SIGINT by setting a hook that raises "interrupted!"
-- at the next Lua instruction. A blocking call interrupted by that signal
-- returns to Lua so the hook runs, in scripts and in the REPL; any other
-- signal's EINTR is retried (faults_spec proves that with SIGUSR1).
local net = require "helpers.net"
local S = require "bsdsocket"
local wait = require "helpers.wait"

-- Starts code in a child lua5.4, lets it block for a moment, sends SIGINT and
-- returns whether it exited within 3 s, and its output.
local function interrupt(code)
  local h = net.spawn("io.write('ready\\n') io.flush()\n" .. code .. "\nprint('not interrupted')", 20)
  local ok, out = pcall(function()
    local deadline = S.monotime() + 5
    while not h.output():find("ready\n", 1, true) and S.monotime() < deadline do net.sleep(0.02) end
    wait.blocked(h.pid, 5)  -- into the blocking call
    h:kill("INT")
    return h:wait(3), h.output()
  end)
  local exited = ok and out
  local output = select(2, pcall(h.output))
  h:cleanup()
  if not ok then error(out, 0) end
  return exited, output
end

describe("Ctrl-C (SIGINT) interrupts", function()
  local cases = {
    { "a blocking recv", [[local S = require "bsdsocket"
      local a, b = S.socketpair()
      a:recv(1)]] },
    { "a recv with a timeout", [[local S = require "bsdsocket"
      local a, b = S.socketpair()
      a:settimeout(60)
      a:recv(1)]] },
    { "recvall", [[local S = require "bsdsocket"
      local a, b = S.socketpair()
      b:send("ab")
      a:recvall(10)]] },
    { "accept", [[local S = require "bsdsocket"
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      srv:accept()]] },
    { "a blocking connect to a full backlog", [[local S = require "bsdsocket"
      local srv = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(srv:bind("127.0.0.1", 0)) assert(srv:listen(0))
      local port = srv:getsockname().port
      local held = {}
      for i = 1, 8 do  -- fill the backlog: later connects hang in SYN_SENT
        local c = S.socket(S.AF_INET, S.SOCK_STREAM) c:settimeout(0)
        c:connect("127.0.0.1", port) held[i] = c
      end
      local c = S.socket(S.AF_INET, S.SOCK_STREAM)
      c:connect("127.0.0.1", port)]] },
    { "poller:wait", [[local S = require "bsdsocket"
      local p = S.poller()
      p:wait(60)]] },
    { "loop.sleep outside tasks", [[local loop = require "bsdsocket.loop"
      loop.sleep(60)]] },
    { "loop.wait outside tasks", [[local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      local a, b = S.socketpair()
      loop.wait(a, "r", 60)]] },
    { "an idle loop.run", [[local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      local a, b = S.socketpair()
      loop.spawn(function() a:recv(1) end)
      loop.spawn(function() loop.sleep(60) end)
      loop.run()]] },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. ": the script ends with 'interrupted!'", function()
      local exited, out = interrupt(case[2])
      assert.is_true(exited, "still running after SIGINT; output: " .. out)
      assert.matches("interrupted!", out)
      assert.not_matches("not interrupted", out)
    end)
  end

  it("an idle examples/chat_server.lua, without a client connecting", function()
    local exited, out = interrupt([[arg = { [0] = "examples/chat_server.lua", "127.0.0.1", "0" }
      dofile("examples/chat_server.lua")]])
    assert.is_true(exited, "chat server still running after SIGINT; output: " .. out)
    assert.matches("interrupted!", out)
  end)

  it("a blocking recv in the REPL: the prompt comes back and the sockets still work", function()
    local d = net.tmpdir()
    local input, outfile = d:path("in"), d:path("out")
    os.execute("mkfifo " .. net.shquote(input))
    -- the REPL reads its lines from a fifo we hold open, so it waits for more
    os.execute("(" .. net.childenv() .. " " .. net.luacmd(20) .. " -i < " .. net.shquote(input) .. " > "
      .. net.shquote(outfile) .. " 2>&1; echo done >> " .. net.shquote(outfile) .. ") &")
    local feed = assert(io.open(input, "w"))
    feed:setvbuf("no")
    feed:write('S = require "bsdsocket" a, b = S.socketpair()\n',
      'print("pid", io.popen("echo $PPID"):read("l"))\n',
      'a:recv(1)\n')
    local pid
    local deadline = S.monotime() + 5
    repeat
      pid = (net.readfile(outfile) or ""):match("pid\t(%d+)")
      if not pid then net.sleep(0.02) end
    until pid or S.monotime() > deadline
    assert.is_truthy(pid, "the REPL did not start")
    wait.blocked(pid, 5)                 -- in a:recv(1)
    os.execute("kill -INT " .. pid)
    wait.output(function() return net.readfile(outfile) end, "interrupted!", 5)
    feed:write('print("after", b:send("x"), a:recv(1))\n', 'os.exit(0)\n')
    feed:close()
    deadline = S.monotime() + 5
    while not (net.readfile(outfile) or ""):find("done\n", 1, true) and S.monotime() < deadline do
      net.sleep(0.02)
    end
    local out = net.readfile(outfile) or ""
    d:remove()
    assert.matches("interrupted!", out)
    assert.matches("after\t1\tx", out)
  end)
end)
