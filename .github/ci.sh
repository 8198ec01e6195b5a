#!/bin/sh
# One CI platform: both rocks built with `luarocks make` into a private tree
# (.rocks), busted from LuaRocks, then the whole suite against the installed
# modules (BSDSOCKET_BUILD points the specs at the tree's C modules).
#   LUA       the interpreter (default: lua5.4, lua54 or lua; 5.4 or 5.5)
#   LUAROCKS  the luarocks command (default: the first found)
#   OPENSSL_DIR  where OpenSSL 3 is, when not in /usr (Homebrew, ports)
set -eu
find_cmd() {
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return; }
  done
  echo "none of: $*" >&2
  exit 1
}
LUAROCKS=${LUAROCKS:-$(find_cmd luarocks-5.4 luarocks54 luarocks)}
LUA=${LUA:-$(find_cmd lua5.4 lua54 lua)}
V=$("$LUA" -e 'print((_VERSION:gsub("Lua ", "")))')
tree=$PWD/.rocks
rocks() { "$LUAROCKS" --lua-version="$V" --tree "$tree" "$@"; }

rocks make rockspec/bsdsocket-scm-1.rockspec
rocks make rockspec/bsdsocket-tls-scm-1.rockspec \
  ${OPENSSL_DIR:+OPENSSL_DIR="$OPENSSL_DIR"}
rm -rf bsdsocket csrc/*.o          # what the builtin backend leaves behind
rocks install busted

# the specs start child processes named lua5.4 and busted
mkdir -p .ci-bin
ln -sf "$LUA" .ci-bin/lua5.4
export PATH="$PWD/.ci-bin:$tree/bin:$PATH"
eval "$(rocks path)"
"$LUA" -v
BSDSOCKET_BUILD="$tree/lib/lua/$V" busted -o utfTerminal
