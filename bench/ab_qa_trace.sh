#!/usr/bin/env bash
# A/B of two builds on the qa-trace workload (bench/qa_trace.lua, paced, against
# the shared sink): R rounds, alternating which build goes first, then the
# medians of CPU µs per span and of each thread's CPU seconds. On a shared
# machine whose speed drifts within minutes, only alternation makes two builds
# comparable in CPU time (instruction counts: bench/qa_trace_callgrind.sh).
#
#   bench/ab_qa_trace.sh BUILD_A BUILD_B [--rounds R] [--traces N]
# A build is a CMake build directory (for example build/, or a worktree's).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared="${BASALT_SHARED_DIR:-$here/../shared}"
[ $# -ge 2 ] || { echo "usage: $0 BUILD_A BUILD_B [--rounds R] [--traces N]" >&2; exit 2; }
a=$(cd "$1" && pwd) b=$(cd "$2" && pwd)
shift 2
rounds=5 traces=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --traces) traces="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {
  (cd "$shared/bench" && ./run.sh --traces "$traces" --cmd "LUA_PATH='$1/lua/?.lua' \
LUA_CPATH='$1/lua/?.so' '$1/basalt-lua' '$here/bench/qa_trace.lua' --traces {TRACES} \
--endpoint {ENDPOINT} --mode {MODE}" 2>/dev/null | tail -1) | sed "s|^|$2 |" >> "$out"
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run "$a" A; run "$b" B; else run "$b" B; run "$a" A; fi
done
node - "$out" "$a" "$b" <<'JS'
const fs = require("fs");
const [file, a, b] = process.argv.slice(2);
const rows = { A: [], B: [] };
for (const line of fs.readFileSync(file, "utf8").split("\n")) {
  const m = line.match(/^([AB]) (\{.*\})$/);
  if (m) rows[m[1]].push(JSON.parse(m[2]));
}
const med = (xs) => { const s = xs.filter((x) => typeof x === "number").sort((p, q) => p - q);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const show = (k, name) => {
  const r = rows[k];
  console.log(`${k} ${name}: cpu ${med(r.map((x) => x.cpu_us_per_span)).toFixed(2)} us/span, ` +
    `app thread ${med(r.map((x) => x.app_thread_cpu_s))} s, worker ${med(r.map((x) => x.worker_cpu_s))} s, ` +
    `runs ${r.length}`);
};
show("A", a);
show("B", b);
const ra = med(rows.A.map((x) => x.cpu_us_per_span)), rb = med(rows.B.map((x) => x.cpu_us_per_span));
console.log(`B / A cpu per span: ${(rb / ra).toFixed(3)}`);
JS
