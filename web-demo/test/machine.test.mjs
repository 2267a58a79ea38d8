// One machine, several VMM processes (issue 13, part 4), on the simulated broker (the
// daemon's own lease state machine, through the wasm Broker): two VMMs' host PASIDs
// never collide (map cells by VMM), each lease keeps spares (lighter cells); a VMM that
// crashes leaves its host PASIDs quarantined until a deadline, out of every other VMM's
// reach, and "time passes" frees them; a broker restart leaves the leases unconfirmed
// until each VMM's next call reclaims its lease.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SHOTS, cellColour, rgbOf, setUp } from './harness.mjs';

const ctx = setUp();
const byId = (id) => ctx.page.getByTestId(id);
const DRAINING = [120, 53, 15];
const QUARANTINED = [91, 33, 182];
const FREE = [254, 243, 199];
const lighter = (c) => c.map((v) => Math.round(v * 0.35 + 255 * 0.65));

/** hPASIDs of each VM as its VMM shows them: { vm1a: [4096, 4097], ... }. */
async function vms() {
  const rows = await byId('machine').getByTestId('machine-guest').evaluateAll((els) => els.map((e) => [e.dataset.guest, e.dataset.hpasids]));
  return Object.fromEntries(rows.map(([g, h]) => [g, h ? h.split(' ').map(Number) : []]));
}

async function vmmColour(name) {
  return rgbOf(await ctx.page.evaluate(async (n) => {
    const { PALETTE } = await import('./js/format.js');
    return PALETTE[window.pasidPlayground.state.colours[n]];
  }, name));
}

async function expectCell(pasid, rgb, why) {
  const c = await cellColour(ctx.page, 'map-machine', pasid);
  assert.ok(!c.outside, `PASID ${pasid} outside ${c.lo}..${c.hi}`);
  assert.equal(c.bucket, 1, 'one host PASID per cell');
  assert.deepEqual(c.rgb, rgb, `machine map, PASID ${pasid}: ${why}`);
}

const used = async () => Number(await byId('machine-stat').getAttribute('data-used'));
const totals = async () => {
  const t = byId('broker-totals');
  const out = {};
  for (const k of ['free', 'held', 'spare', 'quarantined', 'leases']) out[k] = Number(await t.getAttribute(`data-${k}`));
  return out;
};
const vmm = (name, id) => byId(`vmm-${name}`).getByTestId(id);
/** The broker's own counters, read from the page's wasm Broker. */
const brokerCounters = () => ctx.page.evaluate(() => {
  const b = window.pasidPlayground.state.machine.broker;
  return { calls: b.calls, records: b.opsTotal };
});
/** What the machine panel says the last step made the broker do. */
const stepWork = async () => {
  const el = byId('broker-ops');
  return { calls: Number(await attr(el, 'calls')), records: Number(await attr(el, 'records')), total: Number(await attr(el, 'total')) };
};
const attr = (loc, a) => loc.getAttribute(`data-${a}`);
/** The broker's leases as listed: [{ vmm, state, until }]. */
const leases = () => byId('broker-leases').getByTestId('broker-lease').evaluateAll((els) => els.map((e) => ({ vmm: e.dataset.vmm, state: e.dataset.state, until: e.dataset.until })));

