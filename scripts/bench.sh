#!/usr/bin/env bash
# Criterion benches of pasid-core against its peers (issues 2, 7 and 14), the broker's
# round trips (issue 16), then a table of medians with every peer's ratio to us, and
# the memory tables.
#
#   scripts/bench.sh            full mode (100 samples, 2 s per bench): how BENCHMARKS.md
#                               is made; about 25 minutes on the 2-core machine
#   scripts/bench.sh --quick    every bench, fewer fill levels, few samples, short
#                               measurement (for CI: keeps the benches compiling and
#                               running, and every peer checked against its model; the
#                               figures are rough)
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

criterion_args=(--warm-up-time 0.5 --measurement-time 2 --noplot)
export PASID_BENCH_QUICK=0
if [[ "$mode" == quick ]]; then
    criterion_args=(--warm-up-time 0.05 --measurement-time 0.2 --sample-size 10 --noplot)
    PASID_BENCH_QUICK=1
fi

echo "== pasid-core benches ($mode mode, $clock clock)"
# The summary lists only what this run measured (older reports stay in target/criterion).
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
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
echo "== medians (from target/criterion/*/new/estimates.json; ratio to ours in brackets)"
if ! command -v python3 >/dev/null; then
    echo "python3 not found: skipping the summary table"
    exit 0
fi
python3 scripts/bench_tables.py "$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/criterion" "$stamp"
