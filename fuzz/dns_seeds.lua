-- Writes seed responses for fuzz_dns into the directory arg[1]: answers
-- of each type the example shows, with and without compression pointers.
local dir = assert(arg[1], "usage: lua5.4 fuzz/dns_seeds.lua DIR")
local function name(n)
  local t = {}
  for label in n:gmatch("[^.]+") do t[#t + 1] = string.pack("s1", label) end
  return table.concat(t) .. "\0"
end
local function rr(rtype, rdata, owner)
  return (owner or "\xC0\x0C") .. string.pack(">I2I2I4s2", rtype, 1, 300, rdata)
end
local function msg(answers, flags)
  local q = name("example.com") .. string.pack(">I2I2", 1, 1)
  return string.pack(">I2I2I2I2I2I2", 0x4242, flags or 0x8180, 1, #answers, 0, 0)
    .. q .. table.concat(answers)
end
local seeds = {
  a = msg({ rr(1, "\93\184\216\34"), rr(1, "\1\2\3\4") }),
  aaaa = msg({ rr(28, ("\32\1\13\184"):rep(4)) }),
  cname = msg({ rr(5, name("www.example.com")), rr(1, "\1\1\1\1", "\xC0\x0C") }),
  mx = msg({ rr(15, string.pack(">I2", 10) .. "\4mail\xC0\x0C") }),
  txt = msg({ rr(16, string.pack("s1s1", "v=spf1 -all", "quote\" and \\")) }),
  soa = msg({ rr(6, name("ns.example.com") .. name("host.example.com")
    .. string.pack(">I4I4I4I4I4", 1, 2, 3, 4, 5)) }),
  ptr = msg({ rr(12, "\3foo\xC0\x0C") }),
  loop = msg({ rr(5, "\xC0\x2B") }),
  nxdomain = msg({}, 0x8183),
  truncated = msg({}, 0x8380),
  unknown = msg({ rr(99, "\0\1\2") }),
}
for k, v in pairs(seeds) do
  local f = assert(io.open(dir .. "/" .. k, "wb"))
  f:write(v)
  f:close()
end
