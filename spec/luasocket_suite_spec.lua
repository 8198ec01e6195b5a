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
-- status 0, so the spec reads its output.
--
-- The suite sleeps most of its 50 seconds (its timeout cases pause 1 to 3 s
-- each), so it runs in parts side by side: each part is testclnt.lua's
-- definitions and control connection, some of its top-level sections
-- (unchanged text, in their order) and its closing section, against a
-- testsrvr.lua of its own. The spec checks that the parts hold every
-- section exactly once, and every check the whole run had, per part.
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

-- testclnt.lua cut at its top-level `test("...")` calls: the text before
-- the first (definitions, control connection), the sections, the closing
local function sections(text)
  local first = assert(text:find('\ntest("method registration")', 1, true))
  local prelude, rest, list = text:sub(1, first), text:sub(first + 1), {}
  local at = 1
  while at <= #rest do
    local nxt = rest:find('\ntest%(', at) or #rest
    list[#list + 1] = rest:sub(at, nxt)
    at = nxt + 1
  end
  return prelude, list
end

-- section names each part runs besides the closing ones; the timeout cases
-- sleep about 9 s per section, the rest take the same together
local PARTS = {
  { from = "method registration", to = "raw transfer" },
  { from = "non-blocking transfer" },
  { from = "total timeout on send" },
  { from = "total timeout on receive" },
  { from = "blocking timeout on send" },
  { from = "blocking timeout on receive" },
}

local function split(text)
  local prelude, list = sections(text)
  local closing = {}
  while list[#list] and (list[#list]:find("shutting server down", 1, true)
    or list[#list]:find("done in", 1, true)) do
    table.insert(closing, 1, table.remove(list))
  end
  assert(#closing == 2, "testclnt.lua's closing sections not found")
  local name = function(sec) return sec and sec:match('^test%("([^"]*)"') end
  local parts, used = {}, 0
  for i, p in ipairs(PARTS) do
    local body, on = {}, false
    for j, sec in ipairs(list) do
      if name(sec) == p.from then on = true end
      if on then body[#body + 1] = sec used = used + 1 list[j] = false end
      if on and name(sec) == (p.to or p.from) then break end
    end
    assert(#body > 0, "no section " .. p.from)
    parts[i] = prelude .. table.concat(body) .. table.concat(closing)
  end
  for _, sec in ipairs(list) do
    assert(sec == false, "a section in no part: " .. tostring(sec))
  end
  return parts, used
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
    local out, ok = sh("cd " .. net.shquote(dir) .. " && " .. env .. " lua5.4 -e 'require \"socket\"'")
    assert.is_falsy(ok, "LuaSocket is reachable: " .. out)
    assert.matches("module 'socket' not found", out)

    local tmp = net.tmpdir()
    local parts = split(net.readfile(dir .. "/testclnt.lua"))
    for i, text in ipairs(parts) do
      local f = assert(io.open(tmp:path("part" .. i .. ".lua"), "w"))
      f:write(text)
      f:close()
    end
    local script = tmp:path("run.sh")
    local f = assert(io.open(script, "w"))
    -- each part: a server on port 0 that says which port it got (its first
    -- bind), then its client once the server waits for it
    f:write(([[
set -u
cd %s
export %s
tmp=%s
[ -n "${PRIVATE_NET:-}" ] && ip link set lo up
marker='io.stderr:write("answered by: ", require("socket")._VERSION, "\n")'
tellport='local s = require "socket" local bind = s.bind
  s.bind = function(...) local srv = assert(bind(...)) s.bind = bind
    io.stderr:write("port: ", select(2, srv:getsockname()), "\n") return srv end'
# its select case opens socket._SETSIZE + 1 sockets: the open-file limit
# here, kept moderate so that the case stays quick
ulimit -n 4096
clients=""
for i in $(seq %d); do
  @LUA150@ -l bsdsocket.luasocket -e "$marker $tellport port = 0" testsrvr.lua \
    > $tmp/server$i.out 2>&1 &
  echo $! > $tmp/server$i.pid
  port=""
  for _ in $(seq 500); do
    grep -q "waiting for client" $tmp/server$i.out && \
      port=$(sed -n 's/^port: \([0-9]*\)$/\1/p' $tmp/server$i.out) && break
    sleep 0.01
  done
  (@LUA140@ -l bsdsocket.luasocket -e "$marker port = ${port:-1}" $tmp/part$i.lua \
    > $tmp/client$i.out 2>&1; echo "client exit: $?" >> $tmp/client$i.out) &
  clients="$clients $!"
done
wait $clients
for i in $(seq %d); do kill $(cat $tmp/server$i.pid) 2>/dev/null; done
wait
]]):gsub("@LUA(%d+)@", function(n) return net.luacmd(tonumber(n)) end)
      :format(net.shquote(dir), env, net.shquote(tmp:path("")), #parts, #parts))
    f:close()
    local runner = "bash " .. net.shquote(script)
    local _, private = sh("unshare -n true")
    if private then runner = "unshare -n env PRIVATE_NET=1 " .. runner end
    local log = sh(net.timeout(170) .. " " .. runner)
    local clients, servers = {}, {}
    for i = 1, #parts do
      clients[i] = net.readfile(tmp:path("client" .. i .. ".out")) or ""
      servers[i] = net.readfile(tmp:path("server" .. i .. ".out")) or ""
    end
    tmp:remove()

    for i = 1, #parts do
      local client, server = clients[i], servers[i]
      local what = ("part %d (%s):\n%s\n%s\n%s"):format(i, PARTS[i].from, log, client, server)
      local function has(pat, str) assert(str:find(pat), "no " .. pat .. " in " .. what) end
      has("answered by: LuaSocket 3%.%d+%.%d+ %(bsdsocket%)", server)
      has("server: waiting for client connection", server)
      has("answered by: LuaSocket 3%.%d+%.%d+ %(bsdsocket%)", client)
      assert.is_nil(client:find("ERROR:", 1, true), what)
      has("client exit: 0", client)
      has("testing: shutting server down", client)
      has("testing: done in [%d.]+s", client)   -- it got to the end
      has("os%.exit%(%)", server)       -- the server got the last command
    end
    local client = table.concat(clients)
    -- every section ran
    for _, section in ipairs({ "method registration", "closed connection detection",
      "partial receive", "select function", "read after close", "write after close",
      "connect function", "rebinding", "active close", "accept function", "getstats test",
      "character line", "mixed patterns", "binary line", "raw transfer",
      "non%-blocking transfer", "total timeout on send", "total timeout on receive",
      "blocking timeout on send", "blocking timeout on receive" }) do
      assert.matches("testing: " .. section, client)
    end
    -- _SETSIZE is the open-file limit: the suite could not open more sockets than that
    assert.matches("unable to create enough sockets", client)
  end)

  it("its parts hold every section of testclnt.lua exactly once", function()
    local text = net.readfile(testsdir() .. "/testclnt.lua")
    local prelude, list = sections(text)
    assert.equal(text, prelude .. table.concat(list))
    local parts, used = split(text)
    assert.equal(#PARTS, #parts)
    assert.equal(#list - 2, used)
  end)
end)
