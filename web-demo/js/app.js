// The playground: two hosts, their guests and devices, PASID maps, migration, a step
// log with undo. Every decision is the core's (through the wasm package); this module
// only calls it, remembers names and colours, and draws.

import init, { Host, inspectBlob, vcmdCommand, vcmdDecode, vcmdLayout } from '../pkg/pasid_wasm.js';
import { esc, errText, kindText, num, PALETTE, ridText } from './format.js';
import { buildMapData, cellAt, describeAt, drawMap } from './map.js';
import { PRESETS } from './presets.js';
import { withFlippedBit, withQuota } from './blob.js';

export const DEFAULT_CONFIG = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] };
const KEYS = ['A', 'B'];
const UNDO_LIMIT = 30; // each entry holds a deep copy of both hosts
const TABLE_ROWS = 200; // rows drawn per table (they scroll); the rest are counted

const state = {
  hosts: [], // { key, config, host, names: { [guestId]: name } }
  nextVm: 1,
  colours: {}, // name -> palette index
  undo: [], // { saved, entry }
  log: [], // { text, details, ok, error, undone }
  errors: {}, // control key -> message
  // ridMap / ridKinds: `${host}:${guest}` -> { [source RID]: destination RID / its kind }
  migration: { selected: '', ridMap: {}, ridKinds: {}, result: null },
  exportText: '',
  vcmdRev: '3.3', // VT-d revision of the virtual command registers shown
  vcmdOut: {}, // `${host}:${guest}` -> last VCMD/VCRSP exchange, as text
};
const maps = {}; // host key -> view -> map layout, for hover and zoom
const ZOOM_SPAN = 4096; // a zoomed map shows this many PASIDs, one per cell
const zoom = {}; // `${host}:${view}` -> first PASID shown, while zoomed

// ---------- state, steps, undo ----------

function makeHost(key, config) {
  return { key, config: structuredClone(config), host: new Host(config), names: {} };
}

function hostByKey(key) {
  return state.hosts.find((h) => h.key === key);
}

function otherHost(h) {
  return state.hosts.find((o) => o !== h);
}

function colourOf(name) {
  if (!(name in state.colours)) state.colours[name] = Object.keys(state.colours).length % PALETTE.length;
  return PALETTE[state.colours[name]];
}

function saveState() {
  return {
    hosts: state.hosts.map((h) => ({ key: h.key, config: structuredClone(h.config), host: h.host.clone(), names: { ...h.names } })),
    nextVm: state.nextVm,
    colours: { ...state.colours },
  };
}

function restoreState(saved) {
  for (const h of state.hosts) h.host.free();
  state.hosts = saved.hosts;
  state.nextVm = saved.nextVm;
  state.colours = saved.colours;
}

function freeSaved(saved) {
  for (const h of saved.hosts) h.host.free();
}

/**
 * Runs one user step. On success it can be undone; on failure every host is put back
 * as it was and the error goes to the log and next to the control (`errKey`).
 */
function step(text, fn, errKey) {
  const saved = saveState();
  const entry = { text, details: [], ok: true };
  try {
    fn((line) => entry.details.push(line));
    state.undo.push({ saved, entry });
    if (state.undo.length > UNDO_LIMIT) freeSaved(state.undo.shift().saved);
    if (errKey) delete state.errors[errKey];
  } catch (e) {
    entry.ok = false;
    entry.error = errText(e);
    if (errKey) state.errors[errKey] = entry.error;
    restoreState(saved);
  }
  state.log.push(entry);
  render();
  return entry.ok;
}

function undo() {
  const last = state.undo.pop();
  if (!last) return;
  restoreState(last.saved);
  last.entry.undone = true;
  state.errors = {};
  state.vcmdOut = {};
  state.migration.result = null;
  state.log.push({ text: `undo: ${last.entry.text}`, details: [], ok: true, meta: true });
  render();
}

// ---------- operations (used by the controls and by the presets) ----------

