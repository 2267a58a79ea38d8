// A tiny static server for the playground (localhost only); used by scripts/play.sh and
// by the browser test. `node serve.mjs [port]`; port 0 picks a free one.
//
// Text and wasm go out compressed (brotli, else gzip, as the browser accepts), each
// file compressed once and kept until it changes on disk.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));
// The repository's Markdown docs the page links to (docs/broker.md), read-only, as text.
const docs = join(root, '..', 'docs');
const types = {
  '.md': 'text/plain; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};
const COMPRESSIBLE = new Set(['.md', '.html', '.js', '.mjs', '.css', '.json', '.wasm', '.svg']);
const cache = new Map(); // `${file}:${encoding}` -> { mtime, body }

function pickEncoding(accept = '') {
  if (/\bbr\b/.test(accept)) return 'br';
  if (/\bgzip\b/.test(accept)) return 'gzip';
  return null;
}

async function body(file, encoding) {
  const { mtimeMs } = await stat(file);
  const key = `${file}:${encoding}`;
  const hit = cache.get(key);
  if (hit && hit.mtime === mtimeMs) return hit.body;
  const raw = await readFile(file);
  const out = encoding === 'br'
    ? brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 9, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length } })
    : encoding === 'gzip' ? gzipSync(raw, { level: 9 }) : raw;
  cache.set(key, { mtime: mtimeMs, body: out });
  return out;
}

/** Serves `dir` (this directory by default) on `host:port`; resolves to the server. */
export function serve(port = 0, host = '127.0.0.1', dir = root) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const doc = dir === root && path.startsWith('/docs/') && extname(path) === '.md';
    const base = doc ? docs : dir;
    const file = doc ? join(docs, path.slice('/docs/'.length)) : join(dir, path.endsWith('/') ? path + 'index.html' : path);
    if (!file.startsWith(base + sep) || file.includes('node_modules')) {
      res.writeHead(403).end();
      return;
    }
    const ext = extname(file);
    const encoding = COMPRESSIBLE.has(ext) ? pickEncoding(req.headers['accept-encoding']) : null;
    try {
      const data = await body(file, encoding);
      res.writeHead(200, {
        'content-type': types[ext] ?? 'application/octet-stream',
        'cache-control': 'no-store',
        vary: 'accept-encoding',
        ...(encoding ? { 'content-encoding': encoding } : {}),
        'content-length': data.length,
      });
      res.end(req.method === 'HEAD' ? undefined : data);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wanted = Number(process.argv[2] ?? 8080);
  try {
    const server = await serve(wanted);
    const { port } = server.address();
    console.log(`pasid playground: http://127.0.0.1:${port}/`);
  } catch (e) {
    if (e.code === 'EADDRINUSE') {
      console.error(`serve: port ${wanted} is already in use (another playground or server?). Pick another: PORT=${wanted + 1} scripts/play.sh`);
    } else if (e.code === 'EACCES') {
      console.error(`serve: no permission to listen on port ${wanted}. Pick a port above 1024: PORT=8080 scripts/play.sh`);
    } else {
      console.error(`serve: cannot listen on port ${wanted}: ${e.message}`);
    }
    process.exit(1);
  }
}
