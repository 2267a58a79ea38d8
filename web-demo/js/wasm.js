// The wasm package, loaded on demand so that a missing build is an error the page can
// explain (a static import would stop every script before any handler runs).

/** The package's exports (`Host`, `walk`, ...), once `loadWasm` has resolved. */
export let wasm = null;

/** Why the package could not be loaded, in words for the person at the page. */
export class LoadError extends Error {
  name = 'LoadError';
}

export async function loadWasm() {
  const url = new URL('../pkg/pasid_wasm.js', import.meta.url);
  let module;
  try {
    module = await import(url.href);
  } catch (e) {
    const found = await fetch(url, { method: 'HEAD' }).then((r) => r.ok, () => false);
    throw new LoadError(found
      ? `the WebAssembly package failed to load (${e.message})`
      : 'the WebAssembly package is not built (web-demo/pkg/pasid_wasm.js is missing). Build it with scripts/play.sh --build, or run scripts/play.sh to build and serve');
  }
  await module.default();
  wasm = module;
  return module;
}
