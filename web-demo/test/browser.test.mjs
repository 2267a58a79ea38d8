// The playground in headless Debian Chromium, driven by playwright-core: every preset,
// a migration, the refusals, undo, export, hover, VCMD. Needs web-demo/pkg
// (scripts/play.sh --build) and /usr/bin/chromium (scripts/setup.sh web). The tour,
// maps, walk, controls and loading have their own files; harness.mjs is shared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { SHOTS, preset as presetOn, setUp, timings, xlateRows } from './harness.mjs';

const ctx = setUp({ viewport: { width: 1500, height: 1200 } });
const byId = (id) => ctx.page.getByTestId(id);
const guest = (name) => ctx.page.getByTestId(`guest-${name}`);
const preset = (id) => presetOn(ctx.page, id);
const pageErrors = ctx.errors;

test('the page loads the wasm package without errors', async () => {
  assert.equal(await byId('load-error').count(), 0);
  assert.equal(await byId('host-A').getByRole('heading').first().textContent().then((t) => t.startsWith('Host A')), true);
  assert.deepEqual(pageErrors, []);
});

test('preset p1: SR-IOV only records per-RID PASIDs and shows the refusals', async () => {
  await preset('p1-sriov');
  const vm1 = guest('vm1');
  const vf1 = vm1.getByTestId('device').filter({ hasText: '0000:03:00.1' });
  assert.equal((await vf1.getByTestId('programmed').textContent()).trim(), '1, 2');
  // The preset's intended refusals sit next to the control each one belongs to, and say
  // they were meant.
  assert.equal(await vm1.getByTestId('record-error').getAttribute('data-message'), 'PASID 2 is already in use (code 14 PasidInUse)');
  assert.match(await vm1.getByTestId('record-error').textContent(), /^expected refusal \(vm1 picks PASID 2 on 03:00.1 again\)/);
  assert.match(await vm1.getByTestId('attach-error').getAttribute('data-message'), /^not supported: shared work queues need a p2 guest/);
  assert.match(await vm1.getByTestId('vcmd-error').getAttribute('data-message'), /not supported/);
  assert.match(await byId('add-guest-error-A').getAttribute('data-message'), /p1 host has no shared work queues/);
  // The next step clears them: an error belongs to the last thing done.
  await vm1.getByTestId('record-pasid').fill('3');
  await vm1.getByTestId('record').click();
  assert.equal(await guest('vm1').getByTestId('attach-error').textContent(), '');
  assert.equal(await byId('add-guest-error-A').textContent(), '');
  assert.equal(await vm1.getByTestId('alloc-local').count(), 0, 'a p1 guest has no allocation buttons');
});

test('preset p2: shared WQ + SR-IOV programs gPASID on the VF and hPASID on the WQ', async () => {
  await preset('p2-mixed');
  // What the preset is about shows without hovering.
  assert.match(await byId('preset-note').textContent(), /^p2: shared WQ \+ SR-IOV: Each guest has a VF and a shared WQ/);
  const vm1 = guest('vm1');
  const rows = await xlateRows(vm1);
  assert.deepEqual(rows.map((r) => r.g), [1, 2, 3]);
  assert.equal(rows[0].h, null);
  for (const r of rows.slice(1)) assert.ok(r.h >= 4096 && r.h < 1 << 19);
  const wq = vm1.getByTestId('device').filter({ hasText: 'shared WQ' });
  assert.equal((await wq.getByTestId('programmed').textContent()).trim(), `2→${rows[1].h}, 3→${rows[2].h}`);
  assert.equal(await vm1.getByTestId('bind-error').getAttribute('data-message'), 'PASID 1 is a local PASID, not a shared one (code 16 NotShared)');
  assert.equal(await vm1.getByTestId('free-error').getAttribute('data-message'), 'PASID 2 is still bound to a device (code 17 StillBound)');
});

test('preset p2: quota exhaustion attack is stopped by the quota on host A only', async () => {
  await preset('p2-quota-attack');
  const msg = (name) => guest(name).getByTestId('alloc-error').getAttribute('data-message');
  assert.equal(await msg('attacker'), 'shared PASID quota of 32 reached (code 22 QuotaExceeded)');
  assert.equal((await xlateRows(guest('victim'))).length, 1, 'the victim on host A still got its PASID');
  assert.equal(await msg('attacker-B'), 'no free PASID in the shared range (code 21 SharedRangeExhausted)');
  assert.equal(await msg('victim-B'), 'no free PASID in the shared range (code 21 SharedRangeExhausted)');
  assert.match(await byId('shared-stat-B').textContent(), /in use 64 \/ 64/);
});

