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
    # The C tests and example (scripts/test-c.sh): a C and C++ compiler with ASan and
    # UBSan, binutils (ld -r, objcopy, nm, readelf: scripts/install-c.sh), pkg-config,
    # meson + ninja for the dependency('pasid', static: true) link test, and valgrind for
    # the example's run on a broker's leases (Debian's packages: seconds to install, no
    # build).
    local need=()
    command -v gcc >/dev/null || need+=(gcc)
    command -v g++ >/dev/null || need+=(g++)
    command -v pkg-config >/dev/null || need+=(pkg-config)
    command -v objcopy >/dev/null || need+=(binutils)
    command -v meson >/dev/null || need+=(meson)
    command -v ninja >/dev/null || need+=(ninja-build)
    command -v valgrind >/dev/null || need+=(valgrind)
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    # A second Rust toolchain builds the "other" staticlib that libpasid.a must link
    # beside (scripts/test-c.sh); nightly, which `fuzz` below needs anyway.
    rustup toolchain list | grep -q '^nightly' ||
        rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
}

web() {
    # wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in Cargo.lock.
    local want have
    want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
    if [ -z "$want" ]; then
        echo "setup web: no wasm-bindgen in Cargo.lock" >&2
        return 1
    fi
    have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
    if [ "$have" != "$want" ]; then
        # --locked first; if the registry no longer serves a crate of the CLI's own
        # lock file (seen: webpki-roots 1.0.11), resolve afresh: the CLI version is
        # what has to match, not its dependencies.
        cargo install wasm-bindgen-cli --version "$want" --locked ||
            cargo install wasm-bindgen-cli --version "$want"
    fi
    rustup target add wasm32-unknown-unknown >/dev/null
    (cd web-demo && npm ci --no-audit --no-fund)
    if [ ! -x /usr/bin/chromium ]; then
        apt-get update && apt-get install -y chromium
    fi
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
