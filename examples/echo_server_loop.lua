-- echo_server_loop.lua: a concurrent TCP echo server on bsdsocket.loop.
-- Every connection is its own task running plain sequential code
-- (recv, sendall, recv, ...); a call that would block suspends only its task.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/echo_server_loop.lua [HOST [PORT]] [--workers N]
-- then, in another terminal:  nc 127.0.0.1 PORT
-- HOST defaults to 127.0.0.1, PORT to 0 (a free port); the first line printed
-- names the address. It serves until interrupted.
--
-- --workers N: N processes, each with its own loop and its own SO_REUSEPORT
-- listener on the same port (the kernel spreads connections over them). The
-- first is this process; it starts the others by running its own command line
-- (the interpreter and its options, arg[-n] .. arg[-1], then arg[0])
-- again, with a pipe to each as its standard input: a worker leaves when the
-- pipe ends, that is when this process is gone, however it went.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

-- positional HOST PORT, and --workers N / --worker (a started worker)
local pos, nworkers, isworker = {}, 1, false
do
  local i = 1
  while arg[i] do
    if arg[i] == "--workers" then
      nworkers = math.tointeger(tonumber(arg[i + 1]))
      if not nworkers or nworkers < 1 then
        io.stderr:write("echo_server_loop: --workers needs a positive integer\n")
        os.exit(2)
      end
      i = i + 1
    elseif arg[i] == "--worker" then
      isworker = true
    else
      pos[#pos + 1] = arg[i]
    end
    i = i + 1
  end
end
local host, port = pos[1] or "127.0.0.1", tonumber(pos[2] or 0)

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The command line that ran this script, up to the script: the interpreter
-- (arg[-n], the lowest index) and its options (up to arg[-1]), quoted.
local function interpreter()
  local first = -1
  while arg[first - 1] ~= nil do first = first - 1 end
  local words = {}
  for i = first, -1 do words[#words + 1] = shquote(arg[i]) end
  return table.concat(words, " ")
end

local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server = assert(S.socket(family, S.SOCK_STREAM))
assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
if nworkers > 1 or isworker then assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEPORT, true)) end
assert(server:bind(host, port))
assert(server:listen())
if isworker then
  -- the parent holds the other end of stdin: its end (EOF) is ours
  loop.spawn(function()
    loop.wait(0, "r")
    os.exit(0)
  end)
else
  io.stdout:write("listening on ", tostring(server:getsockname()), "\n")
  io.stdout:flush()
end

-- The other workers: this script again on the port now known, each with a
-- pipe from here as its stdin (kept open for as long as this process runs).
local workers = {}
for i = 2, nworkers do
  local cmd = ("exec %s %s %s %d --worker"):format(interpreter(), shquote(arg[0]),
    shquote(host), server:getsockname().port)
  workers[i - 1] = assert(io.popen(cmd, "w"))
end

local function serve(client)
  while true do
    local data = client:recv(65536)
    if not data or data == "" then break end     -- peer closed, or an error
    if not client:sendall(data) then break end
  end
  client:close()
end

loop.spawn(function()
  while true do
    local client, err, code = server:accept()
    if client then
      client:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
      loop.spawn(serve, client)
    elseif code == "EMFILE" or code == "ENFILE" then
      io.stderr:write(err, "\n")                 -- out of descriptors: breathe
      loop.sleep(0.1)
    end
  end
end)

loop.run()
for _, w in ipairs(workers) do w:close() end