test('preset with 350,000 PASIDs renders quickly and the map shows them', async () => {
  await preset('stress');
  const ms = Number(await ctx.page.evaluate(() => document.body.dataset.renderMs));
  console.log(`# render with 350k PASIDs: ${ms} ms`);
  assert.ok(ms < 3000, `render took ${ms} ms`);
  assert.match(await byId('shared-stat-A').textContent(), /in use 300,000 \/ 524,288/);
  assert.match(await guest('bulk1').getByTestId('xlate-table').textContent(), /and 199,800 more/);
  // The shared map is mostly coloured now: sample its pixels.
  const used = await byId('map-A-shared').evaluate((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let coloured = 0;
    for (let i = 0; i < d.length; i += 4) if (!(d[i] === 254 && d[i + 1] === 243 && d[i + 2] === 199)) coloured++;
    return coloured / (d.length / 4);
  });
  assert.ok(used > 0.5 && used < 0.65, `coloured fraction ${used}`);
  await ctx.page.screenshot({ path: `${SHOTS}stress.png`, fullPage: true });
});

test('hovering the map tells which PASIDs are there', async () => {
  await preset('p2-mixed');
  const canvas = byId('map-A-shared');
  const box = await canvas.boundingBox();
  // The map is fitted to the data: one PASID per cell, the first cell is hPASID 4,096.
  assert.equal(await canvas.getAttribute('data-bucket'), '1');
  await ctx.page.mouse.move(box.x + 1, box.y + 1);
  const tip = byId('map-tooltip-A');
  await tip.waitFor({ state: 'visible' });
  const text = await tip.textContent();
  assert.match(text, /PASID 4,096 · shared range/);
  assert.match(text, /vm1: 1 hPASID \(gPASID 2\)/);
  await ctx.page.mouse.move(0, 0);
});

test('migration keeps gPASIDs and remaps hPASIDs into the target shared range', async () => {
  await preset('p2-migration');
  const before = await xlateRows(byId('host-A').getByTestId('guest-vm1'));
  assert.equal(await byId('migrate-guest').inputValue().then((v) => v.startsWith('A:')), true);
  // The preset leaves the user at its next step: the send button is scrolled into view.
  assert.ok(await byId('migrate-go').evaluate((el) => { const r = el.getBoundingClientRect(); return r.top >= 0 && Math.floor(r.bottom) <= innerHeight; }), 'send button in view');
  await byId('migrate-go').click();
  const result = byId('migrate-result');
  await result.waitFor();
  assert.match(await result.textContent(), /vm1 moved from host A to host B/);
  assert.equal(await byId('migrate-kept').textContent(), '✓ every gPASID kept');
  const rows = await byId('migrate-row').evaluateAll((rs) => rs.map((r) => ({ ...r.dataset })));
  assert.equal(rows.length, before.length);
  for (const r of rows) {
    assert.equal(r.gpasidAfter, r.gpasidBefore);
    if (r.hpasidBefore !== '') {
      const h = Number(r.hpasidAfter);
      assert.ok(h >= 4096 && h < 1 << 19, `hPASID ${h} outside host B's shared range`);
      assert.notEqual(r.hpasidAfter, r.hpasidBefore, 'host B had other free PASIDs');
    }
  }
  // The page's own tables agree: vm1 is on host B now with the same gPASIDs.
  assert.equal(await byId('host-A').getByTestId('guest-vm1').count(), 0);
  const moved = await xlateRows(byId('host-B').getByTestId('guest-vm1'));
  assert.deepEqual(moved.map((r) => r.g), before.map((r) => r.g));
  assert.match(await byId('migrate-report').textContent(), /0000:00:0a.0 → 0000:00:0a.0 \(shared WQ\)/);

  // The result is where the user looks: scrolled into view and focused.
  assert.ok(await result.evaluate((el) => { const r = el.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }), 'result in view');
  assert.equal(await ctx.page.evaluate(() => document.activeElement?.dataset.testid), 'migrate-result');
  // Host B's shared map is fitted to its data: vm1's new hPASIDs follow the resident's.
  const map = byId('map-B-shared');
  await map.scrollIntoViewIfNeeded();
  assert.equal(await map.getAttribute('data-lo'), '4096');
  assert.equal(await map.getAttribute('data-bucket'), '1');
  const box = await map.boundingBox();
  const firstNew = Number(rows.find((r) => r.hpasidAfter !== '').hpasidAfter);
  const col = firstNew - 4096;
  const cols = Number(await map.getAttribute('data-cols'));
  const mapRows = Math.ceil((Number(await map.getAttribute('data-hi')) - 4096) / cols);
  await ctx.page.mouse.move(box.x + (((col % cols) + 0.5) / cols) * box.width, box.y + ((Math.floor(col / cols) + 0.5) / mapRows) * box.height);
  const tip = await byId('map-tooltip-B').textContent();
  assert.match(tip, new RegExp(`PASID ${firstNew.toLocaleString('en-US')} · shared range`));
  assert.match(tip, /vm1: 1 hPASID \(gPASID 2\)/);
  await ctx.page.screenshot({ path: `${SHOTS}playground.png`, fullPage: true });

  // Undo puts vm1 back on host A.
  await byId('undo').click();
  assert.deepEqual(await xlateRows(byId('host-A').getByTestId('guest-vm1')), before);
  assert.equal(await byId('host-B').getByTestId('guest-vm1').count(), 0);
});

