// The guided tour: short steps for someone who has never heard of PASIDs. Each step
// sets up the live hosts through the same core calls as the controls (one undoable
// step in the log), says what to look at, and outlines it. Any step can be entered on
// its own: each builds its scene from empty hosts.

import { batch, ops, hostByKey, expectError, forget, keep, render, state, step } from './state.js';
import { crashVmm, machineScene, migrate, runPresetById } from './actions.js';
import { withTerms } from './glossary.js';

const P2 = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] };
const P1 = { ...P2, platform: 'p1' };
const VF1 = '0000:03:00.1';
const VF2 = '0000:03:00.2';
const WQ1 = '0000:00:0a.0';
const WQ2 = '0000:00:0b.0';

const inHost = (key, testid, inner = '') => `[data-testid="host-${key}"] [data-testid="${testid}"]${inner ? ` ${inner}` : ''}`;

/** vm1 on host A with a VF and a shared WQ, one local and one shared gPASID. */
function localAndShared({ log }) {
  ops.reset([P2, P2]);
  const A = hostByKey('A').host;
  const vm1 = ops.guest('A', 'p2', 8, 'vm1');
  A.attach(vm1, VF1, 'dedicated');
  A.attach(vm1, WQ1, 'shared-wq');
  const local = A.allocPasid(vm1, 'local');
  const shared = A.allocPasid(vm1, 'shared');
  log(`vm1: local gPASID ${local}; shared gPASID ${shared} → hPASID ${A.translate(vm1, shared)}`);
  return { A, vm1, local, shared };
}

/** The scene above plus both devices bound, and vm2 with its own VF and WQ. */
function mixed(ctx) {
  const { A, vm1, local, shared } = localAndShared(ctx);
  ctx.log(`bind gPASID ${local} to the VF: programmed ${A.bind(vm1, local, VF1)}`);
  ctx.log(`bind gPASID ${shared} to the VF: programmed ${A.bind(vm1, shared, VF1)}; to the shared WQ: programmed ${A.bind(vm1, shared, WQ1)}`);
  const vm2 = ops.guest('A', 'p2', 8, 'vm2');
  A.attach(vm2, VF2, 'dedicated');
  A.attach(vm2, WQ2, 'shared-wq');
  const other = A.allocPasid(vm2, 'shared');
  A.bind(vm2, other, WQ2);
  ctx.log(`vm2: shared gPASID ${other} → hPASID ${A.translate(vm2, other)}`);
  return { A, vm1, vm2, local, shared };
}

