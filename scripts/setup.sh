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
    # Miri and rust-src (Miri builds its own std) on nightly; libFuzzer comes with
    # cargo-fuzz's libfuzzer-sys crate, so only the cargo subcommand is installed.
    rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
    rustup +nightly component add miri rust-src >/dev/null
    cargo +nightly miri setup >/dev/null 2>&1
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked
    fi
    # valgrind runs the C tests (scripts/harden.sh); Debian package.
    if ! command -v valgrind >/dev/null; then
        if command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
        fi
    fi
}

for what in "$@"; do
    "$what"
done
