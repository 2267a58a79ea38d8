#!/usr/bin/env bash
# Runs the machine's host-PASID broker from this checkout (builds it first):
#
#   scripts/broker.sh --socket PATH --state PATH [--config FILE] [--metrics ADDR]
#   scripts/broker.sh status --socket PATH [--json]
#
# Arguments go to pasid-broker unchanged (see docs/broker.md). A debug build (the one
# the tests use, so nothing more is compiled); for a real machine,
# install it instead: cargo install --path broker, and the units in broker/systemd/.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
cargo build -q -p pasid-broker --bin pasid-broker
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/debug/pasid-broker" "$@"
