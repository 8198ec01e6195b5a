-- echo_server.lua: bench scenario 1 with cqueues — a coroutine per
-- connection on a cqueues controller, the way cqueues' own examples serve:
-- xread up to 64 KiB, xwrite it straight back, unbuffered.
--   lua5.4 echo_server.lua [HOST]   prints "listening on HOST:PORT"
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local host = arg[1] or "127.0.0.1"
local cq = cqueues.new()
local server = assert(socket.listen{ host = host, port = 0, reuseaddr = true, nodelay = true })
assert(server:listen())   -- binds now, so the port can be printed
local _, _, port = server:localname()

local function serve(client)
  client:setmode("bn", "bn")                   -- binary, no buffering
  while true do
    local data = client:xread(-65536)          -- up to 64 KiB, whatever came
    if not data then break end                 -- EOF or an error
    if not client:xwrite(data, "bn") then break end
  end
  client:close()
end

cq:wrap(function()
  for client in server:clients() do cq:wrap(serve, client) end
end)
io.stdout:write("listening on ", host, ":", port, "\n")
io.stdout:flush()
assert(cq:loop())
