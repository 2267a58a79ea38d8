// The wasm bindings under Node: errors and snapshot shape, on the `--target web` package
// (scripts/play.sh --build makes it), initialised synchronously from its bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { initSync, Broker, Host, inspectBlob, vcmdCommand, vcmdDecode, vcmdLayout, walk } from '../pkg/pasid_wasm.js';

initSync({ module: readFileSync(new URL('../pkg/pasid_wasm_bg.wasm', import.meta.url)) });

const P2 = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] };

/** Runs fn, which must throw a core error; returns it. */
function coreError(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a thrown error');
}

test('a shared PASID: gPASID in the local range, hPASID in the shared range, programmed per device kind', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 64);
  host.attach(g, '03:00.1', 'dedicated');
  host.attach(g, '0000:00:0a.0', 'shared-wq');
  const gp = host.allocPasid(g, 'shared');
  const hp = host.translate(g, gp);
  assert.ok(gp >= 1 && gp < 4096, `gPASID ${gp}`);
  assert.ok(hp >= 4096 && hp < 1 << 19, `hPASID ${hp}`);
  assert.equal(host.bind(g, gp, '00:0a.0'), hp);
  assert.equal(host.bind(g, gp, '03:00.1'), gp);
  assert.equal(host.sharedInUse, 1);
  assert.equal(host.owner('03:00.1'), g);
  assert.equal(host.owner('03:00.2'), undefined);
  assert.deepEqual([...host.pasidPairs(g)], [gp, hp]);
  host.free();
});

test('core errors arrive as JS Errors with the core message and numeric code', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 1);
  host.allocPasid(g, 'shared');
  const quota = coreError(() => host.allocPasid(g, 'shared'));
  assert.ok(quota instanceof Error);
  assert.equal(quota.name, 'PasidError');
  assert.equal(quota.message, 'shared PASID quota of 1 reached');
  assert.equal(quota.code, 22);
  assert.equal(quota.codeName, 'QuotaExceeded');
  assert.match(String(quota), /^PasidError: shared PASID quota of 1 reached$/);

  const notAllocated = coreError(() => host.freePasid(g, 4000));
  assert.equal(notAllocated.code, 15);
  assert.equal(notAllocated.message, 'PASID 4000 is not allocated to this guest');

  const noGuest = coreError(() => host.allocPasid(12345, 'local'));
  assert.equal(noGuest.code, 7);
  assert.equal(noGuest.message, 'no such guest: guest 0x3039');

  // A RID has one dedicated user at most; the same use twice is refused too. A shared
  // WQ on the same function is a second use (a mixed RID), not a conflict.
  host.attach(g, '03:00.1', 'dedicated');
  const inUse = coreError(() => host.attach(g, '0000:03:00.1', 'dedicated'));
  assert.equal(inUse.code, 9);
  assert.equal(inUse.message, 'RID 0000:03:00.1 is already attached');
  const other = host.createGuest('p2', 1);
  const taken = coreError(() => host.attach(other, '03:00.1', 'dedicated'));
  assert.equal(taken.code, 9);
  host.attach(g, '0000:03:00.1', 'shared-wq');
  assert.equal(coreError(() => host.attach(g, '03:00.1', 'shared-wq')).code, 9);
  assert.deepEqual(host.ridUsers('03:00.1'), [{ guest: g, kind: 'Dedicated' }, { guest: g, kind: 'SharedWq' }]);
  host.free();
});

test('layout errors come from the constructor', () => {
  const overlap = coreError(() => new Host({ ...P2, local: [1, 5000] }));
  assert.equal(overlap.code, 5);
  assert.equal(overlap.message, 'the local and shared ranges overlap');
  const zero = coreError(() => new Host({ ...P2, local: [0, 4096] }));
  assert.equal(zero.code, 2);
  const width = coreError(() => new Host({ ...P2, width: 21 }));
  assert.equal(width.code, 1);
  assert.equal(width.message, 'PASID width 21 is outside 1..=20 bits');
});

test('p1: a p2 guest is refused, records are programmed as is', () => {
  const host = new Host({ ...P2, platform: 'p1' });
  assert.equal(host.platform, 'p1');
  const e = coreError(() => host.createGuest('p2', 8));
  assert.equal(e.code, 6);
  assert.match(e.message, /^not supported: /);
  const g = host.createGuest('p1', 0);
  host.attach(g, '03:00.1', 'dedicated');
  assert.equal(host.record(g, '03:00.1', 7), 7);
  assert.equal(coreError(() => host.record(g, '03:00.1', 7)).code, 14);
  assert.equal(coreError(() => host.allocPasid(g, 'local')).code, 6);
  host.free();
});

test('arguments the layer cannot read throw TypeError without a code', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 1);
  for (const fn of [
    () => host.attach(g, 'not a rid', 'dedicated'),
    () => host.attach(g, '03:00.1', 'vf'),
    () => host.allocPasid(g, 'global'),
    () => host.freePasid(g, 1.5),
    () => host.freePasid(g, -1),
    () => new Host({ platform: 'p3', width: 20, local: [1, 2], shared: [2, 3] }),
    () => new Host({ width: 20 }),
  ]) {
    const e = coreError(fn);
    assert.ok(e instanceof TypeError, String(e));
    assert.equal(e.code, undefined);
  }
  host.free();
});

