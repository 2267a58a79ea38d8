// One machine as it really runs: several VMM processes (one per VM, as QEMU is), each
// with its own core host, all drawing host PASIDs from one machine-wide shared range,
// the part the broker daemon owns on a real machine. The map colours each host PASID
// by the VMM holding it; a crashed VMM's PASIDs drain (the core's orphans) until the
// teardown is confirmed. Every number comes from the core (wasm Host and Machine).

import { esc, num } from './format.js';
import { withTerms } from './glossary.js';
import { drawMap, DRAINING, rgb, TINT } from './map.js';
import { colourOf, MACHINE_RANGE, state } from './state.js';

const rgbText = (c) => `rgb(${c.join(',')})`;
const COLUMNS = 128;
export const BROKER_DOC = 'docs/broker.md';

/** What each VMM holds, from its host: guests with their hPASIDs, and what drains. */
function vmmView(v) {
  const snap = v.host.summary();
  const guests = snap.guests.map((g) => {
    const pairs = v.host.pasidPairs(g.id);
    const hpasids = [];
    for (let i = 1; i < pairs.length; i += 2) if (pairs[i]) hpasids.push(pairs[i]);
    return { id: g.id, name: v.names[g.id] ?? `guest ${g.id.toString(16)}`, hpasids, quota: g.config.shared_quota };
  });
  const draining = v.host.draining();
  return { snap, guests, draining, inUse: v.host.sharedInUse };
}

function renderVmm(v, i, view) {
  const colour = colourOf(v.name);
  const attrs = `data-vmm="${i}"`;
  const guests = view.guests.map((g) => `<li data-testid="machine-guest" data-guest="${esc(g.name)}" data-hpasids="${g.hpasids.join(' ')}">${esc(g.name)}: hPASIDs <span class="mono">${g.hpasids.join(', ') || 'none'}</span></li>`).join('');
  const draining = view.draining.map((d) => d.hpasid).filter((h) => h !== null);
  return `<section class="vmm ${v.crashed ? 'crashed' : ''}" data-testid="vmm-${v.name}" style="--guest:${colour}" aria-label="VMM process ${esc(v.name)}">
    <header><span class="swatch"></span><b>${esc(v.name)}</b>
      <span class="tag" data-testid="vmm-status">${v.crashed ? 'crashed' : 'running'}</span>
      <span class="muted" data-testid="vmm-in-use" data-count="${view.inUse}">${num(view.inUse)} host PASIDs</span></header>
    ${guests ? `<ul>${guests}</ul>` : `<p class="muted">${v.crashed ? 'its guests died with it' : 'no guests'}</p>`}
    ${draining.length ? `<p class="draining" data-testid="vmm-draining" data-hpasids="${draining.join(' ')}"><span class="swatch-draining"></span>draining: hPASIDs <span class="mono">${draining.join(', ')}</span>. ${v.crashed ? 'Nobody may get them until the teardown is confirmed (the real broker also keeps them in quarantine for a while).' : ''}</p>` : ''}
    <div class="row" data-scope>
      ${v.crashed ? '' : `<button class="small" data-action="machineGuest" ${attrs} data-testid="vmm-add-guest">start a VM (2 shared PASIDs)</button>
      <button class="small" data-action="machineCrash" ${attrs} data-testid="vmm-crash">VMM crashes</button>`}
      ${draining.length ? `<button class="small" data-action="machineTeardown" ${attrs} data-testid="vmm-teardown" data-primary>teardown done</button>` : ''}
    </div>
  </section>`;
}

