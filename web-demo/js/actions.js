// What the page's controls do: each `data-action` name maps to a function here that
// reads its fields, runs one undoable step of core calls (state.step) and leaves the
// result in the state for the view. Nothing here draws.

import { wasm } from './wasm.js';
import { errText, num, ridText } from './format.js';
import { PRESETS } from './presets.js';
import { withFlippedBit, withQuota } from './blob.js';
import { TICK_MS, batch, expectError, forget, hostByKey, ops, otherHost, render, state, step, undo } from './state.js';
import { TOUR, enterTourStep, endTour } from './tour.js';

const hex = (v) => `0x${v.toString(16)}`;

/** The value of a field `name` in the control's `data-scope`. */
function field(el, name) {
  const scope = el.closest('[data-scope]');
  const input = scope?.querySelector(`[data-field="${name}"]`);
  return input ? input.value.trim() : '';
}

function pasidField(el, name) {
  const text = field(el, name);
  if (!/^\d+$/.test(text)) throw new TypeError(`${name === 'gpasid' ? 'gPASID' : 'PASID'} must be a number, got "${text}"`);
  return Number(text);
}

function guestOf(el) {
  const h = hostByKey(el.dataset.host);
  return [h, Number(el.dataset.guest)];
}

/** A guest's vIOMMU: its VT-d revision and last VCMD exchange. */
export function vcmdOf(key) {
  state.vcmd[key] ??= { rev: '3.3', out: '' };
  return state.vcmd[key];
}

/** Runs a preset's scene inside someone else's step (the tour's), with its context. */
export function runPresetById(id, ctx) {
  PRESETS.find((p) => p.id === id).run(ctx);
}

/** Runs a preset (or a refusal's set-up) as one step; its context says what it selected. */
function runPreset(preset) {
  const ctx = { ops, h: hostByKey, expectError, log: null, selected: '', ridKinds: null, lines: [] };
  const ok = step(`preset: ${preset.title}`, (log) => {
    ctx.log = (line) => {
      ctx.lines.push(line);
      log(line);
    };
    preset.run(ctx);
    // Say what the preset is about where it was clicked, not only in a hover title.
    state.presetNote = { title: preset.title, blurb: preset.blurb };
  }, 'preset');
  if (!ok) state.presetNote = null;
  if (ok && ctx.selected) {
    state.migration.selected = ctx.selected;
    if (ctx.ridKinds) state.migration.ridKinds[ctx.selected] = { ...ctx.ridKinds };
    state.migration.reveal = 'controls';
    render();
  }
  return ok ? ctx : null;
}

// Blob edits for the refusal demos: [what the log says, edit].
const TAMPER = {
  quota: ['blob edited in transit: quota 64 → 1, CRC recomputed', (blob) => withQuota(blob, 1)],
  bitflip: ['blob corrupted in transit: one payload bit flipped', withFlippedBit],
};

// The device-kind names the wasm calls read (importGuest's RID map, bindUse, detachUse), by snapshot kind.
export const MAP_KIND = { Dedicated: 'dedicated', SharedWq: 'shared-wq' };

/**
 * The RID map of a guest as [source, destination, destination kind] entries. The kind
 * says what the destination device is on the other host (its VMM set it up); it
 * defaults to the source device's kind, and the core refuses a device of another kind.
 */
export function ridMapFor(key, guestId) {
  const h = hostByKey(key);
  // The live host, not the last render's snapshot: a batch of steps may not have drawn.
  const snap = h.host.summary().guests.find((g) => g.id === guestId);
  const map = state.migration.ridMap[`${key}:${guestId}`] ?? {};
  const kinds = state.migration.ridKinds[`${key}:${guestId}`] ?? {};
  // A blank destination leaves the RID out of the map (the core refuses: not mapped).
  return snap.devices.map((d) => {
    const from = ridText(d.rid);
    return [from, map[from] ?? from, kinds[from] ?? MAP_KIND[d.kind]];
  });
}

/** Moves a guest to the other host; `setup` says what a refusal demo arranged. */
export function migrate(key, guestId, { tamper, setup } = {}) {
  const src = hostByKey(key);
  const dst = otherHost(src);
  const name = src.names[guestId];
  const sent = ridMapFor(key, guestId).filter(([, to]) => to !== '');
  state.migration.result = null;
  return batch(() => migrateStep(src, dst, guestId, name, sent, tamper, setup));
}