const REFUSALS = {
  'refuse-p1-target': 'not supported: a p2 guest needs a p2 destination: its vIOMMU offers PASID allocation (code 6 NotSupported)',
  'refuse-quota': 'no free PASID in the shared range (code 21 SharedRangeExhausted)',
  'refuse-small-range': "incompatible layout: the destination's shared range is smaller than the guest's shared PASIDs (code 33 IncompatibleLayout)",
  'refuse-rid-in-use': 'RID 0000:03:00.1 is already attached (code 9 RidInUse)',
  'refuse-rid-kind': "RID kind mismatch: destination RID 0000:00:0a.0 is a dedicated device, but the guest's device mapped to it is a shared WQ device (code 51 DeviceKindMismatch)",
  'refuse-tampered-quota': 'shared PASID quota of 1 reached (code 22 QuotaExceeded)',
  'refuse-corrupt': 'migration blob checksum mismatch (code 31 ChecksumMismatch)',
};

for (const [id, message] of Object.entries(REFUSALS)) {
  test(`a refused import shows the error and leaves the target unchanged: ${id}`, async () => {
    await byId(`refusal-${id}`).click();
    await byId('migrate-refusal').waitFor();
    assert.equal(await byId('migrate-refusal').textContent(), message);
    assert.equal(await byId('migrate-error').textContent(), message);
    assert.equal(await byId('migrate-target-unchanged').textContent(), '✓ host B is unchanged');
    // The result says what was set up, not just what failed.
    assert.match(await byId('migrate-setup').textContent(), /^Set up: /);
    assert.equal(await byId('host-B').getByTestId('guest-vm1').count(), 0);
    assert.equal(await byId('host-A').getByTestId('guest-vm1').count(), 1, 'the source keeps the guest');
    if (id === 'refuse-rid-in-use') await ctx.page.screenshot({ path: `${SHOTS}refused.png`, fullPage: true });
    if (id === 'refuse-rid-kind') {
      // The RID map row shows why: host B's device at 00:0a.0 is a VF.
      assert.equal(await byId('rid-kind-0000:00:0a.0').inputValue(), 'dedicated');
      assert.equal(await byId('rid-kind-0000:03:00.1').inputValue(), 'dedicated');
      await ctx.page.screenshot({ path: `${SHOTS}refused-rid-kind.png`, fullPage: true });
    }
  });
}

test('an unmapped RID is refused by the core, not silently kept', async () => {
  await preset('p2-migration');
  await byId('rid-map-0000:03:00.1').fill('');
  await byId('rid-map-0000:03:00.1').dispatchEvent('change');
  await byId('migrate-go').click();
  assert.equal(await byId('migrate-refusal').textContent(), 'RID 0000:03:00.1 has no destination in the RID map (code 34 RidNotMapped)');
  // A different destination RID works.
  await byId('rid-map-0000:03:00.1').fill('0000:07:00.1');
  await byId('rid-map-0000:03:00.1').dispatchEvent('change');
  await byId('migrate-go').click();
  await byId('migrate-kept').waitFor();
  assert.equal(await byId('host-B').getByTestId('guest-vm1').getByTestId('device').filter({ hasText: '0000:07:00.1' }).count(), 1);
});

