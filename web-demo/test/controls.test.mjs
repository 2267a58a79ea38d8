// Every control, driven twice in a row: what the user typed or picked is still there
// after each render, so the second press does the same thing as the first. Enter
// submits a row. A failed attach keeps the typed RID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preset, setUp } from './harness.mjs';

const ctx = setUp();
const byId = (id) => ctx.page.getByTestId(id);
const vm = (name, key = 'A') => byId(`host-${key}`).getByTestId(`guest-${name}`);

/** Sets each field, presses `button` twice, and checks every field kept its value. */
async function twice(scope, fields, button) {
  for (const [id, value] of fields) {
    const el = scope.getByTestId(id);
    if (await el.evaluate((e) => e.tagName === 'SELECT')) await el.selectOption(value);
    else await el.fill(value);
  }
  const errors = [];
  for (let round = 0; round < 2; round++) {
    await scope.getByTestId(button).click();
    for (const [id, value] of fields) assert.equal(await scope.getByTestId(id).inputValue(), value, `${button} #${round + 1}: ${id} kept`);
    errors.push(await scope.getByTestId(button).evaluate((b) => b.closest('[data-scope]')?.querySelector('[role="alert"]')?.textContent ?? ''));
  }
  return errors;
}

test('guest controls keep their fields through two presses each', async () => {
  await preset(ctx.page, 'p2-mixed');
  // VCMD: FREE 3 twice: the first frees (after unbind), the second is refused as invalid.
  let errs = await twice(vm('vm1'), [['bind-gpasid', '3'], ['bind-device', '0000:00:0a.0']], 'unbind');
  assert.equal(errs[0], '');
  assert.match(errs[1], /not bound/);
  errs = await twice(vm('vm1'), [['vcmd-command', 'free'], ['vcmd-gpasid', '3']], 'vcmd-write');
  assert.match(await vm('vm1').getByTestId('vcmd-result').textContent(), /SC 16: invalid PASID/, 'the second FREE of 3 finds nothing');
  errs = await twice(vm('vm1'), [['vcmd-command', 'alloc-local']], 'vcmd-write');
  assert.match(await vm('vm1').getByTestId('vcmd-result').textContent(), /SC 0: success, PASID \d+/);
  errs = await twice(vm('vm1'), [['bind-gpasid', '2'], ['bind-device', '0000:00:0a.0']], 'bind');
  assert.match(errs[1], /already bound/);
  errs = await twice(vm('vm1'), [['free-gpasid', '2']], 'free');
  assert.match(errs[0], /still bound/);
  // vm1 has 03:00.1 as a VF: the same use again is refused both times...
  errs = await twice(vm('vm1'), [['attach-rid', '0000:03:00.1'], ['attach-kind', 'dedicated']], 'attach');
  assert.match(errs[0], /already attached/);
  assert.match(errs[1], /already attached/);
  // ...a shared WQ on the same function is a second use (a mixed RID), once.
  // (A success offers a free RID next, so this one is typed in twice.)
  for (const round of [0, 1]) {
    await vm('vm1').getByTestId('attach-rid').fill('0000:03:00.1');
    await vm('vm1').getByTestId('attach-kind').selectOption('shared-wq');
    await vm('vm1').getByTestId('attach').click();
    const err = await vm('vm1').getByTestId('attach-error').textContent();
    if (round === 0) assert.equal(err, '');
    else assert.match(err, /already attached/);
  }
  const uses = await vm('vm1').getByTestId('device').filter({ hasText: '0000:03:00.1' }).evaluateAll((rows) => rows.map((r) => r.dataset.kind));
  assert.deepEqual(uses, ['Dedicated', 'SharedWq']);
  // vm2 has 03:00.2 as its VF: vm1 cannot have it dedicated too.
  errs = await twice(vm('vm1'), [['attach-rid', '0000:03:00.2'], ['attach-kind', 'dedicated']], 'attach');
  assert.match(errs[0], /already attached/);
  assert.match(errs[1], /already attached/);
  // The revision select is per guest and survives other guests' renders.
  await vm('vm2').getByTestId('vcmd-revision').selectOption('3.0');
  await vm('vm1').getByTestId('alloc-shared').click();
  await vm('vm1').getByTestId('alloc-shared').click();
  assert.equal(await vm('vm2').getByTestId('vcmd-revision').inputValue(), '3.0');
  assert.equal(await vm('vm1').getByTestId('vcmd-revision').inputValue(), '3.3');
});