export const ops = {
  reset(configs) {
    for (const h of state.hosts) h.host.free();
    state.hosts = KEYS.map((key, i) => makeHost(key, configs[i] ?? DEFAULT_CONFIG));
    state.nextVm = 1;
    state.colours = {};
    state.errors = {};
    state.migration = { selected: '', ridMap: {}, ridKinds: {}, result: null };
    state.vcmdOut = {};
  },
  layout(key, config) {
    const h = hostByKey(key);
    const fresh = new Host(config); // throws the core's layout error, host untouched
    h.host.free();
    h.host = fresh;
    h.config = structuredClone(config);
    h.names = {};
    // Guest ids restart on a new host: forget what was shown for the old ones.
    for (const k of Object.keys(state.vcmdOut)) if (k.startsWith(`${key}:`)) delete state.vcmdOut[k];
    for (const m of [state.migration.ridMap, state.migration.ridKinds]) {
      for (const k of Object.keys(m)) if (k.startsWith(`${key}:`)) delete m[k];
    }
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

// ---------- actions from the page ----------

function field(el, name) {
  const scope = el.closest('[data-scope]');
  const input = scope.querySelector(`[data-field="${name}"]`);
  return input ? input.value.trim() : '';
}

function pasidField(el, name) {
  const text = field(el, name);
  if (!/^\d+$/.test(text)) throw new TypeError(`${name === 'gpasid' ? 'gPASID' : 'PASID'} must be a number, got "${text}"`);
  return Number(text);
}

const actions = {
  preset(el) {
    const preset = PRESETS.find((p) => p.id === el.dataset.preset);
    const ctx = { ops, h: hostByKey, expectError, log: null, selected: '', ridKinds: null };
    const ok = step(`preset: ${preset.title}`, (log) => {
      ctx.log = log;
      preset.run(ctx);
    }, 'preset');
    if (ok && ctx.selected) {
      state.migration.selected = ctx.selected;
      if (ctx.ridKinds) state.migration.ridKinds[ctx.selected] = { ...ctx.ridKinds };
      render();
    }
    return ok;
  },
  undo,
  export() {
    const data = {
      tool: 'pasid playground',
      exportedAt: new Date().toISOString(),
      hosts: state.hosts.map((h) => ({ key: h.key, config: h.config, guestNames: h.names, snapshot: h.host.snapshot() })),
      log: state.log.map(({ text, ok, error, details, undone }) => ({ text, ok, error, details, undone: !!undone })),
    };
    state.exportText = JSON.stringify(data, null, 2);
    render();
    const url = URL.createObjectURL(new Blob([state.exportText], { type: 'application/json' }));
    const a = document.querySelector('[data-testid="export-download"]');
    a.href = url;
  },
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
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    step(`host ${h.key}: remove ${h.names[g]}`, () => h.host.destroyGuest(g), `${h.key}:${g}:guest`);
  },
  attach(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rid = field(el, 'rid');
    const kind = field(el, 'kind');
    step(`host ${h.key}: attach ${rid} (${kind}) to ${h.names[g]}`, () => h.host.attach(g, rid, kind), `${h.key}:${g}:attach`);
  },
  detach(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rid = el.dataset.rid;
    step(`host ${h.key}: detach ${rid} from ${h.names[g]}`, () => h.host.detach(g, rid), `${h.key}:${g}:attach`);
  },
  alloc(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const kind = el.dataset.kind;
    step(`host ${h.key}: ${h.names[g]} allocates a ${kind} PASID`, (log) => {
      const gp = h.host.allocPasid(g, kind);
      log(kind === 'shared' ? `gPASID ${gp} → hPASID ${h.host.translate(g, gp)}` : `gPASID ${gp}`);
    }, `${h.key}:${g}:alloc`);
  },
  freePasid(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    step(`host ${h.key}: ${h.names[g]} frees gPASID ${field(el, 'gpasid')}`, () => h.host.freePasid(g, pasidField(el, 'gpasid')), `${h.key}:${g}:free`);
  },
  bind(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rid = field(el, 'device');
    step(`host ${h.key}: ${h.names[g]} binds gPASID ${field(el, 'gpasid')} to ${rid}`, (log) => {
      log(`programmed PASID ${h.host.bind(g, pasidField(el, 'gpasid'), rid)}`);
    }, `${h.key}:${g}:bind`);
  },
  unbind(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rid = field(el, 'device');
    step(`host ${h.key}: ${h.names[g]} unbinds gPASID ${field(el, 'gpasid')} from ${rid}`, () => h.host.unbind(g, pasidField(el, 'gpasid'), rid), `${h.key}:${g}:bind`);
  },
  record(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rid = field(el, 'device');
    step(`host ${h.key}: ${h.names[g]} picks PASID ${field(el, 'pasid')} on ${rid}`, (log) => {
      log(`programmed PASID ${h.host.record(g, rid, pasidField(el, 'pasid'))}`);
    }, `${h.key}:${g}:record`);
  },
  release(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rid = field(el, 'device');
    step(`host ${h.key}: ${h.names[g]} drops PASID ${field(el, 'pasid')} on ${rid}`, () => h.host.release(g, rid, pasidField(el, 'pasid')), `${h.key}:${g}:record`);
  },
  vcmd(el) {
    const h = hostByKey(el.dataset.host);
    const g = Number(el.dataset.guest);
    const rev = state.vcmdRev;
    const what = field(el, 'command');
    const regs = vcmdLayout(rev);
    const label = { 'alloc-shared': 'ALLOC shared', 'alloc-local': 'ALLOC local', free: `FREE ${field(el, 'gpasid')}` }[what];
    step(`host ${h.key}: ${h.names[g]} writes ${label} to VCMD (VT-d ${rev})`, (log) => {
      const [code, operand] = what === 'free' ? [2, BigInt(pasidField(el, 'gpasid'))] : [1, what === 'alloc-local' ? 1n : 0n];
      const command = vcmdCommand(rev, code, operand);
      const vcrsp = h.host.vcmd(g, rev, command);
      const r = vcmdDecode(rev, vcrsp);
      const meaning = r.status === 0 ? (code === 1 ? `success, PASID ${r.pasid}` : 'success')
        : r.status === regs.sc_undefined ? 'undefined command'
          : r.status === regs.sc_no_pasid ? (code === 1 ? 'no PASID available' : 'invalid PASID') : 'unknown status';
      const text = `VCMD@${hex64(BigInt(regs.vcmd))} ← ${hex64(command)}; VCRSP@${hex64(BigInt(regs.vcrsp))} → ${hex64(vcrsp)} (IP ${r.in_progress ? 1 : 0}, SC ${r.status}: ${meaning})`;
      state.vcmdOut[`${h.key}:${g}`] = text;
      log(text);
    }, `${h.key}:${g}:vcmd`);
  },
  migrate() {
    const [key, id] = state.migration.selected.split(':');
    if (!key) return;
    migrate(key, Number(id));
  },
  refusal(el) {
    const preset = PRESETS.find((p) => p.id === el.dataset.refusal);
    if (!actions.preset({ dataset: { preset: preset.id } })) return;
    const [key, id] = state.migration.selected.split(':');
    migrate(key, Number(id), preset.tamper && TAMPER[preset.tamper]);
  },
};

/** Runs `fn`, which must throw; the error is logged as expected and shown at `errKey`. */
function expectError(log, text, fn, errKey) {
  try {
    fn();
  } catch (e) {
    log(`✗ ${text}: ${errText(e)}`);
    if (errKey) state.errors[errKey] = errText(e);
    return e;
  }
  throw new Error(`expected a refusal: ${text}`);
}

// ---------- migration ----------

// Blob edits for the refusal demos: [what the log says, edit].
const TAMPER = {
  quota: ['blob edited in transit: quota 64 → 1, CRC recomputed', (blob) => withQuota(blob, 1)],
  bitflip: ['blob corrupted in transit: one payload bit flipped', withFlippedBit],
};

// The RID map's kind names (what Host.importGuest reads), by snapshot kind.
const MAP_KIND = { Dedicated: 'dedicated', SharedWq: 'shared-wq' };

/**
 * The RID map of a guest as [source, destination, destination kind] entries. The kind
 * says what the destination device is on the other host (its VMM set it up); it
 * defaults to the source device's kind, and the core refuses a device of another kind.
 */
function ridMapFor(key, guestId) {
  const h = hostByKey(key);
  const snap = h.snap.guests.find((g) => g.id === guestId);
  const map = state.migration.ridMap[`${key}:${guestId}`] ?? {};
  const kinds = state.migration.ridKinds[`${key}:${guestId}`] ?? {};
  // A blank destination leaves the RID out of the map (the core refuses: not mapped).
  return snap.devices.map((d) => {
    const from = ridText(d.rid);
    return [from, map[from] ?? from, kinds[from] ?? MAP_KIND[d.kind]];
  });
}

function migrate(key, guestId, tamper) {
  const src = hostByKey(key);
  const dst = otherHost(src);
  const name = src.names[guestId];
  const pairs = ridMapFor(key, guestId);
  const sent = pairs.filter(([, to]) => to !== '');
  state.migration.result = null;
  step(`migrate ${name}: host ${src.key} → host ${dst.key}`, (log) => {
    const before = src.host.guestSnapshot(guestId);
    const targetBefore = JSON.stringify(dst.host.snapshot());
    let blob = src.host.exportGuest(guestId);
    const info = inspectBlob(blob);
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
      state.migration.result = { ok: false, name, from: src.key, to: dst.key, error: errText(e), unchanged };
      throw e;
    }
    const after = dst.host.guestSnapshot(imported.guest);
    dst.names[imported.guest] = name;
    src.host.destroyGuest(guestId);
    delete src.names[guestId];
    log(`${name} is guest 0x${imported.guest.toString(16)} on host ${dst.key}; source guest destroyed`);
    state.migration.result = { ok: true, name, from: src.key, to: dst.key, before, after, report: imported.report, shared: [dst.config.shared[0], dst.config.shared[1]] };
    state.migration.selected = `${dst.key}:${imported.guest}`;
  }, 'migrate');
}

