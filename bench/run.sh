#!/usr/bin/env bash
# bsdsocket benchmarks — run by `make bench` (bench/Makefile builds the C
# programs into bench/build first). Every scenario runs a C baseline and the
# bsdsocket version in the same run and prints their ratio (higher is better
# for bsdsocket), plus LuaSocket and luv when installed (`make deps-bench`).
# Everything runs on loopback; servers bind port 0 and print their port.
#
# 1. Concurrent echo server. bench/build/loadgen (C, epoll) opens IDLE extra
#    connections (0, 1,000, 10,000; each does one checked round trip, then
#    stays silent), then CONNS active ones with one MSG-byte request in flight
#    each, checks every echoed byte, and counts requests per second for SECS.
#    Servers: c/echo_server.c (single-threaded epoll, the baseline),
#    examples/echo_server_loop.lua (bsdsocket.loop: a task per connection),
#    luv/echo_server.lua (libuv), cqueues/echo_server.lua (a coroutine per
#    connection on a cqueues controller), luasocket/echo_server.lua (socket.select,
#    which cannot go past 1,024 descriptors: shown as 'failed'), the same
#    script unchanged on bsdsocket.luasocket ("LuaSocket API/bsd"; target
#    >= 5x LuaSocket's req/s at 1,000 idle), and
#    luasocket/echo_server_copas.lua (copas-style: a bsdsocket.loop task per
#    connection using LuaSocket's API; reported only). Also shown:
#    the server's CPU time per request (from /proc, over the timed phase, with
#    its user-space part: the kernel's part is the same work for every server) —
#    on a 2-CPU machine the load generator may saturate before the C server
#    does, and then the CPU time is the fairer comparison.
#    Targets: bsdsocket >= 0.9x C requests/s and server CPU per request
#    >= 0.95x C's (C's us/req over ours) at every idle count, and ahead of
#    luv and cqueues. Then the loop server with --workers N for each N > 1 of
#    BENCH_WORKERS (0 idle; CPU over all its processes), reported.
# 2. Ping-pong latency: MSG-byte request/response on one TCP connection with
#    blocking calls, client and server of the same kind (C, bsdsocket,
#    LuaSocket); round trips per second. With taskset, both processes share
#    one CPU, which makes the number far less noisy (it is then the CPU cost
#    of a round trip on both sides plus two context switches).
# 3. Bulk TCP: BENCH_BULK_MB MiB (default 1024) in 64 KiB chunks over one
#    connection. "send": the client under test sends to a C sink (sendall),
#    shuts down and waits for the sink's close; "recv": a C source sends, the
#    client under test reads recv(65536) until EOF; "recv_into": bulk.lua
#    reads into one reused S.buffer(65536). Targets >= 0.95x C each, and
#    recv_into >= 0.99x C's recv.
# 4. UDP send rate: 64-byte datagrams with sendto to a prebuilt address
#    (S.addr in bsdsocket, struct sockaddr_in in C, ip+port strings in
#    LuaSocket) for SECS, to a bound socket nobody reads (the kernel drops
#    what overflows, so only the sender runs). Target >= 0.95x C. Also
#    sendmmsg batches of 64: target >= 2x C's one-sendto-per-datagram loop;
#    C's own sendmmsg batch is printed as the ceiling the kernel allows.
# 5. Instructions per ping-pong round trip (valgrind --tool=callgrind, user
#    space only) of the client, against the C server:
#    (I(N2) - I(N1)) / (N2 - N1), which removes start-up. The Lua clients'
#    figures are split by where the code lives: the interpreter, the
#    library's C code, libc. Target: the library's C code and libc together
#    <= 250 for bsdsocket (the interpreter's share is reported).
# 6. Static files over HTTP: nginx (Debian's nginx-light, `make deps-bench`;
#    one worker, access_log off, sendfile on, keep-alive without a request
#    cap, its config written to a temporary directory, started and killed
#    here) and examples/http_server.lua serve the same files (12 bytes and
#    100 KB) to `wrk -c50` for BENCH_HTTP_SECS; requests per second and the
#    server's CPU per request (all its processes, from /proc). Then the same
#    with 2 workers each (nginx worker_processes 2, http_server --workers 2).
#    wrk runs on the same CPUs, so on a 2-CPU machine the CPU per request is
#    the fairer comparison. Targets (1 worker, req/s): >= 0.7x nginx on the
#    12-byte file, >= 0.9x on 100 KB.
# Memory per idle connection (issue 21) is measured apart: bench/idle_memory.sh.
# Each measurement is the best of BENCH_TRIES runs, the implementations
# interleaved within each try. Misses print MISS; the run never fails on one.
#
# Environment (defaults): LUA (lua5.4), MODULE_DIR (../build), BENCH_SECS (3),
# BENCH_CONNS (16), BENCH_MSG (64), BENCH_IDLE ("0 1000 10000"),
# BENCH_TRIES (2), BENCH_BULK_MB (1024), BENCH_UDP_SECS (1),
# BENCH_PP_SECS (1), BENCH_HTTP_SECS (3), BENCH_WORKERS ("1 2": worker
# counts for scenarios 1 and 6), BENCH_ONLY ("1 2 3 4 5 6": the scenarios),
# BENCH_ECHO_SERVER (examples/echo_server_loop.lua: any script that takes
# HOST and prints "... HOST:PORT" as its first line), BENCH_PIN (1: use
# taskset for scenario 2).
set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
LUA=${LUA:-lua5.4}
MODULE_DIR=${MODULE_DIR:-$ROOT/build}
BIN=${BENCH_BIN:-$BENCH/build}
SECS=${BENCH_SECS:-3}
CONNS=${BENCH_CONNS:-16}
MSG=${BENCH_MSG:-64}
IDLE=${BENCH_IDLE:-0 1000 10000}
TRIES=${BENCH_TRIES:-2}
BULK_MB=${BENCH_BULK_MB:-1024}
UDP_SECS=${BENCH_UDP_SECS:-1}
PP_SECS=${BENCH_PP_SECS:-1}
HTTP_SECS=${BENCH_HTTP_SECS:-3}
WORKERS=${BENCH_WORKERS:-1 2}
ONLY=${BENCH_ONLY:-1 2 3 4 5 6}
ECHO_SERVER=${BENCH_ECHO_SERVER:-$ROOT/examples/echo_server_loop.lua}
PIN=${BENCH_PIN:-1}

