-- luacheck: std +busted
-- Every call's timeout, EOF and error paths give the same results inside a
-- bsdsocket.loop task (where a would-block yields) as in a plain script
-- (where it polls): the same values, the same message, the same code, the
-- same partial data. Each case builds fresh sockets, runs once outside and
-- once in a task, and compares (port numbers masked).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local net = require "helpers.net"
local backend = require "helpers.backend"

local function reset(sock)
  sock:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 })
  sock:close()
end

local function udp()
  local u = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
  assert(u:bind("127.0.0.1", 0))
  return u
end

-- name -> function(): returns the call to run and the sockets to close
local cases = {
  ["recv times out"] = function()
    local a, b = net.tcp_pair()
    a:settimeout(0.1)
    return function() return a:recv(10) end, a, b
  end,
  ["recv on a non-blocking socket: EAGAIN"] = function()
    local a, b = net.tcp_pair()
    a:settimeout(0)
    return function() return a:recv(10) end, a, b
  end,
  ["recv at EOF"] = function()
    local a, b = net.tcp_pair()
    b:close()
    return function() return a:recv(10) end, a
  end,
  ["recv after a reset"] = function()
    local a, b = net.tcp_pair()
    reset(b)
    a:settimeout(1)
    return function() return a:recv(10) end, a
  end,
  ["recvall times out, keeping what came"] = function()
    local a, b = net.tcp_pair()
    a:settimeout(0.2)
    b:send("abc")
    return function() return a:recvall(10) end, a, b
  end,
  ["recvall meets EOF, keeping what came"] = function()
    local a, b = net.tcp_pair()
    b:send("abc")
    b:close()
    return function() return a:recvall(10) end, a
  end,
  ["recvall meets a reset, keeping what came"] = function()
    local a, b = net.tcp_pair()
    a:settimeout(2)
    b:send("abc")
    net.sleep(0.05)
    reset(b)
    return function() return a:recvall(10) end, a
  end,
  ["recvall on a non-blocking socket: EAGAIN with what came"] = function()
    local a, b = S.socketpair()
    a:settimeout(0)
    b:send("ab")
    return function() return a:recvall(10) end, a, b
  end,
  ["sendall times out, counting what went"] = function()
    local a, b = S.socketpair()
    a:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
    a:settimeout(0.1)
    return function()
      local r = table.pack(a:sendall(("x"):rep(1 << 20)))
      r[4] = r[4] and r[4] > 0  -- how much fits differs with buffer sizes
      return table.unpack(r, 1, r.n)
    end, a, b
  end,
  ["send to a closed peer: EPIPE"] = function()
    local a, b = S.socketpair()
    b:close()
    return function() return a:send("x") end, a
  end,
  ["accept times out"] = function()
    local srv = assert(S.tcp_listen("127.0.0.1", 0))
    srv:settimeout(0.1)
    return function() return srv:accept() end, srv
  end,
  ["connect is refused"] = function()
    local srv = assert(S.tcp_listen("127.0.0.1", 0))
    local port = srv:getsockname().port
    srv:close()
    local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    c:settimeout(1)
    return function() return c:connect("127.0.0.1", port) end, c
  end,
  ["recvfrom times out"] = function()
    local u = udp()
    u:settimeout(0.1)
    return function() return u:recvfrom(10) end, u
  end,
  ["recv on an unbound UDP socket times out"] = function()
    local u = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    u:settimeout(0.1)
    return function() return u:recv(10) end, u
  end,
  ["recvmsg times out"] = function()
    local u = udp()
    u:settimeout(0.1)
    return function() return u:recvmsg(10) end, u
  end,
  ["recvmmsg times out"] = function()
    local u = udp()
    u:settimeout(0.1)
    if not u.recvmmsg then return function() return "no recvmmsg" end, u end
    return function() return u:recvmmsg(4, 10) end, u
  end,
}

local function masked(r)
  local out = { n = r.n }
  for i = 1, r.n do
    local v = r[i]
    if type(v) == "string" then v = v:gsub(":%d+", ":PORT") end
    if type(v) == "userdata" then v = "<" .. (getmetatable(v).__name or "userdata") .. ">" end
    out[i] = v
  end
  return out
end

local function run(setup, intask)
  local call, s1, s2 = setup()
  local r
  if intask then
    loop.spawn(function() r = table.pack(call()) end)
    assert.is_true(loop.run(10))
  else
    r = table.pack(call())
  end
  net.closeall(s1, s2)
  return masked(r)
end

describe("a call gives the same result in a loop task as outside", function()
  local names = {}
  for name in pairs(cases) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    it(name, function()
      if name == "connect is refused" and backend.libkqueue then
        pending("libkqueue: it reads SO_ERROR to fill fflags, which clears a"
          .. " refused connect's error")
        return
      end
      local outside = run(cases[name], false)
      local inside = run(cases[name], true)
      assert.same(outside, inside)
      assert.is_true(outside.n >= 1)
    end)
  end

  it("(the partial data of recvall is really there, in both)", function()
    local outside = run(cases["recvall times out, keeping what came"], false)
    assert.same({ n = 4, nil, outside[2], "ETIMEDOUT", "abc" }, outside)
    local inside = run(cases["recvall meets EOF, keeping what came"], true)
    assert.equal("EOF", inside[3])
    assert.equal("abc", inside[4])
  end)
end)