function migrateStep(src, dst, guestId, name, sent, tamper, setup) {
  const key = src.key;
  const ok = step(`migrate ${name}: host ${src.key} → host ${dst.key}`, (log) => {
    const before = src.host.guestSnapshot(guestId);
    const targetBefore = JSON.stringify(dst.host.snapshot());
    let blob = src.host.exportGuest(guestId);
    const info = wasm.inspectBlob(blob);
    log(`exported ${num(blob.length)} bytes (format ${info.format_major}.${info.format_minor}: ${num(info.pasids.length)} gPASIDs, ${info.devices.length} devices)`);
    if (tamper) {
      log(tamper[0]);
      blob = tamper[1](blob);
    }
    log(`RID map ${sent.map(([a, b, kind]) => `${a}→${b} (${kind})`).join(', ') || '(empty)'}`);
    let imported;
    try {
      imported = dst.host.importGuest(blob, sent);
    } catch (e) {
      const unchanged = JSON.stringify(dst.host.snapshot()) === targetBefore;
      state.migration.result = { ok: false, name, from: src.key, to: dst.key, error: errText(e), unchanged, setup };
      throw e;
    }
    const after = dst.host.guestSnapshot(imported.guest);
    dst.names[imported.guest] = name;
    const entries = src.host.destroyGuest(guestId);
    state.destroyed[src.key] = { name, entries }; // its name stays: its draining PASIDs show it
    const left = src.host.draining().filter((d) => d.guest === guestId).length;
    log(`${name} is guest 0x${imported.guest.toString(16)} on host ${dst.key}; source guest destroyed (${entries.length} entries to clear on host ${src.key}, ${left} hPASIDs draining there until the teardown is confirmed)`);
    state.migration.result = { ok: true, name, from: src.key, to: dst.key, before, after, report: imported.report, shared: [dst.config.shared[0], dst.config.shared[1]] };
    state.migration.selected = `${dst.key}:${imported.guest}`;
    if (state.walk.guest === `${key}:${guestId}`) state.walk.guest = `${dst.key}:${imported.guest}`;
  }, 'migrate');
  // The result is where the user must look next, wherever the button was.
  state.migration.reveal = 'result';
  return ok;
}

/**
 * One guest's PASIDs as snapshot JSON (`[{"gpasid":..,"kind":..,"hpasid":..}]`), written
 * straight from `pasidPairs`: for 300,000 PASIDs this is a fraction of the time
 * `snapshot()` and `JSON.stringify` of as many objects take.
 */
function pasidsJson(pairs) {
  const parts = new Array(pairs.length / 2);
  for (let i = 0; i < pairs.length; i += 2) {
    const h = pairs[i + 1];
    parts[i / 2] = h ? `{"gpasid":${pairs[i]},"kind":"Shared","hpasid":${h}}` : `{"gpasid":${pairs[i]},"kind":"Local","hpasid":null}`;
  }
  return `[${parts.join(',')}]`;
}

/** The whole state as a JSON download (never a textarea: 300k PASIDs froze one). */
function exportState() {
  const t0 = performance.now();
  const lists = new Map(); // placeholder -> PASID list JSON
  const hosts = state.hosts.map((h) => {
    const snapshot = h.host.summary(); // the snapshot's shape, PASID lists left empty
    for (const g of snapshot.guests) {
      const mark = `\u0000pasids:${h.key}:${g.id}`;
      lists.set(mark, pasidsJson(h.host.pasidPairs(g.id)));
      g.pasids = mark;
    }
    return { key: h.key, config: h.config, guestNames: h.names, snapshot };
  });
  const data = {
    tool: 'pasid playground',
    exportedAt: new Date().toISOString(),
    hosts,
    log: state.log.map(({ text, ok, error, details, undone }) => ({ text, ok, error, details, undone: !!undone })),
  };
  // The Blob takes the pieces as they are: no 17 MB string is built twice.
  const parts = JSON.stringify(data, null, 1).split(/"(\\u0000pasids:[AB]:\d+)"/)
    .map((piece, i) => (i % 2 ? lists.get(JSON.parse(`"${piece}"`)) : piece));
  const blob = new Blob(parts, { type: 'application/json' });
  const a = document.querySelector('[data-testid="export-download"]');
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(blob);
  a.click();
  state.exported = { bytes: blob.size, ms: performance.now() - t0, name: a.download };
  // Only the status changes: no need to redraw 300,000 PASIDs.
  document.querySelector('[data-testid="export-status"]').textContent = exportStatus();
}

