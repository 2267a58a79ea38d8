// The translation change stream under Node, from the built package (web-demo/pkg,
// scripts/play.sh --build): every call that changes a guest's table reports it, in the
// order to apply it. Run by scripts/test-web.sh beside web-demo/test/wasm.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { initSync, Host } from '../../web-demo/pkg/pasid_wasm.js';

initSync({ module: readFileSync(new URL('../../web-demo/pkg/pasid_wasm_bg.wasm', import.meta.url)) });
const P2 = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] };

/** Applies changes to a plain table, as KVM's one-pair-per-ioctl interface does. */
function replay(table, changes) {
  for (const { gpasid, hpasid } of changes) {
    if (hpasid === null) table.delete(gpasid);
    else table.set(gpasid, hpasid);
  }
  return table;
}
const entries = (host, g) => new Map(host.translationEntries(g).map((c) => [c.gpasid, c.hpasid]));

test('alloc, free, VCMD, destroy and import all reach the change stream', () => {
  const a = new Host(P2);
  const g = a.createGuest('p2', 8);
  a.attach(g, '00:0a.0', 'shared-wq');
  const p = a.allocPasid(g, 'shared');
  a.enableTranslationChanges(g, 16); // seeded with the whole table
  const kvm = replay(new Map(), a.drainTranslationChanges(g));
  assert.deepEqual(kvm, entries(a, g));
  const q = a.allocPasid(g, 'shared');
  a.bind(g, p, '00:0a.0');
  const freed = a.freePasid(g, q);
  replay(kvm, a.drainTranslationChanges(g));
  assert.deepEqual(kvm, entries(a, g));
  a.completeTeardown([freed]);
  // The guest's own ALLOC through VCMD (3.3 layout: operand at bit 8, shared).
  a.vcmd(g, '3.3', 1n);
  assert.equal(a.pendingTranslationChanges(g), 1);
  replay(kvm, a.drainTranslationChanges(g));
  assert.deepEqual(kvm, entries(a, g));
  assert.equal(kvm.size, 2);

  const blob = a.exportGuest(g);
  // Destroy: every entry left goes invalid, so KVM's table ends empty.
  const before = JSON.stringify(a.snapshot());
  assert.throws(() => a.destroyGuestReportingChanges(g + 99), (e) => e.codeName === 'NoSuchGuest');
  assert.equal(JSON.stringify(a.snapshot()), before);
  const { entries: programmed, changes } = a.destroyGuestReportingChanges(g);
  assert.equal(programmed.length, 1);
  assert.equal(replay(kvm, changes).size, 0);
  assert.equal(a.guests().length, 0);

  // Import: the new guest's log starts with its whole new table.
  const b = new Host(P2);
  const map = [['00:0a.0', '00:0a.0']];
  const empty = JSON.stringify(b.snapshot());
  assert.throws(() => b.importGuestWithChangeLog(blob.slice(1), map, 16), (e) => typeof e.code === 'number');
  assert.throws(() => b.importGuestWithChangeLog(blob, map, -1), TypeError);
  assert.equal(JSON.stringify(b.snapshot()), empty);
  const { guest } = b.importGuestWithChangeLog(blob, map, 16);
  const there = replay(new Map(), b.drainTranslationChanges(guest));
  assert.deepEqual(there, entries(b, guest));
  assert.equal(there.size, 2);
  a.free();
  b.free();
});
