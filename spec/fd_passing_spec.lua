-- luacheck: std +busted
-- examples/fd_passing.lua as it is meant to run: a parent and a worker
-- process (under `timeout`), and clients that talk to the worker through
-- connections the parent accepted.
local S = require "bsdsocket"
local net = require "helpers.net"

local function shellquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function readline(sock)
  local line = ""
  for _ = 1, 1000 do
    local c = assert(sock:recv(1))
    if c == "" or c == "\n" then return line end
    line = line .. c
  end
  return line
end

describe("examples/fd_passing.lua", function()
  it("hands accepted connections to a worker process that serves them", function()
    local build = os.getenv("BSDSOCKET_BUILD") or "build"
    local cmd = ("LUA_PATH='lua/?.lua;;' LUA_CPATH=%s " .. net.luacmd(20) .. " examples/fd_passing.lua 0 3 2>&1")
      :format(shellquote(build .. "/?.so;;"))
    local p = assert(io.popen(cmd, "r"))
    local first = p:read("l")
    assert.is_string(first)
    local port, ppid, wpid = first:match("listening on 127%.0%.0%.1:(%d+) %(parent pid (%d+), worker pid (%d+)%)")
    assert(port, first)
    assert.are_not.equal(ppid, wpid)
    for i = 1, 3 do
      local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      c:settimeout(10)
      assert(c:connect("127.0.0.1", tonumber(port)))
      assert.equal(("worker %s: hello %s"):format(wpid, tostring(c:getsockname())), readline(c))
      assert(c:sendall("line " .. i .. "\n"))
      assert.equal(("worker %s: line %d"):format(wpid, i), readline(c))
      c:shutdown("w")
      assert.equal("", c:recv(10))     -- the worker closed its copy: the parent holds none
    end
    local rest = p:read("a")
    local ok, how, code = p:close()
    assert.matches("connection 3 from 127.0.0.1:%d+ handed to worker " .. wpid, rest)
    assert.same({ true, "exit", 0 }, { ok, how, code })
  end)
end)
