#!/usr/bin/env bash
# Instructions per span of the qa-trace workload (bench/qa_trace.lua, paced)
# against the shared sink, counted by valgrind's callgrind for the application
# thread and the export worker separately. Two runs, N1 and N2 traces: the
# difference divided by the extra spans, so start-up, module loading and the
# final flush cancel out. Stable on a noisy machine, unlike CPU time; the
# kernel's share (the HTTP writes) is not counted.
#
#   bench/qa_trace_callgrind.sh [--build DIR] [--n1 N] [--n2 N]
# Needs a build (default build/), valgrind and Node.js.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared="${BASALT_SHARED_DIR:-$here/../shared}"
build="$here/build" n1=1000 n2=3000
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --n1) n1="$2"; shift 2 ;;
    --n2) n2="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
# A fixed time() fixes Lua's string hash seed: the counts then repeat exactly.
preload=""
[ -f "$build/bench/libfixed_time.so" ] && preload="LD_PRELOAD='$build/bench/libfixed_time.so' "
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Prints "<app thread> <worker>" instructions for n traces.
count() {
  local n=$1
  (cd "$shared/bench" && ./run.sh --traces "$n" --cmd "${preload}LUA_PATH='$build/lua/?.lua' \
LUA_CPATH='$build/lua/?.so' valgrind --tool=callgrind --separate-threads=yes \
--callgrind-out-file=$out/cg.$n.%p '$build/basalt-lua' '$here/bench/qa_trace.lua' \
--traces {TRACES} --endpoint {ENDPOINT} --mode {MODE}" > "$out/run.$n.txt" 2>&1) ||
    { echo "run with $n traces failed:" >&2; tail -5 "$out/run.$n.txt" >&2; exit 1; }
  local app worker
  app=$(grep -h '^summary' "$out"/cg."$n".*-01 | awk '{print $2}')
  worker=$(grep -h '^summary' "$out"/cg."$n".*-02 | awk '{print $2}')
  echo "$app $worker"
}
read -r a1 w1 < <(count "$n1")
read -r a2 w2 < <(count "$n2")
spans=$(( (n2 - n1) * 4 ))
app=$(( (a2 - a1) / spans ))
worker=$(( (w2 - w1) / spans ))
echo "qa-trace, callgrind, per span: application thread $app instructions, export worker $worker, together $((app + worker))"
echo "{\"bench\":\"qa_trace_callgrind\",\"n1\":$n1,\"n2\":$n2,\"app_instructions_per_span\":$app,\"worker_instructions_per_span\":$worker}"
