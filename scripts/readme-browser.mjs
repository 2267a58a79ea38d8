// Runs one JavaScript file of web-demo/ (a README block saved there by
// scripts/test-readme.sh) as a module script of a page in headless Chromium, the way
// a page served from web-demo/ loads it, and prints what it logged, one line per
// console.log, as Node would. Exits 1 on a page error or a thrown error.
//
//   node scripts/readme-browser.mjs web-demo/.readme-block-N.mjs
//
// Needs playwright-core in web-demo/node_modules and Chromium (scripts/setup.sh web);
// CHROMIUM names another browser binary.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, extname, join, resolve } from 'node:path';

const file = resolve(process.argv[2]);
const root = resolve(new URL('../web-demo/', import.meta.url).pathname);
const require = createRequire(join(root, 'package.json'));
const { chromium } = require('playwright-core');
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };
const origin = 'http://readme.test';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
let status = 0;
try {
  const page = await browser.newPage();
  const lines = [];
  page.on('console', (m) => (m.type() === 'error' ? console.error(m.text()) : lines.push(m.text())));
  page.on('pageerror', (e) => {
    console.error(`page error: ${e.message}`);
    status = 1;
  });
  // Serves web-demo/ (no server process): the page, then the block and the package.
  await page.route(`${origin}/**`, async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/') {
      return route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>README block</title>' });
    }
    try {
      const body = await readFile(join(root, path));
      return route.fulfill({ contentType: types[extname(path)] ?? 'application/octet-stream', body });
    } catch {
      return route.fulfill({ status: 404, body: 'not found' });
    }
  });
  await page.goto(`${origin}/`);
  const outcome = await page.evaluate(async (src) => {
    try {
      await import(src);
      return 'ok';
    } catch (e) {
      return `${e?.name}: ${e?.message}`;
    }
  }, `/${basename(file)}`);
  if (outcome !== 'ok') {
    console.error(`the block threw: ${outcome}`);
    status = 1;
  }
  for (const line of lines) console.log(line);
} finally {
  await browser.close();
}
process.exit(status);
