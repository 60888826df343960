#!/usr/bin/env bash
# Side by side in one run (../shared/bench/WORKLOAD.md): the qa-trace workload on
# basalt-lua and on the OpenTelemetry JS peer, 3 rounds alternating which goes
# first, each against its own fresh sink, same N and mode. Prints the medians of
# CPU µs per span, spans received by the sink and peak RSS, and the ratios.
#
#   bench/compare_qa_trace.sh [--traces N] [--mode paced|free] [--rounds R]
# Needs a build in build/ (.ci/quickstart or cmake) and Node.js.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared="${BASALT_SHARED_DIR:-$here/../shared}"
traces=20000 mode=paced rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --traces) traces="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
lua_cmd="LUA_PATH='$here/build/lua/?.lua' LUA_CPATH='$here/build/lua/?.so' '$here/build/basalt-lua' '$here/bench/qa_trace.lua' --traces {TRACES} --endpoint {ENDPOINT} --mode {MODE}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$shared/bench"
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="js lua"; else order="lua js"; fi
  for who in $order; do
    if [ "$who" = js ]; then
      ./run.sh --traces "$traces" --mode "$mode" > "$out/js-$r.txt" 2> "$out/js-$r.err" || true
    else
      ./run.sh --traces "$traces" --mode "$mode" --cmd "$lua_cmd" > "$out/lua-$r.txt" 2> "$out/lua-$r.err" || true
    fi
    echo "round $r $who: $(grep -m1 '^verify:' "$out/$who-$r.txt" || echo 'no verify line')" >&2
  done
done
node - "$out" "$rounds" "$traces" "$mode" <<'JS'
const fs = require("fs");
const [dir, rounds, traces, mode] = process.argv.slice(2);
const med = (xs) => { const s = xs.filter((x) => typeof x === "number").sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const read = (who) => {
  const rows = [];
  for (let r = 1; r <= +rounds; r++) {
    const lines = fs.readFileSync(`${dir}/${who}-${r}.txt`, "utf8").trim().split("\n");
    const res = JSON.parse(lines[lines.length - 1]);
    const sink = lines.find((l) => l.startsWith("sink: "));
    res.received = sink ? JSON.parse(sink.slice(6)).spans : NaN;
    res.verify = (lines.find((l) => l.startsWith("verify:")) || "").split(":")[1];
    rows.push(res);
  }
  return rows;
};
const js = read("js"), lua = read("lua");
const row = (name, rows) => ({ name, cpu: med(rows.map((x) => x.cpu_us_per_span)),
  cpuExp: med(rows.map((x) => x.cpu_us_per_exported_span)), received: med(rows.map((x) => x.received)),
  created: med(rows.map((x) => x.spans_created)), rss: med(rows.map((x) => x.peak_rss_mib)),
  verify: rows.map((x) => x.verify.trim()).join(",") });
const a = row("basalt-lua", lua), b = row("otel-js", js);
console.log(`qa-trace, N = ${traces} traces, mode ${mode}, medians of ${rounds} rounds`);
for (const x of [a, b])
  console.log(`${x.name.padEnd(11)} cpu ${x.cpu.toFixed(2)} us/span (${x.cpuExp.toFixed(2)} per exported)  ` +
    `received ${x.received}/${x.created} (${(100 * x.received / x.created).toFixed(1)}%)  ` +
    `peak RSS ${x.rss.toFixed(1)} MiB  verify ${x.verify}`);
console.log(`ratio basalt-lua / otel-js: cpu per span ${(a.cpu / b.cpu).toFixed(3)} ` +
  `(${(b.cpu / a.cpu).toFixed(1)}x less), cpu per exported span ${(a.cpuExp / b.cpuExp).toFixed(3)}, ` +
  `peak RSS ${(a.rss / b.rss).toFixed(3)}, received fraction ${((a.received / a.created) / (b.received / b.created)).toFixed(2)}`);
console.log(JSON.stringify({ bench: "qa_trace_compare", traces: +traces, mode, lua: a, js: b,
  cpu_ratio: a.cpu / b.cpu, rss_ratio: a.rss / b.rss }));
JS
