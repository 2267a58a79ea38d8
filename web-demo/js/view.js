// Draws the state: hosts with their guests and devices, maps, the walk, migration, the
// step log, the tour. Markup is rebuilt on each render; what the user typed, picked or
// focused is kept in the state (state.kept, state.focus) and put back, so a render
// never resets a control.

import { wasm } from './wasm.js';
import { esc, kindText, num, ridText } from './format.js';
import { term, withTerms } from './glossary.js';
import { PRESETS } from './presets.js';
import { colourOf, guestName, hostByKey, kept, otherHost, state } from './state.js';
import { exportStatus, MAP_KIND, ridMapFor, TEARDOWN_BATCH, vcmdOf } from './actions.js';
import { drawMaps, renderLegend, renderMaps } from './map-view.js';
import { renderWalk } from './walk-view.js';
import { drawMachine, renderMachine } from './machine-view.js';
import { renderTour } from './tour.js';

const TABLE_ROWS = 200; // rows drawn per table (they scroll); the rest are counted
const hex = (v) => `0x${v.toString(16)}`;

function errorSlot(key, testid) {
  const e = state.errors[key];
  const text = e ? (e.expected ? `expected refusal (${e.why}): ${e.message}` : e.message) : '';
  return `<span class="err ${e?.expected ? 'expected' : ''}" role="alert" data-testid="${testid}" data-message="${e ? esc(e.message) : ''}">${esc(text)}</span>`;
}

/** An input whose value survives renders: the user's text, else `fallback`. */
function input(key, testid, fallback, attrs = '') {
  return `<input data-keep="${key}" data-testid="${testid}" value="${esc(kept(key, fallback))}" ${attrs}>`;
}

/** A select whose choice survives renders. `options`: [[value, label]]. */
function select(key, testid, options, fallback, attrs = '') {
  const v = kept(key, fallback);
  return `<select data-keep="${key}" data-testid="${testid}" ${attrs}>${options.map(([value, label]) => `<option value="${esc(value)}" ${value === v ? 'selected' : ''}>${esc(label)}</option>`).join('')}</select>`;
}