// ---------- rendering ----------

const hex64 = (v) => `0x${v.toString(16)}`;

function renderVcmd(h, g, attrs) {
  const rev = state.vcmdRev;
  const regs = vcmdLayout(rev);
  const vccap = h.host.vcap(g.id, rev);
  const out = state.vcmdOut[`${h.key}:${g.id}`] ?? '';
  return `
    <div class="row vcmd" data-scope>
      <span class="muted" title="VT-d virtual command registers of the guest's vIOMMU">vIOMMU</span>
      <select data-field="revision" data-testid="vcmd-revision" aria-label="VT-d revision">
        <option value="3.3" ${rev === '3.3' ? 'selected' : ''}>VT-d 3.3</option><option value="3.0" ${rev === '3.0' ? 'selected' : ''}>VT-d 3.0/3.1</option></select>
      <span class="mono" data-testid="vccap">VCCAP@${hex64(BigInt(regs.vccap))} = ${hex64(vccap)}</span><span class="muted">(${vccap & 1n ? 'PAS: allocation offered' : 'no PASID allocation'})</span>
      <select data-field="command" data-testid="vcmd-command" aria-label="virtual command">
        <option value="alloc-shared">ALLOC (operand 0: shared)</option><option value="alloc-local">ALLOC (operand 1: local)</option><option value="free">FREE gPASID</option></select>
      <input data-field="gpasid" data-testid="vcmd-gpasid" value="${g.pairs.length ? g.pairs[g.pairs.length - 2] : 1}" size="5" aria-label="gPASID to free">
      <button data-action="vcmd" ${attrs} data-testid="vcmd-write">write VCMD</button>
      <span class="mono vcmd-out" data-testid="vcmd-result">${esc(out)}</span>
      ${errorSlot(`${h.key}:${g.id}:vcmd`, 'vcmd-error')}
    </div>`;
}

