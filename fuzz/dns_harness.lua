-- The DNS response parser of examples/dns_query.lua, loaded for fuzzing.
-- The example is a script (it parses arg and sends a query when run), so
-- this takes its source from `local TYPES` and from `local function
-- read_name` up to the line that starts the network part, compiles that
-- with the names it needs, and returns a function that feeds one input to
-- the example's parse(). Inputs get the query id and the QR bit set, so the
-- parser goes past its first check. Returns the parse function too.
-- Usage: local feed = dofile("fuzz/dns_harness.lua"); feed(bytes)
local root = os.getenv("FUZZ_ROOT") or "."
local f = assert(io.open(root .. "/examples/dns_query.lua"))
local src = f:read("a")
f:close()

local types = assert(src:match("\n(local TYPES = [^\n]*\n)"), "dns_query.lua: no TYPES line")
local a = assert(src:find("\nlocal function read_name", 1, true), "dns_query.lua: no read_name")
local b = assert(src:find("\nlocal target, err", a, true), "dns_query.lua: no end marker")
local body = src:sub(a, b)
assert(body:find("local function parse", 1, true), "dns_query.lua: no parse()")

local chunk = "local S = require 'bsdsocket.core'\n" .. types
  .. "local id = 0x4242\n" .. body .. "\nreturn parse\n"
local parse = assert(load(chunk, "=examples/dns_query.lua (parser)"))()

return function(data)
  if #data < 3 then data = data .. ("\0"):rep(3 - #data) end
  local msg = string.pack(">I2", 0x4242) .. string.char(data:byte(3) | 0x80) .. data:sub(4)
  local ok, lines = pcall(parse, msg)
  if ok then
    assert(type(lines) == "table")
    for _, l in ipairs(lines) do assert(type(l) == "string") end
  end
  return ok
end, parse
