#!/usr/bin/env bash
# Criterion benches of pasid-core against its peers (issues 2 and 7), the broker's
# round trips (issue 16), then a table of medians with every peer's ratio to us, and
# the memory tables.
#
#   scripts/bench.sh            full mode (criterion's defaults): how BENCHMARKS.md is made
#   scripts/bench.sh --quick    every bench, few samples, short measurement (for CI: keeps
#                               the benches compiling and running; the figures are rough)
#   scripts/bench.sh --cpu-time ...          measure the bench thread's CPU time, not wall
#                               time: on a shared machine it leaves out the time other
#                               processes hold the core (equal to wall time when idle)
#   scripts/bench.sh [options] -- FILTER     only benches whose id matches FILTER (a regex)
#
# Criterion's reports go to target/criterion (not in git). Timing is never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
clock=wall
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) mode=quick ;;
        --cpu-time) clock=cpu ;;
        --) shift; break ;;
        *) break ;;
    esac
    shift
done
export PASID_BENCH_CLOCK=$clock

criterion_args=()
if [[ "$mode" == quick ]]; then
    criterion_args=(--warm-up-time 0.1 --measurement-time 0.3 --sample-size 10 --noplot)
fi

echo "== pasid-core benches ($mode mode, $clock clock)"
cargo bench -p pasid-core --bench alloc --bench translate --bench host -- \
    ${criterion_args[@]+"${criterion_args[@]}"} "$@"

echo
echo "== broker: alloc+release round trips over the socket, 1 and 8 clients (issue 16)"
# The bench prints its own median/p99 lines (criterion has no percentiles);
# PASID_BROKER_LATENCY_OPS is how many round trips per client it samples for them.
if [[ "$mode" == quick ]]; then export PASID_BROKER_LATENCY_OPS=${PASID_BROKER_LATENCY_OPS:-1000}; fi
cargo bench -p pasid-broker --bench roundtrip -- \
    ${criterion_args[@]+"${criterion_args[@]}"} "$@"

echo
echo "== memory"
cargo bench -p pasid-core --bench memory

echo
echo "== medians (from target/criterion/*/new/estimates.json)"
if ! command -v python3 >/dev/null; then
    echo "python3 not found: skipping the summary table"
    exit 0
fi
python3 - "$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/criterion" <<'PY'
import json, pathlib, sys

root = pathlib.Path(sys.argv[1])
# Which row is "us" in each group (peers get a ratio to it).
OURS = ("pasid IdBitmap", "host translate")
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    median = json.loads(est.read_text())["median"]["point_estimate"]
    elems = (bench.get("throughput") or {}).get("Elements")
    rows.append((bench["group_id"], bench.get("value_str") or "", bench["function_id"] or "", median, elems))

def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.2f} ns"

print("| workload | param | implementation | median / iteration | median / element | ratio to us |")
print("|---|---|---|---|---|---|")
for group, param, func, median, elems in sorted(rows, key=lambda r: (r[0], r[1].zfill(3), r[2])):
    ref = [m for g, p, f, m, _ in rows if g == group and p == param and f in OURS]
    ratio = f"{median / ref[0]:.2f}x" if ref and func not in OURS else ("1 (us)" if func in OURS else "")
    per = fmt(median / elems) if elems else ""
    print(f"| {group} | {param} | {func} | {fmt(median)} | {per} | {ratio} |")
PY
