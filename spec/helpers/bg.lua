-- Background processes for specs that talk to real programs (openssl
-- s_server/s_client, python3, curl):
--
--   local bg = require "helpers.bg"
--   local h = bg.start("openssl s_server ...", 20)  -- killed after 20 s anyway
--   local port = h:port()          -- waits for "port N" or "ACCEPT host:N"
--   h:waitfor("pattern", 5)        -- waits until its output matches
--   h:output()                     -- stdout and stderr so far
--   h:cleanup()                    -- TERM (timeout passes it on), files gone
-- Every start is bounded by `timeout`, and cleanup is idempotent: call it
-- from finally().
local S = require "bsdsocket"
local net = require "helpers.net"

local M = {}

function M.start(cmd, seconds, stdin)
  local d = net.tmpdir()
  local out, pidf, donef = d:path("out"), d:path("pid"), d:path("done")
  local q = net.shquote
  local input = stdin and (" < " .. q(stdin)) or " < /dev/null"
  os.execute("(sh -c " .. q("echo $$ > " .. q(pidf) .. "; exec timeout " .. (seconds or 20)
    .. " " .. cmd .. input .. " > " .. q(out) .. " 2>&1") .. "; echo $? > " .. q(donef) .. ") 2>/dev/null &")
  local h = {}
  local limit = S.monotime() + 5
  repeat
    local t = net.readfile(pidf)
    h.pid = t and tonumber(t:match("%d+"))
    if not h.pid then net.sleep(0.01) end
  until h.pid or S.monotime() > limit
  function h.output() return net.readfile(out) or "" end
  function h.done()
    local t = net.readfile(donef)
    return t and tonumber(t:match("%d+"))
  end
  function h.waitfor(_, pattern, secs)
    local lim = S.monotime() + (secs or 5)
    repeat
      local o = h.output()
      local m = o:match(pattern)
      if m then return m end
      if h.done() then return nil, o end
      net.sleep(0.02)
    until S.monotime() > lim
    return nil, h.output()
  end
  function h.port(_, secs)
    local lim = S.monotime() + (secs or 10)
    repeat
      local o = h.output()
      local p = o:match("port (%d+)") or o:match("ACCEPT [^\n]*:(%d+)")
      if p then return tonumber(p) end
      if h.done() then break end
      net.sleep(0.02)
    until S.monotime() > lim
    error("no port from: " .. cmd .. "\n" .. h.output(), 2)
  end
  function h.wait(_, secs)
    local lim = S.monotime() + (secs or 10)
    while not h.done() and S.monotime() < lim do net.sleep(0.02) end
    return h.done()
  end
  function h.cleanup()
    if d.dir then
      if h.pid and not h.done() then
        os.execute("kill -TERM " .. h.pid .. " 2>/dev/null")
        h:wait(3)
        if not h.done() then os.execute("kill -KILL " .. h.pid .. " 2>/dev/null") end
      end
      d:remove()
    end
  end
  if not h.pid then
    h:cleanup()
    error("could not start: " .. cmd, 2)
  end
  return h
end

-- python3 running spec/helpers/tls_peer.py with args (strings, quoted here)
function M.pypeer(args, seconds)
  local q = {}
  for i, a in ipairs(args) do q[i] = net.shquote(tostring(a)) end
  return M.start("python3 -u spec/helpers/tls_peer.py " .. table.concat(q, " "), seconds)
end

return M