export const TOUR = [
  {
    title: 'What this page is',
    text: 'A {{PASID}} is a 20-bit tag on a device\'s memory accesses that says whose address space they belong to. In a VM two kinds of device need one: a {{VF}} given whole to one guest, and a {{shared WQ}} that many guests feed with {{ENQCMD}}. This page runs the real library (Rust compiled to WebAssembly) on two hosts, A and B. Each step of this tour sets them up and outlines the part to look at. Words with a dotted underline explain themselves on hover or tap.',
    run() {
      ops.reset([P2, P2]);
    },
    highlight: ['[data-testid="host-A"]', '[data-testid="host-B"]'],
  },
  {
    title: 'p1: each guest picks its own PASIDs, per VF',
    text: 'Host A is a {{p1}} host: no shared WQ anywhere. Its {{vIOMMU}} offers no PASID allocation, so a guest picks PASIDs itself, per device ({{RID}}). vm1 uses 1 and 2 on VF 03:00.1 and 1 again on VF 03:00.2; vm2 uses 1 and 7 on its own VF. Nothing clashes: a VF\'s PASIDs are its own. The host only checks and records them (so they can migrate) and programs them unchanged. The local-range map shows the numbers; grey means several guests use the same number, each on its own devices.',
    run({ log }) {
      ops.reset([P1, P1]);
      const A = hostByKey('A').host;
      const vm1 = ops.guest('A', 'p1', 0, 'vm1');
      A.attach(vm1, VF1, 'dedicated');
      A.attach(vm1, VF2, 'dedicated');
      for (const [rid, p] of [[VF1, 1], [VF1, 2], [VF2, 1]]) log(`vm1 picks PASID ${p} on ${rid}: programmed ${A.record(vm1, rid, p)}`);
      const vm2 = ops.guest('A', 'p1', 0, 'vm2');
      A.attach(vm2, '0000:04:00.1', 'dedicated');
      A.record(vm2, '0000:04:00.1', 1);
      A.record(vm2, '0000:04:00.1', 7);
      log('vm2 picks PASIDs 1 and 7 on 04:00.1');
    },
    highlight: [inHost('A', 'guest-vm1', 'table.devices'), inHost('A', 'guest-vm2', 'table.devices'), '[data-testid="map-A-local"]'],
  },
  {
    title: 'p2: local or shared, and the translation',
    text: 'Host A is now a {{p2}} host: it has shared WQs. The guest asks its vIOMMU for every PASID ({{VCMD}} ALLOC) and says which kind. Local, for a VF: just a free {{gPASID}}. Shared, for a shared WQ: a free gPASID too, and behind it an {{hPASID}} from the host\'s {{shared range}}, written into the guest\'s translation table. vm1 got local gPASID 1 and shared gPASID 2 → hPASID 4,096. The guest only ever sees 1 and 2.',
    run: localAndShared,
    highlight: [inHost('A', 'guest-vm1', '[data-testid="xlate-table"]'), '[data-testid="map-A-shared"]', '[data-testid="map-A-local"]'],
  },
  {
    title: 'A VF and a shared WQ in one guest',
    text: 'One process in vm1 uses both devices with the same gPASID 2. On the VF it is programmed as is (2): the VF\'s PASID space is the guest\'s. On the shared WQ it is programmed as hPASID 4,096, because ENQCMD\'s PASID is translated by the CPU on the way. vm2 got gPASID 1: the same number as vm1\'s local one, but its own hPASID 4,097. A host PASID always belongs to one guest; the shared-range map colours each by its owner.',
    run: mixed,
    highlight: [inHost('A', 'guest-vm1', 'table.devices'), inHost('A', 'guest-vm2', '[data-testid="xlate-table"]'), '[data-testid="map-A-shared"]'],
  },
  {
    title: 'What the CPU does with a gPASID',
    text: 'On ENQCMD in a guest, the CPU walks two levels of tables the library writes in the exact hardware format. Bit 19 of the gPASID picks one of two PASID directories (their addresses are VMCS fields). Bits 18:10 pick an 8-byte directory entry: a present bit and the address of a 4 KiB table. Bits 9:0 pick a 4-byte entry in it: a valid bit and the hPASID. Change the gPASID to 1 (vm1\'s local one): its entry is not valid, so the CPU would leave the guest with a VM exit (reason 72) instead.',
    run(ctx) {
      const { vm1, shared } = mixed(ctx);
      state.walk.guest = `A:${vm1}`;
      forget('walk:');
      keep('walk:gpasid', String(shared));
    },
    highlight: ['[data-testid="walk"]'],
  },
  {
    title: 'Migration: what stays and what changes',
    text: 'vm1 moves from host A to host B, where a resident guest already holds 100 shared PASIDs. Guest state travels unchanged: every gPASID, and the numbers programmed on VFs (the target\'s VF is programmed the same). Host state is made anew: each shared gPASID gets a fresh hPASID from host B\'s shared range, and the translation table is rebuilt. The table below compares both sides.',
    run(ctx) {
      runPresetById('p2-migration', ctx);
    },
    after() {
      const [key, id] = state.migration.selected.split(':');
      migrate(key, Number(id));
    },
    highlight: ['[data-testid="migrate-result"]'],
  },
  {
    title: 'A refusal',
    text: 'The library refuses what cannot work, says why, and leaves the target as it was. Here host B is a p1 host: its vIOMMU cannot offer PASID allocation, so vm1, a p2 guest whose processes rely on it, cannot land there. The other refusal buttons under Migration show the rest: quota, too small a range, a RID in use or of the wrong kind, a tampered or corrupted blob.',
    run(ctx) {
      runPresetById('refuse-p1-target', ctx);
    },
    after() {
      const [key, id] = state.migration.selected.split(':');
      migrate(key, Number(id), { setup: { title: 'p2 guest → p1 host', blurb: 'Host B is p1; vm1 on host A is a p2 guest with a VF and a shared WQ.', lines: [] } });
    },
    highlight: ['[data-testid="migrate-result"]'],
  },
  {
    title: 'PASIDs are reused only after the hardware has let go',
    text: 'One {{shared WQ}} (00:0a.0) now serves three guests. Each bound its own gPASID 1 there, and each binding programs that guest\'s own hPASID (4,096, 4,097, 4,098): the RID table lists every user and what it programmed. vm1 also has a mixed RID, a dedicated and a shared WQ on one function. Then vm2 freed gPASID 2. The guest got its answer at once, and the number stopped translating, but hPASID 4,100 may still sit in a PASID-table entry, the IOTLB or the WQ: it is {{draining}} (the dark cell on the shared map) and still counts against vm2\'s quota. vm2\'s next ALLOC got gPASID 3 and hPASID 4,101, never the old ones. Press "confirm teardown" once the VMM has cleared the entry, flushed and drained ({{teardown}}): only then are both numbers free again.',
    run(ctx) {
      runPresetById('p2-shared-wq', ctx);
      const A = hostByKey('A').host;
      const vm2 = A.guests()[1];
      const again = A.allocPasid(vm2, 'shared');
      ctx.log(`vm2 allocates again: gPASID ${again} → hPASID ${A.translate(vm2, again)}, not the draining ones`);
    },
    highlight: ['[data-testid="teardown-A"]', '[data-testid="rids-A"]', '[data-testid="map-A-shared"]', inHost('A', 'guest-vm2', '[data-testid="quota"]')],
  },
  {
    title: 'One machine, many VMM processes, and a VMM that crashes',
    text: 'So far each host was one program. On a real machine each VM has its own {{VMM}} process (QEMU), each with its own copy of the library, and host PASIDs must still be unique across all of them: the {{broker}} daemon owns the machine\'s shared range and gives each VMM a {{lease}}. Below the walk, qemu-1 and qemu-2 each started two VMs: each VMM numbers its guests\' gPASIDs from 1, and their host PASIDs come from one range and never collide. Each lease also keeps two {{spares}} (lighter cells), so its next grants need no write to the broker\'s store. Then qemu-1 crashed. Its spares came back at once, but the hardware may still hold its host PASIDs, so the broker keeps them {{quarantined}} (purple cells) until their deadline: a VM that qemu-2 starts now gets other ones. Press "time passes" twice and they are free; "restart the broker" shows the leases waiting to be reclaimed. The broker here is the daemon\'s own state machine (docs/broker.md).',
    run(ctx) {
      machineScene(ctx.log);
      crashVmm(state.machine.vmms[0], ctx.log);
    },
    highlight: ['[data-testid="machine"]'],
  },
  {
    title: 'Your turn',
    text: 'That is the design. The presets at the top set up more scenarios (an attack on the shared range, 300,000 PASIDs); every control works on the live hosts and every step can be undone. The glossary is at the top of the page.',
    run() {},
    highlight: ['.toolbar'],
  },
];