function errorSlot(key, testid) {
  const message = state.errors[key];
  return `<span class="err" role="alert" data-testid="${testid}">${message ? esc(message) : ''}</span>`;
}

function renderLayout(h) {
  const c = h.config;
  const k = h.key;
  return `
  <form class="layout" data-scope onsubmit="return false">
    <label>platform <select data-field="platform" data-testid="layout-platform-${k}">
      <option value="p1" ${c.platform === 'p1' ? 'selected' : ''}>p1 (SR-IOV only)</option>
      <option value="p2" ${c.platform === 'p2' ? 'selected' : ''}>p2 (shared WQs)</option></select></label>
    <label>width <input data-field="width" data-testid="layout-width-${k}" value="${c.width}" size="2"></label>
    <label>local <input data-field="local-start" data-testid="layout-local-start-${k}" value="${c.local[0]}" size="6">..<input data-field="local-end" data-testid="layout-local-end-${k}" value="${c.local[1]}" size="7"></label>
    <label>shared <input data-field="shared-start" data-testid="layout-shared-start-${k}" value="${c.shared[0]}" size="7">..<input data-field="shared-end" data-testid="layout-shared-end-${k}" value="${c.shared[1]}" size="7"></label>
    <button data-action="layout" data-host="${k}" data-testid="layout-apply-${k}" title="Replaces this host with an empty one">Apply (reset host)</button>
    ${errorSlot(`${k}:layout`, `layout-error-${k}`)}
  </form>`;
}

function deviceOptions(g) {
  return g.devices.map((d) => `<option value="${ridText(d.rid)}">${ridText(d.rid)} · ${kindText[d.kind]}</option>`).join('');
}

function suggestRid(h) {
  const used = new Set();
  for (const g of h.snap.guests) for (const d of g.devices) used.add(ridText(d.rid));
  for (let dev = 3; dev < 32; dev++) {
    for (let fn = 1; fn < 8; fn++) {
      const t = `0000:${dev.toString(16).padStart(2, '0')}:00.${fn}`;
      if (!used.has(t)) return t;
    }
  }
  return '0000:01:00.0';
}

