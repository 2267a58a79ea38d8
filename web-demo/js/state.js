// What the page remembers: the two hosts (core objects from the wasm package), guest
// names and colours, the step log with undo, and the state of every control, so that
// a render (which rebuilds the markup) never loses what the user typed or picked.
//
// Every decision about PASIDs is the core's; this module only keeps the objects and
// runs steps so that a refused step leaves every host as it was.

import { wasm } from './wasm.js';
import { errText, PALETTE } from './format.js';

export const DEFAULT_CONFIG = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] };
export const KEYS = ['A', 'B'];
const UNDO_LIMIT = 30; // each entry holds a deep copy of both hosts

export const state = {
  hosts: [], // { key, config, host, names: { [guestId]: name }, snap }
  nextVm: 1,
  colours: {}, // name -> palette index
  undo: [], // { saved, entry }
  log: [], // { text, details, ok, error, undone, meta }
  // Errors of the last step only, by control key: { message, expected }. `expected`
  // marks a refusal a preset or the tour makes on purpose, so it reads as a demo.
  errors: {},
  // ridMap / ridKinds: `${host}:${guest}` -> { [source RID]: destination RID / its kind }
  migration: { selected: '', ridMap: {}, ridKinds: {}, result: null },
  vcmd: {}, // `${host}:${guest}` -> { rev, out }: each guest's vIOMMU has its own revision
  destroyed: {}, // host key -> { name, entries }: the last destroyed guest and what the VMM must clear
  kept: {}, // control key -> what the user typed or picked (see `kept`)
  focus: null, // { key, start, end } of the focused control, put back after a render
  maps: { view: {}, cursor: {} }, // `${host}:${range}` -> { mode, start } / cursor PASID
  walk: { guest: '' }, // the hardware walk's guest, `${host}:${guest}`
  tour: { active: false, index: 0, highlight: [] },
  exported: null, // { bytes, ms, name } of the last export
  presetNote: null, // { title, blurb } of the preset that set up the hosts
  version: 0, // bumped by every change of a host, so views can cache what they derive
  timings: [], // { what, ms }: each interaction until the next frame, for the tests
  // One machine, several VMM processes (issue 13, part 4): `broker` is the wasm Broker
  // (the daemon's own lease state machine, simulated with a clock the page moves),
  // `vmms` one core host per VMM process taking host PASIDs from its lease:
  // { name, id (its number at the broker), host, names: { [guestId]: name }, crashed }.
  // `lastStep`: what the last step that called the broker made it do (`brokerWork`).
  machine: { broker: null, vmms: [], lastStep: null },
};

export const MACHINE_RANGE = [4096, 4096 + 512];
export const MACHINE_CONFIG = { platform: 'p2', width: 20, local: [1, 4096], shared: MACHINE_RANGE };
// The simulated broker's policy: a minute of quarantine, half a minute of grace after a
// restart, two spares per lease (the daemon's defaults are longer and larger; short ones
// let a few clicks walk the whole lifecycle).
export const BROKER_CONFIG = { width: 20, local: [1, 4096], shared: MACHINE_RANGE, quarantineMs: 60000, graceMs: 30000, spare: 2 };
/** How far "time passes" moves the broker's clock. */
export const TICK_MS = 30000;

let renderer = () => {};

/** The view's render function; state changes call `render()` without importing the view. */
export function setRenderer(fn) {
  renderer = fn;
}

let batching = 0;
let wanted = false; // a render was asked for inside a batch
let drawing = false;

function draw() {
  drawing = true;
  try {
    renderer();
  } finally {
    drawing = false;
  }
}

/**
 * Whether a render is under way: the events it causes itself (a text field's `change`
 * when the render takes its focus off) are not the user's.
 */
export function rendering() {
  return drawing;
}

export function render() {
  if (batching === 0) draw();
  else wanted = true;
}

