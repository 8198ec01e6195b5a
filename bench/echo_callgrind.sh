#!/usr/bin/env bash
# Instructions per echo request on the server side, under callgrind (see
# bench/callgrind_lib.sh for the method and N1, N2, IDLE, CLIENT, KEEP).
# Usage (from the top directory):
#   bash bench/echo_callgrind.sh [SERVER_SCRIPT [ARGS...]]
# (after make, make -C bench programs); ARGS follow HOST PORT.
# ROOT (the tree whose lua/ and build/ are used) and LUA may be set.
set -eu
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-$(cd "$BENCH/.." && pwd)}
LUA=${LUA:-lua5.4}
BIN=${BENCH_BIN:-$BENCH/build}
SCRIPT=${1:-$ROOT/examples/echo_server_loop.lua}
shift || true
TMP=$(mktemp -d)
. "$BENCH/callgrind_lib.sh"
trap cg_cleanup EXIT
cg_server "$LUA" "$SCRIPT" 127.0.0.1 0 "$@"
cg_idle
cg_rounds
cg_report "$([ "$IDLE" -gt 0 ] && echo "$IDLE idle: ")"