export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$MODULE_DIR/?.so;;"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bsdsocket-bench.XXXXXX")
PIDS=()

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

have_lua_module() { "$LUA" -e "require '$1'" >/dev/null 2>&1; }

HAVE_LUASOCKET=0; have_lua_module socket && HAVE_LUASOCKET=1
HAVE_LUV=0; have_lua_module luv && HAVE_LUV=1
HAVE_CQUEUES=0; have_lua_module cqueues && HAVE_CQUEUES=1
HAVE_VALGRIND=0; command -v valgrind >/dev/null 2>&1 && HAVE_VALGRIND=1
HAVE_NGINX=0; [ -x /usr/sbin/nginx ] && HAVE_NGINX=1
HAVE_WRK=0; command -v wrk >/dev/null 2>&1 && HAVE_WRK=1
HAVE_TASKSET=0; [ "$PIN" = 1 ] && command -v taskset >/dev/null 2>&1 && HAVE_TASKSET=1

if ! "$LUA" -e 'require "bsdsocket"' >/dev/null 2>&1; then
  echo "bench: cannot load bsdsocket with $LUA (LUA_CPATH=$LUA_CPATH):" >&2
  "$LUA" -e 'require "bsdsocket"' >&2
  exit 1
fi

# ---- servers ----

SERVER_PID=0
SERVER_PORT=0
NSERVERS=0

# start_server CMD...: starts CMD in the background with the descriptor
# limit raised to the hard limit, waits (at most 10 s) for its first line
# and takes the port from its end. Sets SERVER_PID and SERVER_PORT; 1 if the
# server died or printed no port.
start_server() {
  NSERVERS=$((NSERVERS + 1))
  local out="$TMP/server$NSERVERS.out" err="$TMP/server$NSERVERS.err" i line
  (ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@") >"$out" 2>"$err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_ERR=$err
  for i in $(seq 100); do
    line=$(head -n 1 "$out" 2>/dev/null)
    if [ -n "$line" ]; then
      SERVER_PORT=${line##*:}
      [ "$SERVER_PORT" -gt 0 ] 2>/dev/null && return 0
      break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "  server $* did not start: $(head -c 300 "$err")" >&2
  stop_server
  return 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=0
}

# ---- arithmetic and reporting ----

# field NAME LINE: the value of NAME=value in LINE
field() { local v=${2#*"$1"=}; [ "$v" = "$2" ] && return 1; echo "${v%% *}"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
# ahead RATIO: PASS when RATIO > 1 (ahead of a library), n/a without one
ahead() { awk -v r="$1" 'BEGIN { if (r == "-") print "n/a"; else print (r + 0 > 1) ? "PASS" : "MISS" }'; }
# verdict RATIO TARGET: PASS when RATIO >= TARGET
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "-") print "n/a"; else print (r + 0 >= t + 0) ? "PASS" : "MISS" }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a == "" || a == "failed") print "failed"; else printf "%.0f", a }'; }

SUMMARY=()
summary() { SUMMARY+=("$1"); }

PIN0=()  # prefix that runs a command on CPU 0 (scenario 2)
[ "$HAVE_TASKSET" = 1 ] && PIN0=(taskset -c 0)

# ---- 1. echo server ----

