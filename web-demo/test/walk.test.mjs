// The hardware walk view against the core: for each gPASID, every value the view shows
// (directory, entry values and bits, host PASID or VM exit) is what the wasm API in
// the same page computes from the core's own exported pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preset, setUp } from './harness.mjs';

const ctx = setUp();
const byId = (id) => ctx.page.getByTestId(id);

/** What the view shows, from its data attributes. */
async function shown() {
  const attrs = (id) => byId(id).count().then((n) => (n ? byId(id).evaluate((el) => ({ ...el.dataset })) : null));
  return { directory: await attrs('walk-directory'), dir: await attrs('walk-dir-entry'), entry: await attrs('walk-table-entry'), result: await attrs('walk-result') };
}

/** The same walk done by the test through the page's wasm API and the core's pages. */
async function fromCore(hostKey, guestName, gpasid) {
  return ctx.page.evaluate(([key, name, gp]) => {
    const { state, wasm } = window.pasidPlayground;
    const h = state.hosts.find((x) => x.key === key);
    const id = Number(Object.keys(h.names).find((k) => h.names[k] === name));
    const tables = [...h.host.translationTables(id)];
    const pages = h.host.exportTranslation(id, { low: 0x100000, high: 0x101000, tables: tables.map((table, i) => ({ table, phys: 0x102000 + i * 0x1000 })) });
    const trace = wasm.walk(0x100000, 0x101000, gp, [pages.low, pages.high, ...pages.tables]);
    let translated = null;
    try {
      translated = h.host.translate(id, gp);
    } catch (e) {
      translated = e.codeName;
    }
    return { trace, translated, value: `${key}:${id}` };
  }, [hostKey, guestName, gpasid]);
}

async function walkTo(gpasid) {
  await byId('walk-gpasid').fill(String(gpasid));
  await byId('walk-go').click();
}

test('the walk view shows what the core computes, for translated and faulting gPASIDs', async () => {
  await preset(ctx.page, 'p2-mixed');
  const core0 = await fromCore('A', 'vm1', 2);
  await byId('walk-guest').selectOption(core0.value);
  for (const gp of [2, 3, 1, 99, (1 << 19) | 2]) {
    await walkTo(gp);
    const { trace, translated } = await fromCore('A', 'vm1', gp);
    const v = await shown();
    assert.equal(v.directory.directory, trace.directory, `gPASID ${gp}: directory by bit 19`);
    assert.equal(v.directory.directory, gp >> 19 ? 'high' : 'low');
    assert.equal(Number(v.directory.phys), trace.directory_phys);
    assert.equal(Number(v.dir.index), (gp >> 10) & 0x1ff);
    assert.equal(v.dir.value, trace.directory_entry.value);
    assert.equal(v.dir.present, String(trace.directory_entry.present));
    if (trace.table_entry) {
      assert.equal(Number(v.entry.index), gp & 0x3ff);
      assert.equal(v.entry.value, trace.table_entry.value);
      assert.equal(v.entry.valid, String(trace.table_entry.valid));
    } else {
      assert.equal(v.entry, null);
    }
    if (trace.host_pasid !== null) {
      assert.equal(Number(v.result.hpasid), trace.host_pasid);
      assert.equal(trace.host_pasid, translated, 'the CPU walk agrees with the core\'s translate');
      assert.equal(v.entry.value, `0x${((0x80000000 | translated) >>> 0).toString(16)}`);
    } else {
      assert.equal(v.result.fault, trace.fault);
      assert.equal(v.result.exitEnqcmd, '72');
      assert.equal(v.result.exitEnqcmds, '73');
      assert.equal(typeof translated, 'string', `gPASID ${gp} has no hPASID in the core either (${translated})`);
    }
  }
  // vm2 on the same host: its own table, its gPASID 1 is a different hPASID.
  const vm2 = await fromCore('A', 'vm2', 1);
  await byId('walk-guest').selectOption(vm2.value);
  assert.equal(await byId('walk-gpasid').inputValue(), '1', 'a new guest starts at its first shared gPASID');
  assert.equal(Number((await shown()).result.hpasid), vm2.translated);
});

test('the walk view explains bad input and guests without shared PASIDs', async () => {
  await walkTo('abc');
  assert.match(await byId('walk-error').textContent(), /20 bits/);
  await walkTo(1 << 20);
  assert.match(await byId('walk-error').textContent(), /20 bits/);
  await preset(ctx.page, 'p1-sriov');
  assert.match(await byId('walk-empty').textContent(), /a p1 guest has no shared WQ/);
  assert.deepEqual(ctx.errors, []);
});