test('host controls, p1 record, migration and walk controls keep their state', async () => {
  await preset(ctx.page, 'p1-sriov');
  let errs = await twice(vm('vm1'), [['record-device', '0000:03:00.2'], ['record-pasid', '9']], 'record');
  assert.equal(errs[0], '');
  assert.match(errs[1], /already in use/);
  errs = await twice(vm('vm1'), [['record-device', '0000:03:00.2'], ['record-pasid', '9']], 'release');
  assert.equal(errs[0], '');
  errs = await twice(byId('host-B'), [['add-guest-platform-B', 'p1'], ['add-guest-quota-B', '5']], 'add-guest-B');
  assert.equal(await byId('host-B').locator('section.guest').count(), 2);
  errs = await twice(byId('host-B'), [['layout-platform-B', 'p2'], ['layout-local-end-B', '5000']], 'layout-apply-B');
  assert.match(errs[0], /overlap/);
  assert.match(errs[1], /overlap/);
  assert.equal(await byId('host-B').locator('section.guest').count(), 2, 'a refused layout keeps the host');
  // Migration: the guest pick and the RID map survive a failed send.
  await preset(ctx.page, 'p2-migration');
  await byId('rid-map-0000:03:00.1').fill('zz');
  await byId('rid-map-0000:03:00.1').dispatchEvent('change');
  for (let i = 0; i < 2; i++) {
    await byId('migrate-go').click();
    assert.match(await byId('migrate-error').textContent(), /RID must look like/);
    assert.equal(await byId('rid-map-0000:03:00.1').inputValue(), 'zz');
    assert.match(await byId('migrate-guest').inputValue(), /^A:/);
  }
  // Walk: guest and gPASID stay through renders caused elsewhere.
  await byId('walk-gpasid').fill('3');
  await byId('walk-go').click();
  await vm('resident', 'B').getByTestId('alloc-local').click();
  await vm('resident', 'B').getByTestId('alloc-local').click();
  assert.equal(await byId('walk-gpasid').inputValue(), '3');
});

test('a failed attach keeps the typed RID; Enter submits a row and keeps focus', async () => {
  await preset(ctx.page, 'p2-mixed');
  const rid = vm('vm2').getByTestId('attach-rid');
  await rid.fill('00:99.0');
  await rid.press('Enter');
  assert.match(await vm('vm2').getByTestId('attach-error').textContent(), /^RID must look like/);
  assert.equal(await vm('vm2').getByTestId('attach-rid').inputValue(), '00:99.0');
  assert.equal(await ctx.page.evaluate(() => document.activeElement?.dataset.testid), 'attach-rid', 'focus stays in the field');
  await vm('vm2').getByTestId('attach-rid').fill('00:19.0');
  await vm('vm2').getByTestId('attach-rid').press('Enter');
  assert.equal(await vm('vm2').getByTestId('device').filter({ hasText: '0000:00:19.0' }).count(), 1);
  assert.notEqual(await vm('vm2').getByTestId('attach-rid').inputValue(), '00:19.0', 'after a success it offers a free RID');
  await vm('vm2').getByTestId('free-gpasid').fill('1');
  await vm('vm2').getByTestId('free-gpasid').press('Enter');
  assert.match(await vm('vm2').getByTestId('free-error').textContent(), /still bound/);
  assert.deepEqual(ctx.errors, []);
});

