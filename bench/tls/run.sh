#!/usr/bin/env bash
# TLS benchmarks (bench/tls): the C OpenSSL client (tls_c.c), bsdsocket.tls
# (tls_bsd.lua) and LuaSec (tls_luasec.lua, when `require "ssl"` works) side
# by side, each against the same C OpenSSL server (tls_c server), TLS 1.3
# with the default ciphersuite and an EC P-256 certificate made here:
#   1. bulk send: BENCH_TLS_MB MiB (default 512) in 64 KiB writes to a sink
#   2. bulk recv: the server sends BENCH_TLS_MB MiB in 64 KiB writes
#   3. full handshakes per second, a fresh connection each (BENCH_TLS_HS, 2000)
#   4. a TLS echo server: examples/tls_echo_server.lua (bsdsocket.loop) against
#      tls_echo_c.c (single-threaded epoll + non-blocking OpenSSL), loaded by
#      BENCH_TLS_CONNS (8) client processes doing 64-byte ping-pongs for
#      BENCH_TLS_SECS (3); requests/s and the server's CPU time per request
#      (from /proc), which is the fair figure when 2 CPUs run everything.
# Targets (issue 12): bsdsocket >= 0.95x C on 1-3, server CPU per request
# >= 0.85x C (as C/bsdsocket) on 4. Best of BENCH_TRIES (3) runs, the
# clients interleaved within each try. Ratios: higher is better.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LUA=${LUA:-lua5.4}
MODULE_DIR=${MODULE_DIR:-$ROOT/build}
BIN=${BENCH_BIN:-$HERE/../build}
MB=${BENCH_TLS_MB:-512}
HS=${BENCH_TLS_HS:-2000}
TRIES=${BENCH_TRIES:-3}
ECHO_SECS=${BENCH_TLS_SECS:-3}
ECHO_CONNS=${BENCH_TLS_CONNS:-8}
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$MODULE_DIR/?.so;;"

if [ ! -f "$MODULE_DIR/bsdsocket/tls.so" ]; then
  echo "tls bench: $MODULE_DIR/bsdsocket/tls.so not built (no OpenSSL headers?): skipped"
  exit 0
fi
mkdir -p "$BIN"
cc -O2 -Wall -Wextra -Werror -o "$BIN/tls_c" "$HERE/tls_c.c" -lssl -lcrypto || exit 1
cc -O2 -Wall -Wextra -Werror -o "$BIN/tls_echo_c" "$HERE/tls_echo_c.c" -lssl -lcrypto || exit 1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bsdsocket-tlsbench.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# a CA and a certificate for localhost
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -subj /CN=bench-ca -days 1 -out "$TMP/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/srv.key" 2>/dev/null
openssl req -new -key "$TMP/srv.key" -subj /CN=localhost -out "$TMP/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$TMP/ext"
openssl x509 -req -in "$TMP/srv.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -set_serial 1 \
  -days 1 -extfile "$TMP/ext" -out "$TMP/srv.pem" 2>/dev/null

# starts a server of KIND; sets PORT
start_server() {
  local out="$TMP/server.$1.out"
  timeout 600 "$BIN/tls_c" server "$TMP/srv.pem" "$TMP/srv.key" "$1" > "$out" 2>&1 &
  PIDS+=($!)
  local i
  for i in $(seq 100); do
    PORT=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$out")
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "tls bench: server $1 did not start"; cat "$out"; exit 1
}

have_luasec=0
if "$LUA" -e 'require "ssl"' 2>/dev/null; then have_luasec=1; fi

run_client() {  # impl kind -> prints the number
  case "$1" in
    c) timeout 300 "$BIN/tls_c" client "$TMP/ca.pem" "$PORT" "$2" ;;
    bsdsocket) timeout 300 "$LUA" "$HERE/tls_bsd.lua" "$TMP/ca.pem" "$PORT" "$2" ;;
    luasec) timeout 300 "$LUA" "$HERE/tls_luasec.lua" "$TMP/ca.pem" "$PORT" "$2" ;;
  esac 2>/dev/null | awk '{print $2}'
}

