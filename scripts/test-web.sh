#!/usr/bin/env bash
# Tests of the playground: the wasm bindings under Node and the page in headless
# Chromium. Installs what it needs (scripts/setup.sh web), builds web-demo/pkg, runs
# both suites with Node's test runner, and fails if either fails. Screenshots land in
# web-demo/screenshots/ (gitignored); each browser file prints the interaction times it
# measured as `#` lines, and the run ends with all of them together, small presets and
# the 300,000-PASID one apart (reported, not asserted: the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "set-up (web)"
scripts/setup.sh web

step "build the wasm package"
scripts/play.sh --build

cd web-demo
status=0
step "wasm bindings under Node"
node --test --test-reporter=spec test/wasm.test.mjs ../wasm/tests/*.test.mjs || status=1
step "the playground in Chromium"
rm -f screenshots/timings.jsonl # each file appends what it measured
# One file per area; they run one after another (one browser at a time on 2 cores).
node --test --test-concurrency=1 --test-reporter=spec \
    test/browser.test.mjs test/tour.test.mjs test/maps.test.mjs test/walk.test.mjs test/lifecycle.test.mjs test/machine.test.mjs \
    test/controls.test.mjs test/load.test.mjs || status=1
step "interaction times (until the next frame; reported, not asserted)"
node test/timings.mjs
if [ "$status" -ne 0 ]; then
    echo "test-web: FAILED" >&2
fi
exit "$status"