function renderGuest(h, g) {
  const k = h.key;
  const id = g.id;
  const name = h.names[id] ?? `guest ${id.toString(16)}`;
  const p2 = g.config.platform === 'P2';
  const pairs = g.pairs; // [gPASID, hPASID or 0, ...], ascending
  const count = pairs.length / 2;
  let sharedHeld = 0;
  for (let i = 1; i < pairs.length; i += 2) if (pairs[i]) sharedHeld++;
  const last = count ? pairs[pairs.length - 2] : '';
  const attrs = `data-host="${k}" data-guest="${id}"`;
  const devices = g.devices.map((d) => `
      <tr data-testid="device" data-rid="${ridText(d.rid)}">
        <td class="mono">${ridText(d.rid)}</td><td>${kindText[d.kind]}</td>
        <td class="mono" data-testid="programmed">${d.programmed.length ? d.programmed.map((p) => (p.gpasid === p.programmed ? `${p.gpasid}` : `${p.gpasid}→<b>${p.programmed}</b>`)).join(', ') : '<span class="muted">none</span>'}</td>
        <td><button class="small" data-action="detach" ${attrs} data-rid="${ridText(d.rid)}" data-testid="detach">detach</button></td>
      </tr>`).join('');
  const rows = Array.from({ length: Math.min(count, TABLE_ROWS) }, (_, i) => ({
    gpasid: pairs[2 * i], kind: pairs[2 * i + 1] ? 'Shared' : 'Local', hpasid: pairs[2 * i + 1] || null,
  })).map((p) => `
      <tr data-testid="xlate-row" data-gpasid="${p.gpasid}" data-hpasid="${p.hpasid ?? ''}">
        <td class="mono">${p.gpasid}</td><td>${kindText[p.kind]}</td><td class="mono">${p.hpasid ?? '<span class="muted">— (identity on VFs)</span>'}</td></tr>`).join('');
  const more = count > TABLE_ROWS ? `<tr><td colspan="3" class="muted">… and ${num(count - TABLE_ROWS)} more</td></tr>` : '';
  return `
  <section class="guest" data-testid="guest-${esc(name)}" data-guest-id="${id}" style="--guest:${colourOf(name)}">
    <header>
      <span class="swatch"></span><b>${esc(name)}</b>
      <span class="muted mono">id 0x${id.toString(16)}</span>
      <span class="tag">${p2 ? 'p2' : 'p1'}</span>
      ${p2 ? `<span data-testid="quota">shared ${sharedHeld}/${g.config.shared_quota}</span>` : ''}
      <button class="small right" data-action="removeGuest" ${attrs} data-testid="remove-guest">remove guest</button>
      ${errorSlot(`${k}:${id}:guest`, 'guest-error')}
    </header>
    <table class="devices"><thead><tr><th>RID</th><th>kind</th><th>gPASID→programmed</th><th></th></tr></thead><tbody>${devices || '<tr><td colspan="4" class="muted">no devices</td></tr>'}</tbody></table>
    <div class="row" data-scope>
      <input data-field="rid" data-testid="attach-rid" value="${suggestRid(h)}" size="12" aria-label="RID">
      <select data-field="kind" data-testid="attach-kind" aria-label="device kind">
        <option value="dedicated">dedicated (SR-IOV VF)</option>${p2 ? '<option value="shared-wq">shared WQ (ENQCMD)</option>' : '<option value="shared-wq">shared WQ (needs p2)</option>'}</select>
      <button data-action="attach" ${attrs} data-testid="attach">attach device</button>
      ${errorSlot(`${k}:${id}:attach`, 'attach-error')}
    </div>
    ${p2 ? `
    <div class="row" data-scope>
      <button data-action="alloc" data-kind="local" ${attrs} data-testid="alloc-local">alloc local</button>
      <button data-action="alloc" data-kind="shared" ${attrs} data-testid="alloc-shared">alloc shared</button>
      ${errorSlot(`${k}:${id}:alloc`, 'alloc-error')}
    </div>
    <div class="row" data-scope>
      <label>gPASID <input data-field="gpasid" data-testid="free-gpasid" value="${last}" size="6"></label>
      <button data-action="freePasid" ${attrs} data-testid="free">free</button>
      ${errorSlot(`${k}:${id}:free`, 'free-error')}
    </div>
    <div class="row" data-scope>
      <label>bind gPASID <input data-field="gpasid" data-testid="bind-gpasid" value="${last}" size="6"></label>
      <label>to <select data-field="device" data-testid="bind-device">${deviceOptions(g)}</select></label>
      <button data-action="bind" ${attrs} data-testid="bind">bind</button>
      <button data-action="unbind" ${attrs} data-testid="unbind">unbind</button>
      ${errorSlot(`${k}:${id}:bind`, 'bind-error')}
    </div>
    <div class="scroll"><table class="xlate" data-testid="xlate-table"><thead><tr><th>gPASID</th><th>kind</th><th>hPASID (translation table)</th></tr></thead>
      <tbody>${rows || '<tr><td colspan="3" class="muted">no PASIDs</td></tr>'}${more}</tbody></table></div>` : `
    <div class="row" data-scope>
      <label>on <select data-field="device" data-testid="record-device">${deviceOptions(g)}</select></label>
      <label>the guest picks PASID <input data-field="pasid" data-testid="record-pasid" value="1" size="6"></label>
      <button data-action="record" ${attrs} data-testid="record">record</button>
      <button data-action="release" ${attrs} data-testid="release">release</button>
      ${errorSlot(`${k}:${id}:record`, 'record-error')}
    </div>`}
    ${renderVcmd(h, g, attrs)}
  </section>`;
}