best() { awk 'BEGIN{m=0} {if ($1+0 > m) m=$1+0} END{print m}'; }

scenario() {  # title server-kind client-kind unit
  local title=$1 skind=$2 ckind=$3 unit=$4 impls="c bsdsocket" i impl
  [ "$have_luasec" = 1 ] && impls="$impls luasec"
  start_server "$skind"
  declare -A results=()
  for i in $(seq "$TRIES"); do
    for impl in $impls; do
      results[$impl]="${results[$impl]:-} $(run_client "$impl" "$ckind")"
    done
  done
  local c b
  c=$(echo "${results[c]}" | tr ' ' '\n' | best)
  echo "== $title"
  for impl in $impls; do
    b=$(echo "${results[$impl]}" | tr ' ' '\n' | best)
    awk -v n="$impl" -v b="$b" -v c="$c" -v u="$unit" \
      'BEGIN{printf "  %-10s %10.1f %s   %.2fx C\n", n, b, u, (c > 0 ? b / c : 0)}'
  done
  kill "${PIDS[-1]}" 2>/dev/null
}

echo "TLS benchmarks: $(nproc) CPUs, $("$LUA" -e 'print(require("bsdsocket.tls").openssl)')"
scenario "bulk send, $MB MiB in 64 KiB writes, TLS 1.3" sink "send:$MB" "MiB/s"
scenario "bulk recv, $MB MiB, TLS 1.3" "source:$MB" recv "MiB/s"
scenario "full handshakes, a fresh connection each ($HS)" hs "hs:$HS" "handshakes/s"

# 4. echo servers: requests/s and server CPU microseconds per request
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo_run() {  # impl -> "rps cpu_us_per_request"
  local out="$TMP/echo.$1.out" pid port t0 t1 rps
  if [ "$1" = c ]; then
    "$BIN/tls_echo_c" "$TMP/srv.pem" "$TMP/srv.key" > "$out" 2>&1 &
  else
    "$LUA" "$ROOT/examples/tls_echo_server.lua" 127.0.0.1 0 "$TMP/srv.pem" "$TMP/srv.key" > "$out" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  t0=$(cputicks "$pid")
  rps=$(timeout 120 "$BIN/tls_c" client "$TMP/ca.pem" "$port" "echo:$ECHO_SECS:$ECHO_CONNS:64" \
        2>/dev/null | awk '{print $2}')
  t1=$(cputicks "$pid")
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  awk -v r="${rps:-0}" -v d="$((t1 - t0))" -v s="$ECHO_SECS" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{n = r * s; printf "%s %s\n", r, (n > 0 ? d / hz * 1e6 / n : 0)}'
}
declare -A erps=() ecpu=()
for i in $(seq "$TRIES"); do
  for impl in c bsdsocket; do
    read -r r u <<< "$(echo_run "$impl")"
    if awk -v a="$r" -v b="${erps[$impl]:-0}" 'BEGIN{exit !(a > b)}'; then erps[$impl]=$r; fi
    if [ -z "${ecpu[$impl]:-}" ] || awk -v a="$u" -v b="${ecpu[$impl]}" 'BEGIN{exit !(a > 0 && a < b)}'; then
      ecpu[$impl]=$u
    fi
  done
done
echo "== TLS echo server, $ECHO_CONNS clients, 64-byte ping-pongs for $ECHO_SECS s"
for impl in c bsdsocket; do
  awk -v n="$impl" -v r="${erps[$impl]}" -v u="${ecpu[$impl]}" -v cr="${erps[c]}" -v cu="${ecpu[c]}" \
    'BEGIN{printf "  %-10s %10.1f requests/s (%.2fx C)   %6.1f us server CPU per request (%.2fx C, C/this)\n",
           n, r, (cr > 0 ? r / cr : 0), u, (u > 0 ? cu / u : 0)}'
done
