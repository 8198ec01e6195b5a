# Shared by bench/echo_callgrind.sh and bench/luasocket/echo_callgrind.sh
# (sourced): an echo server under callgrind, and its instructions per echo
# request. bench/build/pingpong (or CLIENT) makes a warm-up round, then N1
# and N2 round trips on fresh connections, each followed by a callgrind dump
# (which resets the counters); (I(N2) - I(N1)) / (N2 - N1) removes the cost
# of a connection. Split by where the code lives: the interpreter,
# bsdsocket's core.so, libc. The caller sets ROOT, LUA, BIN and TMP, and
# may set N1, N2, IDLE (idle connections opened first: each makes one
# checked round trip, then stays silent), CLIENT (a command run as
# `CLIENT PORT N`, making N round trips of 64 bytes) and KEEP (keep TMP).
N1=${N1:-2000}
N2=${N2:-12000}
IDLE=${IDLE:-0}
CLIENT=${CLIENT:-}
cg_pid=
cg_ipid=
cg_port=

cg_cleanup() {
  kill $cg_pid $cg_ipid 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}

# cg_server CMD...: starts CMD under callgrind (it takes HOST 127.0.0.1 and
# PORT 0 and prints "... HOST:PORT" first), waits for its port
cg_server() {
  cd "$TMP"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" \
    LUA_CPATH="$ROOT/build/?.so;;" \
    valgrind --tool=callgrind --compress-strings=no \
    --callgrind-out-file="$TMP/cg.out" \
    "$@" > "$TMP/server.out" 2> "$TMP/server.err" &
  cg_pid=$!
  for _ in $(seq 600); do
    cg_port=$(sed -n 's/.*:\([0-9][0-9]*\)$/\1/p' "$TMP/server.out" | head -1)
    [ -n "$cg_port" ] && break
    sleep 0.1
  done
  [ -n "$cg_port" ] || { echo "server did not start"; cat "$TMP/server.err"; exit 1; }
}

# opens IDLE idle connections from one python3 process, kept until the end
cg_idle() {
  [ "$IDLE" -gt 0 ] || return 0
  python3 - "$cg_port" "$IDLE" > "$TMP/idle.out" <<'PY' &
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
  cg_ipid=$!
  for _ in $(seq 1200); do
    grep -q ready "$TMP/idle.out" 2>/dev/null && break
    kill -0 "$cg_ipid" 2>/dev/null || { echo "idle clients failed"; exit 1; }
    sleep 0.1
  done
}

cg_client() {
  if [ -n "$CLIENT" ]; then $CLIENT "$cg_port" "$1" >/dev/null
  else "$BIN/pingpong" count 127.0.0.1 "$cg_port" "$1" 64 >/dev/null; fi
}

cg_dump() { callgrind_control -d "$cg_pid" >/dev/null 2>&1; sleep 0.5; }

cg_rounds() {
  cg_client 1000; cg_dump
  cg_client "$N1"; cg_dump
  cg_client "$N2"; cg_dump
}

# self cost by object: cost lines, but not the line after calls= (that one
# is the call's inclusive cost); ob= names (or back-references) the object
cg_split() {
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

# cg_report PREFIX [LABEL]: prints PREFIX and the figures of the last two
# dumps; LABEL names the share of the modules' core.so (bsdsocket C)
cg_report() {
  local files a b label=${2:-bsdsocket C}
  files=$(ls "$TMP"/cg.out.* | sort -t. -k3 -n)
  set -- "$1" $files
  [ -n "${KEEP:-}" ] && echo "kept $TMP" >&2
  a=$(cg_split "$3"); b=$(cg_split "$4")
  awk -v p="$1" -v l="$label" -v a="$a" -v b="$b" -v d=$((N2 - N1)) 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "%sinstructions per echo request: %.0f (interpreter %.0f, %s %.0f, libc %.0f)\n",
      p, (y[1] - x[1]) / d, (y[2] - x[2]) / d, l, (y[3] - x[3]) / d, (y[4] - x[4]) / d }'
}