# echo_run IDLE CMD...: one load-generator run against a fresh server; sets
# ECHO_RESULT to "rps srv_us", or to "failed" and ECHO_FAILURE to why
echo_run() {
  local idle=$1; shift
  local out
  ECHO_RESULT=failed
  ECHO_FAILURE="the server did not start"
  start_server "$@" 127.0.0.1 || return
  if out=$(timeout $((SECS + 60 + idle / 500)) "$BIN/loadgen" 127.0.0.1 "$SERVER_PORT" "$CONNS" "$idle" "$SECS" "$MSG" "$SERVER_PID" 2>"$TMP/loadgen.err"); then
    ECHO_RESULT="$(field rps "$out") $(field srv_us "$out") $(field srv_user_us "$out")"
  else
    ECHO_FAILURE="$(head -n 1 "$TMP/loadgen.err"); server: $(grep -m 1 . "$SERVER_ERR" || echo 'no message')"
  fi
  stop_server
}

scenario_echo() {
  local names=(c bsd) labels=("C epoll server" "bsdsocket loop") idle name r
  local -A cmd
  cmd[c]="$BIN/echo_server"
  cmd[bsd]="$LUA $ECHO_SERVER"
  if [ "$HAVE_LUV" = 1 ]; then
    names+=(luv); labels+=("luv (libuv)"); cmd[luv]="$LUA $BENCH/luv/echo_server.lua"
  fi
  if [ "$HAVE_CQUEUES" = 1 ]; then
    names+=(cq); labels+=("cqueues"); cmd[cq]="$LUA $BENCH/cqueues/echo_server.lua"
  fi
  if [ "$HAVE_LUASOCKET" = 1 ]; then
    names+=(ls); labels+=("LuaSocket select"); cmd[ls]="$LUA $BENCH/luasocket/echo_server.lua"
  fi
  # the same LuaSocket script, unchanged, on bsdsocket.luasocket
  names+=(lsc); labels+=("LuaSocket API/bsd"); cmd[lsc]="$LUA -l bsdsocket.luasocket $BENCH/luasocket/echo_server.lua"
  # copas-style: a loop task per connection, LuaSocket's API on bsdsocket.luasocket
  names+=(lscopas); labels+=("LS API copas/bsd"); cmd[lscopas]="$LUA $BENCH/luasocket/echo_server_copas.lua"
  echo "== 1. concurrent echo server: $CONNS connections, one $MSG-byte request in flight each, ${SECS} s per run, best of $TRIES"
  [ "$HAVE_LUV" = 1 ] || echo "   (luv not installed: make deps-bench)"
  [ "$HAVE_CQUEUES" = 1 ] || echo "   (cqueues not installed: make deps-bench)"
  [ "$HAVE_LUASOCKET" = 1 ] || echo "   (LuaSocket not installed: make deps-bench)"
  echo "   server: $ECHO_SERVER"
  for idle in $IDLE; do
    local -A rps=() cpu=() user=() fails=()
    for _ in $(seq "$TRIES"); do
      for name in "${names[@]}"; do
        [ "${fails[$name]:-0}" -ge 1 ] && [ "${rps[$name]:-}" = "" ] && continue  # failed once: do not retry
        # shellcheck disable=SC2086
        echo_run "$idle" ${cmd[$name]}
        r=$ECHO_RESULT
        if [ "$r" = failed ]; then
          fails[$name]=1
          FAILNOTE[$name]=$ECHO_FAILURE
        else
          local tr tc tu
          read -r tr tc tu <<<"$r"
          rps[$name]=$(max "${rps[$name]:-}" "$tr")
          if [ "$(min "${cpu[$name]:-}" "$tc")" != "${cpu[$name]:-}" ]; then
            cpu[$name]=$tc; user[$name]=$tu      # the user part of that same run
          fi
        fi
      done
    done
    echo "   -- $idle idle connections"
    local i=0
    for name in "${names[@]}"; do
      if [ -z "${rps[$name]:-}" ]; then
        printf '   %-18s %12s\n' "${labels[$i]}" "failed"
      else
        local cratio cpuratio
        cratio=$(ratio "${rps[$name]}" "${rps[c]:-}")
        cpuratio=$(ratio "${cpu[c]:-}" "${cpu[$name]}")
        if [ "$name" = c ]; then
          printf '   %-18s %10s req/s   server CPU %6s us/req (user %s)\n' "${labels[$i]}" "$(fmt "${rps[$name]}")" "${cpu[$name]}" "${user[$name]}"
        else
          printf '   %-18s %10s req/s   server CPU %6s us/req (user %s)   vs C: %s (req/s), %s (CPU/req)\n' \
            "${labels[$i]}" "$(fmt "${rps[$name]}")" "${cpu[$name]}" "${user[$name]}" "$cratio" "$cpuratio"
        fi
      fi
      i=$((i + 1))
    done
    r=$(ratio "${rps[bsd]:-}" "${rps[c]:-}")
    summary "1. echo, $idle idle: bsdsocket/C = $r req/s (target >= 0.90) $(verdict "$r" 0.9)"
    r=$(ratio "${cpu[c]:-}" "${cpu[bsd]:-}")
    summary "1. echo, $idle idle: CPU per request C/bsdsocket = $r (target >= 0.95) $(verdict "$r" 0.95)"
    if [ -n "${rps[lsc]:-}" ]; then
      summary "1. echo, $idle idle: LuaSocket API on bsdsocket/C = $(ratio "${rps[lsc]}" "${rps[c]:-}")"
    else
      summary "1. echo, $idle idle: LuaSocket API on bsdsocket failed (${FAILNOTE[lsc]:-no reason})"
    fi
    if [ "$HAVE_LUV" = 1 ]; then
      r=$(ratio "${rps[bsd]:-}" "${rps[luv]:-}")
      summary "1. echo, $idle idle: bsdsocket/luv = $r (target > 1.00) $(ahead "$r"); CPU per request luv/bsdsocket = $(ratio "${cpu[luv]:-}" "${cpu[bsd]:-}")"
    fi
    if [ "$HAVE_CQUEUES" = 1 ]; then
      r=$(ratio "${rps[bsd]:-}" "${rps[cq]:-}")
      summary "1. echo, $idle idle: bsdsocket/cqueues = $r (target > 1.00) $(ahead "$r"); CPU per request cqueues/bsdsocket = $(ratio "${cpu[cq]:-}" "${cpu[bsd]:-}")"
    fi
    if [ "$HAVE_LUASOCKET" = 1 ]; then
      if [ -n "${rps[ls]:-}" ]; then
        summary "1. echo, $idle idle: LuaSocket/C = $(ratio "${rps[ls]}" "${rps[c]:-}") (for comparison)"
      else
        summary "1. echo, $idle idle: LuaSocket failed (${FAILNOTE[ls]:-no reason})"
      fi
      if [ -n "${rps[ls]:-}" ]; then
        r=$(ratio "${rps[lsc]:-}" "${rps[ls]}")
        summary "1. echo, $idle idle: LuaSocket API on bsdsocket / LuaSocket = $r (target >= 5.00 at 1,000 idle)$([ "$idle" = 1000 ] && echo " $(verdict "$r" 5)")"
        summary "1. echo, $idle idle: LuaSocket API copas-style on bsdsocket / LuaSocket = $(ratio "${rps[lscopas]:-}" "${rps[ls]}") (reported)"
      fi
    fi
  done
}
declare -A FAILNOTE=()

