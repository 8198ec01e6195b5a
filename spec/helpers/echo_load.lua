-- The load client of spec/servers_spec.lua, run as a child process:
--   lua5.4 spec/helpers/echo_load.lua PORT CLIENTS ROUNDS
-- Opens CLIENTS connections to an echo server at 127.0.0.1:PORT and keeps
-- them all open at once; then every client sends ROUNDS messages of 1 byte
-- to 8 KiB and checks every echoed byte, and every tenth client also
-- streams 256 KiB while a second task reads the echo back. Prints one line:
--   ok clients=N open=N bytes=B seconds=T
-- or "FAIL <reason>" (exit status 1).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local port, nclients, rounds = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3] or 4)

-- pseudo-random bytes; a message is a slice of them, so every byte varies
local seed = 12345
local parts = {}
for i = 1, 1 << 19 do
  seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
  parts[i] = string.char(seed >> 16 & 0xFF)
end
local noise = table.concat(parts)
local function message(i, r, size)
  local at = (i * 7919 + r * 104729) % (#noise - size) + 1
  return noise:sub(at, at + size - 1)
end

local failures, bytes, open, maxopen, finished = {}, 0, 0, 0, 0
local function fail(why)
  failures[#failures + 1] = why
end
loop.onerror = function(err) fail("task error: " .. tostring(err)) end

local socks = {}
local t0 = S.monotime()

-- phase 1: every client connects (all at once, as tasks)
for i = 1, nclients do
  loop.spawn(function()
    local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    c:settimeout(60)
    local ok, err = c:connect("127.0.0.1", port)
    if not ok then return fail("connect " .. i .. ": " .. err) end
    socks[i] = c
    open = open + 1
    if open > maxopen then maxopen = open end
  end)
end
if not loop.run(120) then fail("phase 1 did not finish") end

-- phase 2: every connection, still open, exchanges data
for i = 1, nclients do
  local c = socks[i]
  if c then
    loop.spawn(function()
      for r = 1, rounds do
        local size = (i * 31 + r * 977) % 8192 + 1
        local msg = message(i, r, size)
        local ok, err = c:sendall(msg)
        if not ok then return fail("send " .. i .. ": " .. err) end
        local got
        got, err = c:recvall(size)
        if got ~= msg then return fail("echo " .. i .. "/" .. r .. ": " .. tostring(err or "bytes differ")) end
        bytes = bytes + size
      end
      if i % 10 == 0 then      -- a stream both ways at once: one writer, one reader
        local big = message(i, 0, 256 * 1024)
        loop.spawn(function()
          local ok, err = c:sendall(big)
          if not ok then fail("bulk send " .. i .. ": " .. err) end
        end)
        local got, err = c:recvall(#big)
        if got ~= big then return fail("bulk echo " .. i .. ": " .. tostring(err or "bytes differ")) end
        bytes = bytes + #big
      end
      c:shutdown("w")
      local rest = c:recv(1)
      if rest ~= "" then fail("no EOF after the echo on " .. i) end
      c:close()
      open = open - 1
      finished = finished + 1
    end)
  end
end
if not loop.run(120) then fail("phase 2 did not finish") end

local seconds = S.monotime() - t0
if #failures > 0 or maxopen < nclients or finished < nclients then
  print(("FAIL %d failures (open at most %d, finished %d of %d): %s"):format(#failures, maxopen,
    finished, nclients,
    table.concat(failures, "; ", 1, math.min(#failures, 5))))
  os.exit(1)
end
print(("ok clients=%d open=%d bytes=%d seconds=%.2f"):format(nclients, maxopen, bytes, seconds))