/**
 * Runs `fn` (several steps, say) with at most one render at the end instead of one per
 * step; none if nothing inside asked for one (an export changes no panel).
 */
export function batch(fn) {
  batching++;
  try {
    return fn();
  } finally {
    batching--;
    if (batching === 0 && wanted) {
      wanted = false;
      draw();
    }
  }
}

// ---------- controls that survive renders ----------

/** The kept value of a control, or `fallback` while the user has not touched it. */
export function kept(key, fallback) {
  return key in state.kept ? state.kept[key] : fallback;
}

export function keep(key, value) {
  state.kept[key] = value;
}

/** Forgets kept values whose key starts with `prefix` (all of them for ''). */
export function forget(prefix) {
  for (const k of Object.keys(state.kept)) if (k.startsWith(prefix)) delete state.kept[k];
}

// ---------- hosts ----------

function makeHost(key, config) {
  return { key, config: structuredClone(config), host: new wasm.Host(config), names: {} };
}

export function hostByKey(key) {
  return state.hosts.find((h) => h.key === key);
}

export function otherHost(h) {
  return state.hosts.find((o) => o !== h);
}

export function colourOf(name) {
  if (!(name in state.colours)) state.colours[name] = Object.keys(state.colours).length % PALETTE.length;
  return PALETTE[state.colours[name]];
}

export function guestName(h, id) {
  return h.names[id] ?? `guest ${id.toString(16)}`;
}

// ---------- steps and undo ----------

function saveState() {
  const m = state.machine;
  return {
    hosts: state.hosts.map((h) => ({ key: h.key, config: structuredClone(h.config), host: h.host.clone(), names: { ...h.names } })),
    nextVm: state.nextVm,
    colours: { ...state.colours },
    // The VMMs' hosts share the machine's broker: their clones and a copy of the broker
    // are taken together and put back together.
    machine: m.broker && { broker: m.broker, saved: m.broker.save(), vmms: m.vmms.map((v) => ({ ...v, host: v.host.clone(), names: { ...v.names } })) },
  };
}

function restoreState(saved) {
  for (const h of state.hosts) h.host.free();
  state.hosts = saved.hosts;
  state.nextVm = saved.nextVm;
  state.colours = saved.colours;
  for (const v of state.machine.vmms) v.host.free();
  if (saved.machine) {
    saved.machine.broker.restore(saved.machine.saved);
    saved.machine.saved.free();
    state.machine = { broker: saved.machine.broker, vmms: saved.machine.vmms, lastStep: null };
  } else {
    state.machine = { broker: null, vmms: [], lastStep: null };
  }
}

function freeSaved(saved) {
  for (const h of saved.hosts) h.host.free();
  if (saved.machine) {
    saved.machine.saved.free();
    for (const v of saved.machine.vmms) v.host.free();
  }
}

/** The machine's broker and its counters now, to tell what a step made it do. */
function brokerCounters() {
  const b = state.machine.broker;
  return b && { broker: b, calls: b.calls, records: b.opsTotal };
}

/**
 * What a step made the machine's broker do, every call of the step counted (each VM's
 * grants, the releases of a teardown, a crash, time passing, a restart, a reclaim):
 * how many calls and how many store records they wrote together. A step that never
 * called the broker leaves the figure of the last one that did.
 */
function brokerWork(text, before) {
  const m = state.machine;
  const b = m.broker;
  if (!b) return;
  const same = before?.broker === b; // a new machine counts from its start
  const calls = b.calls - (same ? before.calls : 0);
  if (calls > 0) m.lastStep = { text, calls, records: b.opsTotal - (same ? before.records : 0) };
}

/**
 * Runs one user step. On success it can be undone; on failure every host is put back
 * as it was and the error goes to the log and next to the control (`errKey`). Errors
 * of earlier steps are cleared: an error always belongs to the last thing done.
 */