# The echo server with --workers N (0 idle): req/s, and the CPU per request
# of all its processes (from /proc over the whole run, so it includes the
# connection set-up: a little high). The 1-worker figure is scenario 1's.
scenario_echo_workers() {
  local w out t0 t1 best cpu
  for w in $WORKERS; do
    [ "$w" -gt 1 ] || continue
    best=""; cpu=""
    for _ in $(seq "$TRIES"); do
      start_server $LUA "$ECHO_SERVER" 127.0.0.1 0 --workers "$w" || continue
      sleep 0.3
      t0=$(tree_ticks "$SERVER_PID")
      out=$(timeout $((SECS + 60)) "$BIN/loadgen" 127.0.0.1 "$SERVER_PORT" "$CONNS" 0 "$SECS" "$MSG" 0 2>>"$TMP/loadgen.err")
      t1=$(tree_ticks "$SERVER_PID")
      stop_server
      local r
      r=$(field rps "$out") || continue
      best=$(max "$best" "$r")
      cpu=$(min "$cpu" "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$r" -v s="$SECS" 'BEGIN { printf "%.2f", d / hz * 1e6 / (r * s) }')")
    done
    printf '   bsdsocket loop, --workers %d, 0 idle: %10s req/s   server CPU %6s us/req (all processes)\n' "$w" "$(fmt "$best")" "${cpu:--}"
    summary "1. echo, --workers $w, 0 idle: $(fmt "$best") req/s, $cpu us/req (reported; 1 worker: the rows above)"
  done
}

# ---- 2. ping-pong ----

pp_run() {  # pp_run CMD...: one client/server run; sets PP_RATE (or "")
  local out
  PP_RATE=""
  start_server "${PIN0[@]}" "$@" server || return
  out=$(timeout $((PP_SECS + 30)) "${PIN0[@]}" "$@" client 127.0.0.1 "$SERVER_PORT" "$PP_SECS" "$MSG" 2>>"$TMP/pp.err")
  stop_server
  PP_RATE=$(field rate "$out")
}

