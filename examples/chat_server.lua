-- chat_server.lua: a line-based multi-client chat on bsdsocket.loop.
-- A client first sends its nickname (one line); then every line it sends
-- goes to everyone else as "nick: line". Joins, leaves and renames are
-- announced with a leading "* ". Commands: /nick NEW, /who, /quit.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/chat_server.lua [HOST [PORT]]
-- then, in other terminals:  nc 127.0.0.1 PORT
-- HOST defaults to 127.0.0.1, PORT to 0 (a free port); the first line printed
-- names the address. It serves until interrupted.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2] or 0)

local MAX_LINE = 4096           -- longer lines are cut
local MAX_BACKLOG = 1 << 20     -- a client that lets this much pile up is dropped

local clients = {}              -- client -> true, in no particular order
local bynick = {}               -- nickname -> client

-- A reader of lines over a socket (in a task, recv suspends only that task).
local function linereader(sock)
  local buf = ""
  return function()
    while true do
      local nl = buf:find("\n", 1, true)
      if nl or #buf >= MAX_LINE then
        local cut = nl or MAX_LINE + 1
        local line = buf:sub(1, cut - 1)
        buf = buf:sub(nl and cut + 1 or cut)
        return (line:gsub("\r$", ""))
      end
      local data = sock:recv(4096)
      if not data or data == "" then return nil end
      buf = buf .. data
    end
  end
end

-- Each client has an outbox and, while it is not empty, a writer task: a
-- slow reader delays nobody else, and two messages never interleave.
local function deliver(client, text)
  if client.gone then return end
  local out = client.out
  out[#out + 1] = text
  client.queued = client.queued + #text
  if client.queued > MAX_BACKLOG then      -- not reading: let it go
    client.gone = true
    client.sock:shutdown("rw")
    return
  end
  if client.writing then return end
  client.writing = true
  loop.spawn(function()
    while #client.out > 0 and not client.gone do
      local data = table.concat(client.out)
      client.out, client.queued = {}, 0
      if not client.sock:sendall(data) then break end
    end
    client.writing = false
    if client.done then client.sock:close() end   -- the reader left it to us
  end)
end

local function broadcast(text, except)
  for c in pairs(clients) do
    if c ~= except and c.nick then deliver(c, text) end
  end
end

local function validnick(nick)
  return #nick >= 1 and #nick <= 32 and not nick:find("[^%w_%-]")
end

local function choose(client, nick)
  if not validnick(nick) then
    deliver(client, "* nicknames are 1 to 32 letters, digits, _ or -\n")
  elseif bynick[nick] then
    deliver(client, "* nickname " .. nick .. " is taken\n")
  else
    return true
  end
end

local function serve(sock)
  local client = { sock = sock, out = {}, queued = 0 }
  clients[client] = true
  local readline = linereader(sock)
  deliver(client, "* welcome; your nickname?\n")
  while not client.gone do
    local line = readline()
    if not line or line == "/quit" then break end
    if not client.nick then
      if choose(client, line) then
        client.nick, bynick[line] = line, client
        deliver(client, "* you are " .. line .. "\n")
        broadcast("* " .. line .. " joined\n", client)
      end
    elseif line:match("^/nick%s") then
      local new = line:match("^/nick%s+(%S*)%s*$") or ""
      if choose(client, new) then
        local old = client.nick
        bynick[old], bynick[new], client.nick = nil, client, new
        broadcast("* " .. old .. " is now " .. new .. "\n")
      end
    elseif line == "/who" then
      local names = {}
      for nick in pairs(bynick) do names[#names + 1] = nick end
      table.sort(names)
      deliver(client, "* here: " .. table.concat(names, " ") .. "\n")
    elseif line ~= "" then
      broadcast(client.nick .. ": " .. line .. "\n", client)
    end
  end
  clients[client] = nil
  if client.nick then
    bynick[client.nick] = nil
    broadcast("* " .. client.nick .. " left\n")
  end
  -- Whoever finishes last closes: a task still waiting on a socket that
  -- another task closed would never be woken.
  client.gone, client.done = true, true
  if client.writing then
    sock:shutdown("rw")   -- the writer's send fails now; it closes
  else
    sock:close()
  end
end

local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server = assert(S.socket(family, S.SOCK_STREAM))
assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
assert(server:bind(host, port))
assert(server:listen())
io.stdout:write("listening on ", tostring(server:getsockname()), "\n")
io.stdout:flush()

loop.spawn(function()
  while true do
    local sock, err, code = server:accept()
    if sock then
      loop.spawn(serve, sock)
    elseif code == "EMFILE" or code == "ENFILE" then
      io.stderr:write(err, "\n")
      loop.sleep(0.1)
    end
  end
end)

loop.run()