function renderHost(h) {
  const s = h.snap;
  const k = h.key;
  const guests = s.guests.map((g) => renderGuest(h, g)).join('');
  const sharedSize = s.shared.end - s.shared.start;
  return `
  <h2>Host ${k} <span class="tag">${s.platform.toLowerCase()}</span>
    <span class="stat" data-testid="shared-stat-${k}">shared PASIDs in use ${num(s.shared_in_use)} / ${num(sharedSize)}</span></h2>
  ${renderLayout(h)}
  <div class="maps" data-testid="map-${k}">
    <div class="map-label"><b>whole PASID space</b> 0..2<sup>${s.width}</sup>, to scale <span class="muted" data-scale="space"></span></div>
    <canvas class="map strip" data-host="${k}" data-view="space" data-testid="map-${k}-space"></canvas>
    <div class="map-label"><b>local range</b> ${num(s.local.start)}..${num(s.local.end)}: gPASIDs and RID-local PASIDs, per guest <span class="muted" data-scale="local"></span></div>
    <canvas class="map" data-host="${k}" data-view="local" data-testid="map-${k}-local"></canvas>
    <div class="map-label"><b>shared range</b> ${num(s.shared.start)}..${num(s.shared.end)}: host PASIDs <span class="muted" data-scale="shared"></span></div>
    <canvas class="map" data-host="${k}" data-view="shared" data-testid="map-${k}-shared"></canvas>
    <div class="tooltip" data-testid="map-tooltip-${k}" hidden></div>
  </div>
  <div class="legend" data-testid="map-legend-${k}">
    <span><i style="background:rgb(219,234,254)"></i>local range</span>
    <span><i style="background:rgb(254,243,199)"></i>shared range</span>
    <span><i style="background:rgb(241,245,249)"></i>outside both (PASID 0 reserved)</span>
    <span><i style="background:rgb(71,85,105)"></i>same number in several guests</span>
    ${s.guests.map((g) => { const n = h.names[g.id] ?? g.id.toString(16); return `<span><i style="background:${colourOf(n)}"></i>${esc(n)}</span>`; }).join('')}
  </div>
  <div class="row add-guest" data-scope>
    <select data-field="platform" data-testid="add-guest-platform-${k}" aria-label="guest platform">
      <option value="p2" ${s.platform === 'P2' ? 'selected' : ''}>p2 guest</option><option value="p1" ${s.platform === 'P1' ? 'selected' : ''}>p1 guest</option></select>
    <label>shared quota (p2) <input data-field="quota" data-testid="add-guest-quota-${k}" value="64" size="5"></label>
    <button data-action="addGuest" data-host="${k}" data-testid="add-guest-${k}">add guest</button>
    ${errorSlot(`${k}:addGuest`, `add-guest-error-${k}`)}
  </div>
  ${guests || '<p class="muted">No guests yet: add one, or pick a preset above.</p>'}`;
}

function renderMigration() {
  const m = state.migration;
  const options = state.hosts.flatMap((h) => h.snap.guests.map((g) => {
    const value = `${h.key}:${g.id}`;
    const name = h.names[g.id] ?? g.id.toString(16);
    return `<option value="${value}" ${value === m.selected ? 'selected' : ''}>${esc(name)} on host ${h.key} → host ${otherHost(h).key}</option>`;
  })).join('');
  const [key, id] = m.selected.split(':');
  let ridRows = '';
  if (key && hostByKey(key)?.snap.guests.some((g) => g.id === Number(id))) {
    ridRows = ridMapFor(key, Number(id)).map(([from, to, kind]) => `
      <label class="ridmap">${from} → <input data-testid="rid-map-${from}" data-ridmap="${from}" value="${esc(to)}" size="12" aria-label="destination RID of ${from}">
        <select data-testid="rid-kind-${from}" data-ridkind="${from}" aria-label="kind of the destination device of ${from}" title="what the destination device is on the other host">
          ${Object.values(MAP_KIND).map((k) => `<option value="${k}" ${k === kind ? 'selected' : ''}>${k === 'dedicated' ? 'dedicated (VF)' : 'shared WQ'}</option>`).join('')}
        </select></label>`).join('');
  } else if (m.selected) {
    m.selected = '';
  }
  const supported = typeof Host.prototype.exportGuest === 'function';
  return `
  <h2>Migration</h2>
  ${supported ? '' : '<p class="err">This build of the core has no migration yet.</p>'}
  <div class="row" data-scope>
    <select data-testid="migrate-guest" data-field="guest" aria-label="guest to migrate"><option value="">pick a guest…</option>${options}</select>
    ${ridRows ? `<span class="muted">RID map:</span>${ridRows}` : ''}
    <button data-action="migrate" data-testid="migrate-go" ${m.selected && supported ? '' : 'disabled'}>send to the other host</button>
    ${errorSlot('migrate', 'migrate-error')}
  </div>
  <div class="row">
    <span class="muted">refusals:</span>
    ${PRESETS.filter((p) => p.refusal).map((p) => `<button class="small" data-action="refusal" data-refusal="${p.id}" data-testid="refusal-${p.id}" title="${esc(p.blurb)}">${esc(p.title)}</button>`).join('')}
  </div>
  ${renderMigrationResult(m.result)}`;
}

