-- echo_server_copas.lua: bench scenario 1, the copas way on bsdsocket: a
-- coroutine per connection (a bsdsocket.loop task) that uses only
-- LuaSocket's API through bsdsocket.luasocket. As copas does, the sockets
-- are non-blocking; a receive that finds nothing ("timeout") waits with
-- socket.select({ c }), which inside a task suspends only that task.
--   lua5.4 echo_server_copas.lua [HOST]   prints "listening on HOST:PORT"
local socket = require "bsdsocket.luasocket"
local loop = require "bsdsocket.loop"

local host = arg[1] or "127.0.0.1"
local server = assert(socket.bind(host, 0, 4096))
local _, port = server:getsockname()
io.stdout:write("listening on ", host, ":", port, "\n")
io.stdout:flush()

local select = socket.select

local function serve(c)
  c:settimeout(0)
  c:setoption("tcp-nodelay", true)
  local rset = { c }
  while true do
    local data, err, partial = c:receive(65536)
    data = data or partial
    if err == "closed" then break end
    if data ~= "" then
      local i = 1
      while true do                   -- a short write: wait until writable
        local sent, serr, last = c:send(data, i)
        if sent then break end
        if serr ~= "timeout" then c:close() return end
        i = last + 1
        select(nil, rset)
      end
    else
      select(rset, nil)                -- nothing yet: wait for the socket
    end
  end
  c:close()
end

loop.spawn(function()
  while true do                       -- the server socket blocks: accept waits in its task
    local c = server:accept()
    if c then loop.spawn(serve, c) end
  end
end)
loop.run()
