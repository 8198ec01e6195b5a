#!/usr/bin/env bash
# Instructions per echo request of a LuaSocket-API echo server under
# callgrind, with IDLE idle connections open (each made one checked round
# trip, then stays silent), as bench/echo_callgrind.sh does for the loop
# server: bench/build/pingpong makes a warm-up round, then N1 and N2 round
# trips on fresh connections, each followed by a callgrind dump;
# (I(N2) - I(N1)) / (N2 - N1) removes the cost of a connection. One request
# is in flight at a time, so every socket.select call reports one socket:
# the worst case for a select over many idle sockets.
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
IDLE=${IDLE:-0}
N1=${N1:-2000}
N2=${N2:-12000}
TMP=$(mktemp -d)
pid=; ipid=
trap 'kill $pid $ipid 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
cd "$TMP"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/build/?.so;;" \
  valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$TMP/cg.out" \
  "$LUA" -l "$MODULE" "$SCRIPT" 127.0.0.1 0 > "$TMP/server.out" 2> "$TMP/server.err" &
pid=$!
port=
for _ in $(seq 600); do
  port=$(sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' "$TMP/server.out" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "server did not start"; cat "$TMP/server.err"; exit 1; }
if [ "$IDLE" -gt 0 ]; then
  python3 - "$port" "$IDLE" > "$TMP/idle.out" <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit("idle connection: bad echo")
    conns.append(s)
print("ready", flush=True)
time.sleep(3600)
PY
  ipid=$!
  for _ in $(seq 1200); do
    grep -q ready "$TMP/idle.out" 2>/dev/null && break
    kill -0 "$ipid" 2>/dev/null || { echo "idle clients failed"; exit 1; }
    sleep 0.1
  done
fi
dump() { callgrind_control -d "$pid" >/dev/null 2>&1; sleep 0.5; }
"$BIN/pingpong" count 127.0.0.1 "$port" 1000 64 >/dev/null; dump
"$BIN/pingpong" count 127.0.0.1 "$port" "$N1" 64 >/dev/null; dump
"$BIN/pingpong" count 127.0.0.1 "$port" "$N2" 64 >/dev/null; dump
# self cost by object (as bench/echo_callgrind.sh)
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
awk -v a="$a" -v b="$b" -v d=$((N2 - N1)) -v idle="$IDLE" 'BEGIN {
  split(a, x, " "); split(b, y, " ")
  printf "%d idle: instructions per echo request: %.0f (interpreter %.0f, socket C %.0f, libc %.0f)\n",
    idle, (y[1] - x[1]) / d, (y[2] - x[2]) / d, (y[3] - x[3]) / d, (y[4] - x[4]) / d }'
