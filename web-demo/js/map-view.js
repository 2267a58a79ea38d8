// The maps of one host as the page shows them: which window of PASIDs each canvas
// shows (fitted to where the allocations are, the whole range, or zoomed), their
// labels, legend, and keyboard, pointer and tap access. Drawing itself is map.js.

import { esc, num } from './format.js';
import { buildMapData, cellAt, describeAt, drawMap, DRAINING, extent, SEVERAL, TINT, usage } from './map.js';
import { colourOf, guestName, render, state } from './state.js';

const COLUMNS = 128;
const MAX_ROWS = 32;
const ZOOM_SPAN = COLUMNS * MAX_ROWS; // a zoomed map shows 4,096 PASIDs, one per cell
const RANGES = ['local', 'shared'];
const layouts = {}; // `${host}:${view}` -> what drawMap returned, for hover and keys

const rgbText = (c) => `rgb(${c.join(',')})`;

export function renderMaps(h) {
  const s = h.snap;
  const k = h.key;
  const modeButtons = (view) => {
    const mode = state.maps.view[`${k}:${view}`]?.mode ?? 'fit';
    return ['fit', 'whole'].map((m) => `<button class="small" data-action="mapView" data-map="${k}:${view}" data-mode="${m}"
      data-testid="map-${k}-${view}-${m}" aria-pressed="${mode === m}">${m === 'fit' ? 'fit to data' : 'whole range'}</button>`).join('');
  };
  const canvas = (view, cls = '') => `<canvas class="map ${cls}" data-host="${k}" data-view="${view}" data-testid="map-${k}-${view}"
      tabindex="0" role="img" aria-describedby="map-cell-${k}"></canvas>`;
  return `
  <div class="maps" data-testid="map-${k}">
    <div class="map-label"><b>whole PASID space</b> 0..2<sup>${s.width}</sup>, to scale <span class="muted" data-scale="space"></span></div>
    ${canvas('space', 'strip')}
    <div class="map-label"><b>local range</b> ${num(s.local.start)}..${num(s.local.end)}: gPASIDs and RID-local PASIDs, per guest
      <span class="muted" data-scale="local"></span> ${modeButtons('local')}</div>
    ${canvas('local')}
    <div class="map-label"><b>shared range</b> ${num(s.shared.start)}..${num(s.shared.end)}: host PASIDs, each with one owner
      <span class="muted" data-scale="shared"></span> ${modeButtons('shared')}</div>
    ${canvas('shared')}
    <div class="tooltip" data-testid="map-tooltip-${k}" hidden></div>
    <p class="sr-only" id="map-cell-${k}" aria-live="polite" data-testid="map-cell-${k}"></p>
  </div>`;
}

/** The maps' legend: the fixed colours, then one per guest. */
export function renderLegend(h) {
  return `
  <div class="legend" data-testid="map-legend-${h.key}">
    <span><i style="background:${rgbText(TINT.local)}"></i>local range, free</span>
    <span><i style="background:${rgbText(TINT.shared)}"></i>shared range, free</span>
    <span><i style="background:${rgbText(TINT.none)}"></i>outside both (PASID 0 reserved)</span>
    <span title="Each guest has its own PASID space on its own devices: the same number in two guests is two different things."><i style="background:${rgbText(SEVERAL)}"></i>local: one number in several guests, each its own</span>
    <span data-testid="legend-draining" title="Freed, or of a destroyed guest: no longer translating, not handed out again until the VMM confirms the teardown."><i style="background:${rgbText(DRAINING)}"></i>draining (waiting for teardown)</span>
    ${h.snap.guests.map((g) => { const n = guestName(h, g.id); return `<span><i style="background:${colourOf(n)}"></i>${esc(n)}</span>`; }).join('')}
    <span class="muted">A cell of many shared PASIDs takes the colour of the guest holding most of them: a host PASID is never shared.</span>
  </div>`;
}

