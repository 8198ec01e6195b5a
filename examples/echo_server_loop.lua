-- echo_server_loop.lua: a concurrent TCP echo server on bsdsocket.loop.
-- Every connection is its own task running plain sequential code
-- (recv, sendall, recv, ...); a call that would block suspends only its task.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/echo_server_loop.lua [HOST [PORT]]
-- then, in another terminal:  nc 127.0.0.1 PORT
-- HOST defaults to 127.0.0.1, PORT to 0 (a free port); the first line printed
-- names the address. It serves until interrupted.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2] or 0)

local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
local server = assert(S.socket(family, S.SOCK_STREAM))
assert(server:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
assert(server:bind(host, port))
assert(server:listen())
io.stdout:write("listening on ", tostring(server:getsockname()), "\n")
io.stdout:flush()

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
