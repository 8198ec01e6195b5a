-- echo_server.lua: bench scenario 1 with luv (libuv) — a uv TCP echo server:
-- read_start on every accepted connection, each chunk written straight back.
--   lua5.4 echo_server.lua [HOST]   prints "listening on HOST:PORT"
local uv = require "luv"

local host = arg[1] or "127.0.0.1"
local server = uv.new_tcp()
assert(server:bind(host, 0))

local function serve(client)
  client:nodelay(true)
  client:read_start(function(err, data)
    if err or not data then
      client:close()
    else
      client:write(data)
    end
  end)
end

assert(server:listen(4096, function(err)
  if err then return end
  local client = uv.new_tcp()
  if server:accept(client) then serve(client) else client:close() end
end))
io.stdout:write("listening on ", host, ":", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