test('a snapshot has the documented shape and survives JSON', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 8);
  host.attach(g, '03:00.1', 'dedicated');
  host.attach(g, '00:0a.0', 'shared-wq');
  const local = host.allocPasid(g, 'local');
  const shared = host.allocPasid(g, 'shared');
  const hp = host.translate(g, shared);
  host.bind(g, shared, '00:0a.0');
  host.bind(g, local, '03:00.1');
  const snap = host.snapshot();
  assert.deepEqual(snap, {
    width: 20,
    local: { start: 1, end: 4096 },
    shared: { start: 4096, end: 1 << 19 },
    platform: 'P2',
    shared_in_use: 1,
    guests: [
      {
        id: g,
        config: { platform: 'P2', shared_quota: 8 },
        pasids: [
          { gpasid: local, kind: 'Local', hpasid: null },
          { gpasid: shared, kind: 'Shared', hpasid: hp },
        ],
        devices: [
          { rid: { segment: 0, bdf: 0x0050 }, kind: 'SharedWq', programmed: [{ gpasid: shared, programmed: hp }] },
          { rid: { segment: 0, bdf: 0x0301 }, kind: 'Dedicated', programmed: [{ gpasid: local, programmed: local }] },
        ],
        draining: [],
      },
    ],
    orphans: [],
  });
  assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap);
  assert.deepEqual(host.guestSnapshot(g), snap.guests[0]);
  const summary = host.summary();
  assert.deepEqual(summary, { ...snap, guests: [{ ...snap.guests[0], pasids: [] }] });
  host.free();
});

test('clone() is a deep copy (the page undoes with it)', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 8);
  const copy = host.clone();
  host.allocPasid(g, 'shared');
  assert.equal(host.sharedInUse, 1);
  assert.equal(copy.sharedInUse, 0);
  assert.deepEqual(copy.guests(), Uint32Array.from([g]));
  host.free();
  copy.free();
});

test('hundreds of thousands of PASIDs: allocation and pasidPairs stay fast', () => {
  const host = new Host({ platform: 'p2', width: 20, local: [1, 1 << 19], shared: [1 << 19, 1 << 20] });
  const g = host.createGuest('p2', 1 << 20);
  const t0 = performance.now();
  for (let i = 0; i < 300000; i++) host.allocPasid(g, 'shared');
  const t1 = performance.now();
  const pairs = host.pasidPairs(g);
  const t2 = performance.now();
  assert.equal(pairs.length, 600000);
  assert.equal(pairs[0], 1);
  assert.equal(pairs[1], 1 << 19);
  console.log(`# 300k allocPasid ${(t1 - t0).toFixed(0)} ms, pasidPairs ${(t2 - t1).toFixed(1)} ms`);
  host.free();
});

/** A p2 host A with vm1 (a VF and a shared WQ, one local and two shared gPASIDs, bound). */
function sourceWithGuest() {
  const a = new Host(P2);
  const g = a.createGuest('p2', 8);
  a.attach(g, '03:00.1', 'dedicated');
  a.attach(g, '00:0a.0', 'shared-wq');
  const local = a.allocPasid(g, 'local');
  const s1 = a.allocPasid(g, 'shared');
  const s2 = a.allocPasid(g, 'shared');
  a.bind(g, local, '03:00.1');
  a.bind(g, s1, '03:00.1');
  a.bind(g, s1, '00:0a.0');
  a.bind(g, s2, '00:0a.0');
  return { a, g, local, s1, s2 };
}

const IDENTITY = [['03:00.1', '03:00.1'], ['00:0a.0', '00:0a.0']];

test('migration: gPASIDs kept, hPASIDs new from the target, report shape', () => {
  const { a, g, local, s1, s2 } = sourceWithGuest();
  const b = new Host(P2);
  const resident = b.createGuest('p2', 16);
  for (let i = 0; i < 10; i++) b.allocPasid(resident, 'shared');
  const blob = a.exportGuest(g);
  assert.ok(blob instanceof Uint8Array);
  const info = inspectBlob(blob);
  assert.equal(info.config.platform, 'P2');
  assert.deepEqual(info.pasids.map((p) => p.gpasid), [local, s1, s2]);
  assert.equal(b.checkImport(blob, IDENTITY), undefined);
  const { guest, report } = b.importGuest(blob, IDENTITY);
  assert.equal(typeof guest, 'number');
  assert.deepEqual(report, {
    guest_platform: 'P2',
    p1_guest_on_p2_host: false,
    shared: [
      { gpasid: s1, source_hpasid: a.translate(g, s1), destination_hpasid: 4106 },
      { gpasid: s2, source_hpasid: a.translate(g, s2), destination_hpasid: 4107 },
    ],
    devices: [
      { source: { segment: 0, bdf: 0x50 }, destination: { segment: 0, bdf: 0x50 }, kind: 'SharedWq' },
      { source: { segment: 0, bdf: 0x301 }, destination: { segment: 0, bdf: 0x301 }, kind: 'Dedicated' },
    ],
    // Format 2.0: which migration this is (a second import of it is a replay), and what
    // the guest was told (12 bits for a 4096-PASID local range, which the target honours).
    identity: { source_host: 0, source_guest: g, epoch: 0 },
    version: { major: 2, minor: 0 },
    contract: { width: 12, local_start: 1, local_end: 4096, capabilities: 3 },
    quota: 8,
  });
  assert.equal(coreError(() => b.importGuest(blob, IDENTITY)).codeName, 'Replayed');
  const moved = b.guestSnapshot(guest);
  assert.deepEqual(moved.pasids.map((p) => p.gpasid), [local, s1, s2]);
  assert.equal(b.translate(guest, s1), 4106);
  assert.equal(b.owner('03:00.1'), guest);
  const wq = moved.devices.find((d) => d.kind === 'SharedWq');
  assert.deepEqual(wq.programmed, [{ gpasid: s1, programmed: 4106 }, { gpasid: s2, programmed: 4107 }]);
  // The source's guest goes: the VMM gets the entries to clear, and the two host
  // PASIDs drain (still counted) until it confirms the teardown.
  const [h1, h2] = [a.translate(g, s1), a.translate(g, s2)];
  assert.deepEqual(a.programmedEntries(g), [
    { rid: { segment: 0, bdf: 0x50 }, kind: 'SharedWq', gpasid: s1, pasid: h1 },
    { rid: { segment: 0, bdf: 0x50 }, kind: 'SharedWq', gpasid: s2, pasid: h2 },
    { rid: { segment: 0, bdf: 0x301 }, kind: 'Dedicated', gpasid: local, pasid: local },
    { rid: { segment: 0, bdf: 0x301 }, kind: 'Dedicated', gpasid: s1, pasid: s1 },
  ]);
  const entries = a.programmedEntries(g);
  assert.deepEqual(a.destroyGuest(g), entries);
  assert.equal(a.sharedInUse, 2);
  const orphans = a.draining();
  assert.deepEqual(orphans.map((d) => d.gpasid), [s1, s2]);
  assert.deepEqual(a.snapshot().orphans, orphans);
  a.completeTeardown(orphans);
  assert.equal(a.sharedInUse, 0);
  assert.deepEqual(a.draining(), []);
  a.free();
  b.free();
});