scenario_pingpong() {
  local names=(c bsd) labels=("C" "bsdsocket") name
  local -A cmd=() rate=()
  cmd[c]="$BIN/pingpong"
  cmd[bsd]="$LUA $BENCH/lua/pingpong.lua"
  if [ "$HAVE_LUASOCKET" = 1 ]; then names+=(ls); labels+=("LuaSocket"); cmd[ls]="$LUA $BENCH/luasocket/pingpong.lua"; fi
  names+=(lsc); labels+=("LuaSocket API/bsd"); cmd[lsc]="$LUA -l bsdsocket.luasocket $BENCH/luasocket/pingpong.lua"
  echo "== 2. ping-pong: one TCP connection, $MSG-byte messages, blocking calls, ${PP_SECS} s per run, best of $TRIES"
  [ "$HAVE_TASKSET" = 1 ] && echo "   (client and server pinned to CPU 0 with taskset)"
  for _ in $(seq "$TRIES"); do
    for name in "${names[@]}"; do
      # shellcheck disable=SC2086
      pp_run ${cmd[$name]}
      rate[$name]=$(max "${rate[$name]:-}" "$PP_RATE")
    done
  done
  local i=0 r
  for name in "${names[@]}"; do
    r=$(ratio "${rate[$name]}" "${rate[c]}")
    printf '   %-12s %9s round trips/s  %8s us per round trip   vs C: %s\n' "${labels[$i]}" "$(fmt "${rate[$name]}")" \
      "$(awk -v r="${rate[$name]}" 'BEGIN { if (r + 0 > 0) printf "%.2f", 1e6 / r; else print "-" }')" "$r"
    i=$((i + 1))
  done
  [ -s "$TMP/pp.err" ] && head -c 500 "$TMP/pp.err"
  summary "2. ping-pong: bsdsocket/C = $(ratio "${rate[bsd]}" "${rate[c]}") (no target)"
  [ "$HAVE_LUASOCKET" = 1 ] && summary "2. ping-pong: LuaSocket/C = $(ratio "${rate[ls]}" "${rate[c]}")"
  [ "$HAVE_LUASOCKET" = 1 ] && summary "2. ping-pong: LuaSocket API on bsdsocket / LuaSocket = $(ratio "${rate[lsc]}" "${rate[ls]}") (target >= 1.00)"
}

# ---- 3. bulk ----

scenario_bulk() {
  local total=$((BULK_MB * 1048576)) dir name out sinkport sourceport sinkpid sourcepid
  local names=(c bsd) labels=("C" "bsdsocket")
  local -A cmd=() mbps=()
  cmd[c]="$BIN/bulk"
  cmd[bsd]="$LUA $BENCH/lua/bulk.lua"
  if [ "$HAVE_LUASOCKET" = 1 ]; then names+=(ls); labels+=("LuaSocket"); cmd[ls]="$LUA $BENCH/luasocket/bulk.lua"; fi
  names+=(lsc); labels+=("LS API/bsd"); cmd[lsc]="$LUA -l bsdsocket.luasocket $BENCH/luasocket/bulk.lua"
  echo "== 3. bulk TCP: $BULK_MB MiB in 64 KiB chunks, best of $TRIES"
  start_server "$BIN/bulk" sink || return
  sinkport=$SERVER_PORT; sinkpid=$SERVER_PID
  start_server "$BIN/bulk" source "$total" || { SERVER_PID=$sinkpid; stop_server; return; }
  sourceport=$SERVER_PORT; sourcepid=$SERVER_PID
  for _ in $(seq "$TRIES"); do
    for dir in send recv; do
      for name in "${names[@]}"; do
        local port=$sinkport
        [ "$dir" = recv ] && port=$sourceport
        # shellcheck disable=SC2086
        out=$(timeout $((60 + BULK_MB / 10)) ${cmd[$name]} "$dir" 127.0.0.1 "$port" "$total" 2>>"$TMP/bulk.err")
        mbps[$dir$name]=$(max "${mbps[$dir$name]:-}" "$(field mbps "$out")")
      done
    done
    # recv_into a reused S.buffer: no string per read
    out=$(timeout $((60 + BULK_MB / 10)) $LUA "$BENCH/lua/bulk.lua" recv_into 127.0.0.1 "$sourceport" "$total" 2>>"$TMP/bulk.err")
    mbps[into]=$(max "${mbps[into]:-}" "$(field mbps "$out")")
  done
  SERVER_PID=$sinkpid; stop_server
  SERVER_PID=$sourcepid; stop_server
  for dir in send recv; do
    local i=0 r
    for name in "${names[@]}"; do
      r=$(ratio "${mbps[$dir$name]}" "${mbps[${dir}c]}")
      printf '   %-5s %-10s %9s MiB/s   vs C: %s\n' "$dir" "${labels[$i]}" "$(fmt "${mbps[$dir$name]}")" "$r"
      i=$((i + 1))
    done
    r=$(ratio "${mbps[${dir}bsd]}" "${mbps[${dir}c]}")
    summary "3. bulk $dir: bsdsocket/C = $r (target >= 0.95) $(verdict "$r" 0.95)"
    [ "$HAVE_LUASOCKET" = 1 ] && summary "3. bulk $dir: LuaSocket API on bsdsocket / LuaSocket = $(ratio "${mbps[${dir}lsc]}" "${mbps[${dir}ls]}") (target >= 1.00)"
  done
  r=$(ratio "${mbps[into]:-}" "${mbps[recvc]}")
  printf '   %-5s %-10s %9s MiB/s   vs C recv: %s\n' "recv" "recv_into" "$(fmt "${mbps[into]:-}")" "$r"
  summary "3. bulk recv_into: bsdsocket/C = $r (target >= 0.99) $(verdict "$r" 0.99)"
  [ -s "$TMP/bulk.err" ] && head -c 500 "$TMP/bulk.err"
}

