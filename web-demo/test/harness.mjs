// What the browser tests share: a server on a free port, headless Debian Chromium via
// playwright-core, helpers to find things by test id, and the interaction timings the
// page records (state.timings), printed as a report, never asserted.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { serve } from '../serve.mjs';

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
    if (ctx.page && load) report(await timings(ctx.page));
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

/**
 * Prints a file's interaction times as `#` lines, for small states (under 10,000 PASIDs:
 * the 100 ms budget) and big ones (the 300,000-PASID preset: its 1 s budget)
 * apart: median, slowest, how many went over, and the slowest controls.
 */
export function report(list) {
  for (const [title, part, budget] of [['small presets', list.filter((t) => t.pasids < 10000), 100], ['300k preset', list.filter((t) => t.pasids >= 10000), 1000]]) {
    if (!part.length) continue;
    const sorted = part.map((t) => t.ms).sort((a, b) => a - b);
    const by = new Map();
    for (const { what, ms } of part) by.set(what, Math.max(by.get(what) ?? 0, ms));
    const worst = [...by].sort((a, b) => b[1] - a[1]);
    console.log(`# interaction times, ${title}: ${part.length} interactions, median ${sorted[sorted.length >> 1].toFixed(0)} ms, slowest ${worst[0][1].toFixed(0)} ms (${worst[0][0]}), over ${budget} ms: ${sorted.filter((m) => m > budget).length}`);
    for (const [what, ms] of worst.slice(0, 4)) console.log(`#   ${what}: ${ms.toFixed(1)} ms`);
  }
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