test('refused imports throw the core error and leave the target unchanged', () => {
  const { a, g } = sourceWithGuest();
  const blob = a.exportGuest(g);
  const cases = [
    [new Host({ ...P2, platform: 'p1' }), IDENTITY, 6, /^not supported: a p2 guest needs a p2 destination/],
    [new Host({ ...P2, shared: [4096, 4097] }), IDENTITY, 33, /^incompatible layout: /],
    // The guest was told a 4096-PASID range; this host cannot honour it.
    [new Host({ ...P2, local: [1, 2], shared: [4096, 8192] }), IDENTITY, 58, /^the guest was told width 12 \(PSS 11\), PASIDs 1\.\.4096, capabilities 0x3, but this host offers width 20 \(PSS 19\), PASIDs 1\.\.2/],
    [new Host(P2), [['00:0a.0', '00:0a.0']], 34, /^RID 0000:03:00.1 has no destination in the RID map$/],
    // The destination's VMM says 00:0a.0 is a VF there; the guest's device is a shared WQ.
    [new Host(P2), [['03:00.1', '03:00.1', 'dedicated'], ['00:0a.0', '00:0a.0', 'dedicated']], 51,
      /^RID kind mismatch: destination RID 0000:00:0a.0 is a dedicated device, but the guest's device mapped to it is a shared WQ device$/],
    [new Host(P2), [['03:00.1', '03:00.1', 'shared-wq'], ['00:0a.0', '00:0a.0']], 51,
      /^RID kind mismatch: destination RID 0000:03:00.1 is a shared WQ device/],
  ];
  const full = new Host({ ...P2, shared: [4096, 4098] });
  full.allocPasid(full.createGuest('p2', 2), 'shared');
  cases.push([full, IDENTITY, 21, /^no free PASID in the shared range$/]);
  const taken = new Host(P2);
  taken.attach(taken.createGuest('p2', 1), '03:00.1', 'dedicated');
  cases.push([taken, IDENTITY, 9, /^RID 0000:03:00.1 is already attached$/]);
  // Two dedicated devices of one guest onto one destination RID: one use twice.
  const two = new Host(P2);
  const g2 = two.createGuest('p2', 1);
  two.attach(g2, '03:00.1', 'dedicated');
  two.attach(g2, '03:00.2', 'dedicated');
  const twoBlob = two.exportGuest(g2);
  two.free();
  cases.push([new Host(P2), [['03:00.1', '04:00.0'], ['03:00.2', '04:00.0']], 9, /^RID 0000:04:00.0 is already attached$/, twoBlob]);
  for (const [target, map, code, message, what = blob] of cases) {
    const before = target.snapshot();
    const checked = coreError(() => target.checkImport(what, map));
    const e = coreError(() => target.importGuest(what, map));
    assert.ok(e instanceof Error);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    assert.equal(checked.code, code);
    assert.equal(checked.codeName, e.codeName);
    assert.deepEqual(target.snapshot(), before, 'the target is unchanged');
    target.free();
  }
  // A VF and a shared WQ mapped onto one destination RID: a mixed RID, both uses the guest's.
  const mixedTarget = new Host(P2);
  const { guest: mixed } = mixedTarget.importGuest(blob, [['03:00.1', '04:00.0'], ['00:0a.0', '04:00.0']]);
  assert.deepEqual(mixedTarget.ridUsers('04:00.0'), [{ guest: mixed, kind: 'Dedicated' }, { guest: mixed, kind: 'SharedWq' }]);
  mixedTarget.free();
  const bad = coreError(() => new Host(P2).importGuest(blob.slice(0, 10), IDENTITY));
  assert.equal(bad.code, 30);
  const flipped = Uint8Array.from(blob);
  flipped[flipped.length - 1] ^= 1;
  assert.equal(coreError(() => inspectBlob(flipped)).code, 31);
  assert.ok(coreError(() => new Host(P2).importGuest(blob, [['x', 'y']])) instanceof TypeError);
  assert.ok(coreError(() => new Host(P2).importGuest(blob, 'not a map')) instanceof TypeError);
  // Entries are [source, destination] or [source, destination, kind]; nothing else.
  for (const map of [[['03:00.1']], [['03:00.1', '03:00.1', 'vf']], [['03:00.1', '03:00.1', 'dedicated', 'x']], [['03:00.1', '03:00.1', 1]]]) {
    const e = coreError(() => new Host(P2).checkImport(blob, map));
    assert.ok(e instanceof TypeError, `${JSON.stringify(map)}: ${e}`);
    assert.equal(e.code, undefined);
  }
});

test('RID map entries may say the destination kind: matching kinds import, the report lists the devices', () => {
  const { a, g } = sourceWithGuest();
  const blob = a.exportGuest(g);
  const b = new Host(P2);
  const map = [['03:00.1', '04:00.1', 'dedicated'], ['00:0a.0', '00:0b.0', 'shared-wq']];
  assert.equal(b.checkImport(blob, map), undefined);
  const { guest, report } = b.importGuest(blob, map);
  assert.deepEqual(report.devices, [
    { source: { segment: 0, bdf: 0x50 }, destination: { segment: 0, bdf: 0x58 }, kind: 'SharedWq' },
    { source: { segment: 0, bdf: 0x301 }, destination: { segment: 0, bdf: 0x401 }, kind: 'Dedicated' },
  ]);
  assert.equal(b.owner('04:00.1'), guest);
  a.free();
  b.free();
});

test('VT-d virtual commands: BigInt registers, both revisions', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 1);
  const fields = { ecap_vcs_bit: 44, vccap_pas_bit: 0, cmd_alloc: 1, cmd_free: 2, alloc_operand_local_extension: 1 };
  assert.deepEqual(vcmdLayout('3.3'), { vccap: 0xe30, vcmd: 0xe00, vcrsp: 0xe10, operand_shift: 16, sc_no_pasid: 16, sc_undefined: 1, ...fields });
  assert.deepEqual(vcmdLayout('3.0'), { vccap: 0xe00, vcmd: 0xe10, vcrsp: 0xe20, operand_shift: 8, sc_no_pasid: 2, sc_undefined: 1, ...fields });
  assert.equal(host.vcap(g, '3.3'), 1n);
  assert.equal(vcmdCommand('3.3', 2, 5n), 0x50002n);
  assert.equal(host.vcmd(g, '3.3', 1n), 0x10000n); // ALLOC shared: gPASID 1
  assert.deepEqual(vcmdDecode('3.3', 0x10000n), { in_progress: false, status: 0, pasid: 1 });
  assert.equal(host.vcmd(g, '3.0', 1n), 2n << 1n); // quota reached: no PASID available, SC 2 on 3.0
  assert.equal(host.vcmd(g, '3.3', 0x1_0002n), 0n); // FREE 1: success at once...
  assert.equal(coreError(() => host.translate(g, 1)).code, 52); // ...no longer translates...
  const [drained] = host.draining(); // ...but its host PASID is held until teardown
  assert.equal(host.sharedInUse, 1);
  assert.deepEqual(vcmdDecode('3.3', host.vcmd(g, '3.3', 1n)).status, 16); // the quota still counts it: no PASID
  host.completeTeardown([drained]);
  assert.equal(host.sharedInUse, 0);
  assert.equal(coreError(() => host.vcmd(0, '3.3', 1n)).code, 7);
  assert.ok(coreError(() => host.vcap(g, '2.0')) instanceof TypeError);
  const p1 = new Host({ ...P2, platform: 'p1' });
  const q = p1.createGuest('p1', 0);
  assert.equal(p1.vcap(q, '3.3'), 0n);
  assert.equal(p1.vcmd(q, '3.3', 1n), 1n << 1n); // undefined command
  host.free();
  p1.free();
});

