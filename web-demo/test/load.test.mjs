// Starting the playground the wrong way gives a message, not a blank page: no wasm
// build, index.html opened from disk, a busy port. And the page at 800 px wide: no
// sideways scrolling, the tour readable. Plus what the server sends (compressed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { get } from 'node:http';
import { gunzipSync, brotliDecompressSync } from 'node:zlib';
import { SHOTS, open, preset, setUp } from './harness.mjs';
import { serve } from '../serve.mjs';

const ctx = setUp({ viewport: { width: 800, height: 1000 }, load: false });
const demo = fileURLToPath(new URL('..', import.meta.url));

test('without a wasm build the page says how to build it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pasid-nobuild-'));
  for (const f of ['index.html', 'style.css', 'js']) cpSync(join(demo, f), join(dir, f), { recursive: true });
  const server = await serve(0, '127.0.0.1', dir);
  try {
    await ctx.page.goto(`http://127.0.0.1:${server.address().port}/`);
    const msg = ctx.page.getByTestId('load-error');
    await msg.waitFor();
    assert.match(await msg.textContent(), /not built .*scripts\/play\.sh/);
    assert.equal(await msg.getAttribute('role'), 'alert');
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('opened from disk (file://) the page says to serve it', async () => {
  await ctx.page.goto(`file://${join(demo, 'index.html')}`);
  const msg = ctx.page.getByTestId('load-error');
  await msg.waitFor();
  assert.match(await msg.textContent(), /opened from disk \(file:\/\/\).*scripts\/play\.sh/);
});

test('a busy port gives one clear line, not a stack trace', async () => {
  const taken = await serve(0);
  try {
    const port = taken.address().port;
    const run = spawnSync(process.execPath, [join(demo, 'serve.mjs'), String(port)], { encoding: 'utf8', timeout: 10000 });
    assert.equal(run.status, 1);
    assert.match(run.stderr, new RegExp(`^serve: port ${port} is already in use.*PORT=${port + 1} scripts/play\\.sh\\n$`));
  } finally {
    taken.close();
  }
});

/** GET with an Accept-Encoding, the body as sent (not decoded). */
function rawGet(url, encoding) {
  return new Promise((resolve, reject) => {
    get(url, { headers: { 'accept-encoding': encoding } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

test('the server compresses text and wasm', async () => {
  const server = await serve(0);
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    for (const [path, enc, unpack] of [['/pkg/pasid_wasm_bg.wasm', 'br', brotliDecompressSync], ['/js/view.js', 'gzip', gunzipSync]]) {
      const plain = await rawGet(base + path, 'identity');
      const packed = await rawGet(base + path, enc);
      assert.equal(plain.headers['content-encoding'], undefined);
      assert.equal(packed.headers['content-encoding'], enc);
      assert.ok(unpack(packed.body).equals(plain.body), `${path}: the compressed bytes are the file`);
      console.log(`# ${path}: ${plain.body.length} bytes, ${packed.body.length} with ${enc}`);
    }
  } finally {
    server.close();
  }
});

test('at 800 px wide nothing scrolls sideways and the tour still reads', async () => {
  const { page } = ctx;
  await open(page, ctx.url);
  for (const id of ['p2-mixed', 'p2-migration', 'p2-shared-wq']) {
    await preset(page, id);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 800, `${id}: page is ${wide} px wide`);
  }
  // The machine with three VMMs, one crashed: still no sideways scrolling.
  await page.getByTestId('machine-setup').click();
  await page.getByTestId('machine-add-vmm').click();
  await page.getByTestId('vmm-qemu-1').getByTestId('vmm-crash').click();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 800, `machine: page is ${wide} px wide`);
  await page.getByTestId('tour-start').click();
  await page.getByTestId('tour-next').click();
  await page.getByTestId('tour-next').click();
  const tour = await page.getByTestId('tour').boundingBox();
  assert.ok(tour.width <= 800 && tour.height < 450, `tour panel ${tour.width}x${tour.height}`);
  await page.screenshot({ path: `${SHOTS}narrow-tour.png` });
  assert.deepEqual(ctx.errors.filter((e) => !/Failed to load resource|file:/.test(e)), []);
});
