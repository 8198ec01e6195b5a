-- Lua 5.5 makes a for loop's variables read-only; Debian's penlight (1.13)
-- and busted assign to them in a few places, so they fail to compile there.
-- Run by `make check-lua55` under the Lua 5.5 built in build/lua55:
--   lua .ci/lua55compat.lua SRCROOT OUTDIR FILE...
-- For each FILE (relative to SRCROOT) that Lua 5.5 refuses for that reason,
-- writes a copy to OUTDIR whose one-line loop headers redeclare their
-- variables (`for k, v in pairs(t) do local k, v = k, v`): Lua 5.4's meaning
-- (a fresh assignable local per iteration), accepted by 5.5. Files that load
-- as they are are not copied; a copy that still fails stops the build.
local src, out = arg[1], arg[2]

local function redeclare(line)
  local names = line:match("^%s*for%s+([%w_%s,]-)%s+in%s.*%sdo%s*$")
    or line:match("^%s*for%s+([%w_]+)%s*=.*%sdo%s*$")
  if not names then return line end
  names = names:gsub("%s", "")
  return line .. " local " .. names .. " = " .. names
end

for i = 3, #arg do
  local rel = arg[i]
  local path = src .. "/" .. rel
  local _, err = loadfile(path)
  if err and err:find("attempt to assign to const variable", 1, true) then
    local f = assert(io.open(path))
    local lines = {}
    for line in f:lines() do lines[#lines + 1] = redeclare(line) end
    f:close()
    local text = table.concat(lines, "\n") .. "\n"
    assert(load(text, "=" .. path))
    local dest = out .. "/" .. rel
    assert(os.execute("mkdir -p '" .. dest:match("^(.*)/") .. "'"))
    local w = assert(io.open(dest, "w"))
    w:write(text)
    w:close()
    print("lua55compat: " .. rel)
  elseif err then
    error(err, 0)
  end
end
