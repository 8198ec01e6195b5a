-- echo_server.lua: bench scenario 1 with LuaSocket — the classic
-- socket.select echo server. select() takes the whole list of sockets on
-- every call and is limited to FD_SETSIZE (1,024) descriptors.
--   lua5.4 echo_server.lua [HOST]   prints "listening on HOST:PORT"
local socket = require "socket"

local host = arg[1] or "127.0.0.1"
local server = assert(socket.bind(host, 0, 4096))
server:settimeout(0)
local _, port = server:getsockname()
io.stdout:write("listening on ", host, ":", port, "\n")
io.stdout:flush()

local select = socket.select
local recvt = { server }        -- what select watches
local index = { [server] = 1 }  -- socket -> position in recvt

local function drop(c)
  local i, n = index[c], #recvt
  recvt[i], index[recvt[n]] = recvt[n], i
  recvt[n], index[c] = nil, nil
  c:close()
end

while true do
  local ready, err = select(recvt, nil)
  if not ready then error("select: " .. tostring(err)) end
  for _, s in ipairs(ready) do
    if s == server then
      local c = server:accept()
      while c do
        c:settimeout(0)
        c:setoption("tcp-nodelay", true)
        recvt[#recvt + 1] = c
        index[c] = #recvt
        c = server:accept()
      end
    else
      local data, rerr, partial = s:receive(65536)
      data = data or partial
      if rerr == "closed" then
        drop(s)
      elseif data and data ~= "" then
        local i = 1
        while i <= #data do           -- a short write: wait for it, blocking
          local sent, serr, last = s:send(data, i)
          if sent then break end
          if serr ~= "timeout" then drop(s) break end
          i = last + 1
          select(nil, { s })
        end
      end
    end
  end
end