test('every button without fields, pressed twice in a row: both presses work, typed fields stay', async () => {
  await preset(ctx.page, 'p2-shared-wq');
  await byId('machine-setup').click();
  // What the user typed: it must survive every press below (renders rebuild the rows).
  const typed = [[vm('vm1'), 'free-gpasid', '2'], [vm('vm1'), 'bind-gpasid', '1'], [vm('vm2'), 'attach-rid', '0000:05:00.1'],
    [byId('host-B'), 'add-guest-quota-B', '7'], [byId('walk'), 'walk-gpasid', '1']];
  for (const [scope, id, value] of typed) await scope.getByTestId(id).fill(value);
  const expectTyped = async (after) => {
    for (const [scope, id, value] of typed) assert.equal(await scope.getByTestId(id).inputValue(), value, `${after}: ${id} kept`);
  };
  const clock = async () => Number(await byId('broker-clock').getAttribute('data-now'));
  const vmsOf = (name) => byId(`vmm-${name}`).getByTestId('machine-guest').count();
  const buttons = [
    // [what, the button, a check after each press (round 0 or 1)]
    ['map whole range', () => byId('map-A-shared-whole'), async () => assert.equal(await byId('map-A-shared-whole').getAttribute('aria-pressed'), 'true')],
    ['map fit', () => byId('map-A-shared-fit'), async () => assert.equal(await byId('map-A-shared-fit').getAttribute('aria-pressed'), 'true')],
    ['walk', () => byId('walk-go'), async () => assert.equal(await byId('walk-error').count(), 0)],
    ['alloc local', () => vm('vm3').getByTestId('alloc-local'), async (r) => assert.equal((await vm('vm3').getByTestId('xlate-row').count()), 2 + r)],
    ['time passes', () => byId('broker-tick'), async (r) => assert.equal(await clock(), 30000 * (r + 1))],
    ['start a VM', () => byId('vmm-qemu-2').getByTestId('vmm-add-guest'), async (r) => assert.equal(await vmsOf('qemu-2'), 3 + r)],
    ['a VM shuts down', () => byId('vmm-qemu-2').getByTestId('vmm-stop-guest'), async (r) => assert.equal(await vmsOf('qemu-2'), 3 - r)],
    ['teardown done', () => byId('vmm-qemu-2').getByTestId('vmm-teardown'), async () => assert.equal(await byId('vmm-qemu-2').getByTestId('vmm-draining').count(), 0)],
    ['start another VMM', () => byId('machine-add-vmm'), async (r) => assert.equal(await byId(`vmm-qemu-${3 + r}`).count(), 1)],
    ['restart the broker', () => byId('broker-restart'), async () => assert.match(await byId('broker-leases').textContent(), /unconfirmed/)],
    ['a VMM crashes', () => byId('vmm-qemu-1').getByTestId('vmm-crash').or(byId('vmm-qemu-3').getByTestId('vmm-crash')).first(),
      async (r) => assert.equal(await ctx.page.locator('.vmm.crashed').count(), r + 1)],
    ['confirm one teardown', () => byId('teardown-one').first(), async () => assert.equal(await byId('host-A').getByTestId('draining-item').count(), 0)],
    ['export', () => byId('export'), async () => assert.match(await byId('export-status').textContent(), /^saved pasid-playground\.json/)],
    ['undo', () => byId('undo'), async () => assert.match(await ctx.page.getByTestId('log-entry').last().textContent(), /undo: /)],
  ];
  for (const [what, button, check] of buttons) {
    for (let round = 0; round < 2; round++) {
      const el = button();
      if (round === 1 && (await el.count() === 0 || await el.isDisabled())) break; // a one-shot (the last teardown)
      await el.click();
      await check(round);
      await expectTyped(`${what} #${round + 1}`);
      assert.equal(await byId('preset-error').textContent(), '', `${what} #${round + 1}: no page error`);
    }
  }
  assert.deepEqual(ctx.errors, []);
});