test('blob edits of the refusal demos: CRC matches crc32fast, quota edit refused by the core', async () => {
  const { crc32, withQuota, withFlippedBit } = await import('../js/blob.js');
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  const { a, g } = sourceWithGuest();
  const blob = a.exportGuest(g);
  assert.equal(inspectBlob(withQuota(blob, 8)).config.shared_quota, 8); // same quota: CRC redone right
  const e = coreError(() => inspectBlob(withQuota(blob, 1)));
  assert.equal(e.code, 22);
  assert.equal(e.message, 'shared PASID quota of 1 reached');
  assert.equal(coreError(() => inspectBlob(withFlippedBit(blob))).code, 31);
  a.free();
});

// The CPU's translation pages and walk (hwtable): values as the core writes them.
const LOW = 0x10_0000;
const HIGH = 0x10_1000;

/** A guest's exported pages, tables placed from 0x102000 on, as `walk` takes them. */
function pagesOf(host, g) {
  const tables = [...host.translationTables(g)];
  const out = host.exportTranslation(g, { low: LOW, high: HIGH, tables: tables.map((table, i) => ({ table, phys: 0x10_2000 + i * 0x1000 })) });
  return { tables, out, all: [out.low, out.high, ...out.tables] };
}

test('hwtable: exported pages are the CPU format, and the walk finds every hPASID', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 2000);
  const local = host.allocPasid(g, 'local');
  const shared = [];
  for (let i = 0; i < 1100; i++) shared.push(host.allocPasid(g, 'shared')); // gPASIDs 2..1101: two tables
  const { tables, out, all } = pagesOf(host, g);
  assert.deepEqual(tables, [0, 1]);
  assert.equal(out.low.bytes.length, 4096);
  assert.ok(Array.isArray(out.low.bytes), 'json_compatible: bytes as a plain array');
  JSON.stringify(out); // plain data
  // Directory entry 1 of the low directory: table 1's page | present.
  const dv = new DataView(Uint8Array.from(out.low.bytes).buffer);
  assert.equal(dv.getBigUint64(8, true), 0x10_3000n | 1n);
  for (const gp of [shared[0], shared[1099], 1023, 1024]) {
    const t = walk(LOW, HIGH, gp, all);
    const hp = host.translate(g, gp);
    assert.equal(t.host_pasid, hp);
    assert.equal(t.fault, null);
    assert.equal(t.directory, 'low');
    assert.equal(t.vmcs_field, 0x2038);
    assert.equal(t.directory_index, gp >> 10);
    assert.equal(t.table_index, gp & 0x3ff);
    assert.equal(t.directory_entry.table_phys, 0x10_2000 + (gp >> 10) * 0x1000);
    assert.equal(t.table_entry.value, `0x${((0x8000_0000 | hp) >>> 0).toString(16).padStart(8, '0')}`);
    assert.equal(t.table_entry.phys, t.directory_entry.table_phys + 4 * (gp & 0x3ff));
  }
  // A local gPASID has no translation: the entry is invalid, a VM exit 72 / 73.
  const t = walk(LOW, HIGH, local, all);
  assert.deepEqual([t.host_pasid, t.fault, t.exit_reason_enqcmd, t.exit_reason_enqcmds], [null, 'EntryInvalid', 72, 73]);
  assert.equal(t.table_entry.valid, false);
  // Bit 19: the high directory, empty here.
  const high = walk(LOW, HIGH, (1 << 19) | 3, all);
  assert.deepEqual([high.directory, high.vmcs_field, high.fault, high.table_entry], ['high', 0x203a, 'DirectoryNotPresent', null]);
  // Uint8Array pages work as well as arrays.
  assert.equal(walk(LOW, HIGH, shared[0], all.map((p) => ({ phys: p.phys, bytes: Uint8Array.from(p.bytes) }))).host_pasid, host.translate(g, shared[0]));
  // A page not handed over: no CPU fault, no exit reason.
  const missing = walk(LOW, HIGH, shared[0], [out.low]);
  assert.deepEqual([missing.fault, missing.exit_reason_enqcmd], ['Unreadable', null]);
  host.free();
});