test('the destination kind of each RID map row defaults to the source device and is checked', async () => {
  await preset('p2-migration');
  assert.equal(await byId('rid-kind-0000:03:00.1').inputValue(), 'dedicated');
  assert.equal(await byId('rid-kind-0000:00:0a.0').inputValue(), 'shared-wq');
  await byId('rid-kind-0000:03:00.1').selectOption('shared-wq');
  await byId('migrate-go').click();
  assert.equal(await byId('migrate-refusal').textContent(),
    "RID kind mismatch: destination RID 0000:03:00.1 is a shared WQ device, but the guest's device mapped to it is a dedicated device (code 51 DeviceKindMismatch)");
  assert.equal(await byId('migrate-target-unchanged').textContent(), '✓ host B is unchanged');
  await byId('rid-kind-0000:03:00.1').selectOption('dedicated');
  await byId('migrate-go').click();
  await byId('migrate-kept').waitFor();
  assert.equal(await byId('host-B').getByTestId('guest-vm1').count(), 1);
});

test('controls: add a guest and devices by hand, errors next to the control that caused them', async () => {
  await byId('layout-apply-A').click(); // a fresh, empty host A
  await byId('add-guest-quota-A').fill('2');
  await byId('add-guest-A').click();
  const g = byId('host-A').getByTestId('guest-vm1');
  await g.getByTestId('attach-rid').fill('00:0a.0');
  await g.getByTestId('attach-kind').selectOption('shared-wq');
  await g.getByTestId('attach').click();
  await g.getByTestId('attach-rid').fill('not-a-rid');
  await g.getByTestId('attach').click();
  assert.match(await g.getByTestId('attach-error').textContent(), /^RID must look like/);
  for (let i = 0; i < 3; i++) await g.getByTestId('alloc-shared').click();
  assert.equal(await g.getByTestId('alloc-error').textContent(), 'shared PASID quota of 2 reached (code 22 QuotaExceeded)');
  await g.getByTestId('bind-gpasid').fill('2');
  await g.getByTestId('bind').click();
  assert.equal(await g.getByTestId('bind-error').textContent(), '');
  const rows = await xlateRows(g);
  assert.equal((await g.getByTestId('device').getByTestId('programmed').textContent()).trim(), `2→${rows[1].h}`);
  await g.getByTestId('free-gpasid').fill('2');
  await g.getByTestId('free').click();
  assert.equal(await g.getByTestId('free-error').textContent(), 'PASID 2 is still bound to a device (code 17 StillBound)');
  // Layout errors stay next to the layout form, and the host keeps its guests.
  await byId('layout-local-end-A').fill('5000');
  await byId('layout-apply-A').click();
  assert.equal(await byId('layout-error-A').textContent(), 'the local and shared ranges overlap (code 5 RangesOverlap)');
  assert.equal(await byId('host-A').getByTestId('guest-vm1').count(), 1);
});