export function step(text, fn, errKey) {
  const saved = saveState();
  const broker = brokerCounters();
  const entry = { text, details: [], ok: true };
  state.errors = {};
  try {
    fn((line) => entry.details.push(line));
    brokerWork(text, broker);
    state.undo.push({ saved, entry });
    state.version++;
    if (state.undo.length > UNDO_LIMIT) freeSaved(state.undo.shift().saved);
  } catch (e) {
    entry.ok = false;
    entry.error = errText(e);
    state.errors = {}; // a half-run preset's demo refusals are not what failed
    if (errKey) state.errors[errKey] = { message: entry.error, expected: false };
    restoreState(saved);
  }
  state.log.push(entry);
  render();
  return entry.ok;
}

export function undo() {
  const last = state.undo.pop();
  if (!last) return;
  restoreState(last.saved);
  state.version++;
  last.entry.undone = true;
  state.errors = {};
  for (const v of Object.values(state.vcmd)) v.out = '';
  state.migration.result = null;
  state.destroyed = {};
  state.log.push({ text: `undo: ${last.entry.text}`, details: [], ok: true, meta: true });
  render();
}

/** Runs `fn`, which must throw; the error is logged as expected and shown at `errKey`. */
export function expectError(log, text, fn, errKey) {
  try {
    fn();
  } catch (e) {
    log(`✗ ${text}: ${errText(e)}`);
    if (errKey) state.errors[errKey] = { message: errText(e), expected: true, why: text };
    return e;
  }
  throw new Error(`expected a refusal: ${text}`);
}

// ---------- operations (used by the controls, the presets and the tour) ----------

export const ops = {
  reset(configs) {
    for (const h of state.hosts) h.host.free();
    state.hosts = KEYS.map((key, i) => makeHost(key, configs[i] ?? DEFAULT_CONFIG));
    state.nextVm = 1;
    state.colours = {};
    state.errors = {};
    state.migration = { selected: '', ridMap: {}, ridKinds: {}, result: null };
    state.vcmd = {};
    state.destroyed = {};
    state.kept = {};
    state.maps = { view: {}, cursor: {} }; // maps fit the new data again
    state.walk = { guest: '' };
    state.presetNote = null;
  },
  layout(key, config) {
    const h = hostByKey(key);
    const fresh = new wasm.Host(config); // throws the core's layout error, host untouched
    h.host.free();
    h.host = fresh;
    h.config = structuredClone(config);
    h.names = {};
    delete state.destroyed[key];
    // Guest ids restart on a new host: forget what was shown for the old ones.
    for (const m of [state.vcmd, state.migration.ridMap, state.migration.ridKinds, state.maps.view, state.maps.cursor]) {
      for (const k of Object.keys(m)) if (k.startsWith(`${key}:`)) delete m[k];
    }
    for (const k of Object.keys(state.kept)) if (/^[AB]:\d+:/.test(k) && k.startsWith(`${key}:`)) delete state.kept[k];
  },
  /** A new machine with its broker and `n` VMM processes on it (the old one stays for undo). */
  machine(n) {
    for (const v of state.machine.vmms) v.host.free();
    const broker = new wasm.Broker(BROKER_CONFIG);
    state.machine = { broker, vmms: [], lastStep: null };
    for (let i = 0; i < n; i++) ops.vmm();
  },
  /** Starts one more VMM process: it opens a lease, and its core host takes host PASIDs from it. */
  vmm() {
    const m = state.machine;
    const name = `qemu-${m.vmms.length + 1}`;
    const id = m.broker.connect();
    m.vmms.push({ name, id, host: wasm.Host.onBroker(m.broker, id, MACHINE_CONFIG), names: {}, crashed: false });
    return m.vmms[m.vmms.length - 1];
  },
  guest(key, platform, quota, name) {
    const h = hostByKey(key);
    const id = h.host.createGuest(platform, quota);
    name = name ?? `vm${state.nextVm++}`;
    h.names[id] = name;
    colourOf(name);
    return id;
  },
};