test('hwtable: bad input throws (core errors with code, TypeErrors for unreadable arguments), the host unchanged', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 8);
  host.allocPasid(g, 'shared');
  const before = JSON.stringify(host.snapshot());
  const missing = coreError(() => host.exportTranslation(g, { low: LOW, high: HIGH, tables: [] }));
  assert.ok(missing instanceof Error);
  assert.equal(missing.codeName, 'MissingTablePage');
  assert.equal(typeof missing.code, 'number');
  const unaligned = coreError(() => host.exportTranslation(g, { low: LOW + 8, high: HIGH, tables: [{ table: 0, phys: 0x10_2000 }] }));
  assert.equal(unaligned.codeName, 'UnalignedPage');
  const duplicate = coreError(() => host.exportTranslation(g, { low: LOW, high: LOW, tables: [{ table: 0, phys: 0x10_2000 }] }));
  assert.equal(duplicate.codeName, 'DuplicatePage');
  const badTable = coreError(() => host.exportTranslation(g, { low: LOW, high: HIGH, tables: [{ table: 0, phys: 0x10_2000 }, { table: 5000, phys: 0x10_3000 }] }));
  assert.equal(badTable.codeName, 'BadTablePage');
  assert.equal(coreError(() => host.exportTranslation(999, { low: LOW, high: HIGH, tables: [] })).code, 7);
  assert.equal(coreError(() => host.translationTables(999)).code, 7);
  for (const bad of [undefined, {}, { low: 'x', high: HIGH, tables: [] }, { low: -1, high: HIGH, tables: [] }]) {
    const e = coreError(() => host.exportTranslation(g, bad));
    assert.ok(e instanceof TypeError, String(e));
    assert.equal(e.code, undefined);
  }
  for (const args of [[1.5, HIGH, 1, []], [LOW, -4096, 1, []], [LOW, HIGH, -1, []], [LOW, HIGH, 1, 'pages'], [LOW, HIGH, 1, [{ phys: LOW }]]]) {
    assert.ok(coreError(() => walk(...args)) instanceof TypeError, JSON.stringify(args));
  }
  assert.equal(JSON.stringify(host.snapshot()), before);
  host.free();
});

test("the README's JavaScript example runs as written, saved in web-demo/", async () => {
  const { execFileSync } = await import('node:child_process');
  const { writeFileSync, rmSync } = await import('node:fs');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## JavaScript (WebAssembly)'));
  const code = section.slice(section.indexOf('```js\n') + 6, section.indexOf('\n```', section.indexOf('```js\n')));
  // A name of its own, so a web-demo/example.mjs a reader saved is never touched.
  const file = new URL('../readme-example.test-tmp.mjs', import.meta.url);
  writeFileSync(file, code);
  try {
    const out = execFileSync(process.execPath, [file.pathname], { encoding: 'utf8' });
    assert.equal(out, '15 NotAllocated PASID 4000 is not allocated to this guest\n0x80001000 true\n4097 2\n2 1\n1\n');
  } finally {
    rmSync(file, { force: true });
  }
});

/** Runs fn, which must be refused with `code`, and checks the host did not change. */
function refusedUnchanged(host, code, fn) {
  const before = host.snapshot();
  const e = coreError(fn);
  assert.equal(e.code, code, `${e.name}: ${e.message}`);
  assert.deepEqual(host.snapshot(), before, 'the host is unchanged');
  return e;
}

