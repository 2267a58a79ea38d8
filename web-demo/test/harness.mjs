// What the browser tests share: a server on a free port, headless Debian Chromium via
// playwright-core, helpers to find things by test id, and the interaction timings the
// page records (state.timings), printed as a report, never asserted.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync } from 'node:fs';
import { basename } from 'node:path';
import { chromium } from 'playwright-core';
import { serve } from '../serve.mjs';
import { report, TIMINGS } from './timings.mjs';

export const SHOTS = new URL('../screenshots/', import.meta.url).pathname;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Starts the server and the browser for one test file; `ctx.page` is a fresh page on
 * the playground, `ctx.errors` collects page errors. `viewport` defaults to 1440x900.
 */
export function setUp({ viewport = { width: 1440, height: 900 }, load = true } = {}) {
  const ctx = { errors: [], timings: [] };
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    ctx.server = await serve(0);
    ctx.url = `http://127.0.0.1:${ctx.server.address().port}/`;
    ctx.browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
    ctx.page = await ctx.browser.newPage({ viewport, acceptDownloads: true });
    ctx.page.on('pageerror', (e) => ctx.errors.push(e.message));
    ctx.page.on('console', (m) => {
      if (m.type() === 'error') ctx.errors.push(m.text());
    });
    if (load) await open(ctx.page, ctx.url);
  });
  after(async () => {
    if (ctx.page && load) {
      const list = await timings(ctx.page);
      report(list);
      // For the whole run's report (test/timings.mjs, which scripts/test-web.sh prints).
      const file = basename(process.argv[1] ?? 'unknown');
      appendFileSync(TIMINGS, list.map((t) => `${JSON.stringify({ file, ...t })}\n`).join(''));
    }
    await ctx.browser?.close();
    ctx.server?.close();
  });
  return ctx;
}

export async function open(page, url) {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
}

/** The page's recorded interactions: [{ what, ms }] (click until the next frame). */
export async function timings(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
  return page.evaluate(() => window.pasidPlayground?.state.timings ?? []);
}

export const byId = (page, id) => page.getByTestId(id);

export async function preset(page, id) {
  await page.getByTestId(`preset-${id}`).click();
  assert.equal(await page.getByTestId('preset-error').textContent(), '');
  const last = page.getByTestId('log-entry').filter({ hasText: 'preset:' }).last();
  assert.match(await last.getAttribute('class'), /\bok\b/, await last.textContent());
}

/** [{ g, h }] of a guest card's translation table. */
export async function xlateRows(card) {
  return card.getByTestId('xlate-row').evaluateAll((rows) => rows.map((r) => ({ g: Number(r.dataset.gpasid), h: r.dataset.hpasid === '' ? null : Number(r.dataset.hpasid) })));
}

/**
 * The colour of the map cell that holds `pasid` ([r, g, b]), and the map's layout, read
 * from the canvas itself: which cell a PASID lands in is the canvas's data-lo, -bucket
 * and -cols.
 */
export async function cellColour(page, testid, pasid) {
  return page.getByTestId(testid).evaluate((c, p) => {
    const lo = Number(c.dataset.lo);
    const hi = Number(c.dataset.hi);
    const bucket = Number(c.dataset.bucket);
    const cols = Number(c.dataset.cols);
    if (p < lo || p >= hi) return { outside: true, lo, hi };
    const cell = Math.floor((p - lo) / bucket);
    const d = c.getContext('2d').getImageData(cell % cols, Math.floor(cell / cols), 1, 1).data;
    return { rgb: [d[0], d[1], d[2]], lo, hi, bucket };
  }, pasid);
}

export function rgbOf(hexColour) {
  const v = parseInt(hexColour.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}
