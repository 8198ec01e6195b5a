-- docs/tutorial.md stays true: its Lua blocks and REPL sessions run against
-- real loopback sockets and what they print is compared with what the
-- tutorial shows; its C blocks compile; its diagrams are there; the links
-- into it from README.md and API.md lead to real headings.
-- The conventions are in spec/helpers/tutorial.lua. The tutorial runs in a
-- child lua5.4 killed after RUN_SECONDS, so a session that would block
-- cannot hang the suite: the sections it did not finish fail instead.
local net = require "helpers.net"
local T = require "helpers.tutorial"

local DOC = "docs/tutorial.md"
local RUN_SECONDS = 60

local function readfile(path)
  local f = assert(io.open(path))
  local t = f:read("a")
  f:close()
  return t
end

local function writefile(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Runs the tutorial text in a child process; returns T.collect's results
-- and the child's whole output.
local function run_text(text, seconds)
  local d = net.tmpdir()
  local ok, out = pcall(function()
    local path = d:path("tutorial.md")
    writefile(path, text)
    local root = os.getenv("PWD") or "."
    return (net.run_lua(("package.path = %q .. package.path\n"
      .. "require('helpers.tutorial').child_main(%q)\n"):format(root .. "/spec/?.lua;", path),
      seconds or RUN_SECONDS))
  end)
  d:remove()
  if not ok then error(out, 0) end
  return T.collect(out), out
end

-- GitHub's heading anchors: lower case, punctuation dropped, spaces to "-".
local function anchor(title)
  title = title:gsub("`", ""):lower()
  title = title:gsub("[^%w%- _]", ""):gsub(" ", "-")
  return title
end

local text = readfile(DOC)
local sections = T.parse(text)

describe("docs/tutorial.md", function()
  local results, output
  local function run()
    if not results then results, output = run_text(text) end
    return results
  end

  for i, sec in ipairs(sections) do
    local runs = false
    for _, b in ipairs(sec.blocks) do
      if b.kind == "lua" or b.kind == "repl" then runs = true end
    end
    if runs then
      it(("section %q (line %d) runs and prints what it shows"):format(sec.title, sec.line), function()
        local r = run()[i]
        if not r then
          error(("the run did not finish this section; the last step started at %s line %s "
            .. "(a call that blocks?). Output:\n%s"):format(DOC, tostring(results.last), output), 0)
        end
        assert(#r.failures == 0, "\n" .. table.concat(r.failures, "\n\n"))
        assert.is_true(r.inputs + r.blocks > 0)
      end)
    end
  end

  it("finishes, and runs and checks a real amount of code", function()
    local r = run()
    assert(r.done, "the run did not finish:\n" .. tostring(output))
    local blocks, inputs, checked = 0, 0, 0
    for i = 1, #sections do
      if r[i] then
        blocks, inputs, checked = blocks + r[i].blocks, inputs + r[i].inputs, checked + r[i].checked
      end
    end
    -- The counts the issue note quotes; deleting sessions fails this.
    assert.is_true(blocks >= 40, "blocks: " .. blocks)
    assert.is_true(inputs >= 120, "REPL inputs: " .. inputs)
    assert.is_true(checked >= 100, "output lines compared: " .. checked)
  end)

  it("leaves only the TLS sketch unrun", function()
    local notrun = {}
    for _, sec in ipairs(sections) do
      for _, b in ipairs(sec.blocks) do
        if b.kind == "lua-notrun" then notrun[#notrun + 1] = table.concat(b.lines, "\n") end
        if b.kind == "other" then assert.equal("sh", b.lang, "a block of unknown kind at line " .. b.line) end
      end
    end
    assert.equal(1, #notrun)
    assert.matches('require "bsdsocket.tls"', notrun[1], 1, true)
  end)

  it("fails when a shown output is wrong, an input raises or a block raises", function()
    -- the first expected output line of the tutorial, changed
    local lines, changed, input, changed_input = {}, nil, nil, nil
    for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    local infence = false
    for k, l in ipairs(lines) do
      if l:match("^%s*```") then
        infence = not infence and l:match("^%s*```lua%s*$") ~= nil
        input = nil
      elseif infence and l:sub(1, 2) == "> " then
        input = k
      elseif infence and input and not changed and l:match("%S") and l:sub(1, 3) ~= ">> " then
        lines[k] = l .. " (wrong)"
        changed, changed_input = k, input
      end
    end
    assert.is_number(changed)
    local r = run_text(table.concat(lines, "\n"))
    local failures = {}
    for i = 1, #sections do
      for _, f in ipairs(r[i] and r[i].failures or {}) do failures[#failures + 1] = f end
    end
    assert.equal(1, #failures)
    assert.matches("^line " .. changed_input .. ":", failures[1])

    -- a small document: a wrong value, a missing line, an extra line, an
    -- error where a value is shown, and a raising block
    local doc = table.concat({
      "## one",
      "```lua",
      "> 1 + 1",
      "3",
      "> print('a') print('b')",
      "a",
      "> print('x')",
      "> nosuch.field",
      "4",
      "> ok = 1",
      "```",
      "```lua",
      "error('boom')",
      "```",
      "## two",
      "```lua",
      "> ok, 2 + 2",
      "1\t4",
      "```",
    }, "\n")
    r = run_text(doc)
    assert.is_true(r.done)
    assert.equal(5, #r[2].failures)
    assert.matches("^line 3:", r[2].failures[1])
    assert.matches("^line 5:", r[2].failures[2])
    assert.matches("^line 7:", r[2].failures[3])
    assert.matches("^line 8:.*attempt to index a nil value", r[2].failures[4])
    assert.matches("^line 13: block raised:.*boom", r[2].failures[5])
    assert.same({}, r[3].failures)
    assert.equal(1, r[3].checked)
  end)

  it("reports where a session blocks instead of hanging", function()
    local doc = table.concat({
      "## blocks",
      "```lua",
      "> S = require 'bsdsocket'",
      "> u = S.udp('127.0.0.1', 0)",
      "> u:settimeout(0.3)",
      "true",
      "> u:recvfrom(10)",
      "nil\trecvfrom 127.0.0.1:40000: timed out\tETIMEDOUT",
      "> srv = assert(S.tcp_listen('127.0.0.1', 0))",
      "> srv:accept()                 -- no client ever comes: blocks",
      "```",
    }, "\n")
    local dt, r, out = net.timed(run_text, doc, 2)
    assert.is_true(dt < 10)
    assert.is_false(r.done)
    assert.equal(10, r.last)
    assert.is_nil(r[2], out)
  end)

  it("masks only what changes from run to run", function()
    local n = T.normalise
    assert.equal("bsdsocket.socket fd=# AF_INET SOCK_STREAM 0.0.0.0:# <-> 127.0.0.1:#",
      n("bsdsocket.socket fd=3 AF_INET SOCK_STREAM 0.0.0.0:41533 <-> 127.0.0.1:55870"))
    assert.equal("connect 127.0.0.1:9: Connection refused", n("connect 127.0.0.1:9: Connection refused"))
    assert.equal("[::1]:#\t[::1]:80", n("[::1]:45000\t[::1]:80"))
    assert.equal("#\t13330\t20480\t4294967295\t0.5", n("45000\t13330\t20480\t4294967295\t0.5"))
    assert.equal("table: 0x#", n("table: 0x55609ab3c770"))
    assert.are_not.equal(n("127.0.0.1:80"), n("127.0.0.1:81"))
    assert.are_not.equal(n("true"), n("false"))
  end)

  it("compiles its C blocks with cc -fsyntax-only", function()
    if not os.execute("command -v cc > /dev/null 2>&1") then pending("no C compiler") end
    local prelude = table.concat({
      "#include <sys/types.h>", "#include <sys/socket.h>", "#include <netinet/in.h>",
      "#include <arpa/inet.h>", "#include <netdb.h>", "#include <unistd.h>",
      "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", "#include <errno.h>",
    }, "\n") .. "\n"
    local d = net.tmpdir()
    finally(d.remove)
    local count = 0
    for _, sec in ipairs(sections) do
      for _, b in ipairs(sec.blocks) do
        if b.kind == "c" then
          count = count + 1
          local src = d:path("b" .. b.line .. ".c")
          writefile(src, prelude .. ("#line %d %q\n"):format(b.line, DOC) .. table.concat(b.lines, "\n") .. "\n")
          local log = d:path("b" .. b.line .. ".log")
          local ok = os.execute("cc -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only "
            .. net.shquote(src) .. " > " .. net.shquote(log) .. " 2>&1")
          assert(ok, "C block at " .. DOC .. " line " .. b.line .. ":\n" .. (net.readfile(log) or ""))
        end
      end
    end
    assert.is_true(count >= 6, "C blocks: " .. count)
  end)

  it("has the TCP and the UDP sequence diagrams", function()
    local diagrams = {}
    for _, sec in ipairs(sections) do
      for _, b in ipairs(sec.blocks) do
        if b.kind == "mermaid" then diagrams[#diagrams + 1] = table.concat(b.lines, "\n") end
      end
    end
    assert.equal(2, #diagrams)
    for _, dgm in ipairs(diagrams) do assert.matches("^sequenceDiagram", dgm) end
    for _, call in ipairs({ "socket", "bind", "listen", "accept", "connect", "send", "recv", "close" }) do
      assert.matches(call, diagrams[1], 1, true)
    end
    for _, call in ipairs({ "socket", "bind", "sendto", "recvfrom", "close" }) do
      assert.matches(call, diagrams[2], 1, true)
    end
  end)

  it("is linked from README.md and API.md, and every link leads to a heading", function()
    local anchors = {}
    for _, sec in ipairs(sections) do anchors[anchor(sec.title)] = true end
    for l in text:gmatch("[^\n]+") do                      -- "### " headings too
      local h = l:match("^###+ (.*)$")
      if h then anchors[anchor(h)] = true end
    end
    local readme, api = readfile("README.md"), readfile("API.md")
    assert.truthy(readme:find("(docs/tutorial.md)", 1, true))
    local links = 0
    for _, doc in ipairs({ readme, api, text }) do
      for target in doc:gmatch("%]%(docs/tutorial%.md#([^)]+)%)") do
        links = links + 1
        assert(anchors[target], "no heading for link #" .. target)
      end
      for target in doc:gmatch("%]%(#([^)]+)%)") do           -- links inside the tutorial
        if doc == text then assert(anchors[target], "no heading for link #" .. target) end
      end
    end
    -- API.md links back from each classic call: some list item that shows
    -- the call in code also has a "(tutorial: [..](docs/tutorial.md#..))"
    local items = {}
    for l in api:gmatch("[^\n]*") do
      if l:match("^%- ") then items[#items + 1] = l
      elseif l:match("^%s+%S") and #items > 0 then items[#items] = items[#items] .. "\n" .. l
      end
    end
    for _, call in ipairs({ "socket", "bind", "listen", "accept", "connect", "send", "recv",
                            "sendto", "recvfrom", "recvall", "getaddrinfo", "htons", "inet_pton" }) do
      local found = false
      for _, item in ipairs(items) do
        local shown = false
        for code in item:gmatch("`([^`]*)`") do
          if code:find("%f[%w_]" .. call .. "%f[^%w_]") then shown = true end
        end
        if shown and item:find("tutorial:%s*%[[^%]]+%]%(docs/tutorial%.md#") then found = true end
      end
      assert(found, "API.md has no item showing `" .. call .. "` with a tutorial link")
    end
    assert.is_true(links >= 11)
    -- the tutorial's links to files of the repository lead to files
    for target in text:gmatch("%]%(%.%./([^)#]*)[^)]*%)") do
      local f = io.open(target)
      assert(f, "docs/tutorial.md links to a missing file: " .. target)
      f:close()
    end
  end)
end)
