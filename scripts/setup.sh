#!/usr/bin/env bash
# Installs what the project's builds and tests need, idempotently.
#   scripts/setup.sh rust   Rust components and targets
#   scripts/setup.sh c      what the C tests and example need
#   scripts/setup.sh web    wasm-bindgen-cli (pinned to the crate), npm packages, chromium
#   scripts/setup.sh fuzz   nightly tools for fuzzing and Miri
set -euo pipefail
cd "$(dirname "$0")/.."

rust() {
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
    rustup target add x86_64-unknown-none wasm32-unknown-unknown >/dev/null
}

c() {
    : # filled by the C ABI work (issue 5)
}

web() {
    : # filled by the playground work (issue 6)
}

fuzz() {
    : # filled by the hardening work (issue 8)
}

for what in "$@"; do
    "$what"
done
