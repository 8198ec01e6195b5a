#!/usr/bin/env bash
# Instructions per echo request of a LuaSocket-API echo server under
# callgrind, as bench/echo_callgrind.sh measures the loop server (method and
# N1, N2, IDLE, KEEP: bench/callgrind_lib.sh). One request is in flight at
# a time, so every socket.select call reports one socket: the worst case for
# a select over many idle sockets.
#   bash bench/luasocket/echo_callgrind.sh [SERVER_SCRIPT [MODULE]]
# SERVER_SCRIPT defaults to bench/luasocket/echo_server.lua; MODULE
# (default bsdsocket.luasocket; "socket" for the real LuaSocket) is loaded
# with -l first. IDLE (default 0), N1, N2, ROOT and LUA may be set.
set -eu
BENCH=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-$(cd "$BENCH/.." && pwd)}
LUA=${LUA:-lua5.4}
BIN=${BENCH_BIN:-$BENCH/build}
SCRIPT=${1:-$BENCH/luasocket/echo_server.lua}
MODULE=${2:-bsdsocket.luasocket}
TMP=$(mktemp -d)
. "$BENCH/callgrind_lib.sh"
trap cg_cleanup EXIT
cg_server "$LUA" -l "$MODULE" "$SCRIPT" 127.0.0.1 0
cg_idle
cg_rounds
cg_report "$IDLE idle: " "socket C"