/** The line that says what the last export saved. */
export function exportStatus() {
  const x = state.exported;
  return x ? `saved ${x.name} (${num(x.bytes)} bytes, built in ${x.ms.toFixed(0)} ms)` : '';
}

const MACHINE_WQ = '0000:6a:01.0'; // the machine's DSA shared WQ, which every VMM's guests use

/** A VMM starts a VM on the machine's shared WQ, with two shared PASIDs bound there. */
export function machineGuest(v) {
  const g = v.host.createGuest('p2', 8);
  v.names[g] = `${v.name.replace('qemu-', 'vm')}${String.fromCharCode(97 + Object.keys(v.names).length)}`;
  v.host.attach(g, MACHINE_WQ, 'shared-wq');
  const programmed = [0, 1].map(() => v.host.bind(g, v.host.allocPasid(g, 'shared'), MACHINE_WQ));
  return `${v.names[g]} (in ${v.name}): gPASIDs 1, 2 → hPASIDs ${programmed.join(', ')}`;
}

/** Two VMM processes on a new machine, their VMs started in turn. */
export function machineScene(log) {
  ops.machine(2);
  const [q1, q2] = state.machine.vmms;
  for (const v of [q1, q2, q1, q2]) log(machineGuest(v));
  log('each VMM numbers its guests\' gPASIDs itself (all start at 1); the host PASIDs come from one range and never collide');
}

/** The broker's lease of a VMM, from its status. */
export function leaseOf(status, v) {
  return status.leases.find((l) => l.vmm === v.id) ?? null;
}

/** Milliseconds of the broker's clock as text: `t = 1 min 30 s`. */
export function clockText(ms) {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}` : `${s} s`;
}

/**
 * A VMM process dies with its VMs: the kernel closes its connection to the broker
 * without a goodbye. The broker frees its spares at once and keeps its host PASIDs
 * (the hardware may still hold them) out of everyone's reach until the quarantine ends.
 */
export function crashVmm(v, log) {
  const m = state.machine;
  m.broker.crash(v.id);
  v.crashed = true;
  const lease = leaseOf(m.broker.status(), v);
  log(lease
    ? `${v.name}'s VMs are gone; its lease ${lease.lease} is orphaned: hPASIDs ${lease.held.join(', ')} are quarantined until t = ${clockText(lease.until)}, its spares are free`
    : `${v.name}'s VMs are gone; it held no host PASIDs, so its lease simply ended`);
}

/** Time passes on the broker's clock; it ends the quarantines and grace periods that are due. */
export function tickBroker(log) {
  const b = state.machine.broker;
  const before = b.status();
  b.tick(TICK_MS);
  const after = b.status();
  log(`t = ${clockText(after.now)}: ${num(after.totals.free - before.totals.free)} host PASIDs came back to the pool; ${num(after.totals.quarantined)} still quarantined`);
}

/** The broker restarts from its store: every lease waits, unconfirmed, for its VMM to reclaim it. */
export function restartBroker(log) {
  const b = state.machine.broker;
  b.restart();
  const s = b.status();
  const waiting = s.leases.filter((l) => l.state === 'unconfirmed');
  log(`the broker restarted from its store: ${waiting.length} leases unconfirmed until t = ${clockText(s.now + s.graceMs)} (their spares are now recorded as held: the store cannot tell them apart); each VMM reclaims on its next call`);
}

/** A VM of a running VMM shuts down: its guest goes, its host PASIDs drain until the teardown. */
export function stopGuest(v, log) {
  const guests = v.host.guests();
  const g = guests[guests.length - 1];
  const name = v.names[g];
  v.host.destroyGuest(g);
  log(`${name} (in ${v.name}) shuts down: hPASIDs ${v.host.draining().map((d) => d.hpasid).filter((p) => p !== null).join(', ')} drain until ${v.name} confirms the teardown`);
}

