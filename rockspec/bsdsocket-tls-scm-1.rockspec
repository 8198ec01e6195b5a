rockspec_format = "3.0"
package = "bsdsocket-tls"
version = "scm-1"
source = {
  url = "git+file:///dev/null",  -- built with `luarocks make` from a checkout
}
description = {
  summary = "TLS streams for bsdsocket, on OpenSSL 3",
  detailed = [[
bsdsocket.tls: tls.context and tls.wrap give TLS client and server streams
with a socket's methods (send, sendall, recv, recvall, timeouts, the
pollable protocol, bsdsocket.loop tasks), verifying the peer's chain and
name by default.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.6",
  "bsdsocket",
}
-- OpenSSL 3 from /usr (Linux, FreeBSD base), or elsewhere through
-- OPENSSL_DIR: `luarocks make ... OPENSSL_DIR=$(brew --prefix openssl@3)`
-- on macOS, OPENSSL_DIR=/usr/local with FreeBSD's security/openssl port.
external_dependencies = {
  OPENSSL = {
    header = "openssl/ssl.h",
    library = "ssl",
  },
}
build = {
  type = "builtin",
  modules = {
    ["bsdsocket.tls"] = {
      sources = { "csrc/tls.c" },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
      libraries = { "ssl", "crypto" },
    },
  },
}
