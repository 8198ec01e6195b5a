-- demo.lua: a server and a client talking over loopback, in one script and
-- one sequential flow. The client can connect before the server calls
-- accept(): the kernel completes the handshake and queues the connection
-- (that is what listen's backlog is for).
--
-- Run from a checkout:  make demo
-- or:  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/demo.lua
local S = require "bsdsocket"

-- The server: a socket bound to 127.0.0.1, port 0 (the kernel picks a free
-- port), listening.
local server <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
assert(server:bind("127.0.0.1", 0))
assert(server:listen())
local addr = server:getsockname()
print("server: listening on " .. tostring(addr))

-- The client connects and speaks first.
local client <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
assert(client:connect(addr))
print("client: connected from " .. tostring(client:getsockname()))
assert(client:sendall("hello, server\n"))
print("client: sent    \"hello, server\"")

-- The server accepts the queued connection and reads the line.
local conn <close>, peer = assert(server:accept())
print("server: accepted " .. tostring(peer))
local line = S.reader(conn):line()
print("server: got     \"" .. line .. "\"")
assert(conn:sendall("hello, client; you said " .. #line .. " bytes\n"))
conn:shutdown("w")

-- The client reads the answer; "" from recv means the server closed.
local answer = S.reader(client):read_all()
print("client: got     \"" .. answer:gsub("\n$", "") .. "\"")
print("done: " .. tostring(client))