/** The window [lo, hi) a range's map shows now. */
function windowOf(h, view, data) {
  const s = h.snap;
  const [rlo, rhi] = view === 'local' ? [s.local.start, s.local.end] : [s.shared.start, s.shared.end];
  const v = state.maps.view[`${h.key}:${view}`] ?? { mode: 'fit' };
  if (v.mode === 'zoom' && rhi - rlo > ZOOM_SPAN) {
    const start = Math.max(rlo, Math.min(v.start, rhi - ZOOM_SPAN));
    return [start, start + ZOOM_SPAN, 'zoomed', COLUMNS];
  }
  const used = v.mode === 'fit' ? extent(data, rlo, rhi) : null;
  if (!used) return [rlo, rhi, v.mode === 'fit' ? 'empty' : 'whole', COLUMNS];
  // Fit: from the row holding the first allocation, just enough rows to reach the
  // last, with room to grow; one PASID per cell while that fits in 4,096 cells.
  const lo = Math.max(rlo, used[0] - (used[0] % COLUMNS));
  const need = used[1] - lo + 1;
  let span = Math.max(2 * COLUMNS, Math.ceil((need * 1.25) / COLUMNS) * COLUMNS);
  if (span > ZOOM_SPAN) span = ZOOM_SPAN * 2 ** Math.ceil(Math.log2(need / ZOOM_SPAN));
  const hi = Math.min(rhi, lo + span);
  // A few hundred PASIDs get bigger cells: 64 to a row, so a handful is plain to see.
  return hi - lo >= rhi - rlo ? [rlo, rhi, 'whole', COLUMNS] : [lo, hi, 'fitted', span <= 512 ? COLUMNS / 2 : COLUMNS];
}

/** What the maps draw of a host, built once per snapshot the view pulled. */
function mapDataOf(h) {
  if (h.mapData?.snap !== h.snap) {
    const guests = h.snap.guests.map((g) => {
      const name = guestName(h, g.id);
      return { name, colour: colourOf(name), platform: g.config.platform, pairs: g.pairs, devices: g.devices };
    });
    h.mapData = { snap: h.snap, data: buildMapData(h.snap, guests, h.draining ?? []) };
  }
  return h.mapData.data;
}

/**
 * Draws a host's three maps. A canvas whose data, window and cursor are what it
 * already shows is left alone (a step on the other host, a tour outline, a walk).
 */
export function drawMaps(h) {
  const data = mapDataOf(h);
  for (const view of ['space', ...RANGES]) {
    const canvas = document.querySelector(`[data-testid="map-${h.key}-${view}"]`);
    const [lo, hi, how, cols] = view === 'space' ? [0, 2 ** h.snap.width, 'whole', 512] : windowOf(h, view, data);
    const cursor = state.maps.cursor[`${h.key}:${view}`];
    const drawn = [data, lo, hi, cols, cursor];
    if (canvas.drawn?.every((v, i) => v === drawn[i])) continue;
    canvas.drawn = drawn;
    const m = drawMap(canvas, data, lo, hi, cols, view === 'space' ? 1 : MAX_ROWS);
    layouts[`${h.key}:${view}`] = m;
    Object.assign(canvas.dataset, { lo: m.lo, hi: m.hi, bucket: m.bucket, cols: m.cols });
    // Square cells: the canvas's own cols x rows gives its height (style.css caps it),
    // so drawing never reads the layout. An empty range is one thin band, not a tall
    // blank box.
    if (view !== 'space') canvas.style.aspectRatio = how === 'empty' ? `${m.cols} / 2` : '';
    const label = canvas.parentElement.querySelector(`[data-scale="${view}"]`);
    const shown = how === 'whole' || how === 'empty' ? '' : `; showing ${num(lo)}..${num(hi)}${how === 'zoomed' ? ' (zoomed)' : ''}`;
    label.textContent = `(1 cell = ${num(m.bucket)} PASID${m.bucket > 1 ? 's' : ''}${shown})`;
    const users = usage(data, lo, hi);
    const what = view === 'space' ? 'whole PASID space' : `${view} range`;
    canvas.setAttribute('aria-label', `Host ${h.key}, ${what} map, ${num(lo)} to ${num(hi - 1)}, 1 cell = ${num(m.bucket)} PASIDs: ${users.length ? users.map((u) => `${u.name} ${num(u.n)}`).join(', ') : 'nothing allocated'}. Arrow keys move a cursor over the cells${view === 'space' ? '' : ', Enter zooms in, Escape fits to the data'}.`);
    if (cursor !== undefined && cursor >= lo && cursor < hi) drawCursor(canvas, m, cursor);
  }
}

