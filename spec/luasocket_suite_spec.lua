-- luacheck: std +busted
-- LuaSocket's own client/server test suite (../shared/luasocket-tests,
-- copied unchanged from LuaSocket) run on bsdsocket.luasocket: testsrvr.lua
-- and testclnt.lua, each started as `lua5.4 -l bsdsocket.luasocket FILE`.
--
-- How the spec knows the compatibility layer answered, not an installed
-- LuaSocket: LUA_PATH and LUA_CPATH hold only this project and the test
-- directory, so LuaSocket's socket.lua and socket/core.so cannot be found
-- (checked first: a plain `require "socket"` fails there), and each process
-- prints socket._VERSION, which names bsdsocket, before the test runs.
--
-- The suite's "connect with timeout" case expects a connect to 10.0.0.1:81
-- to fail; some sandboxes accept any TCP connect, so when `unshare -n` works
-- the two processes run in a private network namespace with only loopback.
-- testclnt.lua reports a failure by printing "ERROR:" and exiting with
-- status 0, so the spec reads its output. The run takes about 50 seconds
-- (its timeout cases sleep).
local net = require "helpers.net"

local function exists(path)
  local f = io.open(path)
  if f then f:close() return true end
  return false
end

-- ../shared/luasocket-tests beside the repository (CI, the main checkout),
-- or two levels up (a worktree under wt/)
local function testsdir()
  local cwd = os.getenv("PWD") or "."
  for _, dir in ipairs({ cwd .. "/../shared/luasocket-tests", cwd .. "/../../shared/luasocket-tests" }) do
    if exists(dir .. "/testclnt.lua") then return dir end
  end
  error("LuaSocket's test suite not found in ../shared/luasocket-tests (see its README)")
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

describe("LuaSocket's own test suite on bsdsocket.luasocket", function()
  it("testsrvr.lua and testclnt.lua pass with no ERROR: line", function()
    local dir = testsdir()
    local cwd = os.getenv("PWD") or "."
    local build = os.getenv("BSDSOCKET_BUILD") or "build"
    if build:sub(1, 1) ~= "/" then build = cwd .. "/" .. build end
    local env = "LUA_PATH=" .. net.shquote(cwd .. "/lua/?.lua;./?.lua")
      .. " LUA_CPATH=" .. net.shquote(build .. "/?.so") .. " LUASOCKET_DEBUG=1"

    -- the real LuaSocket is out of reach with this path
    local out, ok = sh("cd " .. net.shquote(dir) .. " && " .. env .. " " .. net.lua .. " -e 'require \"socket\"'")
    assert.is_falsy(ok, "LuaSocket is reachable: " .. out)
    assert.matches("module 'socket' not found", out)

    local tmp = net.tmpdir()
    local script = tmp:path("run.sh")
    local f = assert(io.open(script, "w"))
    f:write(([[
set -u
cd %s
export %s
[ -n "${PRIVATE_NET:-}" ] && ip link set lo up
port=$(@LUA@ -e 'local S = require "bsdsocket"
  local s = S.socket(S.AF_INET, S.SOCK_STREAM) assert(s:bind("127.0.0.1", 0))
  print(s:getsockname().port)')
marker='io.stderr:write("answered by: ", require("socket")._VERSION, "\n")'
@LUA150@ -l bsdsocket.luasocket -e "$marker port = $port" testsrvr.lua > %s 2>&1 &
server=$!
for _ in $(seq 50); do grep -q "waiting for client" %s && break; sleep 0.1; done
# its select case opens socket._SETSIZE + 1 sockets: the open-file limit
# here, kept moderate so that the case stays quick
ulimit -n 4096
@LUA140@ -l bsdsocket.luasocket -e "$marker port = $port" testclnt.lua
echo "client exit: $?"
kill $server 2>/dev/null
wait $server 2>/dev/null
]]):gsub("@LUA(%d*)@", function(n)   -- the interpreter, bounded or not
      return n == "" and net.lua or net.luacmd(n)
    end):format(net.shquote(dir), env, net.shquote(tmp:path("server.out")), net.shquote(tmp:path("server.out"))))
    f:close()
    local runner = "bash " .. net.shquote(script)
    local _, private = sh("unshare -n true")
    if private then runner = "unshare -n env PRIVATE_NET=1 " .. runner end
    local client
    client = sh(net.timeout(170) .. " " .. runner)
    local server = net.readfile(tmp:path("server.out")) or ""
    tmp:remove()

    assert.matches("answered by: LuaSocket 3%.%d+%.%d+ %(bsdsocket%)", server)
    assert.matches("server: waiting for client connection", server)
    assert.matches("answered by: LuaSocket 3%.%d+%.%d+ %(bsdsocket%)", client)
    assert.is_nil(client:find("ERROR:", 1, true), client)
    assert.matches("client exit: 0", client)
    -- it got to the end: every section ran
    for _, section in ipairs({ "method registration", "closed connection detection",
      "partial receive", "select function", "read after close", "write after close",
      "connect function", "rebinding", "active close", "accept function", "getstats test",
      "character line", "mixed patterns", "binary line", "raw transfer",
      "non%-blocking transfer", "total timeout on send", "total timeout on receive",
      "blocking timeout on send", "blocking timeout on receive", "shutting server down" }) do
      assert.matches("testing: " .. section, client)
    end
    assert.matches("testing: done in [%d.]+s", client)
    assert.matches("os%.exit%(%)", server)       -- the server got the last command
    -- _SETSIZE is the open-file limit: the suite could not open more sockets than that
    assert.matches("unable to create enough sockets", client)
  end)
end)
