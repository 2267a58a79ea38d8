// The maps show the data: each preset's allocations are coloured at the cells they
// belong to (pixels read back from the canvases), fitted to where they are and fitted
// again after a preset, in colours that never suggest a host PASID of two guests; and
// the maps work from the keyboard, for screen readers and by tap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cellColour, preset, rgbOf, setUp } from './harness.mjs';

const ctx = setUp();
const byId = (id) => ctx.page.getByTestId(id);
const SEVERAL = [71, 85, 105];
const LOCAL_FREE = [219, 234, 254];
const SHARED_FREE = [254, 243, 199];

/** Guest name -> [r, g, b] as the page coloured it. */
async function colours() {
  const hexes = await ctx.page.evaluate(async () => {
    const { PALETTE } = await import('./js/format.js');
    const { state } = window.pasidPlayground;
    return Object.fromEntries(Object.entries(state.colours).map(([n, i]) => [n, PALETTE[i]]));
  });
  return Object.fromEntries(Object.entries(hexes).map(([n, h]) => [n, rgbOf(h)]));
}

async function expectCell(testid, pasid, rgb, why) {
  const c = await cellColour(ctx.page, testid, pasid);
  assert.ok(!c.outside, `${testid}: PASID ${pasid} is outside the window ${c.lo}..${c.hi} (${why})`);
  assert.deepEqual(c.rgb, rgb, `${testid}: PASID ${pasid}: ${why}`);
}

test('p1: the local map shows each guest\'s numbers, grey where several guests use one', async () => {
  await preset(ctx.page, 'p1-sriov');
  const c = await colours();
  assert.equal(await byId('map-A-local').getAttribute('data-bucket'), '1', 'fitted: one PASID per cell');
  await expectCell('map-A-local', 1, SEVERAL, 'vm1 and vm2 both use 1, each on its own VF');
  await expectCell('map-A-local', 2, c.vm1, 'vm1 alone uses 2');
  await expectCell('map-A-local', 7, c.vm2, 'vm2 alone uses 7');
  await expectCell('map-A-local', 8, LOCAL_FREE, 'free');
});

test('p2: the shared map colours each host PASID by its one owner', async () => {
  await preset(ctx.page, 'p2-mixed');
  const c = await colours();
  assert.equal(await byId('map-A-shared').getAttribute('data-lo'), '4096');
  await expectCell('map-A-shared', 4096, c.vm1, 'vm1 holds hPASID 4096');
  await expectCell('map-A-shared', 4097, c.vm1, 'vm1 holds hPASID 4097');
  await expectCell('map-A-shared', 4098, c.vm2, 'vm2 holds hPASID 4098');
  await expectCell('map-A-shared', 4099, SHARED_FREE, 'free');
  await expectCell('map-A-local', 1, SEVERAL, 'both guests have gPASID 1');
  await expectCell('map-A-local', 3, c.vm1, 'only vm1 has gPASID 3');
  // The legend names grey as a local-range thing only.
  assert.match(await byId('map-legend-A').textContent(), /local: one number in several guests, each its own/);
  assert.match(await byId('map-legend-A').textContent(), /a host PASID is never shared/);
});

test('300,000 shared PASIDs: every shared cell has one owner colour, never grey', async () => {
  await preset(ctx.page, 'stress');
  const c = await colours();
  const counts = await byId('map-A-shared').evaluate((cv, [several, free]) => {
    const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    let grey = 0;
    let used = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] === several[0] && d[i + 1] === several[1] && d[i + 2] === several[2]) grey++;
      if (!(d[i] === free[0] && d[i + 1] === free[1] && d[i + 2] === free[2])) used++;
    }
    return { grey, used: used / (d.length / 4) };
  }, [SEVERAL, SHARED_FREE]);
  assert.equal(counts.grey, 0);
  assert.ok(counts.used > 0.5 && counts.used < 0.65, `coloured fraction ${counts.used}`);
  // bulk1's 200,000 hPASIDs come first: the first cell is wholly bulk1's.
  await expectCell('map-A-shared', 1 << 19, c.bulk1, 'bulk1 holds the first hPASIDs');
});

test('the keyboard moves a cursor over a map, zooms in and out; a preset fits the map again', async () => {
  const { page } = ctx;
  // Still the 300k preset: one cell is 128 PASIDs; Enter zooms to 4,096, one per cell.
  const map = byId('map-A-shared');
  await map.focus();
  await page.keyboard.press('ArrowRight'); // the first key picks the first cell
  assert.match(await byId('map-cell-A').textContent(), /^PASIDs 524,288–524,415 · shared range; bulk1: 128 hPASIDs/);
  assert.equal(await byId('map-tooltip-A').isVisible(), true, 'the tooltip follows the keyboard cursor');
  await page.keyboard.press('ArrowRight');
  assert.match(await byId('map-cell-A').textContent(), /^PASIDs 524,416–524,543 · shared range; bulk1: 128 hPASIDs/);
  await page.keyboard.press('Enter');
  assert.equal(await byId('map-A-shared').getAttribute('data-bucket'), '1');
  assert.match(await byId('host-A').locator('[data-scale="shared"]').textContent(), /\(zoomed\)/);
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'map-A-shared', 'focus stays on the map');
  await page.keyboard.press('Escape');
  assert.doesNotMatch(await byId('host-A').locator('[data-scale="shared"]').textContent(), /zoomed/);
  await page.keyboard.press('Enter');
  assert.match(await byId('host-A').locator('[data-scale="shared"]').textContent(), /\(zoomed\)/);
  // A preset resets every map to fit its own data.
  await preset(page, 'p2-mixed');
  assert.equal(await byId('map-A-shared').getAttribute('data-lo'), '4096');
  assert.doesNotMatch(await byId('host-A').locator('[data-scale="shared"]').textContent(), /zoomed/);
  // Screen readers get a summary of what the map holds.
  assert.match(await byId('map-A-shared').getAttribute('aria-label'), /shared range map.*vm1 2, vm2 1/);
  assert.equal(await byId('map-A-shared').getAttribute('tabindex'), '0');
  // "whole range" and back.
  await byId('map-A-shared-whole').click();
  assert.equal(await byId('map-A-shared').getAttribute('data-lo'), '4096');
  assert.equal(await byId('map-A-shared').getAttribute('data-hi'), String(1 << 19));
  await byId('map-A-shared-fit').click();
  assert.equal(await byId('map-A-shared').getAttribute('data-bucket'), '1');
});

test('a tap on a map shows the tooltip of the cell tapped', async () => {
  const context = await ctx.browser.newContext({ hasTouch: true, viewport: { width: 800, height: 900 } });
  const page = await context.newPage();
  await page.goto(ctx.url);
  await page.waitForSelector('body[data-ready="true"]');
  await page.getByTestId('preset-p2-mixed').click();
  const map = page.getByTestId('map-A-shared');
  await map.scrollIntoViewIfNeeded();
  const box = await map.boundingBox();
  const cols = Number(await map.getAttribute('data-cols'));
  const rows = Math.ceil((Number(await map.getAttribute('data-hi')) - 4096) / cols);
  await page.touchscreen.tap(box.x + (2.5 / cols) * box.width, box.y + (0.5 / rows) * box.height);
  const tip = page.getByTestId('map-tooltip-A');
  await tip.waitFor({ state: 'visible' });
  assert.match(await tip.textContent(), /PASID 4,098 · shared range.*vm2: 1 hPASID \(gPASID 1\)/);
  await context.close();
});
