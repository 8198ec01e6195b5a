-- The load client of spec/load_spec.lua, run as a child process:
--   lua5.4 spec/helpers/load_client.lua PORT CLIENTS RESETTERS SECONDS
-- On bsdsocket.loop: opens CLIENTS connections to the echo server at
-- 127.0.0.1:PORT, all at once, and holds them open; then every client
-- exchanges messages of 1 byte .. 32 KiB (each byte checked against what it
-- sent) until SECONDS have passed (at least 2 rounds each), while RESETTERS
-- other connections each send part of a message, read part of the echo and
-- reset (SO_LINGER 0, close) in the middle. Prints one line:
--   ok clients=N open=N resets=R rounds=K bytes=B seconds=T
-- or "FAIL <reasons>" (exit status 1).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"

local port, nclients = assert(tonumber(arg[1])), assert(tonumber(arg[2]))
local nresets, seconds = tonumber(arg[3] or 200), tonumber(arg[4] or 10)

-- pseudo-random bytes; a message is a slice, so the bytes vary everywhere
local seed, parts = 4242, {}
for i = 1, 1 << 17 do
  seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
  parts[i] = string.char(seed >> 16 & 0xFF)
end
local noise = table.concat(parts)
local function message(i, r)
  local size = 1 + (i * 7919 + r * 104729) % (32 * 1024)
  local at = (i * 31 + r * 977) % (#noise - size) + 1
  return noise:sub(at, at + size - 1)
end

local failures, bytes, open, maxopen, rounds, resets = {}, 0, 0, 0, 0, 0
local function fail(why)
  if #failures < 20 then failures[#failures + 1] = why end
end
loop.onerror = function(err) fail("task error: " .. tostring(err)) end

local function connect()
  local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  c:settimeout(60)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then
    c:close()
    return nil, err
  end
  return c
end

local t0 = S.monotime()
local socks = {}

-- phase 1: every client connects, all at once, and stays connected
for i = 1, nclients do
  loop.spawn(function()
    local c, err = connect()
    if not c then return fail("connect " .. i .. ": " .. err) end
    socks[i] = c
    open = open + 1
    if open > maxopen then maxopen = open end
  end)
end
if not loop.run(120) then fail("connecting did not finish") end

-- phase 2: every client echoes until the deadline, checking every byte;
-- resetters come and go in the middle of it
local stop_at = S.monotime() + seconds
for i = 1, nclients do
  local c = socks[i]
  if c then
    loop.spawn(function()
      local r = 0
      while r < 2 or S.monotime() < stop_at do
        r = r + 1
        local m = message(i, r)
        local ok, err = c:sendall(m)
        if not ok then return fail(("client %d round %d send: %s"):format(i, r, err)) end
        local back, rerr = c:recvall(#m)
        if back ~= m then
          return fail(("client %d round %d: %s"):format(i, r,
            back and "echo differs" or ("recv: " .. tostring(rerr))))
        end
        bytes = bytes + #m
        rounds = rounds + 1
      end
      c:close()
      open = open - 1
    end)
  end
end
for i = 1, nresets do
  loop.spawn(function()
    loop.sleep((i % 50) * seconds / 60)      -- spread over the run
    local c, err = connect()
    if not c then return fail("resetter connect " .. i .. ": " .. err) end
    local m = noise:sub(1, 200000)
    -- send a large part, read a little of the echo, then reset mid-stream
    local sent = 0
    while sent < 100000 do
      local n = c:send(m, sent + 1, sent + 16384)
      if not n then break end
      sent = sent + n
    end
    local got = c:recv(1000)
    if not got or got == "" or got ~= m:sub(1, #got) then fail("resetter " .. i .. ": bad echo") end
    assert(c:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 }))
    c:close()
    resets = resets + 1
  end)
end
if not loop.run(seconds + 120) then fail("the exchange did not finish") end

-- the server still serves a newcomer
loop.spawn(function()
  local c, err = connect()
  if not c then return fail("after: connect: " .. err) end
  local m = message(0, 1)
  assert(c:sendall(m))
  if c:recvall(#m) ~= m then fail("after: echo differs") end
  c:close()
end)
loop.run(30)

local dt = S.monotime() - t0
if #failures > 0 or maxopen ~= nclients or resets ~= nresets then
  print(("FAIL open=%d/%d resets=%d/%d %s"):format(maxopen, nclients, resets, nresets,
    table.concat(failures, "; ")))
  os.exit(1)
end
print(("ok clients=%d open=%d resets=%d rounds=%d bytes=%d seconds=%.1f")
  :format(nclients, maxopen, resets, rounds, bytes, dt))