test('export gives the whole state as a JSON download', async () => {
  await preset('p2-mixed');
  const [download] = await Promise.all([ctx.page.waitForEvent('download'), byId('export').click()]);
  assert.equal(download.suggestedFilename(), 'pasid-playground.json');
  const data = JSON.parse(await readFile(await download.path(), 'utf8'));
  assert.equal(data.hosts.length, 2);
  assert.equal(data.hosts[0].snapshot.guests.length, 2);
  assert.equal(data.hosts[0].snapshot.shared_in_use, 3);
  assert.ok(data.log.some((e) => e.text === 'preset: p2: shared WQ + SR-IOV'));
  assert.match(await byId('export-status').textContent(), /^saved pasid-playground.json \([\d,]+ bytes/);
  assert.equal(await ctx.page.locator('textarea').count(), 0, 'no textarea: 300k PASIDs froze one');
  assert.deepEqual(pageErrors, []);
});

test('after the 350,000-PASID preset, export stays responsive and so does the page', async () => {
  await preset('stress');
  const [download] = await Promise.all([ctx.page.waitForEvent('download', { timeout: 20000 }), byId('export').click()]);
  const size = (await readFile(await download.path())).length;
  const t0 = Date.now();
  await guest('locals').getByTestId('alloc-local').click();
  await guest('locals').getByTestId('alloc-local').click();
  const after = Date.now() - t0;
  const list = await timings(ctx.page);
  const of = (what) => list.filter((t) => t.what === what).map((t) => t.ms);
  console.log(`# 350k preset: preset ${of('preset-stress').at(-1)?.toFixed(0)} ms, export ${of('export').at(-1)?.toFixed(0)} ms (${(size / 1e6).toFixed(1)} MB), alloc after export ${of('alloc-local').slice(-2).map((m) => m.toFixed(0)).join(' / ')} ms (two clicks ${after} ms from the test)`);
  const xlate = await guest('locals').getByTestId('xlate-table').textContent();
  assert.match(xlate, /and 49,802 more/);
  await preset('p2-mixed'); // small again, for the tests after
});

test('the vIOMMU virtual command registers: ALLOC and FREE as raw register values', async () => {
  await preset('p2-mixed');
  const vm2 = guest('vm2');
  assert.equal(await vm2.getByTestId('vccap').textContent(), 'VCCAP@0xe30 = 0x1');
  await vm2.getByTestId('vcmd-write').click(); // ALLOC shared
  assert.match(await guest('vm2').getByTestId('vcmd-result').textContent(),
    /^VCMD@0xe00 ← 0x1; VCRSP@0xe10 → 0x20000 \(IP 0, SC 0: success, PASID 2\)$/);
  assert.equal((await xlateRows(guest('vm2'))).find((r) => r.g === 2).h > 0, true);
  await guest('vm2').getByTestId('vcmd-command').selectOption('free');
  await guest('vm2').getByTestId('vcmd-gpasid').fill('99');
  await guest('vm2').getByTestId('vcmd-write').click();
  assert.match(await guest('vm2').getByTestId('vcmd-result').textContent(), /→ 0x20 \(IP 0, SC 16: invalid PASID\)$/);
  // The command and operand survive the render: writing again frees again.
  assert.equal(await guest('vm2').getByTestId('vcmd-command').inputValue(), 'free');
  assert.equal(await guest('vm2').getByTestId('vcmd-gpasid').inputValue(), '99');
  await guest('vm2').getByTestId('vcmd-write').click();
  assert.match(await guest('vm2').getByTestId('vcmd-result').textContent(), /^VCMD@0xe00 ← 0x630002;.*SC 16: invalid PASID\)$/);
  assert.equal(await guest('vm2').getByTestId('ecap-vcs').textContent(), 'ECAP.VCS (bit 44) = 1');
  assert.match(await guest('vm2').getByTestId('vcmd-command').textContent(), /operand 1: local \(this project's extension\)/);
  // Each guest has its own revision, and the offsets never mix.
  await guest('vm2').getByTestId('vcmd-revision').selectOption('3.0');
  assert.equal(await guest('vm2').getByTestId('vccap').textContent(), 'VCCAP@0xe00 = 0x1');
  assert.equal(await guest('vm2').getByTestId('vcmd-offsets').textContent(), 'VCCAP@0xe00 VCMD@0xe10 VCRSP@0xe20');
  assert.equal(await guest('vm1').getByTestId('vcmd-offsets').textContent(), 'VCMD@0xe00 VCRSP@0xe10 VCCAP@0xe30');
  assert.equal(await guest('vm1').getByTestId('vccap').textContent(), 'VCCAP@0xe30 = 0x1');
  await preset('p1-sriov');
  assert.equal(await guest('vm1').getByTestId('vccap').textContent(), 'VCCAP@0xe30 = 0x0', 'a preset starts at 3.3 again');
  await guest('vm1').getByTestId('vcmd-revision').selectOption('3.0');
  assert.equal(await guest('vm1').getByTestId('vccap').textContent(), 'VCCAP@0xe00 = 0x0');
  await guest('vm1').getByTestId('vcmd-write').click();
  assert.match(await guest('vm1').getByTestId('vcmd-result').textContent(), /SC 1: undefined command\)$/);
});

test('a p1 guest migrates to a p2 host and stays p1, its per-RID PASIDs unchanged', async () => {
  await preset('p1-sriov');
  await byId('layout-platform-B').selectOption('p2');
  await byId('layout-apply-B').click();
  const value = await byId('migrate-guest').locator('option', { hasText: 'vm1 on host A' }).getAttribute('value');
  await byId('migrate-guest').selectOption(value);
  await byId('migrate-go').click();
  await byId('migrate-kept').waitFor();
  assert.match(await byId('migrate-report').textContent(), /^import report: p1 guest \(stays p1 on a p2 host\)/);
  const vm1 = byId('host-B').getByTestId('guest-vm1');
  assert.equal((await vm1.getByTestId('device').filter({ hasText: '0000:03:00.1' }).getByTestId('programmed').textContent()).trim(), '1, 2');
  assert.equal(await vm1.getByTestId('vccap').textContent(), 'VCCAP@0xe30 = 0x0');
});