# ---- 4. UDP ----

scenario_udp() {
  local names=(c bsd) labels=("C sendto(sockaddr_in)" "bsdsocket sendto(addr)") name out
  local -A cmd=() dps=()
  cmd[c]="$BIN/udp"
  cmd[bsd]="$LUA $BENCH/lua/udp.lua"
  if [ "$HAVE_LUASOCKET" = 1 ]; then names+=(ls); labels+=("LuaSocket sendto(ip, port)"); cmd[ls]="$LUA $BENCH/luasocket/udp.lua"; fi
  echo "== 4. UDP send: $MSG-byte datagrams for ${UDP_SECS} s per run, best of $TRIES"
  start_server "$BIN/udp" sink || return
  for _ in $(seq "$TRIES"); do
    for name in "${names[@]}"; do
      # shellcheck disable=SC2086
      out=$(timeout $((UDP_SECS + 30)) ${cmd[$name]} send 127.0.0.1 "$SERVER_PORT" "$UDP_SECS" "$MSG" 2>>"$TMP/udp.err")
      dps[$name]=$(max "${dps[$name]:-}" "$(field dps "$out")")
    done
    # batches of 64 per sendmmsg: bsdsocket, and C's own sendmmsg (the ceiling)
    out=$(timeout $((UDP_SECS + 30)) $LUA "$BENCH/lua/udp.lua" sendmmsg 127.0.0.1 "$SERVER_PORT" "$UDP_SECS" "$MSG" 2>>"$TMP/udp.err")
    dps[mm]=$(max "${dps[mm]:-}" "$(field dps "$out")")
    out=$(timeout $((UDP_SECS + 30)) "$BIN/udp" sendmmsg 127.0.0.1 "$SERVER_PORT" "$UDP_SECS" "$MSG" 2>>"$TMP/udp.err")
    dps[cmm]=$(max "${dps[cmm]:-}" "$(field dps "$out")")
  done
  stop_server
  local i=0 r
  for name in "${names[@]}"; do
    printf '   %-28s %9s datagrams/s   vs C: %s\n' "${labels[$i]}" "$(fmt "${dps[$name]}")" "$(ratio "${dps[$name]}" "${dps[c]}")"
    i=$((i + 1))
  done
  printf '   %-28s %9s datagrams/s   vs C sendto loop: %s\n' "bsdsocket sendmmsg(64)" "$(fmt "${dps[mm]:-}")" \
    "$(ratio "${dps[mm]:-}" "${dps[c]}")"
  printf '   %-28s %9s datagrams/s   vs C sendto loop: %s\n' "C sendmmsg(64), reference" "$(fmt "${dps[cmm]:-}")" \
    "$(ratio "${dps[cmm]:-}" "${dps[c]}")"
  r=$(ratio "${dps[bsd]}" "${dps[c]}")
  summary "4. UDP send: bsdsocket/C = $r (target >= 0.95) $(verdict "$r" 0.95)"
  r=$(ratio "${dps[mm]:-}" "${dps[c]}")
  summary "4. UDP sendmmsg batch: bsdsocket/C sendto loop = $r (target >= 2.00) $(verdict "$r" 2); C's own sendmmsg/C sendto = $(ratio "${dps[cmm]:-}" "${dps[c]}") (the ceiling here)"
  [ "$HAVE_LUASOCKET" = 1 ] && summary "4. UDP send: LuaSocket/C = $(ratio "${dps[ls]}" "${dps[c]}")"
  [ -s "$TMP/udp.err" ] && head -c 500 "$TMP/udp.err"
}

# ---- 5. instructions per round trip ----

# callgrind_ir N CMD...: user-space instructions of CMD count 127.0.0.1 PORT N,
# as "total interpreter bsdsocket libc" (by the object the code lives in)
callgrind_ir() {
  local n=$1 f="$TMP/callgrind.$NSERVERS.$1" total; shift
  timeout 300 valgrind --tool=callgrind --callgrind-out-file="$f" --trace-children=no \
    "$@" count 127.0.0.1 "$SERVER_PORT" "$n" "$MSG" >/dev/null 2>>"$TMP/callgrind.err" || return
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
  callgrind_annotate --threshold=100 "$f" 2>/dev/null | awk -v total="$total" '
    /\[.*\]$/ { gsub(",", "", $1); obj = $NF
                if (obj ~ /core\.so|liblua5\.4-/) b += $1; else if (obj ~ /libc\.so/) c += $1
                else if (obj ~ /lua/) i += $1 }
    END { printf "%s %d %d %d\n", total, i, b, c }'
}

