// One machine as it really runs: several VMM processes (one per VM, as QEMU is), each
// with its own core host, all taking host PASIDs from the machine's broker. The broker
// here is the daemon's own lease state machine (the core's `lease` module, through the
// wasm Broker) with a clock the page moves: a lease per VMM, spares, a crashed VMM's
// host PASIDs quarantined until a deadline, a restart whose leases wait to be reclaimed.
// The map colours each host PASID by its state at the broker. Every number comes from
// the core (wasm Host and Broker).

import { clockText, leaseOf } from './actions.js';
import { esc, num } from './format.js';
import { withTerms } from './glossary.js';
import { drawMap, DRAINING, rgb, TINT } from './map.js';
import { colourOf, MACHINE_RANGE, state, TICK_MS } from './state.js';

const rgbText = (c) => `rgb(${c.join(',')})`;
const COLUMNS = 128;
export const BROKER_DOC = 'docs/broker.md';
/** A dead VMM's host PASIDs waiting out their quarantine (orphaned lease or none). */
export const QUARANTINED = [91, 33, 182];
/** A spare: the VMM's colour, lighter (recorded to its lease, not granted). */
const lighter = (c) => c.map((v) => Math.round(v * 0.35 + 255 * 0.65));

/**
 * The broker's status and each VMM's view, read from the core once per change of the
 * state (`state.version`): the panel and its map share them, and a render that
 * changed nothing on the machine asks the core for nothing.
 */
function machineView() {
  const m = state.machine;
  if (m.view?.version !== state.version) {
    const status = m.broker.status();
    m.view = { version: state.version, status, vmms: m.vmms.map((v) => vmmView(v, status)), records: m.broker.opsTotal };
  }
  return m.view;
}

/** What each VMM holds, from its host, and its lease, from the broker. */
function vmmView(v, status) {
  const lease = leaseOf(status, v);
  if (v.crashed) return { lease, guests: [], draining: [], inUse: 0 };
  const snap = v.host.summary();
  const guests = snap.guests.map((g) => {
    const pairs = v.host.pasidPairs(g.id);
    const hpasids = [];
    for (let i = 1; i < pairs.length; i += 2) if (pairs[i]) hpasids.push(pairs[i]);
    return { id: g.id, name: v.names[g.id] ?? `guest ${g.id.toString(16)}`, hpasids, quota: g.config.shared_quota };
  });
  const draining = v.host.draining().map((d) => d.hpasid).filter((h) => h !== null);
  return { lease, guests, draining, inUse: v.host.sharedInUse };
}

function leaseText(lease, status) {
  if (!lease) return 'no lease';
  if (lease.state === 'connected') return `lease ${lease.lease}: connected`;
  if (lease.state === 'unconfirmed') return `lease ${lease.lease}: unconfirmed until t = ${clockText(lease.until)} (reclaimed on its next call)`;
  return `lease ${lease.lease}: orphaned, quarantined until t = ${clockText(lease.until)}${lease.until <= status.now ? ' (due at the next tick)' : ''}`;
}