function renderVcmd(h, g, attrs) {
  const key = `${h.key}:${g.id}`;
  const vc = vcmdOf(key);
  const regs = wasm.vcmdLayout(vc.rev);
  const vccap = h.host.vcap(g.id, vc.rev);
  const pas = (vccap >> BigInt(regs.vccap_pas_bit)) & 1n;
  const operand = kept(`${key}:vcmd-gpasid`, g.pairs.length ? String(g.pairs[g.pairs.length - 2]) : '1');
  const byOffset = [['VCCAP', regs.vccap], ['VCMD', regs.vcmd], ['VCRSP', regs.vcrsp]].sort((a, b) => a[1] - b[1]);
  return `
    <div class="row vcmd" data-scope>
      <span class="muted">${term('vIOMMU')} ${term('VCMD', 'VCMD')} registers</span>
      <select data-vcmd="${key}" data-testid="vcmd-revision" aria-label="VT-d revision of this guest's vIOMMU">
        <option value="3.3" ${vc.rev === '3.3' ? 'selected' : ''}>VT-d 3.3</option><option value="3.0" ${vc.rev === '3.0' ? 'selected' : ''}>VT-d 3.0/3.1</option></select>
      <span class="mono" data-testid="vcmd-offsets">${byOffset.map(([n, o]) => `${n}@${hex(o)}`).join(' ')}</span>
      <span class="mono" data-testid="ecap-vcs" title="ECAP bit ${regs.ecap_vcs_bit}: the unit has virtual commands">ECAP.VCS (bit ${regs.ecap_vcs_bit}) = 1</span>
      <span class="mono" data-testid="vccap">VCCAP@${hex(regs.vccap)} = ${hex(vccap)}</span><span class="muted">(PAS = ${pas}: ${pas ? 'allocation offered' : 'no PASID allocation'})</span>
      <label>command ${select(`${key}:vcmd-command`, 'vcmd-command', [
        ['alloc-shared', 'ALLOC, operand 0: shared (spec)'],
        ['alloc-local', `ALLOC, operand ${regs.alloc_operand_local_extension}: local (this project's extension)`],
        ['free', 'FREE gPASID (spec)']], 'alloc-shared', 'data-field="command"')}</label>
      <label>operand ${input(`${key}:vcmd-gpasid`, 'vcmd-gpasid', operand, 'data-field="gpasid" size="5" aria-label="gPASID to free"')}</label>
      <button data-action="vcmd" ${attrs} data-testid="vcmd-write" data-primary>write VCMD</button>
      <span class="mono vcmd-out" data-testid="vcmd-result" aria-live="polite">${esc(vc.out)}</span>
      ${errorSlot(`${key}:vcmd`, 'vcmd-error')}
    </div>`;
}

function renderLayout(h) {
  const c = h.config;
  const k = h.key;
  const f = (name, value, size) => input(`${k}:layout-${name}`, `layout-${name}-${k}`, String(value), `data-field="${name}" size="${size}"`);
  return `
  <form class="layout" data-scope onsubmit="return false">
    <label>platform ${select(`${k}:layout-platform`, `layout-platform-${k}`, [['p1', 'p1 (SR-IOV only)'], ['p2', 'p2 (shared WQs)']], c.platform, 'data-field="platform"')}</label>
    <label>width ${f('width', c.width, 2)}</label>
    <label>local ${f('local-start', c.local[0], 6)}..${f('local-end', c.local[1], 7)}</label>
    <label>shared ${f('shared-start', c.shared[0], 7)}..${f('shared-end', c.shared[1], 7)}</label>
    <button data-action="layout" data-host="${k}" data-testid="layout-apply-${k}" data-primary title="Replaces this host with an empty one">Apply (reset host)</button>
    ${errorSlot(`${k}:layout`, `layout-error-${k}`)}
  </form>`;
}

/**
 * The bind targets of a guest: a RID it uses one way is named by the RID alone (the
 * core's `bind` takes the only use); a mixed RID offers each use (`rid|kind`, `bindUse`).
 */
function deviceOptions(g) {
  const uses = new Map();
  for (const d of g.devices) uses.set(ridText(d.rid), (uses.get(ridText(d.rid)) ?? 0) + 1);
  return g.devices.map((d) => {
    const rid = ridText(d.rid);
    return [uses.get(rid) > 1 ? `${rid}|${MAP_KIND[d.kind]}` : rid, `${rid} · ${kindText[d.kind]}`];
  });
}

/** The other users of a RID than guest `id`, as text ("vm2 (shared WQ), vm3 (shared WQ)"). */
function otherUsers(h, rid, id) {
  const others = (h.ridUsers[rid] ?? []).filter((u) => u.guest !== id);
  return others.map((u) => `${guestName(h, u.guest)} (${kindText[u.kind]})`).join(', ');
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
  const key = `${k}:${id}`;
  const name = guestName(h, id);
  const p2 = g.config.platform === 'P2';
  const pairs = g.pairs; // [gPASID, hPASID or 0, ...], ascending
  const count = pairs.length / 2;
  // What the quota counts: shared PASIDs held and draining (the core's figure).
  const sharedHeld = p2 ? h.host.sharedHeld(id) : 0;
  const draining = g.draining;
  const drainingShared = draining.filter((d) => d.hpasid !== null).length;
  const last = count ? String(pairs[pairs.length - 2]) : '';
  const attrs = `data-host="${k}" data-guest="${id}"`;
  const firstDevice = g.devices.length ? ridText(g.devices[0].rid) : '';
  const devices = g.devices.map((d) => {
    const rid = ridText(d.rid);
    const others = otherUsers(h, rid, id);
    return `
      <tr data-testid="device" data-rid="${rid}" data-kind="${d.kind}">
        <td class="mono">${rid}</td><td>${kindText[d.kind]}${others ? `<div class="muted small-text" data-testid="device-others">also: ${esc(others)}</div>` : ''}</td>
        <td class="mono" data-testid="programmed">${d.programmed.length ? d.programmed.map((p) => (p.gpasid === p.programmed ? `${p.gpasid}` : `${p.gpasid}→<b>${p.programmed}</b>`)).join(', ') : '<span class="muted">none</span>'}</td>
        <td><button class="small" data-action="detach" ${attrs} data-rid="${rid}" data-kind="${MAP_KIND[d.kind]}" data-testid="detach" aria-label="detach ${rid} (${kindText[d.kind]})">detach</button></td>
      </tr>`;
  }).join('');
  const drainingRows = draining.slice(0, TABLE_ROWS).map((d) => `
      <li data-testid="guest-draining-item" data-gpasid="${d.gpasid}" data-hpasid="${d.hpasid ?? ''}">gPASID ${d.gpasid}${d.hpasid !== null ? ` → hPASID ${d.hpasid}` : ' (local)'}</li>`).join('')
    + (draining.length > TABLE_ROWS ? `<li class="muted">… and ${num(draining.length - TABLE_ROWS)} more</li>` : '');
  const rows = Array.from({ length: Math.min(count, TABLE_ROWS) }, (_, i) => ({
    gpasid: pairs[2 * i], kind: pairs[2 * i + 1] ? 'Shared' : 'Local', hpasid: pairs[2 * i + 1] || null,
  })).map((p) => `
      <tr data-testid="xlate-row" data-gpasid="${p.gpasid}" data-hpasid="${p.hpasid ?? ''}">
        <td class="mono">${p.gpasid}</td><td>${kindText[p.kind]}</td><td class="mono">${p.hpasid ?? '<span class="muted">— (identity on VFs)</span>'}</td></tr>`).join('');
  const more = count > TABLE_ROWS ? `<tr><td colspan="3" class="muted">… and ${num(count - TABLE_ROWS)} more</td></tr>` : '';
  const kinds = [['dedicated', 'dedicated (SR-IOV VF)'], ['shared-wq', p2 ? 'shared WQ (ENQCMD)' : 'shared WQ (needs p2)']];
  return `
  <section class="guest" data-testid="guest-${esc(name)}" data-guest-id="${id}" style="--guest:${colourOf(name)}" aria-label="guest ${esc(name)}">
    <header>
      <span class="swatch"></span><b>${esc(name)}</b>
      <span class="muted mono">id 0x${id.toString(16)}</span>
      <span class="tag">${term(p2 ? 'p2' : 'p1')}</span>
      ${p2 ? `<span data-testid="quota" data-held="${sharedHeld}" data-draining="${drainingShared}" title="the quota counts shared PASIDs held and draining">shared ${sharedHeld}/${g.config.shared_quota}${drainingShared ? ` (${drainingShared} draining)` : ''}</span>` : ''}
      <button class="small right" data-action="removeGuest" ${attrs} data-testid="remove-guest">remove guest</button>
      ${errorSlot(`${key}:guest`, 'guest-error')}
    </header>
    <table class="devices"><thead><tr><th>${term('RID')}</th><th>kind</th><th>gPASID→programmed</th><th></th></tr></thead><tbody>${devices || '<tr><td colspan="4" class="muted">no devices</td></tr>'}</tbody></table>
    <div class="row" data-scope>
      <label>RID ${input(`${key}:attach-rid`, 'attach-rid', suggestRid(h), 'data-field="rid" size="12"')}</label>
      <label>kind ${select(`${key}:attach-kind`, 'attach-kind', kinds, 'dedicated', 'data-field="kind"')}</label>
      <button data-action="attach" ${attrs} data-testid="attach" data-primary>attach device</button>
      ${errorSlot(`${key}:attach`, 'attach-error')}
    </div>
    ${p2 ? `
    <div class="row" data-scope>
      <button data-action="alloc" data-kind="local" ${attrs} data-testid="alloc-local">alloc local</button>
      <button data-action="alloc" data-kind="shared" ${attrs} data-testid="alloc-shared">alloc shared</button>
      ${errorSlot(`${key}:alloc`, 'alloc-error')}
    </div>
    <div class="row" data-scope>
      <label>gPASID ${input(`${key}:free-gpasid`, 'free-gpasid', last, 'data-field="gpasid" size="6"')}</label>
      <button data-action="freePasid" ${attrs} data-testid="free" data-primary>free</button>
      ${errorSlot(`${key}:free`, 'free-error')}
    </div>
    <div class="row" data-scope>
      <label>bind gPASID ${input(`${key}:bind-gpasid`, 'bind-gpasid', last, 'data-field="gpasid" size="6"')}</label>
      <label>to ${select(`${key}:bind-device`, 'bind-device', deviceOptions(g), firstDevice, 'data-field="device"')}</label>
      <button data-action="bind" ${attrs} data-testid="bind" data-primary>bind</button>
      <button data-action="unbind" ${attrs} data-testid="unbind">unbind</button>
      ${errorSlot(`${key}:bind`, 'bind-error')}
    </div>
    <div class="scroll"><table class="xlate" data-testid="xlate-table"><caption class="sr-only">${esc(name)}'s translation table</caption><thead><tr><th>${term('gPASID')}</th><th>kind</th><th>${term('hPASID')} (translation table)</th></tr></thead>
      <tbody>${rows || '<tr><td colspan="3" class="muted">no PASIDs</td></tr>'}${more}</tbody></table></div>
    ${draining.length ? `<div class="draining" data-testid="guest-draining"><span class="swatch-draining"></span>${term('draining')}, no longer translating and not handed out again until the teardown is confirmed (below the maps):<ul>${drainingRows}</ul></div>` : ''}` : `
    <div class="row" data-scope>
      <label>on ${select(`${key}:record-device`, 'record-device', deviceOptions(g), firstDevice, 'data-field="device"')}</label>
      <label>the guest picks PASID ${input(`${key}:record-pasid`, 'record-pasid', '1', 'data-field="pasid" size="6"')}</label>
      <button data-action="record" ${attrs} data-testid="record" data-primary>record</button>
      <button data-action="release" ${attrs} data-testid="release">release</button>
      ${errorSlot(`${key}:record`, 'record-error')}
    </div>`}
    ${renderVcmd(h, g, attrs)}
  </section>`;
}

/**
 * A host's panel as parts, each drawn on its own (`setParts`): a step in one guest
 * redraws that guest's card, not the maps, the layout form or the other guests.
 */
function hostParts(h) {
  const s = h.snap;
  const k = h.key;
  const sharedSize = s.shared.end - s.shared.start;
  return [
    ['head', `
  <h2>Host ${k} <span class="tag">${term(s.platform.toLowerCase())}</span>
    <span class="stat" data-testid="shared-stat-${k}">shared PASIDs in use ${num(s.shared_in_use)} / ${num(sharedSize)}${h.draining.length ? `, of which ${num(h.draining.filter((d) => d.hpasid !== null).length)} draining` : ''}</span></h2>`],
    ['layout', renderLayout(h)],
    ['maps', renderMaps(h)],
    ['legend', renderLegend(h)],
    ['add-guest', `
  <div class="row add-guest" data-scope>
    <label>new guest ${select(`${k}:add-guest-platform`, `add-guest-platform-${k}`, [['p2', 'p2 guest'], ['p1', 'p1 guest']], s.platform === 'P2' ? 'p2' : 'p1', 'data-field="platform"')}</label>
    <label>shared quota (p2) ${input(`${k}:add-guest-quota`, `add-guest-quota-${k}`, '64', 'data-field="quota" size="5"')}</label>
    <button data-action="addGuest" data-host="${k}" data-testid="add-guest-${k}" data-primary>add guest</button>
    ${errorSlot(`${k}:addGuest`, `add-guest-error-${k}`)}
  </div>`],
    ['rids', renderRids(h)],
    ['teardown', renderTeardown(h)],
    ...(s.guests.length ? s.guests.map((g) => [`guest-${g.id}`, renderGuest(h, g)])
      : [['no-guests', '<p class="muted">No guests yet: add one, or pick a preset above.</p>']]),
  ];
}

/** Every RID in use on the host with all its users (the core's `ridUsers`) and what each programmed there. */
function renderRids(h) {
  const rids = Object.keys(h.ridUsers);
  if (!rids.length) return '';
  const programmedOn = (guest, rid, kind) => {
    const g = h.snap.guests.find((x) => x.id === guest);
    const d = g?.devices.find((x) => ridText(x.rid) === rid && x.kind === kind);
    return d ? d.programmed.map((p) => p.programmed) : [];
  };
  const rows = rids.map((rid) => {
    const users = h.ridUsers[rid].map((u) => {
      const pasids = programmedOn(u.guest, rid, u.kind);
      const name = guestName(h, u.guest);
      return `<span class="rid-user" data-testid="rid-user" data-guest="${esc(name)}" data-kind="${u.kind}" data-programmed="${pasids.join(' ')}" style="--guest:${colourOf(name)}"><span class="swatch"></span>${esc(name)} <span class="muted">${kindText[u.kind]}</span>${pasids.length ? ` <span class="mono">PASID ${pasids.join(', ')}</span>` : ''}</span>`;
    }).join('');
    const kinds = new Set(h.ridUsers[rid].map((u) => u.kind));
    const note = kinds.size > 1 ? 'mixed: a dedicated and a shared WQ on one function' : h.ridUsers[rid].length > 1 ? `one shared WQ, ${h.ridUsers[rid].length} guests: each programs its own hPASIDs` : '';
    return `<tr data-testid="rid-row" data-rid="${rid}"><td class="mono">${rid}</td><td data-testid="rid-users">${users}</td><td class="muted">${note}</td></tr>`;
  }).join('');
  return `<details class="rids" data-testid="rids-${h.key}" open><summary>${term('RIDs', 'RID')} and their users</summary>
    <table><thead><tr><th>RID</th><th>users: the PASIDs programmed on it</th><th></th></tr></thead><tbody>${rows}</tbody></table></details>`;
}

/** Draining PASIDs with their confirm buttons, and the entries the last destroy left to clear. */
function renderTeardown(h) {
  const k = h.key;
  const list = h.draining;
  const gone = state.destroyed[k];
  if (!list.length && !gone) return '';
  const live = new Set(h.snap.guests.map((g) => g.id));
  const items = list.slice(0, TABLE_ROWS).map((d) => {
    const who = live.has(d.guest) ? guestName(h, d.guest) : `${guestName(h, d.guest)} (destroyed)`;
    return `<li data-testid="draining-item" data-gpasid="${d.gpasid}" data-hpasid="${d.hpasid ?? ''}" data-guest="${esc(guestName(h, d.guest))}">
      <span class="swatch-draining"></span>${esc(who)}: gPASID ${d.gpasid}${d.hpasid !== null ? ` → hPASID <b>${d.hpasid}</b>` : ' (local)'}
      <button class="small" data-action="teardown" data-host="${k}" data-record="${esc(JSON.stringify(d))}" data-testid="teardown-one" aria-label="confirm teardown of ${esc(who)}'s gPASID ${d.gpasid}">confirm teardown</button></li>`;
  }).join('') + (list.length > TABLE_ROWS ? `<li class="muted">… and ${num(list.length - TABLE_ROWS)} more</li>` : '');
  const entries = gone ? `<div data-testid="destroy-entries"><b>${esc(gone.name)} destroyed.</b> ${gone.entries.length
    ? `The VMM must clear these PASID-table entries, then flush the IOTLB and device TLB and drain the WQs: <ul>${gone.entries.slice(0, TABLE_ROWS).map((e) => `<li data-testid="destroy-entry" class="mono">${ridText(e.rid)} · ${kindText[e.kind]} · PASID ${e.pasid}${e.pasid !== e.gpasid ? ` (gPASID ${e.gpasid})` : ''}</li>`).join('')}${gone.entries.length > TABLE_ROWS ? `<li class="muted">… and ${num(gone.entries.length - TABLE_ROWS)} more</li>` : ''}</ul>`
    : 'It had no PASIDs programmed on any device.'}</div>` : '';
  return `<div class="teardown" data-scope data-testid="teardown-${k}">
    <b>${term('teardown')}</b> <span data-testid="draining-count-${k}" data-count="${list.length}">${num(list.length)} draining</span>
    ${list.length ? `<button class="small" data-action="teardownAll" data-host="${k}" data-testid="teardown-all-${k}" data-primary>${list.length > TEARDOWN_BATCH ? `confirm teardown of the first ${num(TEARDOWN_BATCH)}` : 'confirm teardown of all'}</button>` : ''}
    ${errorSlot(`${k}:teardown`, `teardown-error-${k}`)}
    ${entries}
    ${list.length ? `<ul class="draining-list">${items}</ul>` : ''}
  </div>`;
}

function renderMigration() {
  const m = state.migration;
  const options = state.hosts.flatMap((h) => h.snap.guests.map((g) => {
    const value = `${h.key}:${g.id}`;
    return `<option value="${value}" ${value === m.selected ? 'selected' : ''}>${esc(guestName(h, g.id))} on host ${h.key} → host ${otherHost(h).key}</option>`;
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
  return `
  <h2>Migration</h2>
  <p class="muted">${withTerms('The source exports the guest\'s PASID state; the target keeps every {{gPASID}} and gives each shared one a new {{hPASID}}, or refuses and stays as it was.')}</p>
  <div class="row" data-scope>
    <select data-testid="migrate-guest" aria-label="guest to migrate"><option value="">pick a guest…</option>${options}</select>
    ${ridRows ? `<span class="muted">RID map:</span>${ridRows}` : ''}
    <button data-action="migrate" data-testid="migrate-go" data-primary ${m.selected ? '' : 'disabled'}>send to the other host</button>
    ${errorSlot('migrate', 'migrate-error')}
  </div>
  <div class="row">
    <span class="muted">refusals:</span>
    ${PRESETS.filter((p) => p.refusal).map((p) => `<button class="small" data-action="refusal" data-refusal="${p.id}" data-testid="refusal-${p.id}" title="${esc(p.blurb)}">${esc(p.title)}</button>`).join('')}
  </div>
  <div aria-live="polite">${renderMigrationResult(m.result)}</div>`;
}

function renderSetup(setup) {
  if (!setup) return '';
  return `<div data-testid="migrate-setup"><b>Set up:</b> ${esc(setup.blurb)}${setup.lines.length ? `<ul>${setup.lines.map((l) => `<li>${esc(l)}</li>`).join('')}</ul>` : ''}</div>`;
}

function renderMigrationResult(r) {
  if (!r) return '';
  if (!r.ok) {
    return `<div class="result refused" data-testid="migrate-result" tabindex="-1">
      <b>${esc(r.name)}: host ${r.from} → host ${r.to} refused.</b> <span data-testid="migrate-refusal">${esc(r.error)}</span>
      ${renderSetup(r.setup)}
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
  return `<div class="result ok" data-testid="migrate-result" tabindex="-1">
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

const LOG_SHOWN = 200; // the step log shows the last 200 entries

/** One log entry's markup, kept on the entry until its "undone" mark changes. */
function logItem(e) {
  const undone = !!e.undone;
  if (e.markup?.undone !== undone) {
    e.markup = { undone, html: `<li data-testid="log-entry" class="${e.ok ? 'ok' : 'fail'} ${undone ? 'undone' : ''} ${e.meta ? 'meta' : ''}">
      <span>${e.ok ? '✓' : '✗'} ${esc(e.text)}${e.error ? ':' : ''}</span>${e.error ? ` <span class="err">${esc(e.error)}</span>` : ''}
      ${e.details.length ? `<ul>${e.details.slice(0, 30).map((d) => `<li>${esc(d)}</li>`).join('')}${e.details.length > 30 ? `<li>… ${e.details.length - 30} more</li>` : ''}</ul>` : ''}
    </li>` };
  }
  return e.markup.html;
}

/**
 * Brings the step log up to date by touching only the entries that changed: a step
 * appends one, an undo strikes one out, and re-parsing all 200 shown made every step
 * slower the longer the session ran. Returns whether anything changed.
 */
function drawLog() {
  const panel = document.querySelector('[data-testid="log-panel"]');
  const first = Math.max(0, state.log.length - LOG_SHOWN);
  const items = state.log.slice(first).map(logItem);
  const shown = panel.shownItems;
  const list = panel.querySelector('[data-testid="log"]');
  const drop = shown ? first - panel.shownFirst : -1;
  if (!list || drop < 0 || drop > shown.length) {
    panel.innerHTML = `<ol data-testid="log" start="${first + 1}">${items.join('')}</ol>`;
  } else {
    const before = shown.slice(drop);
    if (drop === 0 && before.length === items.length && before.every((html, i) => html === items[i])) return false;
    for (let i = 0; i < drop; i++) list.firstElementChild.remove();
    const common = Math.min(before.length, items.length);
    for (let i = 0; i < common; i++) if (before[i] !== items[i]) list.children[i].outerHTML = items[i];
    for (let i = before.length - 1; i >= common; i--) list.children[i].remove();
    if (items.length > common) list.insertAdjacentHTML('beforeend', items.slice(common).join(''));
    list.start = first + 1;
  }
  panel.shownItems = items;
  panel.shownFirst = first;
  return true;
}

/**
 * The focused element, and how to find its twin by keep key or test id if a render
 * redraws it (`sel` null: it can only get focus back if it survives), so a render can
 * put focus back.
 */
function rememberFocus() {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const sel = el.dataset?.keep ? `[data-keep="${el.dataset.keep}"]` : el.dataset?.testid ? `[data-testid="${el.dataset.testid}"]` : null;
  const scope = el.closest('[data-guest-id]');
  const host = el.closest('[data-testid^="host-"]');
  return { el, sel, guest: scope?.dataset.guestId, host: host?.dataset.testid, start: el.selectionStart, end: el.selectionEnd };
}

function restoreFocus(f) {
  if (!f) return;
  if (f.el.isConnected) { // its panel was not redrawn: the same element
    f.el.focus({ preventScroll: true });
    return;
  }
  if (!f.sel) return;
  let root = document;
  if (f.host) root = document.querySelector(`[data-testid="${f.host}"]`) ?? document;
  if (f.guest !== undefined) root = root.querySelector(`[data-guest-id="${f.guest}"]`) ?? root;
  const el = root.querySelector(f.sel);
  if (!el) return;
  el.focus({ preventScroll: true });
  if (typeof f.start === 'number' && typeof el.setSelectionRange === 'function') {
    try {
      el.setSelectionRange(f.start, f.end);
    } catch {
      // not a text control
    }
  }
}

function highlight() {
  for (const el of document.querySelectorAll('.tour-focus')) el.classList.remove('tour-focus');
  if (!state.tour.active) return null;
  let first = null;
  for (const sel of state.tour.highlight) {
    for (const el of document.querySelectorAll(sel)) {
      el.classList.add('tour-focus');
      first ??= el;
    }
  }
  return first;
}

/** Scrolls to what the last action produced (a migration result, the tour's focus). */
function reveal(first) {
  const m = state.migration;
  if (m.reveal === 'result') {
    const el = document.querySelector('[data-testid="migrate-result"]');
    if (el) {
      el.scrollIntoView({ block: 'nearest' });
      if (!state.tour.active) el.focus({ preventScroll: true });
    }
  } else if (m.reveal === 'controls' && !state.tour.active) {
    document.querySelector('[data-testid="migrate-go"]')?.scrollIntoView({ block: 'nearest' });
  }
  m.reveal = null;
  if (state.tour.reveal && first) {
    first.scrollIntoView({ block: 'center' });
    state.tour.reveal = false;
  }
}

/**
 * Sets a container's HTML only when it changed: parsing and laying out a panel whose
 * text is the same as before is most of a render's time, and an unchanged panel keeps
 * its elements (and the user's place in them).
 */
function setHtml(selector, html) {
  const el = document.querySelector(selector);
  if (el.renderedHtml !== html) {
    el.innerHTML = html;
    el.renderedHtml = html;
  }
}

/**
 * Fills a container with `parts` ([key, html] in order), each in its own element
 * (`display: contents`, so the layout is as if there were none): a part keeps its
 * element and its HTML is set only when it changed; parts no longer listed go.
 */
function setParts(container, parts) {
  const old = new Map();
  for (const el of container.children) if (el.dataset.part) old.set(el.dataset.part, el);
  let next = container.firstElementChild;
  for (const [key, html] of parts) {
    let el = old.get(key);
    if (el) {
      old.delete(key);
    } else {
      el = document.createElement('div');
      el.className = 'part';
      el.dataset.part = key;
    }
    if (el.renderedHtml !== html) {
      el.innerHTML = html;
      el.renderedHtml = html;
    }
    if (el !== next) container.insertBefore(el, next);
    next = el.nextElementSibling;
  }
  for (const el of old.values()) el.remove();
}

/**
 * What the views show of a host, read from the core once per change of the hosts
 * (`state.version`): a render that changed no host (the tour's outline, a walk, a
 * map's zoom) asks the core for nothing.
 */
function pull(h) {
  if (h.pulled === state.version) return;
  h.snap = h.host.summary(); // no PASID lists: those come as typed arrays
  for (const g of h.snap.guests) g.pairs = h.host.pasidPairs(g.id);
  h.draining = h.host.draining();
  h.ridUsers = {};
  for (const g of h.snap.guests) {
    for (const d of g.devices) {
      const rid = ridText(d.rid);
      h.ridUsers[rid] ??= h.host.ridUsers(rid);
    }
  }
  h.pulled = state.version;
}

export function render() {
  const t0 = performance.now();
  const focus = rememberFocus();
  // Taken off before any write: a focused element that a panel's new HTML removes makes
  // the browser restyle and lay out the page right then (a migration's send button cost
  // its panel 20-100 ms); while nothing is written yet, that costs nothing.
  if (focus) focus.el.blur();
  for (const h of state.hosts) pull(h);
  setHtml('[data-testid="tour-panel"]', renderTour());
  for (const h of state.hosts) setParts(document.querySelector(`[data-testid="host-${h.key}"]`), hostParts(h));
  setHtml('[data-testid="walk"]', renderWalk());
  setHtml('[data-testid="machine"]', renderMachine());
  setHtml('[data-testid="migration"]', renderMigration());
  const logChanged = drawLog();
  document.querySelector('[data-testid="undo"]').disabled = state.undo.length === 0;
  document.querySelector('[data-testid="preset-error"]').textContent = state.errors.preset?.message ?? '';
  document.querySelector('[data-testid="export-status"]').textContent = exportStatus();
  const note = state.presetNote;
  setHtml('[data-testid="preset-note"]', note ? `<b>${esc(note.title)}</b>: ${withTerms(note.blurb)}` : '');
  for (const h of state.hosts) drawMaps(h);
  drawMachine();
  const first = highlight();
  // Layout is read only from here on, once every write is done (focus() lays the page
  // out too): a read between writes makes the browser lay the page out again each time.
  restoreFocus(focus);
  if (logChanged) {
    const scroller = document.querySelector('[data-testid="log-panel"]');
    scroller.scrollTop = scroller.scrollHeight;
  }
  reveal(first);
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
}
