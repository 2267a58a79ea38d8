// The wasm bindings under Node: errors and snapshot shape, on the `--target web` package
// (scripts/play.sh --build makes it), initialised synchronously from its bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { initSync, Host } from '../pkg/pasid_wasm.js';

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

  host.attach(g, '03:00.1', 'dedicated');
  const inUse = coreError(() => host.attach(g, '0000:03:00.1', 'shared-wq'));
  assert.equal(inUse.code, 9);
  assert.equal(inUse.message, 'RID 0000:03:00.1 is already attached');
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
      },
    ],
  });
  assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap);
  assert.deepEqual(host.guestSnapshot(g), snap.guests[0]);
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
