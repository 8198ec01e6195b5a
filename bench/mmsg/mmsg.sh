#!/bin/sh
# recvmmsg benchmark: receive rate of recvmmsg batches of 32 in Lua against a
# C loop of plain recv(2), over loopback UDP (see recv_c.c and recvmmsg.lua).
# Usage, from the checkout after `make`:  sh bench/mmsg/mmsg.sh [ROUNDS [BATCH [SIZE]]]
# Env: LUA (default lua5.4), CC (cc), MODULE_DIR (build), TRIES (5: best of).
set -e
cd "$(dirname "$0")/../.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
MODULE_DIR=${MODULE_DIR:-build}
TRIES=${TRIES:-5}
ROUNDS=${1:-2000}; BATCH=${2:-256}; SIZE=${3:-64}
out=${TMPDIR:-/tmp}/bsdsocket-bench-mmsg.$$
trap 'rm -f "$out"' EXIT
$CC -std=c99 -O2 -Wall -Wextra -Werror -o "$out" bench/mmsg/recv_c.c

best() {  # the highest rate of $TRIES runs of the command
  b=0; i=0
  while [ $i -lt "$TRIES" ]; do
    r=$("$@"); [ "$r" -gt "$b" ] && b=$r; i=$((i + 1))
  done
  echo "$b"
}
lua() {
  LUA_PATH="lua/?.lua;;" LUA_CPATH="$MODULE_DIR/?.so;;" $LUA bench/mmsg/recvmmsg.lua "$@"
}
c=$(best "$out" recv "$ROUNDS" "$BATCH" "$SIZE")
cm=$(best "$out" mmsg "$ROUNDS" "$BATCH" "$SIZE")
m=$(best lua mmsg "$ROUNDS" "$BATCH" "$SIZE")
r=$(best lua recv "$ROUNDS" "$BATCH" "$SIZE")
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; }
echo "datagrams of $SIZE bytes, $ROUNDS rounds of $BATCH, best of $TRIES, datagrams/s of the drain:"
printf '  C recv(2) loop                 %10d   (the baseline)\n' "$c"
printf '  Lua sock:recvmmsg(32, 2048)    %10d   ratio to C recv %s\n' "$m" "$(ratio "$m" "$c")"
printf '  C recvmmsg(32) (reference)     %10d   ratio to C recv %s\n' "$cm" "$(ratio "$cm" "$c")"
printf '  Lua sock:recv(2048) loop       %10d   ratio to C recv %s\n' "$r" "$(ratio "$r" "$c")"
echo "recvmmsg ratio (Lua recvmmsg batches of 32 / C recv loop): $(ratio "$m" "$c")"
