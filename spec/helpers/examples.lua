-- Fixtures for the example specs: run an example (or a python3 peer from
-- spec/helpers/peers.py) as a child process with bounded time, read what it
-- prints, and kill it. Every child runs under `timeout`, so a hung child
-- dies on its own even if a spec forgets it.
local net = require "helpers.net"
local M = {}

M.LIMIT = 20                             -- seconds any child may run
local build = os.getenv("BSDSOCKET_BUILD") or "build"

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shquote = shquote

local function readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
M.readfile = readfile

local function writefile(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end
M.writefile = writefile

-- The shell command that runs examples/<name>.lua with args (a list).
function M.example(name, args)
  local words = {}
  for i, a in ipairs(args or {}) do words[i] = shquote(a) end
  return ("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s %s examples/%s.lua %s")
    :format(shquote(build .. "/?.so;;"), net.lua, name, table.concat(words, " "))
end

-- A command for a program that is not under test (python3, dnsmasq): run
-- without the sanitizer runtime that `make sanitize` preloads.
function M.native(cmd)
  return "env -u LD_PRELOAD " .. cmd
end

-- The shell command that runs a python3 peer.
function M.peer(command, args)
  local words = { M.native("python3 -u spec/helpers/peers.py"), command }
  for _, a in ipairs(args or {}) do words[#words + 1] = shquote(a) end
  return table.concat(words, " ")
end

-- Runs a command to its end (at most LIMIT seconds) with `stdin` (a string)
-- as its standard input, through a pipe if opts.pipe, else from a file.
-- Returns { code = exit status, out = stdout, err = stderr }.
function M.run(cmd, stdin, opts)
  local inp, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  writefile(inp, stdin or "")
  local line
  if opts and opts.pipe then
    line = ("cat %s | %s %s >%s 2>%s"):format(inp, net.timeout(M.LIMIT), cmd, out, err)
  else
    line = ("%s %s <%s >%s 2>%s"):format(net.timeout(M.LIMIT), cmd, inp, out, err)
  end
  local _, _, code = os.execute(line)
  local r = { code = code, out = readfile(out), err = readfile(err) }
  os.remove(inp) os.remove(out) os.remove(err)
  return r
end

-- Starts a long-running command with its stdout on a pipe (stderr too with
-- opts.merge, else into a file; stdin from opts.stdin, a string, or
-- /dev/null; opts.limit: seconds it may run, LIMIT by default: a server that
-- a whole spec file shares, started in setup(), needs the file's time, as
-- bg.start's servers have). Returns a process object:
--   p:line()            next line of output, nil at the end
--   p:expect(pattern)   reads lines until one matches; returns the captures
--   p:kill()            SIGTERM, then waits for it (safe to call twice)
--   p:stderr()          what it wrote to stderr so far
function M.spawn(cmd, opts)
  opts = opts or {}
  local errf, inp = os.tmpname(), "/dev/null"
  if opts.stdin then
    inp = os.tmpname()
    writefile(inp, opts.stdin)
  end
  local redirect = opts.merge and "2>&1" or ("2>" .. errf)
  -- sh prints its pid, then becomes `timeout`, which passes SIGTERM on.
  local pipe = assert(io.popen(("echo $$; exec %s %s <%s %s")
    :format(net.timeout(opts.limit or M.LIMIT), cmd, inp, redirect), "r"))
  local pid = assert(tonumber(pipe:read("l")), "no pid from the child shell")
  local p = { pid = pid, seen = {} }
  function p.line()
    if not pipe then return nil end
    local l = pipe:read("l")
    if l then p.seen[#p.seen + 1] = l end
    return l
  end
  function p.expect(_, pattern)
    while true do
      local l = p.line()
      if not l then
        error(("child ended before printing %q; it printed:\n%s\nstderr:\n%s")
          :format(pattern, table.concat(p.seen, "\n"), p.stderr()), 2)
      end
      local caps = { l:match(pattern) }
      if caps[1] then return table.unpack(caps) end
    end
  end
  function p.rest()
    local s = pipe and pipe:read("a") or ""
    return s
  end
  local errtext                          -- stderr, kept once the file is gone
  function p.stderr()
    if errtext then return errtext end
    local f = io.open(errf, "rb")
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
  end
  -- the child is gone: keep its stderr, remove the temporary files
  local function cleanup()
    errtext = p.stderr()
    os.remove(errf)
    if inp ~= "/dev/null" then os.remove(inp) end
  end
  function p.kill()
    if pipe then
      os.execute("kill " .. pid .. " 2>/dev/null")
      pipe:close()
      pipe = nil
      cleanup()
    end
  end
  function p.close()                     -- waits for a child that ends itself
    local rest = p.rest()
    local _, _, code = pipe:close()
    pipe = nil
    cleanup()
    return code, rest
  end
  return p
end

-- Starts a python3 peer server and returns it and the port it announced.
function M.start_peer(command, args, opts)
  local p = M.spawn(M.peer(command, args), opts)
  local port = tonumber(p:expect("^port (%d+)$"))
  return p, port
end

-- Starts an example server that prints "listening on HOST:PORT" first.
function M.start_example(name, args, opts)
  local p = M.spawn(M.example(name, args), opts)
  local port = tonumber(p:expect("listening on .*:(%d+)"))
  return p, port
end

return M
