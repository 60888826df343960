#!/bin/sh
# Runs the misuse fuzzer (bench/misuse_fuzz.lua) for seeds FIRST..LAST under a
# sanitizer build and prints, per seed, OK, LEAK (LeakSanitizer) or CRASH (an
# ASan/UBSan report, a non-zero exit, or a run that did not reach its end),
# then a summary line. Exits 1 when any seed is not OK.
#
#   bench/misuse_fuzz.sh [--build DIR] FIRST LAST [ITERATIONS]
# DIR defaults to build-asan (cmake -DBASALT_SANITIZE=ON); logs go to $LOGS
# (default: a temporary directory, kept when a seed fails).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build-asan"
if [ "${1:-}" = "--build" ]; then
  build=$(cd "$2" && pwd)
  shift 2
fi
first=${1:?usage: misuse_fuzz.sh [--build DIR] FIRST LAST [ITERATIONS]}
last=${2:?usage: misuse_fuzz.sh [--build DIR] FIRST LAST [ITERATIONS]}
iters=${3:-3000}
logs=${LOGS:-$(mktemp -d)}
mkdir -p "$logs"
ok=0 leak=0 crash=0
seed=$first
while [ "$seed" -le "$last" ]; do
  log=$logs/seed-$seed.log
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LUA_PATH="$build/lua/?.lua;;" LUA_CPATH="$build/lua/?.so;;" \
    timeout 60 "$build/basalt-lua" "$here/bench/misuse_fuzz.lua" "$seed" "$iters" >"$log" 2>&1
  rc=$?
  skipped=$(grep -c "error in __gc" "$log")
  if grep -q "ERROR: AddressSanitizer\|runtime error:\|AddressSanitizer:DEADLYSIGNAL" "$log"; then
    verdict=CRASH crash=$((crash + 1))
  elif grep -q "ERROR: LeakSanitizer" "$log"; then
    verdict=LEAK leak=$((leak + 1))
  elif [ "$rc" -ne 0 ] || ! grep -q "^FUZZ-DONE" "$log"; then
    verdict=CRASH crash=$((crash + 1))
  else
    verdict=OK ok=$((ok + 1))
  fi
  extra=""
  [ "$verdict" = LEAK ] && extra=" $(grep -m1 '^SUMMARY: AddressSanitizer' "$log")"
  [ "$verdict" = CRASH ] && extra=" rc=$rc $(grep -m1 'ERROR:\|runtime error:' "$log")"
  echo "seed $seed: $verdict ($skipped finalizers skipped by Lua)$extra"
  seed=$((seed + 1))
done
echo "summary seeds $first..$last: $ok OK, $leak LEAK, $crash CRASH"
if [ "$leak" -ne 0 ] || [ "$crash" -ne 0 ]; then
  echo "logs in $logs"
  exit 1
fi
[ -n "${LOGS:-}" ] || rm -rf "$logs"