export function renderMachine() {
  const m = state.machine;
  const intro = withTerms(`On a real host every VM has its own {{VMM}} process (QEMU), each with its own copy of this library. A {{shared WQ}} tells submitters apart only by host PASID, so host PASIDs must be unique across all of them: one owner per machine hands them out, the {{broker}} daemon. Here one machine-wide shared range stands for it, and each VMM's core host takes its host PASIDs from there.`);
  const note = `<p class="muted" data-testid="machine-broker-note">What this page does not model: the real broker (<a href="${BROKER_DOC}" target="_blank" rel="noopener" data-testid="broker-doc">${BROKER_DOC}</a>, a daemon with a lease per VMM connection) additionally keeps a dead VMM's host PASIDs in quarantine for a configured time: nobody else can get them, only the same VMM reconnecting with its lease's token can reclaim them, and once the time has passed and its process is gone they are free. Here a crashed VMM's PASIDs drain, as the core's orphans, until "teardown done".</p>`;
  if (!m.range) {
    return `<h2>One machine, several VMM processes</h2><p class="muted">${intro}</p>${note}
      <div class="row"><button data-action="machineSetup" data-testid="machine-setup" class="primary">set up: two VMMs on one machine</button></div>`;
  }
  const views = m.vmms.map(vmmView);
  return `<h2>One machine, several VMM processes</h2><p class="muted">${intro}</p>
    <div class="row"><span class="stat" data-testid="machine-stat" data-used="${m.range.used()}">machine-wide shared range ${num(MACHINE_RANGE[0])}..${num(MACHINE_RANGE[1])}: ${num(m.range.used())} taken (held or draining), ${num(m.range.available())} free</span>
      <button class="small" data-action="machineVmm" data-testid="machine-add-vmm">start another VMM</button>
      <button class="small" data-action="machineSetup" data-testid="machine-setup">set up again</button></div>
    <div class="map-label"><b>machine-wide shared range</b>: each host PASID coloured by the VMM holding it <span class="muted" data-scale="machine"></span></div>
    <canvas class="machine-map" data-testid="map-machine" role="img" aria-label="the machine's shared range by VMM"></canvas>
    <div class="legend" data-testid="machine-legend">
      <span><i style="background:${rgbText(TINT.shared)}"></i>free</span>
      <span><i style="background:${rgbText(DRAINING)}"></i>draining (waiting for teardown)</span>
      ${m.vmms.map((v) => `<span><i style="background:${colourOf(v.name)}"></i>${esc(v.name)}</span>`).join('')}
    </div>
    <div class="vmms">${m.vmms.map((v, i) => renderVmm(v, i, views[i])).join('')}</div>
    ${note}`;
}

/** Draws the machine map: one cell per host PASID, coloured by VMM; draining apart. */
export function drawMachine() {
  const m = state.machine;
  const canvas = document.querySelector('[data-testid="map-machine"]');
  if (!m.range || !canvas) return;
  const empty = new Uint32Array(0);
  const draining = [];
  const vmms = m.vmms.map((v) => {
    const shared = [];
    for (const g of v.host.guests()) {
      const pairs = v.host.pasidPairs(g);
      for (let i = 1; i < pairs.length; i += 2) if (pairs[i]) shared.push(pairs[i]);
    }
    for (const d of v.host.draining()) if (d.hpasid !== null) draining.push(d.hpasid);
    const colour = colourOf(v.name);
    return { name: v.name, colour, rgb: rgb(colour), local: empty, shared: Uint32Array.from(shared).sort(), pairs: empty };
  });
  const [lo, hi] = MACHINE_RANGE;
  const data = { width: 20, local: [1, lo], shared: [lo, hi], drainingLocal: empty, drainingShared: Uint32Array.from(draining).sort(), guests: vmms };
  const layout = drawMap(canvas, data, lo, hi, COLUMNS, 8);
  Object.assign(canvas.dataset, { lo: layout.lo, hi: layout.hi, bucket: layout.bucket, cols: layout.cols });
  canvas.style.height = `${Math.round(((canvas.clientWidth || 600) * layout.rows) / layout.cols)}px`;
  const label = canvas.parentElement.querySelector('[data-scale="machine"]');
  if (label) label.textContent = `(1 cell = ${num(layout.bucket)} PASID${layout.bucket > 1 ? 's' : ''}; a host PASID is never in two VMMs)`;
}
