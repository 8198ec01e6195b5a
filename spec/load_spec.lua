-- Load: examples/echo_server_loop.lua (bsdsocket.loop, one task per
-- connection) against 2,000 concurrent clients for a bounded time, every
-- echoed byte checked, while 200 other clients reset in the middle of a
-- message (SO_LINGER 0). The server must lose no byte for the others and
-- stay up. Server and clients are child processes (spec/helpers/load_client.lua)
-- with `ulimit -n 8192`. BSDSOCKET_LOAD_CLIENTS / _SECONDS change the size.
local net = require "helpers.net"
local child = require "helpers.child"

local CLIENTS = tonumber(os.getenv("BSDSOCKET_LOAD_CLIENTS") or "") or 2000
local RESETS = math.max(CLIENTS // 10, 10)
local SECONDS = tonumber(os.getenv("BSDSOCKET_LOAD_SECONDS") or "") or 10
local ULIMIT = "ulimit -n 8192 2>/dev/null;"

describe("load on examples/echo_server_loop.lua", function()
  it(("holds %d concurrent clients and %d mid-stream resets for %ds"):format(CLIENTS, RESETS, SECONDS),
    function()
      local root = os.getenv("PWD") or "."
      local server = child.spawn(ULIMIT, ("arg = { '127.0.0.1', '0' } dofile(%q)")
        :format(root .. "/examples/echo_server_loop.lua"), SECONDS + 300)
      local client
      finally(function()   -- busted keeps one finally per test: both here
        if client then client.cleanup() end
        server.cleanup()
      end)
      local limit = net.S.monotime() + 10
      local port
      repeat
        port = tonumber(server.output():match("listening on 127%.0%.0%.1:(%d+)"))
        if not port then net.sleep(0.05) end
      until port or net.S.monotime() > limit or server.status()
      assert(port, "server did not start: " .. server.output())

      client = child.spawn(ULIMIT, ("arg = { '%d', '%d', '%d', '%d' } dofile(%q)")
        :format(port, CLIENTS, RESETS, SECONDS, root .. "/spec/helpers/load_client.lua"), SECONDS + 240)
      local status = client:wait(SECONDS + 250)
      local out = client.output()
      print("\nload: " .. out:gsub("\n$", ""))
      assert.equal(0, status, out)
      assert.matches("^ok clients=" .. CLIENTS .. " open=" .. CLIENTS .. " resets=" .. RESETS, out)
      -- the server is still up, and said nothing alarming
      assert.is_nil(server.status(), "server died: " .. server.output())
      assert.is_nil(server.output():find("error", 1, true), server.output())
    end)
end)