test('two VMMs on one machine: host PASIDs from their leases never collide, and each lease keeps spares', async () => {
  await byId('machine-setup').click();
  const v = await vms();
  // A grant is the lowest of the lease's own spares: the leases take turns in blocks of three.
  assert.deepEqual(v, { vm1a: [4096, 4097], vm1b: [4098, 4102], vm2a: [4099, 4100], vm2b: [4101, 4105] });
  const all = Object.values(v).flat();
  assert.equal(new Set(all).size, all.length, 'no host PASID in two VMs');
  assert.equal(await used(), 12);
  assert.deepEqual(await totals(), { free: 500, held: 8, spare: 4, quarantined: 0, leases: 2 });
  assert.equal(await vmm('qemu-1', 'vmm-in-use').getAttribute('data-count'), '4');
  assert.equal(await attr(vmm('qemu-1', 'vmm-spares'), 'hpasids'), '4103 4104');
  assert.equal(await attr(vmm('qemu-2', 'vmm-spares'), 'count'), '2');
  assert.equal(await attr(vmm('qemu-1', 'vmm-lease'), 'state'), 'connected');
  const [q1, q2] = [await vmmColour('qemu-1'), await vmmColour('qemu-2')];
  assert.notDeepEqual(q1, q2);
  for (const p of [4096, 4097, 4098, 4102]) await expectCell(p, q1, 'qemu-1 holds it');
  for (const p of [4099, 4100, 4101, 4105]) await expectCell(p, q2, 'qemu-2 holds it');
  for (const p of [4103, 4104]) await expectCell(p, lighter(q1), "a spare of qemu-1's lease");
  await expectCell(4108, FREE, 'free');
  // The set-up step's every broker call counted: two connects, two grants per VM.
  let counted = await brokerCounters();
  assert.deepEqual(await stepWork(), { calls: 10, records: counted.records, total: counted.records }, 'a new broker counts from its start');
  // A third VMM opens its own lease on the same range.
  await byId('machine-add-vmm').click();
  assert.equal((await stepWork()).calls, 1, 'one connect');
  let before = await brokerCounters();
  await vmm('qemu-3', 'vmm-add-guest').click();
  assert.deepEqual((await vms()).vm3a, [4108, 4109]);
  assert.equal(await attr(byId('broker-totals'), 'leases'), '3');
  // Its first grant is a commit (the grant and two spares), its second comes from a
  // spare: the step's count is both calls', not the last call's zero.
  counted = await brokerCounters();
  const work = await stepWork();
  assert.deepEqual(work, { calls: 2, records: counted.records - before.records, total: counted.records });
  assert.ok(work.records > 0, 'the first grant wrote to the store');
  // A grant from a spare writes nothing to the store; the count says which step it was.
  before = counted;
  await vmm('qemu-1', 'vmm-add-guest').click();
  assert.deepEqual((await vms()).vm1c, [4103, 4104]);
  assert.deepEqual(await stepWork(), { calls: 2, records: 0, total: before.records });
  assert.match(await byId('broker-ops').textContent(), /"machine: qemu-1 starts a VM"\) made 2 calls to it, which wrote 0 store records in all/);
  // A step that does not call the broker (a VM shuts down: its host PASIDs drain, still
  // the lease's) leaves the last figure, named by its step.
  await vmm('qemu-1', 'vmm-stop-guest').click();
  assert.deepEqual(await stepWork(), { calls: 2, records: 0, total: before.records });
  assert.deepEqual(ctx.errors, []);
});

test('a VM shuts down: its host PASIDs drain, and the teardown gives them back to its lease as spares', async () => {
  await byId('machine-setup').click();
  await vmm('qemu-1', 'vmm-add-guest').click();
  assert.deepEqual((await vms()).vm1c, [4103, 4104], 'its two spares');
  assert.equal(await attr(vmm('qemu-1', 'vmm-spares'), 'count'), '0');
  await vmm('qemu-1', 'vmm-stop-guest').click();
  assert.equal(await attr(vmm('qemu-1', 'vmm-draining'), 'hpasids'), '4103 4104');
  await expectCell(4103, DRAINING, 'drains until the teardown');
  await vmm('qemu-1', 'vmm-teardown').click();
  assert.equal(await vmm('qemu-1', 'vmm-draining').count(), 0);
  // Released with the teardown done: spares of its lease again, without a store write.
  assert.equal(await attr(vmm('qemu-1', 'vmm-spares'), 'hpasids'), '4103 4104');
  const released = await stepWork();
  assert.deepEqual([released.calls, released.records], [2, 0], 'two releases, both kept as spares');
  assert.deepEqual(await totals(), { free: 500, held: 8, spare: 4, quarantined: 0, leases: 2 });
  // One more VM and shut-down: the lease has its two spares, so these go back to the pool.
  await vmm('qemu-1', 'vmm-stop-guest').click();
  await vmm('qemu-1', 'vmm-teardown').click();
  assert.deepEqual(await totals(), { free: 502, held: 6, spare: 4, quarantined: 0, leases: 2 });
  assert.deepEqual(ctx.errors, []);
});