function drawCursor(canvas, m, pasid) {
  const c = Math.floor((pasid - m.lo) / m.bucket);
  const ctx = canvas.getContext('2d');
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 0.5;
  ctx.strokeRect((c % m.cols) + 0.25, Math.floor(c / m.cols) + 0.25, 0.5, 0.5);
}

function showTip(canvas, lines, x, y) {
  const key = canvas.dataset.host;
  const tip = document.querySelector(`[data-testid="map-tooltip-${key}"]`);
  if (!lines) {
    tip.hidden = true;
    return;
  }
  tip.innerHTML = lines.map((l, i) => (i ? esc(l) : `<b>${esc(l)}</b>`)).join('<br>');
  tip.hidden = false;
  const r = canvas.parentElement.getBoundingClientRect();
  tip.style.left = `${Math.max(0, Math.min(x - r.left + 12, r.width - 240))}px`;
  tip.style.top = `${y - r.top + 14}px`;
}

/** Client coordinates of the middle of the cell holding `pasid`. */
function cellCentre(canvas, m, pasid) {
  const c = Math.floor((pasid - m.lo) / m.bucket);
  const r = canvas.getBoundingClientRect();
  return [r.left + (((c % m.cols) + 0.5) / canvas.width) * r.width, r.top + ((Math.floor(c / m.cols) + 0.5) / canvas.height) * r.height];
}

export function onMapHover(ev) {
  const canvas = ev.target;
  const m = layouts[`${canvas.dataset.host}:${canvas.dataset.view}`];
  showTip(canvas, m && describeAt(canvas, m, ev.clientX, ev.clientY), ev.clientX, ev.clientY);
}

export function hideMapTip(canvas) {
  document.querySelector(`[data-testid="map-tooltip-${canvas.dataset.host}"]`).hidden = true;
}

/** A click or tap: the cell under it becomes the cursor, and its tooltip stays up. */
export function onMapClick(canvas, ev) {
  const key = `${canvas.dataset.host}:${canvas.dataset.view}`;
  const m = layouts[key];
  const cell = m && cellAt(canvas, m, ev.clientX, ev.clientY);
  if (!cell) return;
  state.maps.cursor[key] = cell[0];
  announce(canvas, m, cell[0]);
  showTip(canvas, describeAt(canvas, m, ev.clientX, ev.clientY), ev.clientX, ev.clientY);
}

function announce(canvas, m, pasid) {
  const [x, y] = cellCentre(canvas, m, pasid);
  const lines = describeAt(canvas, m, x, y);
  document.querySelector(`[data-testid="map-cell-${canvas.dataset.host}"]`).textContent = lines ? lines.join('; ') : '';
  return lines;
}

/** Arrow keys move the cursor cell by cell, Enter zooms in on it, Escape fits again. */
export function onMapKey(canvas, ev) {
  const view = canvas.dataset.view;
  const key = `${canvas.dataset.host}:${view}`;
  const m = layouts[key];
  if (!m) return false;
  const cur = state.maps.cursor[key];
  const at = cur !== undefined && cur >= m.lo && cur < m.hi ? cur : m.lo;
  const step = { ArrowRight: m.bucket, ArrowLeft: -m.bucket, ArrowDown: m.bucket * m.cols, ArrowUp: -m.bucket * m.cols }[ev.key];
  if (step !== undefined) {
    const next = cur === undefined ? m.lo : Math.max(m.lo, Math.min(m.hi - 1, at + step));
    state.maps.cursor[key] = next - ((next - m.lo) % m.bucket);
  } else if (ev.key === 'Enter' && view !== 'space' && m.bucket > 1) {
    state.maps.view[key] = { mode: 'zoom', start: Math.max(m.lo, at - ZOOM_SPAN / 4) };
    state.maps.cursor[key] = at;
  } else if (ev.key === 'Escape' && view !== 'space') {
    state.maps.view[key] = { mode: 'fit' };
  } else {
    return false;
  }
  render(); // restores focus to the canvas (state.focus)
  const again = document.querySelector(`[data-testid="map-${key.replace(':', '-')}"]`);
  const lm = layouts[key];
  const pasid = state.maps.cursor[key];
  if (pasid !== undefined && pasid >= lm.lo && pasid < lm.hi) {
    const lines = announce(again, lm, pasid);
    const [x, y] = cellCentre(again, lm, pasid);
    showTip(again, lines, x, y);
  }
  return true;
}