// One confirmation takes at most this many PASIDs: the core's check of a batch grows
// with its size times the draining count, and 1,000 of 200,000 stays under half a second.
export const TEARDOWN_BATCH = 1000;

/** At most `n` items of a list as text, the rest counted. */
function listText(items, n = 12) {
  return items.length > n ? `${items.slice(0, n).join(', ')}, … (${num(items.length)} in all)` : items.join(', ');
}

/** A draining record as a log line. */
export function drainingText(d) {
  return `gPASID ${d.gpasid}${d.hpasid !== null ? ` and hPASID ${d.hpasid}` : ''} drain: no longer translating, not handed out again until the teardown is confirmed`;
}

/** Destroys a guest as one step; the entries the VMM must clear are shown below the maps. */
export function destroy(h, g) {
  const name = h.names[g];
  return step(`host ${h.key}: remove ${name}`, (log) => {
    const entries = h.host.destroyGuest(g);
    const left = h.host.draining().filter((d) => d.guest === g);
    log(`the VMM clears ${num(entries.length)} PASID-table entr${entries.length === 1 ? 'y' : 'ies'}${entries.length ? `: ${listText(entries.map((e) => `${ridText(e.rid)} PASID ${e.pasid}`))}` : ''}`);
    if (left.length) log(`hPASIDs ${listText(left.map((d) => d.hpasid))} drain until the teardown is confirmed`);
    state.destroyed[h.key] = { name, entries };
  }, `${h.key}:${g}:guest`);
}

/** The VMM says the hardware let go of `items`: one step, all or nothing (the core checks). */
export function confirmTeardown(h, items) {
  return step(`host ${h.key}: teardown confirmed for ${items.length === 1 ? `gPASID ${items[0].gpasid}` : `${items.length} PASIDs`}`, (log) => {
    h.host.completeTeardown(items);
    const shared = items.filter((d) => d.hpasid !== null).map((d) => d.hpasid);
    log(shared.length ? `hPASIDs ${listText(shared)} are free again` : 'the gPASIDs are free again');
  }, `${h.key}:teardown`);
}

