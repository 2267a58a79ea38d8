#!/usr/bin/env bash
# Runs every test of the project: the README's test command, and what CI runs.
# Installs what it needs itself (see scripts/setup.sh); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "set-up"
scripts/setup.sh rust

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

step "Rust tests"
cargo test --workspace

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "core without std (x86_64-unknown-none)"
cargo build -p pasid-core --target x86_64-unknown-none

step "C ABI: header, C tests (plain, ASan+UBSan, shared), vIOMMU example"
scripts/setup.sh c
scripts/test-c.sh

step "playground: wasm bindings under Node, the page in headless Chromium"
scripts/test-web.sh

step "README's JavaScript blocks, now that web-demo/pkg is built"
scripts/test-readme.sh js

step "benchmarks, quick mode (keeps them building and running; no timing is asserted)"
scripts/bench.sh --quick

step "hardening: bounded fuzz runs, Miri, valgrind on the C tests"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/harden.sh