/** Runs fn, which must throw a TypeError without a code, and checks the host did not change. */
function typeErrorUnchanged(host, fn) {
  const before = host.snapshot();
  const e = coreError(fn);
  assert.ok(e instanceof TypeError, String(e));
  assert.equal(e.code, undefined);
  assert.deepEqual(host.snapshot(), before, 'the host is unchanged');
}

test('a shared WQ used by several guests: each binding programs its own hPASID; ridUsers lists them', () => {
  const host = new Host(P2);
  const [g1, g2, g3] = [host.createGuest('p2', 4), host.createGuest('p2', 4), host.createGuest('p2', 4)];
  for (const g of [g1, g2, g3]) host.attach(g, '00:0a.0', 'shared-wq');
  const programmed = [g1, g2, g3].map((g) => host.bind(g, host.allocPasid(g, 'shared'), '00:0a.0'));
  assert.deepEqual([g1, g2, g3].map((g) => host.translate(g, 1)), programmed, 'the same gPASID 1 in each guest');
  assert.equal(new Set(programmed).size, 3, `hPASIDs ${programmed}`);
  assert.deepEqual(host.ridUsers('0000:00:0a.0'), [g1, g2, g3].map((guest) => ({ guest, kind: 'SharedWq' })));
  assert.equal(host.owner('00:0a.0'), undefined, 'a shared WQ has users, no owner');
  assert.deepEqual(host.ridUsers('00:0b.0'), []);
  // Detaching one guest's use leaves the others'.
  refusedUnchanged(host, 12, () => host.detach(g2, '00:0a.0')); // DeviceBusy: bound
  assert.equal(host.unbind(g2, 1, '00:0a.0'), programmed[1]);
  host.detach(g2, '00:0a.0');
  assert.deepEqual(host.ridUsers('00:0a.0').map((u) => u.guest), [g1, g3]);
  assert.equal(host.translate(g1, 1), programmed[0]);
  typeErrorUnchanged(host, () => host.ridUsers('00:0a'));
  host.free();
});

test('a mixed RID: bindUse/unbindUse/detachUse name the use; bind without one is AmbiguousUse', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 4);
  const other = host.createGuest('p2', 4);
  host.attach(g, '03:00.1', 'dedicated');
  host.attach(g, '03:00.1', 'shared-wq');
  host.attach(other, '03:00.1', 'shared-wq');
  assert.equal(host.owner('03:00.1'), g);
  assert.deepEqual(host.ridUsers('03:00.1'), [
    { guest: g, kind: 'Dedicated' }, { guest: g, kind: 'SharedWq' }, { guest: other, kind: 'SharedWq' },
  ]);
  const gp = host.allocPasid(g, 'shared');
  const hp = host.translate(g, gp);
  const ambiguous = refusedUnchanged(host, 54, () => host.bind(g, gp, '03:00.1'));
  assert.equal(ambiguous.codeName, 'AmbiguousUse');
  assert.equal(host.bindUse(g, gp, '03:00.1', 'dedicated'), gp);
  assert.equal(host.bindUse(g, gp, '03:00.1', 'shared-wq'), hp);
  refusedUnchanged(host, 18, () => host.bindUse(g, gp, '03:00.1', 'shared-wq')); // AlreadyBound
  const local = host.allocPasid(g, 'local');
  refusedUnchanged(host, 16, () => host.bindUse(g, local, '03:00.1', 'shared-wq')); // NotShared
  refusedUnchanged(host, 10, () => host.bindUse(other, gp, '03:00.1', 'dedicated')); // NoSuchDevice: not its use
  refusedUnchanged(host, 15, () => host.bindUse(g, 4000, '03:00.1', 'dedicated')); // not allocated
  refusedUnchanged(host, 7, () => host.bindUse(0x7fff0001, gp, '03:00.1', 'dedicated')); // forged guest id
  refusedUnchanged(host, 12, () => host.detachUse(g, '03:00.1', 'shared-wq')); // busy
  assert.deepEqual(host.programmedEntries(g), [
    { rid: { segment: 0, bdf: 0x301 }, kind: 'Dedicated', gpasid: gp, pasid: gp },
    { rid: { segment: 0, bdf: 0x301 }, kind: 'SharedWq', gpasid: gp, pasid: hp },
  ]);
  assert.equal(host.unbindUse(g, gp, '03:00.1', 'shared-wq'), hp);
  refusedUnchanged(host, 19, () => host.unbindUse(g, gp, '03:00.1', 'shared-wq')); // NotBound
  host.detachUse(g, '03:00.1', 'shared-wq');
  refusedUnchanged(host, 10, () => host.detachUse(g, '03:00.1', 'shared-wq')); // NoSuchDevice
  // One use left: bind and unbind need no name again.
  assert.equal(host.unbind(g, gp, '03:00.1'), gp);
  assert.deepEqual(host.programmedEntries(g), []);
  assert.equal(host.owner('03:00.1'), g);
  for (const fn of [
    () => host.bindUse(g, gp, '03:00.1', 'vf'),
    () => host.bindUse(g, gp, 'x', 'dedicated'),
    () => host.bindUse(g, 1.5, '03:00.1', 'dedicated'),
    () => host.unbindUse(g, gp, '03:00.1', ''),
    () => host.detachUse(-1, '03:00.1', 'dedicated'),
    () => host.programmedEntries(2 ** 33),
  ]) typeErrorUnchanged(host, fn);
  refusedUnchanged(host, 7, () => host.programmedEntries(0));
  host.free();
});