export const actions = {
  preset(el) {
    runPreset(PRESETS.find((p) => p.id === el.dataset.preset));
  },
  undo,
  export: exportState,
  layout(el) {
    const key = el.dataset.host;
    const config = {
      platform: field(el, 'platform'),
      width: Number(field(el, 'width')),
      local: [Number(field(el, 'local-start')), Number(field(el, 'local-end'))],
      shared: [Number(field(el, 'shared-start')), Number(field(el, 'shared-end'))],
    };
    step(`host ${key}: layout ${config.platform}, ${config.width} bits, local ${config.local.join('..')}, shared ${config.shared.join('..')} (host reset)`, () => ops.layout(key, config), `${key}:layout`);
  },
  addGuest(el) {
    const key = el.dataset.host;
    const platform = field(el, 'platform');
    const quota = Number(field(el, 'quota'));
    step(`host ${key}: add ${platform} guest${platform === 'p2' ? ` (quota ${quota})` : ''}`, (log) => {
      const id = ops.guest(key, platform, quota);
      log(`${hostByKey(key).names[id]} is guest 0x${id.toString(16)}`);
    }, `${key}:addGuest`);
  },
  removeGuest(el) {
    const [h, g] = guestOf(el);
    destroy(h, g);
  },
  attach(el) {
    const [h, g] = guestOf(el);
    const rid = field(el, 'rid');
    const kind = field(el, 'kind');
    // On success the RID field offers the next free RID; on failure it keeps the typing.
    if (step(`host ${h.key}: attach ${rid} (${kind}) to ${h.names[g]}`, () => h.host.attach(g, rid, kind), `${h.key}:${g}:attach`)) {
      forget(`${h.key}:${g}:attach-rid`);
      render();
    }
  },
  detach(el) {
    const [h, g] = guestOf(el);
    const { rid, kind } = el.dataset;
    step(`host ${h.key}: detach ${rid} (${kind}) from ${h.names[g]}`, () => h.host.detachUse(g, rid, kind), `${h.key}:${g}:attach`);
  },
  alloc(el) {
    const [h, g] = guestOf(el);
    const kind = el.dataset.kind;
    step(`host ${h.key}: ${h.names[g]} allocates a ${kind} PASID`, (log) => {
      const gp = h.host.allocPasid(g, kind);
      log(kind === 'shared' ? `gPASID ${gp} → hPASID ${h.host.translate(g, gp)}` : `gPASID ${gp}`);
    }, `${h.key}:${g}:alloc`);
  },
  freePasid(el) {
    const [h, g] = guestOf(el);
    step(`host ${h.key}: ${h.names[g]} frees gPASID ${field(el, 'gpasid')}`, (log) => {
      log(drainingText(h.host.freePasid(g, pasidField(el, 'gpasid'))));
    }, `${h.key}:${g}:free`);
  },
  bind(el) {
    const [h, g] = guestOf(el);
    const [rid, use] = field(el, 'device').split('|');
    step(`host ${h.key}: ${h.names[g]} binds gPASID ${field(el, 'gpasid')} to ${rid}${use ? ` (${use})` : ''}`, (log) => {
      const gp = pasidField(el, 'gpasid');
      log(`programmed PASID ${use ? h.host.bindUse(g, gp, rid, use) : h.host.bind(g, gp, rid)}`);
    }, `${h.key}:${g}:bind`);
  },
  unbind(el) {
    const [h, g] = guestOf(el);
    const [rid, use] = field(el, 'device').split('|');
    step(`host ${h.key}: ${h.names[g]} unbinds gPASID ${field(el, 'gpasid')} from ${rid}${use ? ` (${use})` : ''}`, (log) => {
      const gp = pasidField(el, 'gpasid');
      log(`the VMM clears PASID ${use ? h.host.unbindUse(g, gp, rid, use) : h.host.unbind(g, gp, rid)} on ${rid}`);
    }, `${h.key}:${g}:bind`);
  },
  teardown(el) {
    // The record as the core listed it when the button was drawn; a stale one is the
    // core's to refuse (NotDraining), with nothing changed.
    confirmTeardown(hostByKey(el.dataset.host), [JSON.parse(el.dataset.record)]);
  },
  teardownAll(el) {
    const h = hostByKey(el.dataset.host);
    confirmTeardown(h, h.host.draining().slice(0, TEARDOWN_BATCH));
  },
  record(el) {
    const [h, g] = guestOf(el);
    const rid = field(el, 'device');
    step(`host ${h.key}: ${h.names[g]} picks PASID ${field(el, 'pasid')} on ${rid}`, (log) => {
      log(`programmed PASID ${h.host.record(g, rid, pasidField(el, 'pasid'))}`);
    }, `${h.key}:${g}:record`);
  },
  release(el) {
    const [h, g] = guestOf(el);
    const rid = field(el, 'device');
    step(`host ${h.key}: ${h.names[g]} drops PASID ${field(el, 'pasid')} on ${rid}`, () => h.host.release(g, rid, pasidField(el, 'pasid')), `${h.key}:${g}:record`);
  },
  vcmd(el) {
    const [h, g] = guestOf(el);
    const vc = vcmdOf(`${h.key}:${g}`);
    const rev = vc.rev;
    const what = field(el, 'command');
    const regs = wasm.vcmdLayout(rev);
    const label = { 'alloc-shared': 'ALLOC shared', 'alloc-local': 'ALLOC local (extension)', free: `FREE ${field(el, 'gpasid')}` }[what];
    step(`host ${h.key}: ${h.names[g]} writes ${label} to VCMD (VT-d ${rev})`, (log) => {
      const [code, operand] = what === 'free' ? [regs.cmd_free, BigInt(pasidField(el, 'gpasid'))]
        : [regs.cmd_alloc, what === 'alloc-local' ? BigInt(regs.alloc_operand_local_extension) : 0n];
      const command = wasm.vcmdCommand(rev, code, operand);
      const vcrsp = h.host.vcmd(g, rev, command);
      const r = wasm.vcmdDecode(rev, vcrsp);
      const meaning = r.status === 0 ? (code === regs.cmd_alloc ? `success, PASID ${r.pasid}` : 'success')
        : r.status === regs.sc_undefined ? 'undefined command'
          : r.status === regs.sc_no_pasid ? (code === regs.cmd_alloc ? 'no PASID available' : 'invalid PASID') : 'unknown status';
      vc.out = `VCMD@${hex(regs.vcmd)} ← ${hex(command)}; VCRSP@${hex(regs.vcrsp)} → ${hex(vcrsp)} (IP ${r.in_progress ? 1 : 0}, SC ${r.status}: ${meaning})`;
      log(vc.out);
      if (code === regs.cmd_free && r.status === 0) {
        const d = h.host.draining().find((x) => x.guest === g && BigInt(x.gpasid) === operand);
        if (d) log(`the guest sees success at once; ${drainingText(d)}`);
      }
    }, `${h.key}:${g}:vcmd`);
  },
  machineSetup() {
    step('machine: two VMM processes on one shared range', (log) => machineScene(log));
  },
  machineVmm() {
    step('machine: another VMM process starts', (log) => log(`${ops.vmm().name} draws from the same machine-wide range`));
  },
  machineGuest(el) {
    const v = state.machine.vmms[Number(el.dataset.vmm)];
    step(`machine: ${v.name} starts a VM`, (log) => log(machineGuest(v)));
  },
  machineCrash(el) {
    const v = state.machine.vmms[Number(el.dataset.vmm)];
    step(`machine: ${v.name} crashes`, (log) => crashVmm(v, log));
  },
  machineStop(el) {
    const v = state.machine.vmms[Number(el.dataset.vmm)];
    step(`machine: a VM of ${v.name} shuts down`, (log) => stopGuest(v, log));
  },
  machineTeardown(el) {
    const v = state.machine.vmms[Number(el.dataset.vmm)];
    step(`machine: teardown done for ${v.name}'s draining PASIDs`, (log) => {
      const items = v.host.draining();
      v.host.completeTeardown(items);
      const lease = leaseOf(state.machine.broker.status(), v);
      log(`${v.name} released hPASIDs ${items.map((d) => d.hpasid).filter((p) => p !== null).join(', ')} to the broker; its lease now keeps spares ${lease?.spare.join(', ') || 'none'} (no store write for those), the rest are free`);
    });
  },
  machineTick() {
    step(`machine: ${clockText(TICK_MS)} pass`, (log) => tickBroker(log));
  },
  machineRestart() {
    step('machine: the broker restarts', (log) => restartBroker(log));
  },
  migrate() {
    const [key, id] = state.migration.selected.split(':');
    if (key) migrate(key, Number(id));
  },
  refusal(el) {
    const preset = PRESETS.find((p) => p.id === el.dataset.refusal);
    batch(() => { // set-up and migration: two steps, one render
      const ctx = runPreset(preset);
      if (!ctx) return;
      const [key, id] = state.migration.selected.split(':');
      migrate(key, Number(id), { tamper: preset.tamper && TAMPER[preset.tamper], setup: { title: preset.title, blurb: preset.blurb, lines: ctx.lines } });
    });
  },
  walk() {
    render(); // the walk reads its kept fields when it renders
  },
  mapView(el) {
    state.maps.view[el.dataset.map] = { mode: el.dataset.mode };
    render();
  },
  tourStart() {
    enterTourStep(0);
  },
  tourNext() {
    enterTourStep(Math.min(state.tour.index + 1, TOUR.length - 1));
  },
  tourPrev() {
    enterTourStep(Math.max(state.tour.index - 1, 0));
  },
  tourEnd: endTour,
};

/** A change of a select that is state, not a field read at submit time. */
export function onStateChange(el) {
  if (el.matches('[data-testid="migrate-guest"]')) {
    state.migration.selected = el.value;
    state.migration.result = null;
  } else if (el.matches('[data-testid="vcmd-revision"]')) {
    vcmdOf(el.dataset.vcmd).rev = el.value;
    vcmdOf(el.dataset.vcmd).out = '';
  } else if (el.matches('[data-testid="walk-guest"]')) {
    state.walk.guest = el.value;
    forget('walk:gpasid'); // the new guest's own first shared gPASID
  } else if (el.dataset.ridmap) {
    const sel = state.migration.selected;
    state.migration.ridMap[sel] = { ...(state.migration.ridMap[sel] ?? {}), [el.dataset.ridmap]: el.value.trim() };
    return false;
  } else if (el.dataset.ridkind) {
    const sel = state.migration.selected;
    state.migration.ridKinds[sel] = { ...(state.migration.ridKinds[sel] ?? {}), [el.dataset.ridkind]: el.value };
    return false;
  } else {
    return false;
  }
  return true; // re-render
}