function renderMigrationResult(r) {
  if (!r) return '';
  if (!r.ok) {
    return `<div class="result refused" data-testid="migrate-result">
      <b>${esc(r.name)}: host ${r.from} → host ${r.to} refused.</b> <span data-testid="migrate-refusal">${esc(r.error)}</span>
      <div data-testid="migrate-target-unchanged">${r.unchanged ? `✓ host ${r.to} is unchanged` : `✗ host ${r.to} changed!`}</div></div>`;
  }
  const after = new Map(r.after.pasids.map((p) => [p.gpasid, p]));
  const rows = r.before.pasids.slice(0, TABLE_ROWS).map((p) => {
    const q = after.get(p.gpasid);
    return `<tr data-testid="migrate-row" data-gpasid-before="${p.gpasid}" data-gpasid-after="${q ? q.gpasid : ''}" data-hpasid-before="${p.hpasid ?? ''}" data-hpasid-after="${q?.hpasid ?? ''}">
      <td class="mono">${p.gpasid}</td><td class="mono">${q ? q.gpasid : '<b class="err">missing</b>'}</td><td>${kindText[p.kind]}</td>
      <td class="mono">${p.hpasid ?? '—'}</td><td class="mono">${q?.hpasid ?? '—'}</td></tr>`;
  }).join('');
  const kept = r.before.pasids.every((p) => after.has(p.gpasid)) && r.before.pasids.length === r.after.pasids.length;
  return `<div class="result ok" data-testid="migrate-result">
    <b>${esc(r.name)} moved from host ${r.from} to host ${r.to}.</b>
    <span data-testid="migrate-kept">${kept ? '✓ every gPASID kept' : '✗ gPASIDs changed'}</span>;
    hPASIDs come from host ${r.to}'s shared range ${num(r.shared[0])}..${num(r.shared[1])}.
    <div class="scroll"><table class="xlate"><thead><tr><th>gPASID on ${r.from}</th><th>gPASID on ${r.to}</th><th>kind</th><th>hPASID on ${r.from}</th><th>hPASID on ${r.to}</th></tr></thead>
    <tbody>${rows}${r.before.pasids.length > TABLE_ROWS ? `<tr><td colspan="5" class="muted">… and ${num(r.before.pasids.length - TABLE_ROWS)} more</td></tr>` : ''}</tbody></table></div>
    <div class="report" data-testid="migrate-report"><b>import report</b>: ${r.report.guest_platform.toLowerCase()} guest${r.report.p1_guest_on_p2_host ? ' (stays p1 on a p2 host)' : ''};
      devices ${r.report.devices.map((d) => `${ridText(d.source)} → ${ridText(d.destination)} (${kindText[d.kind]})`).join(', ') || 'none'};
      shared gPASIDs ${r.report.shared.slice(0, 12).map((x) => `${x.gpasid}: ${x.source_hpasid ?? '?'} → ${x.destination_hpasid}`).join(', ') || 'none'}${r.report.shared.length > 12 ? ', …' : ''}
      <details><summary>as JSON</summary><pre>${esc(JSON.stringify(r.report, null, 1))}</pre></details></div>
  </div>`;
}

function renderLog() {
  const first = Math.max(0, state.log.length - 200);
  const items = state.log.slice(first).map((e) => `
    <li data-testid="log-entry" class="${e.ok ? 'ok' : 'fail'} ${e.undone ? 'undone' : ''} ${e.meta ? 'meta' : ''}">
      <span>${e.ok ? '✓' : '✗'} ${esc(e.text)}${e.error ? ':' : ''}</span>${e.error ? ` <span class="err">${esc(e.error)}</span>` : ''}
      ${e.details.length ? `<ul>${e.details.slice(0, 30).map((d) => `<li>${esc(d)}</li>`).join('')}${e.details.length > 30 ? `<li>… ${e.details.length - 30} more</li>` : ''}</ul>` : ''}
    </li>`).join('');
  return `<ol data-testid="log" start="${first + 1}">${items}</ol>`;
}

function render() {
  const t0 = performance.now();
  for (const h of state.hosts) {
    h.snap = h.host.summary(); // no PASID lists: those come as typed arrays
    for (const g of h.snap.guests) g.pairs = h.host.pasidPairs(g.id);
  }
  for (const h of state.hosts) {
    document.querySelector(`[data-testid="host-${h.key}"]`).innerHTML = renderHost(h);
  }
  document.querySelector('[data-testid="migration"]').innerHTML = renderMigration();
  document.querySelector('[data-testid="log-panel"]').innerHTML = renderLog();
  document.querySelector('[data-testid="undo"]').disabled = state.undo.length === 0;
  document.querySelector('[data-testid="preset-error"]').textContent = state.errors.preset ?? '';
  const out = document.querySelector('[data-testid="export-json"]');
  out.hidden = !state.exportText;
  out.value = state.exportText;
  document.querySelector('[data-testid="export-download"]').hidden = !state.exportText;
  for (const h of state.hosts) {
    const guests = h.snap.guests.map((g) => {
      const name = h.names[g.id] ?? g.id.toString(16);
      return { name, colour: colourOf(name), platform: g.config.platform, pairs: g.pairs, devices: g.devices };
    });
    const data = buildMapData(h.snap, guests);
    const views = {
      space: [0, 2 ** h.snap.width, 512, 1],
      local: [h.snap.local.start, h.snap.local.end, 128, 32],
      shared: [h.snap.shared.start, h.snap.shared.end, 128, 32],
    };
    for (const view of ['local', 'shared']) {
      const at = zoom[`${h.key}:${view}`];
      const [lo, hi] = views[view];
      if (at !== undefined && hi - lo > ZOOM_SPAN) {
        const start = Math.max(lo, Math.min(at, hi - ZOOM_SPAN));
        views[view] = [start, start + ZOOM_SPAN, 128, 32];
      } else {
        delete zoom[`${h.key}:${view}`];
      }
    }
    maps[h.key] = {};
    for (const [view, [lo, hi, cols, rows]] of Object.entries(views)) {
      const canvas = document.querySelector(`[data-testid="map-${h.key}-${view}"]`);
      const m = drawMap(canvas, data, lo, hi, cols, rows);
      maps[h.key][view] = m;
      const label = canvas.parentElement.querySelector(`[data-scale="${view}"]`);
      const zoomed = zoom[`${h.key}:${view}`] !== undefined;
      const canZoom = view !== 'space' && (m.bucket > 1 || zoomed);
      label.textContent = `(1 cell = ${num(m.bucket)} PASID${m.bucket > 1 ? 's' : ''}${zoomed ? `; zoomed to ${num(lo)}..${num(hi)}, click to zoom out` : canZoom ? '; click to zoom in' : ''})`;
      canvas.classList.toggle('zoomable', canZoom);
    }
  }
  const list = document.querySelector('[data-testid="log"]');
  list.parentElement.scrollTop = list.parentElement.scrollHeight;
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
}