scenario_callgrind() {
  local n1=2000 n2=12000 names=(c bsd) labels=("C" "bsdsocket") name
  local -A cmd=()
  cmd[c]="$BIN/pingpong"
  cmd[bsd]="$LUA $BENCH/lua/pingpong.lua"
  if [ "$HAVE_LUASOCKET" = 1 ]; then names+=(ls); labels+=("LuaSocket"); cmd[ls]="$LUA $BENCH/luasocket/pingpong.lua"; fi
  echo "== 5. instructions per ping-pong round trip (callgrind, user space, client side, (I($n2)-I($n1))/$((n2 - n1)))"
  if [ "$HAVE_VALGRIND" = 0 ]; then
    echo "   skipped: valgrind not installed (make deps-bench)"
    return
  fi
  start_server "$BIN/pingpong" server || return
  local i=0 a b per split lib
  for name in "${names[@]}"; do
    # shellcheck disable=SC2086
    a=$(callgrind_ir $n1 ${cmd[$name]})
    # shellcheck disable=SC2086
    b=$(callgrind_ir $n2 ${cmd[$name]})
    per=$(awk -v a="$a" -v b="$b" -v d=$((n2 - n1)) 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.0f", (b - a) / d }')
    # where they go: the Lua interpreter, the socket library's own C code
    # (bsdsocket's core.so, LuaSocket's socket/core.so), libc (allocation,
    # system call wrappers)
    split=$(awk -v a="$a" -v b="$b" -v d=$((n2 - n1)) 'BEGIN {
      if (a == "" || b == "") exit
      na = split(a, x, " "); nb = split(b, y, " ")
      if (na < 4 || nb < 4) exit
      printf "(interpreter %.0f, library C %.0f, libc %.0f)", (y[2] - x[2]) / d, (y[3] - x[3]) / d, (y[4] - x[4]) / d }')
    [ "$name" = c ] && split=""
    printf '   %-10s %6s instructions per round trip %s\n' "${labels[$i]}" "$per" "$split"
    if [ "$name" = bsd ]; then
      lib=$(awk -v a="$a" -v b="$b" -v d=$((n2 - n1)) 'BEGIN { na = split(a, x, " "); nb = split(b, y, " ")
        if (na < 4 || nb < 4) print "-"; else printf "%.0f", ((y[3] - x[3]) + (y[4] - x[4])) / d }')
      summary "5. callgrind: bsdsocket library (its C + libc) $lib instructions per round trip (target <= 250) $(awk -v p="$lib" 'BEGIN { if (p == "-") print "n/a"; else print (p + 0 <= 250) ? "PASS" : "MISS" }'); all $per $split"
    fi
    [ "$name" != bsd ] && summary "5. callgrind: ${labels[$i]} $per instructions per round trip"
    i=$((i + 1))
  done
  stop_server
  [ -s "$TMP/callgrind.err" ] && grep -v '^==' "$TMP/callgrind.err" | head -c 500
}

# ---- 6. static files: nginx and http_server.lua ----

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# tree_ticks PID: user+system CPU ticks of PID and its children (nginx's
# workers, http_server's workers). The command name (field 2) may hold
# spaces, so fields are counted after its closing parenthesis; cat, not awk,
# opens the files, as a process may go while they are read.
tree_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '{
      line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
      if ($1 == root || f[2] == root) t += f[12] + f[13]
    } END { print t + 0 }'
}

# nchildren PID: how many processes PID has
nchildren() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '{ line = $0; sub(/^.*\) /, "", line)
      split(line, f, " "); if (f[2] == root) n++ } END { print n + 0 }'
}

free_port() {
  "$LUA" -e 'local S = require "bsdsocket"; local s = S.socket(S.AF_INET, S.SOCK_STREAM)
    s:bind("127.0.0.1", 0); print(s:getsockname().port); s:close()'
}

# http_start KIND WORKERS: starts nginx or http_server.lua on $TMP/www; sets
# SERVER_PID (nginx's master, http_server's first process) and SERVER_PORT
http_start() {
  local kind=$1 workers=$2 want i
  SERVER_PORT=$(free_port)
  if [ "$kind" = nginx ]; then
    mkdir -p "$TMP/nginx"
    {
      echo "daemon off;"
      echo "worker_processes $workers;"
      echo "pid $TMP/nginx/nginx.pid;"
      echo "error_log $TMP/nginx/error.log;"
      [ "$(id -u)" = 0 ] && echo "user root;"
      echo "events { worker_connections 4096; }"
      echo "http {"
      echo "  access_log off; sendfile on; tcp_nopush on;"
      echo "  keepalive_requests 1000000; keepalive_timeout 60;"
      echo "  default_type application/octet-stream;"
      for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $TMP/nginx/$t;"; done
      echo "  server { listen 127.0.0.1:$SERVER_PORT; root $TMP/www; }"
      echo "}"
    } >"$TMP/nginx/nginx.conf"
    /usr/sbin/nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/out" 2>&1 &
    want=$workers
  else
    "$LUA" "$ROOT/examples/http_server.lua" 127.0.0.1 "$SERVER_PORT" "$TMP/www" --workers "$workers" \
      >"$TMP/http.out" 2>"$TMP/http.err" &
    want=$((workers - 1))
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for i in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$SERVER_PORT/small.txt" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "   $kind did not start" >&2; return 1; }
    sleep 0.1
  done
  # every worker up before the clock starts
  for i in $(seq 50); do
    [ "$(nchildren "$SERVER_PID")" -ge "$want" ] && break
    sleep 0.1
  done
  sleep 0.2
}

