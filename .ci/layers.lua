-- Checks that the C sources call each other one way only:
--   util <- {errors, resolver, buffer} <- addr <- socket <- {options, msg,
--   poller backends (poller_*), zerocopy, tls} <- poller <- loop <- core
-- A file may use the bsd_* functions and variables defined in files of a
-- lower layer (and its own); a use of a higher or same-layer file's symbol
-- fails. Below them all, csrc/platform.h turns OS macros into BSD_HAVE_*
-- capabilities, and no other file may test an OS macro (checked below).
-- Run by `make layers` (part of `make test`) from the project root.
local layer = {
  util = 0, errors = 1, resolver = 1, buffer = 1, addr = 2, socket = 3,
  options = 4, msg = 4, tls = 4, zerocopy = 4,
  poller_epoll = 4, poller_kqueue = 4, poller_poll = 4, poller = 5,
  loop = 6, core = 7,
}

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  -- comments and strings say nothing about calls
  return (text:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " "):gsub('"[^"\n]*"', '""'))
end

local files = {}
local p = assert(io.popen("ls csrc/*.c"))
for path in p:lines() do files[#files + 1] = path end
p:close()

local owner = {}   -- symbol -> defining file's base name
local defines = {} -- file's base name -> set of symbols it defines (the
                   -- poller backends define the same ones, one compiled in)
local texts = {}
for _, path in ipairs(files) do
  local name = path:match("([%w_]+)%.c$")
  if not layer[name] then
    io.stderr:write("layers: ", path, " has no layer; add it to .ci/layers.lua\n")
    os.exit(1)
  end
  local text = read(path)
  texts[name] = text
  defines[name] = {}
  -- external definitions: at the start of a line, not static, name( or name =
  for line in text:gmatch("[^\n]+") do
    if not line:match("^static") and not line:match("^%s") then
      local sym = line:match("^[%w_%s%*]-[%s%*](bsd_[%w_]+)%s*%(") or line:match("^const%s+[%w_]+%s+(bsd_[%w_]+)")
      if sym and not line:match(";%s*$") then
        owner[sym] = name
        defines[name][sym] = true
      end
    end
  end
end

local bad = 0
for name, text in pairs(texts) do
  local seen = {}
  for sym in text:gmatch("(bsd_[%w_]+)") do
    local def = owner[sym]
    if def and def ~= name and not defines[name][sym] and not seen[sym] then
      seen[sym] = true
      if layer[def] >= layer[name] then
        bad = bad + 1
        print(("layers: %s.c (layer %d) uses %s from %s.c (layer %d)"):format(
          name, layer[name], sym, def, layer[def]))
      end
    end
  end
end
-- Only csrc/platform.h knows operating systems: every other file tests a
-- BSD_HAVE_* capability. ALLOW_OS: files not moved over yet (none).
local ALLOW_OS = {}
local osmacro = { "__linux__", "__linux", "__APPLE__", "__MACH__", "__FreeBSD__",
                  "__NetBSD__", "__OpenBSD__", "__DragonFly__", "__sun" }
local q = assert(io.popen("ls csrc/*.c csrc/*.h"))
for path in q:lines() do
  if path ~= "csrc/platform.h" and not ALLOW_OS[path] then
    local f = assert(io.open(path))
    local text = f:read("a")
    f:close()
    local n = 0
    for line in text:gmatch("[^\n]*") do
      n = n + 1
      if line:match("^%s*#") then
        for _, m in ipairs(osmacro) do
          if line:find(m, 1, true) then
            bad = bad + 1
            print(("layers: %s:%d tests %s: test a BSD_HAVE_* of platform.h")
              :format(path, n, m))
            break
          end
        end
      end
    end
  end
end
q:close()

if bad > 0 then os.exit(1) end
print(("layers: %d files, one way (util <- errors/resolver/buffer <- addr <- socket"
  .. " <- options/msg/poller_*/zerocopy/tls <- poller <- loop <- core)")
  :format(#files))