// ---------- wiring ----------

function onMapClick(canvas, ev) {
  const key = `${canvas.dataset.host}:${canvas.dataset.view}`;
  const layout = maps[canvas.dataset.host]?.[canvas.dataset.view];
  if (!layout || canvas.dataset.view === 'space') return;
  if (zoom[key] !== undefined) {
    delete zoom[key];
  } else {
    const cell = cellAt(canvas, layout, ev.clientX, ev.clientY);
    if (!cell || layout.bucket === 1) return;
    zoom[key] = Math.max(layout.lo, cell[0] - ZOOM_SPAN / 4);
  }
  render();
}

function onClick(ev) {
  if (ev.target.matches?.('canvas.map')) {
    onMapClick(ev.target, ev);
    return;
  }
  const el = ev.target.closest('[data-action]');
  if (!el || el.disabled) return;
  ev.preventDefault();
  const action = actions[el.dataset.action];
  try {
    action(el);
  } catch (e) {
    // Only argument errors of the page itself get here (steps catch the rest).
    state.errors.preset = errText(e);
    render();
  }
}

function onChange(ev) {
  const el = ev.target;
  if (el.matches('[data-testid="migrate-guest"]')) {
    state.migration.selected = el.value;
    state.migration.result = null;
    render();
  } else if (el.matches('[data-testid="vcmd-revision"]')) {
    state.vcmdRev = el.value;
    render();
  } else if (el.dataset.ridmap) {
    const sel = state.migration.selected;
    state.migration.ridMap[sel] = { ...(state.migration.ridMap[sel] ?? {}), [el.dataset.ridmap]: el.value.trim() };
  } else if (el.dataset.ridkind) {
    const sel = state.migration.selected;
    state.migration.ridKinds[sel] = { ...(state.migration.ridKinds[sel] ?? {}), [el.dataset.ridkind]: el.value };
  }
}

function onHover(ev) {
  const canvas = ev.target;
  if (!canvas.matches?.('canvas.map')) return;
  const key = canvas.dataset.host;
  const tip = document.querySelector(`[data-testid="map-tooltip-${key}"]`);
  const layout = maps[key]?.[canvas.dataset.view];
  const lines = layout && describeAt(canvas, layout, ev.clientX, ev.clientY);
  if (!lines) {
    tip.hidden = true;
    return;
  }
  tip.innerHTML = lines.map((l, i) => (i ? esc(l) : `<b>${esc(l)}</b>`)).join('<br>');
  tip.hidden = false;
  const r = canvas.parentElement.getBoundingClientRect();
  tip.style.left = `${Math.max(0, Math.min(ev.clientX - r.left + 12, r.width - 240))}px`;
  tip.style.top = `${ev.clientY - r.top + 14}px`;
}

export async function start() {
  await init();
  ops.reset([DEFAULT_CONFIG, DEFAULT_CONFIG]);
  document.querySelector('[data-testid="presets"]').innerHTML = PRESETS.filter((p) => !p.refusal)
    .map((p) => `<button data-action="preset" data-preset="${p.id}" data-testid="preset-${p.id}" title="${esc(p.blurb)}">${esc(p.title)}</button>`)
    .join('');
  document.addEventListener('click', onClick);
  document.addEventListener('change', onChange);
  document.addEventListener('mousemove', onHover);
  document.addEventListener('mouseout', (ev) => {
    if (ev.target.matches?.('canvas.map')) document.querySelector(`[data-testid="map-tooltip-${ev.target.dataset.host}"]`).hidden = true;
  });
  render();
  document.body.dataset.ready = 'true';
  window.pasidPlayground = { state, ops };
}
