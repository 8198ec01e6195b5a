#!/usr/bin/env bash
# Instructions per echo request on the server side, under callgrind: the
# echo server runs under valgrind; bench/build/pingpong makes a warm-up
# round, then N1 and N2 round trips on fresh connections, each followed by a
# callgrind dump (which resets the counters); (I(N2) - I(N1)) / (N2 - N1)
# removes the cost of a connection. Split by where the code lives: the
# interpreter, bsdsocket's core.so, libc. Usage (from the top directory):
#   bash bench/echo_callgrind.sh [SERVER_SCRIPT [ARGS...]]
# (after make, make -C bench programs); ARGS follow HOST PORT.
# ROOT (the tree whose lua/ and build/ are used) and LUA may be set.
set -eu
ROOT=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
LUA=${LUA:-lua5.4}
BIN=${BENCH_BIN:-$(cd "$(dirname "$0")" && pwd)/build}
SCRIPT=${1:-$ROOT/examples/echo_server_loop.lua}
shift || true
# CLIENT: a command run as `CLIENT PORT N` making N round trips of 64 bytes
CLIENT=${CLIENT:-}
N1=${N1:-2000}
N2=${N2:-12000}
TMP=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
cd "$TMP"
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/build/?.so;;" \
  valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$TMP/cg.out" \
  "$LUA" "$SCRIPT" 127.0.0.1 0 "$@" > "$TMP/server.out" 2> "$TMP/server.err" &
pid=$!
for _ in $(seq 600); do
  port=$(sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' "$TMP/server.out" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "server did not start"; cat "$TMP/server.err"; exit 1; }
dump() { callgrind_control -d "$pid" >/dev/null 2>&1; sleep 0.5; }
client() {
  if [ -n "$CLIENT" ]; then $CLIENT "$port" "$1" >/dev/null
  else "$BIN/pingpong" count 127.0.0.1 "$port" "$1" 64 >/dev/null; fi
}
client 1000; dump
client "$N1"; dump
client "$N2"; dump
# self cost by object: cost lines, but not the line after calls= (that one
# is the call's inclusive cost); ob= names (or back-references) the object
split() {
  awk '
    /^ob=/ { v = substr($0, 4); if (v ~ /^\([0-9]+\) /) { id = v; sub(/ .*/, "", id)
             name = v; sub(/^\([0-9]+\) /, "", name); obs[id] = name; ob = name }
             else if (v ~ /^\([0-9]+\)$/) ob = obs[v]; else ob = v; next }
    /^c?fi=|^c?fe=|^fn=|^cfn=|^cob=/ { next }
    /^calls=/ { skip = 1; next }
    /^[0-9+-]/ { if (skip) { skip = 0; next }
                 n = split($0, f, " "); c = f[n] + 0; t += c
                 if (ob ~ /core\.so/) b += c; else if (ob ~ /libc\.so/) l += c
                 else if (ob ~ /lua/) i += c }
    END { printf "%d %d %d %d\n", t, i, b, l }' "$1"
}
files=$(ls "$TMP"/cg.out.* | sort -t. -k3 -n)
set -- $files
[ -n "${KEEP:-}" ] && echo "kept $TMP" >&2
a=$(split "$2"); b=$(split "$3")
awk -v a="$a" -v b="$b" -v d=$((N2 - N1)) 'BEGIN {
  split(a, x, " "); split(b, y, " ")
  printf "instructions per echo request: %.0f (interpreter %.0f, bsdsocket C %.0f, libc %.0f)\n",
    (y[1] - x[1]) / d, (y[2] - x[2]) / d, (y[3] - x[3]) / d, (y[4] - x[4]) / d }'
