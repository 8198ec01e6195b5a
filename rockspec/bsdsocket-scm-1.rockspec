rockspec_format = "3.0"
package = "bsdsocket"
version = "scm-1"
source = {
  url = "git+file:///dev/null",  -- built with `luarocks make` from a checkout
}
description = {
  summary = "The Berkeley sockets API for Lua 5.4 and 5.5",
  detailed = [[
socket, bind, listen, accept, connect, send, recv, sendto, recvfrom,
getaddrinfo, byte order and socket options, with Lua's manners: strings,
nil-message-code errors, to-be-closed variables, coroutines.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.6",
}
build = {
  type = "builtin",
  modules = {
    ["bsdsocket.core"] = {
      sources = {
        "csrc/addr.c", "csrc/buffer.c", "csrc/core.c", "csrc/errors.c", "csrc/loop.c", "csrc/msg.c",
        "csrc/options.c", "csrc/poller.c", "csrc/resolver.c", "csrc/socket.c",
        "csrc/util.c", "csrc/zerocopy.c",
        -- the poller's backends: poller.h compiles in the platform's one
        "csrc/poller_epoll.c", "csrc/poller_kqueue.c", "csrc/poller_poll.c",
      },
      libraries = { "pthread" },  -- linux adds dl below; the BSDs have none
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc" },
    },
    ["bsdsocket"] = "lua/bsdsocket.lua",
    ["bsdsocket.loop"] = "lua/bsdsocket/loop.lua",
    ["bsdsocket.reader"] = "lua/bsdsocket/reader.lua",
    ["bsdsocket.luasocket"] = "lua/bsdsocket/luasocket.lua",
  },
  -- merged into build by index: linux's libraries become { "pthread", "dl" }
  -- (dlopen before glibc 2.34). macOS gets luarocks' own -bundle
  -- -undefined dynamic_lookup; FreeBSD's dlopen is in libc.
  platforms = {
    linux = {
      modules = { ["bsdsocket.core"] = { libraries = { "pthread", "dl" } } },
    },
  },
}