function renderVmm(v, i, view, status) {
  const colour = colourOf(v.name);
  const attrs = `data-vmm="${i}"`;
  const { lease } = view;
  const guests = view.guests.map((g) => `<li data-testid="machine-guest" data-guest="${esc(g.name)}" data-hpasids="${g.hpasids.join(' ')}">${esc(g.name)}: hPASIDs <span class="mono">${g.hpasids.join(', ') || 'none'}</span></li>`).join('');
  const spares = lease?.spare ?? [];
  const quarantined = lease?.state === 'orphaned' ? lease.held : [];
  return `<section class="vmm ${v.crashed ? 'crashed' : ''}" data-testid="vmm-${v.name}" style="--guest:${colour}" aria-label="VMM process ${esc(v.name)}">
    <header><span class="swatch"></span><b>${esc(v.name)}</b>
      <span class="tag" data-testid="vmm-status">${v.crashed ? 'crashed' : 'running'}</span>
      <span class="muted" data-testid="vmm-in-use" data-count="${view.inUse}">${num(view.inUse)} host PASIDs</span></header>
    <p class="muted" data-testid="vmm-lease" data-state="${lease?.state ?? 'none'}" data-until="${lease?.until ?? ''}">${esc(leaseText(lease, status))}</p>
    ${guests ? `<ul>${guests}</ul>` : `<p class="muted">${v.crashed ? 'its guests died with it' : 'no guests'}</p>`}
    ${v.crashed ? '' : `<p class="muted" data-testid="vmm-spares" data-count="${spares.length}" data-hpasids="${spares.join(' ')}"><span class="swatch-spare" style="background:${rgbText(lighter(rgb(colour)))}"></span>${withTerms('{{spares}}')}: ${spares.length ? `hPASIDs <span class="mono">${spares.join(', ')}</span> (its next grants, no store write)` : 'none'}</p>`}
    ${view.draining.length ? `<p class="draining" data-testid="vmm-draining" data-hpasids="${view.draining.join(' ')}"><span class="swatch-draining"></span>draining: hPASIDs <span class="mono">${view.draining.join(', ')}</span>, still the lease's until the teardown is confirmed.</p>` : ''}
    ${quarantined.length ? `<p class="draining" data-testid="vmm-quarantined" data-hpasids="${quarantined.join(' ')}" data-until="${lease.until}"><span class="swatch-draining" style="background:${rgbText(QUARANTINED)}"></span>${withTerms('{{quarantined}}')} until t = ${clockText(lease.until)}: hPASIDs <span class="mono">${quarantined.join(', ')}</span>. Nobody else gets them before then (the kernel may still be tearing the devices down); once it passes and the process is gone, they are free.</p>` : ''}
    <div class="row" data-scope>
      ${v.crashed ? '' : `<button class="small" data-action="machineGuest" ${attrs} data-testid="vmm-add-guest">start a VM (2 shared PASIDs)</button>
      ${view.guests.length ? `<button class="small" data-action="machineStop" ${attrs} data-testid="vmm-stop-guest">a VM shuts down</button>` : ''}
      <button class="small" data-action="machineCrash" ${attrs} data-testid="vmm-crash">VMM crashes</button>`}
      ${view.draining.length ? `<button class="small" data-action="machineTeardown" ${attrs} data-testid="vmm-teardown" data-primary>teardown done</button>` : ''}
    </div>
  </section>`;
}

/**
 * What the last step that called the broker made it do, all its calls together, and
 * the store records written since the broker started: a grant from a spare is a call
 * that writes nothing.
 */
function storeRecordsText(last, total) {
  const attrs = `data-testid="broker-ops" data-calls="${last?.calls ?? ''}" data-records="${last?.records ?? ''}" data-total="${total}"`;
  const plural = (n, what) => `${num(n)} ${what}${n === 1 ? '' : 's'}`;
  const lastText = last ? `The last step that used the broker ("${esc(last.text)}") made ${plural(last.calls, 'call')} to it, which wrote ${plural(last.records, 'store record')} in all; ` : '';
  return `<p class="muted" ${attrs}>${lastText}${plural(total, 'store record')} since the broker first started.</p>`;
}

/** The broker's own view: its clock, totals, leases, and the PASIDs quarantined without a lease. */
function renderBroker(status, records) {
  const t = status.totals;
  const leases = status.leases.map((l) => {
    const v = state.machine.vmms.find((x) => x.id === l.vmm);
    return `<li data-testid="broker-lease" data-lease="${l.lease}" data-state="${l.state}" data-until="${l.until ?? ''}" data-vmm="${esc(v?.name ?? '')}" data-held="${l.held.join(' ')}" data-spare="${l.spare.join(' ')}">lease ${l.lease} (${esc(v?.name ?? `pid ${l.pid}`)}): <b>${l.state}</b>${l.until !== null ? ` until t = ${clockText(l.until)}` : ''}; ${l.held.length} held${l.spare.length ? `, ${l.spare.length} spare` : ''}</li>`;
  }).join('');
  const free = status.pasids.filter((p) => p.state === 'quarantined');
  return `<section class="broker" data-testid="broker-panel" aria-label="the machine's broker">
    <header><b>${withTerms('the {{broker}}')}</b> <span class="muted">(the daemon's state machine, on a clock this page moves)</span></header>
    <div class="row">
      <span class="stat" data-testid="broker-clock" data-now="${status.now}">t = ${clockText(status.now)}</span>
      <span class="stat" data-testid="broker-totals" data-free="${t.free}" data-held="${t.held}" data-spare="${t.spare}" data-quarantined="${t.quarantined}" data-leases="${t.leases}">${num(t.held)} held, ${num(t.spare)} spare, ${num(t.quarantined)} quarantined, ${num(t.free)} free</span>
      <button class="small" data-action="machineTick" data-testid="broker-tick">time passes (+${clockText(TICK_MS)})</button>
      <button class="small" data-action="machineRestart" data-testid="broker-restart">restart the broker</button>
    </div>
    ${storeRecordsText(state.machine.lastStep, records)}
    <ul data-testid="broker-leases">${leases || '<li class="muted">no leases</li>'}</ul>
    ${free.length ? `<p class="muted" data-testid="broker-quarantine" data-hpasids="${free.map((p) => p.pasid).join(' ')}">quarantined after their lease ended: ${free.map((p) => `${p.pasid} (until t = ${clockText(p.until)})`).join(', ')}</p>` : ''}
  </section>`;
}

export function renderMachine() {
  const m = state.machine;
  const intro = withTerms(`On a real host every VM has its own {{VMM}} process (QEMU), each with its own copy of this library. A {{shared WQ}} tells submitters apart only by host PASID, so host PASIDs must be unique across all of them: one owner per machine hands them out, the {{broker}} daemon, one {{lease}} per VMM. Here the broker is the daemon's own state machine (from the core library) on a clock you move: crash a VMM, let time pass, restart the broker.`);
  const note = `<p class="muted" data-testid="machine-broker-note">What this page simulates: the daemon (<a href="${BROKER_DOC}" target="_blank" rel="noopener" data-testid="broker-doc">${BROKER_DOC}</a>) also has a socket, a store on disk and a real clock; here its connections are function calls, its store is the list of records its state machine wrote (a restart loads exactly that), a "crash" closes a VMM's connection and ends its process, and the clock moves only when you press "time passes". What it decides (which host PASID, spare or not, quarantined until when, reclaimed or not) is the daemon's code.</p>`;
  if (!m.broker) {
    return `<h2>One machine, several VMM processes</h2><p class="muted">${intro}</p>${note}
      <div class="row"><button data-action="machineSetup" data-testid="machine-setup" class="primary">set up: two VMMs on one machine</button></div>`;
  }
  const { status, vmms: views, records } = machineView();
  const t = status.totals;
  const used = t.held + t.spare + t.quarantined;
  return `<h2>One machine, several VMM processes</h2><p class="muted">${intro}</p>
    <div class="row"><span class="stat" data-testid="machine-stat" data-used="${used}" data-held="${t.held}">machine-wide shared range ${num(MACHINE_RANGE[0])}..${num(MACHINE_RANGE[1])}: ${num(used)} taken (held, spare or quarantined), ${num(t.free)} free</span>
      <button class="small" data-action="machineVmm" data-testid="machine-add-vmm">start another VMM</button>
      <button class="small" data-action="machineSetup" data-testid="machine-setup">set up again</button></div>
    ${renderBroker(status, records)}
    <div class="map-label"><b>machine-wide shared range</b>: each host PASID coloured by its state at the broker <span class="muted" data-scale="machine"></span></div>
    <canvas class="machine-map" data-testid="map-machine" role="img" aria-label="the machine's shared range by VMM and broker state"></canvas>
    <div class="legend" data-testid="machine-legend">
      <span><i style="background:${rgbText(TINT.shared)}"></i>free</span>
      <span><i style="background:${rgbText(DRAINING)}"></i>draining (waiting for its VMM's teardown)</span>
      <span><i style="background:${rgbText(QUARANTINED)}"></i>quarantined (a dead VMM's, until its deadline)</span>
      ${m.vmms.map((v) => `<span><i style="background:${colourOf(v.name)}"></i>${esc(v.name)}</span>`).join('')}
      <span class="muted">lighter: a VMM's spares</span>
    </div>
    <div class="vmms">${m.vmms.map((v, i) => renderVmm(v, i, views[i], status)).join('')}</div>
    ${note}`;
}

/**
 * Draws the machine map: one cell per host PASID, coloured by VMM (spares lighter),
 * quarantine and draining apart. A canvas already showing this state is left alone.
 */
export function drawMachine() {
  const m = state.machine;
  const canvas = document.querySelector('[data-testid="map-machine"]');
  if (!m.broker || !canvas) return;
  const view = machineView();
  if (canvas.drawn === view) return;
  canvas.drawn = view;
  const empty = new Uint32Array(0);
  const { status } = view;
  const draining = new Set(view.vmms.flatMap((v) => v.draining));
  const byVmm = new Map(m.vmms.map((v) => [v.id, { held: [], spare: [] }]));
  const quarantined = [];
  for (const p of status.pasids) {
    if (p.state === 'orphaned' || p.state === 'quarantined') quarantined.push(p.pasid);
    else if (draining.has(p.pasid)) continue;
    else if (p.vmm !== null && byVmm.has(p.vmm)) byVmm.get(p.vmm)[p.state === 'spare' ? 'spare' : 'held'].push(p.pasid);
  }
  const entry = (name, colour, list) => ({ name, colour, rgb: colour, local: empty, shared: Uint32Array.from(list).sort(), pairs: empty });
  const guests = [entry('quarantined', QUARANTINED, quarantined)];
  for (const v of m.vmms) {
    const c = rgb(colourOf(v.name));
    const lists = byVmm.get(v.id);
    guests.push(entry(v.name, c, lists.held), entry(`${v.name} spare`, lighter(c), lists.spare));
  }
  const [lo, hi] = MACHINE_RANGE;
  const data = { width: 20, local: [1, lo], shared: [lo, hi], drainingLocal: empty, drainingShared: Uint32Array.from(draining).sort(), guests };
  const layout = drawMap(canvas, data, lo, hi, COLUMNS, 8);
  Object.assign(canvas.dataset, { lo: layout.lo, hi: layout.hi, bucket: layout.bucket, cols: layout.cols });
  const label = canvas.parentElement.querySelector('[data-scale="machine"]');
  if (label) label.textContent = `(1 cell = ${num(layout.bucket)} PASID${layout.bucket > 1 ? 's' : ''}; a host PASID is never in two VMMs)`;
}
