#!/usr/bin/env bash
# Builds the wasm package and serves the playground on localhost.
#   scripts/play.sh           build, then serve on http://127.0.0.1:8080/ (PORT=... to change)
#   scripts/play.sh --build   build web-demo/pkg/ only (what scripts/test-web.sh uses)
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ] || ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    scripts/setup.sh web
fi

cargo build -p pasid-wasm --release --target wasm32-unknown-unknown
wasm=target/wasm32-unknown-unknown/release/pasid_wasm.wasm
# One ES-module package: the page calls init(), Node's tests initSync() with the bytes.
wasm-bindgen --target web --out-dir web-demo/pkg "$wasm"

if [ "${1:-}" = "--build" ]; then
    exit 0
fi
exec node web-demo/serve.mjs "${PORT:-8080}"