# http_run KIND WORKERS FILE: sets HTTP_RESULT to "rps us_per_req" or ""
http_run() {
  local kind=$1 workers=$2 file=$3 t0 t1 out rps errs
  HTTP_RESULT=""
  http_start "$kind" "$workers" || { stop_server; return; }
  t0=$(tree_ticks "$SERVER_PID")
  out=$(timeout $((HTTP_SECS + 30)) wrk -t2 -c50 -d"${HTTP_SECS}s" "http://127.0.0.1:$SERVER_PORT/$file" 2>&1)
  t1=$(tree_ticks "$SERVER_PID")
  stop_server
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ { print }')
  if [ -z "$rps" ] || [ -n "$errs" ]; then
    echo "   $kind $file: wrk: ${errs:-no result} $(echo "$out" | tail -n 2 | head -c 200)" >&2
    return
  fi
  HTTP_RESULT="$rps $(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$rps" -v s="$HTTP_SECS" \
    'BEGIN { printf "%.2f", d / hz * 1e6 / (r * s) }')"
}

scenario_http() {
  local file kind w r target label
  echo "== 6. static files over HTTP: nginx vs examples/http_server.lua, wrk -t2 -c50 for ${HTTP_SECS} s, best of $TRIES"
  if [ "$HAVE_NGINX" = 0 ] || [ "$HAVE_WRK" = 0 ]; then
    echo "   skipped: nginx-light and wrk are needed (make deps-bench)"
    return
  fi
  mkdir -p "$TMP/www"
  printf 'hello world\n' >"$TMP/www/small.txt"
  head -c 102400 /dev/urandom >"$TMP/www/big.bin"
  chmod 755 "$TMP" "$TMP/www"; chmod 644 "$TMP/www/"*
  for w in $WORKERS; do
    for file in small.txt big.bin; do
      local -A rps=() cpu=()
      for _ in $(seq "$TRIES"); do
        for kind in nginx lua; do
          http_run "$kind" "$w" "$file"
          [ -n "$HTTP_RESULT" ] || continue
          rps[$kind]=$(max "${rps[$kind]:-}" "${HTTP_RESULT% *}")
          cpu[$kind]=$(min "${cpu[$kind]:-}" "${HTTP_RESULT#* }")
        done
      done
      label="12-byte file"; target=0.7
      [ "$file" = big.bin ] && { label="100 KB file"; target=0.9; }
      echo "   -- $label, $w worker(s) each"
      printf '   %-16s %10s req/s   server CPU %7s us/req\n' "nginx" "$(fmt "${rps[nginx]:-}")" "${cpu[nginx]:--}"
      printf '   %-16s %10s req/s   server CPU %7s us/req   vs nginx: %s (req/s), %s (CPU/req)\n' "http_server.lua" \
        "$(fmt "${rps[lua]:-}")" "${cpu[lua]:--}" "$(ratio "${rps[lua]:-}" "${rps[nginx]:-}")" \
        "$(ratio "${cpu[nginx]:-}" "${cpu[lua]:-}")"
      r=$(ratio "${rps[lua]:-}" "${rps[nginx]:-}")
      if [ "$w" = 1 ]; then
        summary "6. http $label, 1 worker: http_server/nginx = $r req/s (target >= $target) $(verdict "$r" "$target"); CPU/req nginx/http_server = $(ratio "${cpu[nginx]:-}" "${cpu[lua]:-}")"
      else
        summary "6. http $label, $w workers: http_server/nginx = $r req/s; CPU/req nginx/http_server = $(ratio "${cpu[nginx]:-}" "${cpu[lua]:-}") (reported)"
      fi
    done
  done
}

# ---- main ----

echo "bsdsocket benchmarks ($LUA, module from $MODULE_DIR, $(nproc 2>/dev/null || echo '?') CPUs)"
START=$(date +%s)
for s in $ONLY; do
  case $s in
    1) scenario_echo; scenario_echo_workers ;;
    2) scenario_pingpong ;;
    3) scenario_bulk ;;
    4) scenario_udp ;;
    5) scenario_callgrind ;;
    6) scenario_http ;;
    *) echo "unknown scenario $s" >&2 ;;
  esac
done
echo "== summary (ratios: higher is better for bsdsocket; $(($(date +%s) - START)) s)"
for line in "${SUMMARY[@]}"; do echo "   $line"; done
exit 0
