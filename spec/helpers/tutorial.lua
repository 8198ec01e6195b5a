-- Runs the code of docs/tutorial.md the way a reader would, for
-- spec/tutorial_spec.lua.
--
-- The conventions (also stated at the top of the tutorial):
--   * A ```lua block whose first non-blank line starts with "> " is a REPL
--     session. "> " starts an input line, ">> " continues it (as lua5.4's
--     prompts do); every other line is the output lua5.4 prints for it.
--     An input is evaluated like lua5.4's REPL does: first as
--     "return <input>" (its values are printed, separated by tabs), else as
--     a statement. A raised error prints its message (lua5.4's traceback
--     is not shown in the tutorial and not compared).
--   * Any other ```lua block is a chunk, run as it is (as if pasted into
--     the REPL or saved to a file and run with dofile). It must not raise.
--   * ```c blocks are compiled with `cc -fsyntax-only` after a prelude of
--     the usual socket headers; ```c excerpt blocks are shown only (they
--     quote the system's own struct definitions).
--   * A ```lua notrun block is shown only: the one sketch of bsdsocket.tls,
--     which needs OpenSSL and the network (the spec allows no other).
--   * ```mermaid blocks are diagrams; ```sh blocks are shown only. A fence
--     may be indented (inside a list item); its indentation is removed.
--   * All Lua code runs in one environment, top to bottom, as in one REPL a
--     reader keeps open through the tutorial; each "## " section is
--     reported on its own.
--   * Before comparing, expected and printed text are normalised: "fd=N",
--     "0x..." pointers, and numbers in the kernel's ephemeral port range
--     (/proc/sys/net/ipv4/ip_local_port_range, 32768..60999 by default),
--     whether after an address ("127.0.0.1:41533", "[::1]:41533") or on
--     their own, become "#": the ports the kernel picks for bind(0) and
--     for clients. The C library's wording of an error (strerror,
--     gai_strerror: "Address already in use" in glibc is "Address in use"
--     in musl) becomes "<message>" where a line ends ": text<TAB>ECODE";
--     the code is compared. Nothing else is masked, so 80 or 8080 are
--     compared.
--     Output lines are compared one for one (trailing white space aside),
--     blank ones included, so the tutorial shows an empty string as
--     ("%q"):format(s) rather than as an invisible blank line.
local M = {}

-- Splits markdown text into sections ("## " headings; the text before the
-- first one is section 1) with their fenced code blocks.
-- Returns { { title =, line =, blocks = { block, ... } }, ... } where a
-- block is { lang =, info =, line = (line of its first code line),
-- lines = { ... }, kind = "repl" | "lua" | "lua-notrun" | "c" | "c-excerpt" |
-- "mermaid" | "other" }.
function M.parse(text)
  local sections = { { title = "(top)", line = 1, blocks = {} } }
  local fence, n = nil, 0
  local body = text .. (text:sub(-1) == "\n" and "" or "\n")
  for text_line in body:gmatch("([^\n]*)\n") do
    local line = text_line  -- reassigned: 5.5 loop variables are read-only
    n = n + 1
    if fence then
      if line:match("^%s*```%s*$") then
        sections[#sections].blocks[#sections[#sections].blocks + 1] = fence
        fence = nil
      else                               -- a fence inside a list item is indented
        if line:sub(1, #fence.indent) == fence.indent then line = line:sub(#fence.indent + 1) end
        fence.lines[#fence.lines + 1] = line
      end
    else
      local indent, info = line:match("^(%s*)```(.*)$")
      if info then
        local lang = info:match("^(%S*)")
        fence = { lang = lang, info = info, line = n + 1, lines = {}, indent = indent }
      elseif line:match("^## ") then
        sections[#sections + 1] = { title = line:sub(4), line = n, blocks = {} }
      end
    end
  end
  assert(not fence, "unclosed code fence starting at line " .. (fence and fence.line - 1 or 0))
  for _, sec in ipairs(sections) do
    for _, b in ipairs(sec.blocks) do
      if b.lang == "lua" then
        local first
        for _, l in ipairs(b.lines) do
          if l:match("%S") then first = l break end
        end
        b.kind = (first and first:sub(1, 2) == "> ") and "repl" or "lua"
        if b.info:match("notrun") then b.kind = "lua-notrun" end
      elseif b.lang == "c" then
        b.kind = b.info:match("excerpt") and "c-excerpt" or "c"
      elseif b.lang == "mermaid" then
        b.kind = "mermaid"
      else
        b.kind = "other"
      end
    end
  end
  return sections
end

-- A REPL block's steps: { { line =, input = { ... }, expected = { ... } }, ... }.
function M.steps(block)
  local steps, cur = {}, nil
  for i, l in ipairs(block.lines) do
    local ln = block.line + i - 1
    if l:sub(1, 3) == ">> " then
      assert(cur and #cur.expected == 0, "line " .. ln .. ": '>> ' must follow an input line")
      cur.input[#cur.input + 1] = l:sub(4)
    elseif l:sub(1, 2) == "> " then
      cur = { line = ln, input = { l:sub(3) }, expected = {} }
      steps[#steps + 1] = cur
    elseif cur then
      cur.expected[#cur.expected + 1] = l
    elseif l:match("%S") then
      error("line " .. ln .. ": output before any input")
    end
  end
  return steps
end

local function ephemeral_range()
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  local lo, hi
  if f then
    lo, hi = f:read("a"):match("(%d+)%s+(%d+)")
    f:close()
  else                                  -- the BSDs and macOS: sysctl
    local p = io.popen("sysctl -n net.inet.ip.portrange.first "
      .. "net.inet.ip.portrange.last 2>/dev/null")
    if p then
      lo, hi = p:read("a"):match("(%d+)%s+(%d+)")
      p:close()
    end
  end
  return tonumber(lo) or 32768, tonumber(hi) or 60999
end
local EPH_LO, EPH_HI = ephemeral_range()

local function ephemeral(d)
  local v = tonumber(d)
  return v >= EPH_LO and v <= EPH_HI
end

local function port_mask(host, port)
  if ephemeral(port) then return host .. ":#" end
end

-- Masks what differs from run to run (see the conventions above).
function M.normalise(s)
  s = s:gsub("fd=%d+", "fd=#")
  s = s:gsub("0x%x+", "0x#")
  s = s:gsub("(%d+%.%d+%.%d+%.%d+):(%d+)", port_mask)
  s = s:gsub("(%b[]):(%d+)", port_mask)
  s = s:gsub("%f[%w.]%d+%f[^%w.]", function(d)
    if ephemeral(d) then return "#" end
  end)
  s = s:gsub("%s+$", "")
  s = s:gsub(": [^\t:]+(\tE[%u%d_]+)$", ": <message>%1")
  return s
end

-- Runs one REPL input in env the way lua5.4's REPL does; returns the
-- printed text (lines without trailing newline, as an array).
local function eval(env, input, out)
  local src = table.concat(input, "\n")
  local f, err
  local returns = false
  if #input == 1 then
    f = load("return " .. src, "=stdin", "t", env)
    returns = f ~= nil
  end
  if not f then f, err = load(src, "=stdin", "t", env) end
  if not f then
    out[#out + 1] = err
    return
  end
  local r = table.pack(xpcall(f, function(e) return tostring(e) end))
  if not r[1] then
    out[#out + 1] = (r[2]:match("^[^\n]*"))
  elseif returns and r.n > 1 then
    env.print(table.unpack(r, 2, r.n))
  end
end

local function show(lines)
  if #lines == 0 then return "(nothing)" end
  return table.concat(lines, "\n")
end

-- Runs every Lua block of the parsed sections in one environment.
-- report(i, result) is called after section i with
-- { blocks =, inputs =, checked =, failures = { "line N: ...", ... } };
-- progress(line) before each block or input (so a hang can be located).
function M.run(sections, report, progress)
  local out = {}
  local env = setmetatable({}, { __index = _G })
  env.print = function(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    local text = table.concat(t, "\t", 1, t.n)
    for l in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  end
  for i, sec in ipairs(sections) do
    local r = { blocks = 0, inputs = 0, checked = 0, failures = {} }
    for _, b in ipairs(sec.blocks) do
      if b.kind == "lua" then
        r.blocks = r.blocks + 1
        progress(b.line)
        local f, err = load(table.concat(b.lines, "\n"), "=tutorial.md:" .. b.line, "t", env)
        local ok = f ~= nil
        if f then ok, err = xpcall(f, debug.traceback) end
        if not ok then r.failures[#r.failures + 1] = "line " .. b.line .. ": block raised: " .. tostring(err) end
        for k in pairs(out) do out[k] = nil end
      elseif b.kind == "repl" then
        r.blocks = r.blocks + 1
        local ok, steps = pcall(M.steps, b)
        if not ok then
          r.failures[#r.failures + 1] = tostring(steps)
          steps = {}
        end
        for _, s in ipairs(steps) do
          r.inputs = r.inputs + 1
          progress(s.line)
          for k in pairs(out) do out[k] = nil end
          eval(env, s.input, out)
          local want, got = {}, {}
          for k, l in ipairs(s.expected) do want[k] = M.normalise(l) end
          for k, l in ipairs(out) do got[k] = M.normalise(l) end
          r.checked = r.checked + #want
          if table.concat(want, "\n") ~= table.concat(got, "\n") then
            r.failures[#r.failures + 1] = ("line %d: > %s\n  the tutorial shows:\n%s\n  lua printed:\n%s")
              :format(s.line, table.concat(s.input, "\n>> "), show(s.expected), show(out))
          end
        end
      end
    end
    report(i, r)
  end
  return env
end

-- Serialises a result table (strings, numbers, nested tables) as Lua source.
local function ser(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = "[" .. ser(k) .. "]=" .. ser(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "string" then
    return (("%q"):format(v):gsub("\n", "n"))
  end
  return tostring(v)
end

-- Entry point of the child process: runs the tutorial at path and prints
-- "@@AT <line>" before each step and "@@SECTION <lua table>" after each
-- section, then closes every socket the tutorial left open.
function M.child_main(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  local env = M.run(M.parse(text), function(i, r)
    r.index = i
    io.stdout:write("@@SECTION ", ser(r), "\n")
    io.stdout:flush()
  end, function(line)
    io.stdout:write("@@AT ", line, "\n")
    io.stdout:flush()
  end)
  for _, v in pairs(env) do
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__name == "bsdsocket.socket" then v:close() end
  end
  io.stdout:write("@@DONE\n")
end

-- Collects the child's reports: results[i] for each finished section,
-- plus done (true when the run finished) and last (the last line started).
function M.collect(output)
  local results = { done = false }
  for l in output:gmatch("[^\n]+") do
    local at = l:match("^@@AT (%d+)$")
    if at then results.last = tonumber(at) end
    local sec = l:match("^@@SECTION (.*)$")
    if sec then
      local r = assert(load("return " .. sec, "=result", "t", {}))()
      results[r.index] = r
    end
    if l == "@@DONE" then results.done = true end
  end
  return results
end

return M