test('draining: a freed gPASID stops translating, both numbers stay out of reach and count against the quota until completeTeardown', () => {
  const host = new Host({ ...P2, shared: [4096, 4098] });
  const g = host.createGuest('p2', 2);
  host.attach(g, '00:0a.0', 'shared-wq');
  const gp = host.allocPasid(g, 'shared');
  const hp = host.translate(g, gp);
  host.bind(g, gp, '00:0a.0');
  refusedUnchanged(host, 17, () => host.freePasid(g, gp)); // StillBound
  host.unbind(g, gp, '00:0a.0');
  const record = host.freePasid(g, gp);
  assert.deepEqual(record, { guest: g, gpasid: gp, hpasid: hp });
  const drainingErr = refusedUnchanged(host, 52, () => host.translate(g, gp));
  assert.equal(drainingErr.codeName, 'Draining');
  refusedUnchanged(host, 52, () => host.freePasid(g, gp));
  assert.deepEqual(host.draining(), [record]);
  assert.deepEqual(host.guestSnapshot(g).draining, [record]);
  assert.equal(host.sharedHeld(g), 1);
  assert.equal(host.sharedInUse, 1);
  // The next ALLOC gets a new gPASID and a new hPASID; then the quota (2) is reached.
  const next = host.allocPasid(g, 'shared');
  assert.notEqual(next, gp);
  assert.notEqual(host.translate(g, next), hp);
  refusedUnchanged(host, 22, () => host.allocPasid(g, 'shared'));
  // Forged and stale records are refused whole; nothing changes.
  for (const forged of [
    [{ ...record, hpasid: hp + 1 }],
    [{ ...record, gpasid: next }],
    [{ ...record, hpasid: null }],
    [{ guest: g, gpasid: gp }], // a missing hpasid reads as null: the record of a local one
    [{ ...record, guest: g + 0x10000 }],
    [record, record],
    [record, { guest: g, gpasid: next, hpasid: host.translate(g, next) }],
  ]) {
    const e = refusedUnchanged(host, 53, () => host.completeTeardown(forged));
    assert.equal(e.codeName, 'NotDraining');
  }
  for (const bad of [undefined, 'x', [{}], [{ guest: g, gpasid: -1, hpasid: hp }], [{ ...record, hpasid: 'x' }], [{ ...record, guest: 1.5 }]]) {
    typeErrorUnchanged(host, () => host.completeTeardown(bad));
  }
  host.completeTeardown([]);
  host.completeTeardown([record]);
  assert.deepEqual(host.draining(), []);
  assert.equal(host.sharedHeld(g), 1);
  assert.equal(host.sharedInUse, 1);
  refusedUnchanged(host, 53, () => host.completeTeardown([record])); // stale: done already
  assert.equal(host.allocPasid(g, 'shared'), gp, 'reused only after the teardown');
  assert.equal(host.translate(g, gp), hp);
  // A local gPASID drains too (hpasid null).
  const l = host.allocPasid(g, 'local');
  assert.deepEqual(host.freePasid(g, l), { guest: g, gpasid: l, hpasid: null });
  host.completeTeardown(host.draining());
  host.free();
});

test('destroyGuest: the entries to clear, the host PASIDs drain as orphans, a batch teardown frees them', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 4);
  const keep = host.createGuest('p2', 4);
  host.attach(g, '00:0a.0', 'shared-wq');
  host.attach(keep, '00:0a.0', 'shared-wq');
  const [a, b] = [host.allocPasid(g, 'shared'), host.allocPasid(g, 'shared')];
  const k = host.allocPasid(keep, 'shared');
  host.bind(g, a, '00:0a.0');
  host.bind(keep, k, '00:0a.0');
  const freed = host.freePasid(g, b);
  const [ha, hb] = [host.translate(g, a), freed.hpasid];
  const entries = host.destroyGuest(g);
  assert.deepEqual(entries, [{ rid: { segment: 0, bdf: 0x50 }, kind: 'SharedWq', gpasid: a, pasid: ha }]);
  assert.deepEqual(host.ridUsers('00:0a.0'), [{ guest: keep, kind: 'SharedWq' }], 'the other guest keeps its use');
  const orphans = host.snapshot().orphans;
  assert.deepEqual(orphans.map((o) => [o.guest, o.hpasid].join()).sort(), [[g, ha].join(), [g, hb].join()].sort());
  assert.deepEqual(host.draining(), orphans);
  assert.equal(host.sharedInUse, 3);
  refusedUnchanged(host, 7, () => host.destroyGuest(g)); // stale id
  refusedUnchanged(host, 7, () => host.programmedEntries(g));
  refusedUnchanged(host, 53, () => host.completeTeardown([{ ...orphans[0], hpasid: null }]));
  refusedUnchanged(host, 53, () => host.completeTeardown([...orphans, { guest: keep, gpasid: k, hpasid: host.translate(keep, k) }]));
  // Their host PASIDs are out of reach of every other guest until then.
  const fresh = host.createGuest('p2', 4);
  const hf = host.translate(fresh, host.allocPasid(fresh, 'shared'));
  assert.ok(![ha, hb].includes(hf), `${hf} was handed out while draining`);
  host.completeTeardown(orphans);
  assert.deepEqual(host.snapshot().orphans, []);
  assert.equal(host.sharedInUse, 2);
  host.free();
});

