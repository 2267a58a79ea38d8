#!/usr/bin/env bash
# Builds the wasm package and serves the playground on localhost.
#   scripts/play.sh           build, then serve on http://127.0.0.1:8080/ (PORT=... to change)
#   scripts/play.sh --build   build web-demo/pkg/ only (what scripts/test-web.sh uses)
# The package is web-demo/pkg/: pasid_wasm.js (an ES module) and pasid_wasm_bg.wasm,
# shrunk by wasm-opt from npm's binaryen (web-demo/package.json pins it).
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ] || ! rustup target list --installed | grep -qx wasm32-unknown-unknown ||
    [ ! -x web-demo/node_modules/.bin/wasm-opt ]; then
    scripts/setup.sh web
fi

cargo build -p pasid-wasm --release --target wasm32-unknown-unknown
wasm=target/wasm32-unknown-unknown/release/pasid_wasm.wasm
# One ES-module package: the page calls init(), Node's tests initSync() with the bytes.
wasm-bindgen --target web --out-dir web-demo/pkg "$wasm"

# Size: optimise the bindgen output for size. The features are the ones rustc's
# wasm32 target emits by default (wasm-opt must be told, or it rejects them).
out=web-demo/pkg/pasid_wasm_bg.wasm
before=$(stat -c %s "$out")
web-demo/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-reference-types \
    --enable-multivalue "$out" -o "$out.opt"
mv "$out.opt" "$out"
echo "wasm-opt: $before -> $(stat -c %s "$out") bytes ($out)"

if [ "${1:-}" = "--build" ]; then
    exit 0
fi
exec node web-demo/serve.mjs "${PORT:-8080}"