test('a VMM crashes: its host PASIDs are quarantined until their deadline, nobody gets them, time frees them; undo puts them back', async () => {
  await byId('machine-setup').click();
  const q2 = await vmmColour('qemu-2');
  await vmm('qemu-1', 'vmm-crash').click();
  assert.equal(await vmm('qemu-1', 'vmm-status').textContent(), 'crashed');
  assert.equal(await vmm('qemu-1', 'machine-guest').count(), 0);
  assert.equal(await attr(vmm('qemu-1', 'vmm-quarantined'), 'hpasids'), '4096 4097 4098 4102');
  assert.equal(await attr(vmm('qemu-1', 'vmm-quarantined'), 'until'), '60000');
  assert.match(await vmm('qemu-1', 'vmm-quarantined').textContent(), /until t = 1 min/);
  assert.equal(await attr(vmm('qemu-1', 'vmm-lease'), 'state'), 'orphaned');
  assert.deepEqual(await leases(), [{ vmm: 'qemu-1', state: 'orphaned', until: '60000' }, { vmm: 'qemu-2', state: 'connected', until: '' }]);
  // Its spares came back at once; its grants did not.
  assert.deepEqual(await totals(), { free: 502, held: 4, spare: 2, quarantined: 4, leases: 2 });
  for (const p of [4096, 4097, 4098, 4102]) await expectCell(p, QUARANTINED, "the dead VMM's PASID is quarantined");
  await expectCell(4103, FREE, 'a spare of the dead lease, free at once');
  await expectCell(4099, q2, 'qemu-2 is untouched');
  assert.match(await byId('machine-broker-note').textContent(), /What this page simulates/);
  assert.equal(await byId('broker-doc').getAttribute('href'), 'docs/broker.md');
  // qemu-2's next VMs get its spares, then the lowest free ones: never the quarantined ones.
  await vmm('qemu-2', 'vmm-add-guest').click();
  await vmm('qemu-2', 'vmm-add-guest').click();
  const v = await vms();
  assert.deepEqual([v.vm2c, v.vm2d], [[4106, 4107], [4103, 4104]]);
  await ctx.page.screenshot({ path: `${SHOTS}machine-crash.png`, fullPage: false });
  await byId('machine').screenshot({ path: `${SHOTS}machine-panel.png` });
  // Half the quarantine: still out of reach.
  await byId('broker-tick').click();
  assert.equal(await attr(byId('broker-clock'), 'now'), '30000');
  assert.equal(await attr(byId('broker-totals'), 'quarantined'), '4');
  // The rest of it: free, and the dead lease is gone.
  await byId('broker-tick').click();
  assert.equal(await attr(byId('broker-totals'), 'quarantined'), '0');
  assert.equal(await vmm('qemu-1', 'vmm-quarantined').count(), 0);
  assert.deepEqual(await leases(), [{ vmm: 'qemu-2', state: 'connected', until: '' }]);
  for (const p of [4096, 4097, 4098, 4102]) await expectCell(p, FREE, 'free after the quarantine');
  // Reused only now (after qemu-2's last spare).
  await vmm('qemu-2', 'vmm-add-guest').click();
  assert.deepEqual((await vms()).vm2e, [4108, 4096]);
  // Undo three times: back before the quarantine ended, broker and hosts together.
  for (let i = 0; i < 3; i++) await byId('undo').click();
  assert.equal(await attr(byId('broker-clock'), 'now'), '0');
  assert.equal(await attr(vmm('qemu-1', 'vmm-quarantined'), 'hpasids'), '4096 4097 4098 4102');
  await vmm('qemu-2', 'vmm-add-guest').click();
  assert.deepEqual((await vms()).vm2e, [4108, 4109], 'after undo the quarantined PASIDs are out of reach again');
  assert.deepEqual(ctx.errors, []);
});

test('the broker restarts: leases unconfirmed, spares recorded as held; a VMM\'s next call reclaims, its former spares go to quarantine', async () => {
  await byId('machine-setup').click();
  await byId('broker-restart').click();
  assert.deepEqual(await leases(), [{ vmm: 'qemu-1', state: 'unconfirmed', until: '30000' }, { vmm: 'qemu-2', state: 'unconfirmed', until: '30000' }]);
  assert.match(await vmm('qemu-1', 'vmm-lease').textContent(), /unconfirmed until t = 30 s/);
  // The store cannot tell a spare from a grant: after the restart all twelve are held.
  assert.deepEqual(await totals(), { free: 500, held: 12, spare: 0, quarantined: 0, leases: 2 });
  // qemu-1 starts a VM: its call reclaims the lease with the four it holds.
  await vmm('qemu-1', 'vmm-add-guest').click();
  assert.equal(await attr(vmm('qemu-1', 'vmm-lease'), 'state'), 'connected');
  assert.equal(await attr(vmm('qemu-2', 'vmm-lease'), 'state'), 'unconfirmed');
  assert.equal(await attr(byId('broker-quarantine'), 'hpasids'), '4103 4104');
  for (const p of [4103, 4104]) await expectCell(p, QUARANTINED, 'a former spare, not listed in the reclaim');
  assert.deepEqual((await vms()).vm1c, [4108, 4109]);
  // qemu-2 stays alive past the grace: the broker keeps its lease (its process runs).
  await byId('broker-tick').click();
  assert.equal(await attr(vmm('qemu-2', 'vmm-lease'), 'state'), 'unconfirmed');
  await vmm('qemu-2', 'vmm-add-guest').click();
  assert.equal(await attr(vmm('qemu-2', 'vmm-lease'), 'state'), 'connected');
  assert.equal(await attr(byId('broker-quarantine'), 'hpasids'), '4103 4104 4106 4107');
  assert.deepEqual(ctx.errors, []);
});

test('the broker doc the page links to is served', async () => {
  const { existsSync } = await import('node:fs');
  const res = await ctx.page.request.get(`${ctx.url}docs/broker.md`);
  // docs/broker.md comes with the broker (its own branch); until it lands, a plain 404.
  if (existsSync(new URL('../../docs/broker.md', import.meta.url))) {
    assert.equal(res.status(), 200);
    assert.match(await res.text(), /broker/);
  } else {
    assert.equal(res.status(), 404);
  }
  const forbidden = await ctx.page.request.get(`${ctx.url}docs/..%2f..%2fCargo.toml`);
  assert.notEqual(forbidden.status(), 200);
});