test('a Broker: leases per VMM, spares without a commit, a crash quarantined then freed, a restart reclaimed', () => {
  const broker = new Broker({ shared: [4096, 4112], quarantineMs: 60000, graceMs: 30000, spare: 2 });
  const cfg = { ...P2, shared: [4096, 4112] };
  const [q1, q2] = [broker.connect(), broker.connect()];
  const [h1, h2] = [Host.onBroker(broker, q1, cfg), Host.onBroker(broker, q2, cfg)];
  const [g1, g2] = [h1.createGuest('p2', 8), h2.createGuest('p2', 8)];
  const hp = (h, g) => h.translate(g, h.allocPasid(g, 'shared'));
  assert.equal(broker.calls, 2, 'two connects');
  let records = broker.opsTotal;
  assert.equal(hp(h1, g1), 4096);
  let s = broker.status();
  assert.deepEqual(s.leases[0].spare, [4097, 4098], 'recorded to the lease ahead of its requests');
  assert.ok(broker.opsTotal > records, 'the first grant is a commit');
  records = broker.opsTotal;
  assert.equal(hp(h1, g1), 4097, 'the lowest of its own spares');
  assert.equal(broker.opsTotal, records, 'a spare\'s grant needs no commit');
  assert.equal(broker.calls, 4, 'but it is a call');
  assert.equal(hp(h2, g2), 4099, 'not the other lease\'s spare');
  // Each host counts its own host PASIDs, and sees what the broker has left for it.
  assert.equal(h1.sharedInUse, 2);
  assert.equal(h2.sharedInUse, 1);
  assert.equal(h1.sharedFree, h2.sharedFree);
  assert.equal(h1.sharedFree, broker.status().totals.free);
  assert.deepEqual(broker.stateOf(4098), { pasid: 4098, state: 'spare', lease: 1, vmm: 0, until: null });
  // qemu-1 crashes: its spares free at once, its grants are quarantined (orphaned lease).
  broker.crash(q1);
  s = broker.status();
  assert.equal(s.leases[0].state, 'orphaned');
  assert.equal(s.leases[0].until, 60000);
  assert.deepEqual(s.pasids.filter((p) => p.state === 'orphaned').map((p) => p.pasid), [4096, 4097]);
  assert.equal(broker.stateOf(4098).state, 'free');
  assert.deepEqual([hp(h2, g2), hp(h2, g2)], [4100, 4101], 'qemu-2 never gets qemu-1\'s');
  const dead = coreError(() => broker.alloc(q1, 1));
  assert.equal(dead.name, 'LeaseError');
  assert.equal(dead.codeName, 'NotServing');
  broker.tick(60000);
  assert.equal(broker.now, 60000);
  assert.equal(broker.stateOf(4096).state, 'free');
  assert.equal(broker.status().leases.length, 1);
  // Its spares ran out: one commit records the lowest free one and two more spares.
  assert.equal(hp(h2, g2), 4096);
  assert.deepEqual(broker.status().leases[0].spare, [4097, 4098]);
  // The broker restarts: qemu-2's lease is unconfirmed; its next grant reclaims it.
  broker.restart();
  s = broker.status();
  assert.equal(s.leases[0].state, 'unconfirmed');
  assert.equal(s.leases[0].until, 90000);
  assert.equal(s.vmms[1].connected, false);
  hp(h2, g2);
  s = broker.status();
  assert.equal(s.leases[0].state, 'connected');
  assert.deepEqual(s.pasids.filter((p) => p.state === 'quarantined').map((p) => [p.pasid, p.until]), [[4097, 120000], [4098, 120000]],
    'its former spares, not listed in the reclaim, are quarantined');
  // Refusals: a typed lease error with the core's message, or a TypeError for arguments.
  const [callsBefore, recordsBefore] = [broker.calls, broker.opsTotal];
  const tooMany = coreError(() => broker.alloc(q2, 100));
  assert.equal(tooMany.codeName, 'Exhausted');
  assert.deepEqual([broker.calls, broker.opsTotal], [callsBefore, recordsBefore], 'a refused call counts nothing');
  assert.match(tooMany.message, /^100 host PASIDs asked, \d+ free$/);
  assert.ok(coreError(() => broker.alloc(7, 1)) instanceof TypeError);
  assert.equal(coreError(() => Host.onBroker(broker, q2, P2)).code, 33);
  // Undo: a saved broker and host clones go back together.
  const saved = { broker: broker.save(), h2: h2.clone() };
  hp(h2, g2);
  broker.restore(saved.broker);
  assert.equal(saved.h2.sharedInUse, h2.sharedInUse - 1);
  assert.ok(coreError(() => broker.restore(new Broker({ shared: [4096, 4200] }))) instanceof TypeError);
  for (const x of [h1, h2, saved.h2, saved.broker, broker]) x.free();
});

test('the translation change stream: what KVM is handed, in apply order', () => {
  const host = new Host(P2);
  const g = host.createGuest('p2', 4);
  assert.equal(host.pendingTranslationChanges(g), undefined);
  const first = host.allocPasid(g, 'shared');
  host.enableTranslationChanges(g, 4); // starts with the whole table
  const second = host.allocPasid(g, 'shared');
  const freed = host.freePasid(g, first);
  assert.equal(host.pendingTranslationChanges(g), 3);
  assert.deepEqual(host.drainTranslationChanges(g), [
    { gpasid: first, hpasid: host.translate(g, second) - 1 },
    { gpasid: second, hpasid: host.translate(g, second) },
    { gpasid: first, hpasid: null },
  ]);
  assert.equal(host.pendingTranslationChanges(g), 0);
  host.completeTeardown([freed]);
  // Refusals are core errors and change nothing.
  const before = JSON.stringify(host.snapshot());
  assert.equal(coreError(() => host.enableTranslationChanges(g + 7, 4)).codeName, 'NoSuchGuest');
  assert.equal(JSON.stringify(host.snapshot()), before);
  host.disableTranslationChanges(g);
  assert.equal(host.pendingTranslationChanges(g), undefined);
  host.free();
});