/** Enters step `i`: runs its set-up as one step, then outlines what it talks about. */
export function enterTourStep(i) {
  const s = TOUR[i];
  state.tour = { active: true, index: i, highlight: s.highlight, reveal: true };
  const ctx = { ops, h: hostByKey, expectError, log: null, selected: '', ridKinds: null, lines: [] };
  batch(() => {
    const ok = step(`tour ${i + 1}: ${s.title}`, (log) => {
      ctx.log = log;
      s.run(ctx);
      if (ctx.selected) state.migration.selected = ctx.selected;
    });
    if (ok && s.after) s.after(ctx);
    state.tour.reveal = true;
  });
}

export function endTour() {
  state.tour = { active: false, index: 0, highlight: [] };
  render();
}

export function renderTour() {
  const t = state.tour;
  if (!t.active) {
    return `<div class="tour-intro"><button data-action="tourStart" data-testid="tour-start" class="primary">New to PASIDs? Take the five-minute tour</button>
      <span class="muted">Or skip it: the controls below are all live.</span></div>`;
  }
  const s = TOUR[t.index];
  return `<section class="tour" data-testid="tour" aria-labelledby="tour-title">
    <h2 id="tour-title" data-testid="tour-step">Tour, step ${t.index + 1} of ${TOUR.length}: ${withTerms(s.title)}</h2>
    <p data-testid="tour-text" aria-live="polite">${withTerms(s.text)}</p>
    <div class="row">
      <button data-action="tourPrev" data-testid="tour-prev" ${t.index === 0 ? 'disabled' : ''}>← back</button>
      ${t.index < TOUR.length - 1 ? '<button data-action="tourNext" data-testid="tour-next" class="primary">next →</button>' : '<button data-action="tourEnd" data-testid="tour-finish" class="primary">finish</button>'}
      <button data-action="tourEnd" data-testid="tour-end">end the tour</button>
    </div>
  </section>`;
}
