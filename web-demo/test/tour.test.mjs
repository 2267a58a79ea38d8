// The guided tour, walked from the first step to the last: each step acts on the live
// hosts (checked through the page's own tables), outlines what it talks about (in
// view), and is screenshotted into screenshots/tour-N.png. Then the glossary: hover,
// keyboard focus and tap all explain a term.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SHOTS, setUp, xlateRows } from './harness.mjs';

const ctx = setUp();
const byId = (id) => ctx.page.getByTestId(id);
const inHost = (key, name) => byId(`host-${key}`).getByTestId(`guest-${name}`);
const programmed = async (card, rid) => (await card.getByTestId('device').filter({ hasText: rid }).getByTestId('programmed').textContent()).trim();

/** What each step must have set up, checked on the live page. */
const CHECKS = [
  async () => {
    assert.equal(await byId('host-A').locator('section.guest').count(), 0);
  },
  async () => {
    assert.equal(await programmed(inHost('A', 'vm1'), '0000:03:00.1'), '1, 2');
    assert.equal(await programmed(inHost('A', 'vm1'), '0000:03:00.2'), '1');
    assert.equal(await programmed(inHost('A', 'vm2'), '0000:04:00.1'), '1, 7');
  },
  async () => {
    assert.deepEqual(await xlateRows(inHost('A', 'vm1')), [{ g: 1, h: null }, { g: 2, h: 4096 }]);
  },
  async () => {
    assert.equal(await programmed(inHost('A', 'vm1'), '0000:03:00.1'), '1, 2');
    assert.equal(await programmed(inHost('A', 'vm1'), '0000:00:0a.0'), '2→4096');
    assert.deepEqual(await xlateRows(inHost('A', 'vm2')), [{ g: 1, h: 4097 }]);
  },
  async () => {
    assert.equal(await byId('walk-result').getAttribute('data-hpasid'), '4096');
    // The step invites trying the local gPASID: a VM exit.
    await byId('walk-gpasid').fill('1');
    await byId('walk-gpasid').press('Enter');
    assert.equal(await byId('walk-result').getAttribute('data-fault'), 'EntryInvalid');
    assert.equal(await byId('walk-result').getAttribute('data-exit-enqcmd'), '72');
  },
  async () => {
    assert.equal(await byId('migrate-kept').textContent(), '✓ every gPASID kept');
    assert.equal(await inHost('B', 'vm1').count(), 1);
  },
  async () => {
    assert.match(await byId('migrate-refusal').textContent(), /a p2 guest needs a p2 destination/);
    assert.equal(await byId('migrate-target-unchanged').textContent(), '✓ host B is unchanged');
  },
  async () => {
    // One shared WQ, three users, three hPASIDs; vm2's freed PASID drains, its next is new.
    const users = await byId('host-A').getByTestId('rid-row').filter({ hasText: '0000:00:0a.0' }).getByTestId('rid-user').evaluateAll((els) => els.map((e) => `${e.dataset.guest}:${e.dataset.programmed}`));
    assert.deepEqual(users, ['vm1:4096', 'vm2:4097', 'vm3:4098']);
    assert.deepEqual(await byId('host-A').getByTestId('draining-item').evaluateAll((els) => els.map((e) => [e.dataset.guest, e.dataset.gpasid, e.dataset.hpasid])), [['vm2', '2', '4100']]);
    assert.deepEqual(await xlateRows(inHost('A', 'vm2')), [{ g: 1, h: 4097 }, { g: 3, h: 4101 }]);
    assert.equal(await inHost('A', 'vm2').getByTestId('quota').getAttribute('data-held'), '3');
  },
  async () => {
    assert.equal(await byId('vmm-qemu-1').getByTestId('vmm-status').textContent(), 'crashed');
    assert.equal(await byId('vmm-qemu-1').getByTestId('vmm-quarantined').getAttribute('data-hpasids'), '4096 4097 4098 4102');
    assert.equal(await byId('vmm-qemu-1').getByTestId('vmm-quarantined').getAttribute('data-until'), '60000');
    // qemu-2: four held, two spares; qemu-1: four quarantined, its spares freed.
    assert.equal(await byId('machine-stat').getAttribute('data-used'), '10');
  },
  async () => {},
];

test('the tour walks from the first step to the last, acting on the live hosts', async () => {
  const { page } = ctx;
  await byId('tour-start').click();
  const total = CHECKS.length;
  for (let i = 0; i < total; i++) {
    assert.match(await byId('tour-step').textContent(), new RegExp(`^Tour, step ${i + 1} of ${total}: `));
    const focus = page.locator('.tour-focus');
    assert.ok(await focus.count() > 0, `step ${i + 1} outlines something`);
    // The step scrolls to the first part it names; it may outline more further off.
    const inView = await focus.evaluateAll((els) => els.some((el) => {
      const r = el.getBoundingClientRect();
      return r.bottom > 0 && r.top < innerHeight;
    }));
    assert.ok(inView, `step ${i + 1}: an outlined part is in view`);
    const entry = page.getByTestId('log-entry').filter({ hasText: `tour ${i + 1}:` }).last();
    assert.match(await entry.getAttribute('class'), /\bok\b/, await entry.textContent());
    await CHECKS[i]();
    await page.screenshot({ path: `${SHOTS}tour-${i + 1}.png` });
    if (i < total - 1) await byId('tour-next').click();
  }
  // Back works, and re-enters a step from scratch.
  await byId('tour-prev').click();
  assert.match(await byId('tour-step').textContent(), /step 9 of 10/);
  await CHECKS[8]();
  await byId('tour-end').click();
  assert.equal(await byId('tour').count(), 0);
  assert.equal(await page.locator('.tour-focus').count(), 0);
  assert.equal(await byId('tour-start').isVisible(), true);
  assert.deepEqual(ctx.errors, []);
});

test('experts can skip the tour: every control works without it', async () => {
  await byId('add-guest-A').click();
  assert.equal(await byId('host-A').locator('section.guest').count() > 0, true);
});

test('the glossary explains a term on hover, on keyboard focus and on tap', async () => {
  const { page } = ctx;
  const tip = byId('glossary-tip');
  const term = byId('lead').locator('.term[data-term="gPASID"]');
  await term.hover();
  await tip.waitFor({ state: 'visible' });
  assert.match(await tip.textContent(), /^gPASID: Guest PASID/);
  await page.mouse.move(0, 0);
  await term.focus();
  assert.equal(await tip.isVisible(), true);
  assert.equal(await term.getAttribute('aria-describedby'), 'glossary-tip');
  await page.keyboard.press('Escape');
  assert.equal(await tip.isVisible(), false);
  // Tap: a click on a term shows it, a click elsewhere hides it.
  const hpasid = byId('lead').locator('.term[data-term="hPASID"]');
  await hpasid.click();
  assert.match(await tip.textContent(), /^hPASID: Host PASID/);
  await page.locator('h1').click();
  assert.equal(await tip.isVisible(), false);
  // Every term the issue names has an entry.
  const terms = await byId('glossary').locator('dt').allTextContents();
  for (const t of ['PASID', 'RID', 'VF', 'shared WQ', 'ENQCMD', 'vIOMMU', 'VCMD', 'gPASID', 'hPASID', 'p1', 'p2']) assert.ok(terms.includes(t), t);
});
