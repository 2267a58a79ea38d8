// The PASID space map of one host: one pixel per bucket of PASIDs, row by row. Local
// and shared ranges are tinted; used PASIDs are coloured by guest. In the local range
// several guests may use the same number (each on its own devices): grey. In the
// shared range a host PASID has exactly one owner, so a cell that holds host PASIDs of
// several guests takes the colour of the one holding most of them, never grey.
// Draining PASIDs (freed, or of a destroyed guest, until the VMM confirms the hardware
// let go) have a colour of their own: they are nobody's and not free.
// Built from typed arrays, so hundreds of thousands of PASIDs draw in milliseconds.

import { num } from './format.js';

const TINT = { local: [219, 234, 254], shared: [254, 243, 199], none: [241, 245, 249] };
export const SEVERAL = [71, 85, 105];
export const DRAINING = [120, 53, 15];
export { TINT };

/** `#rrggbb` as [r, g, b]. */
export function rgb(hexColour) {
  const v = parseInt(hexColour.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** Sorted copy of the numbers a guest uses in one range. */
function sorted(values) {
  const a = Uint32Array.from(values);
  a.sort();
  return a;
}

/** The first index of the sorted array whose value is >= x. */
function lowerBound(a, x) {
  let l = 0;
  let h = a.length;
  while (l < h) {
    const m = (l + h) >> 1;
    if (a[m] < x) l = m + 1;
    else h = m;
  }
  return l;
}

/** How many entries of the sorted array lie in [lo, hi). */
function countIn(a, lo, hi) {
  return lowerBound(a, hi) - lowerBound(a, lo);
}

/**
 * Prepares per-guest data from a host snapshot and pasid pairs.
 * `guests`: [{ name, colour, platform, pairs: Uint32Array [g,h,...], devices }];
 * `draining`: what `host.draining()` lists ([{ guest, gpasid, hpasid }]).
 */
export function buildMapData(snap, guests, draining = []) {
  const live = new Set(snap.guests.map((g) => g.id));
  return {
    // A live guest's draining gPASID still blocks its number; a destroyed guest's does not.
    drainingLocal: sorted(draining.filter((d) => live.has(d.guest)).map((d) => d.gpasid)),
    drainingShared: sorted(draining.filter((d) => d.hpasid !== null).map((d) => d.hpasid)),
    width: snap.width,
    local: [snap.local.start, snap.local.end],
    shared: [snap.shared.start, snap.shared.end],
    guests: guests.map((g) => {
      let local;
      let shared;
      if (g.platform === 'P2') {
        // Pairs come ascending by gPASID; hPASIDs need a (native, numeric) sort.
        const n = g.pairs.length / 2;
        let m = 0;
        for (let i = 1; i < g.pairs.length; i += 2) if (g.pairs[i]) m++;
        local = new Uint32Array(n);
        shared = new Uint32Array(m);
        for (let i = 0, j = 0; i < n; i++) {
          local[i] = g.pairs[2 * i];
          if (g.pairs[2 * i + 1]) shared[j++] = g.pairs[2 * i + 1];
        }
        shared.sort();
      } else {
        // p1: the guest's own numbers, recorded per RID (one mark per number).
        const seen = new Set();
        for (const d of g.devices) for (const p of d.programmed) seen.add(p.gpasid);
        local = sorted(seen);
        shared = new Uint32Array(0);
      }
      return { name: g.name, colour: g.colour, rgb: rgb(g.colour), local, shared, pairs: g.pairs };
    }),
  };
}

/**
 * Draws PASIDs [lo, hi) of a host on `canvas`, `columns` cells per row and at most
 * `maxRows` rows: one cell per bucket of PASIDs. Returns what hover needs.
 */
export function drawMap(canvas, data, lo, hi, columns, maxRows) {
  const span = hi - lo;
  const bucket = Math.max(1, Math.ceil(span / (columns * maxRows)));
  const cells = Math.ceil(span / bucket);
  const rows = Math.max(1, Math.ceil(cells / columns));
  const cols = rows === 1 ? cells : columns;
  canvas.width = cols;
  canvas.height = rows;
  const counts = new Uint32Array(cells);
  // Per cell: the one guest with local numbers there, or -2 for several (grey).
  const localOwner = new Int32Array(cells).fill(-1);
  // Per cell and guest: host PASIDs held, to pick the cell's majority owner.
  const nGuests = data.guests.length;
  const sharedBy = new Uint32Array(cells * nGuests);
  data.guests.forEach((g, gi) => {
    // Lists are sorted: visit only the part inside [lo, hi).
    let end = lowerBound(g.local, hi);
    for (let i = lowerBound(g.local, lo); i < end; i++) {
      const c = ((g.local[i] - lo) / bucket) | 0;
      counts[c]++;
      localOwner[c] = localOwner[c] === -1 || localOwner[c] === gi ? gi : -2;
    }
    end = lowerBound(g.shared, hi);
    for (let i = lowerBound(g.shared, lo); i < end; i++) {
      const c = ((g.shared[i] - lo) / bucket) | 0;
      counts[c]++;
      sharedBy[c * nGuests + gi]++;
    }
  });
  // Draining PASIDs: counted, and a cell holding more of those than of held ones takes
  // their colour (a held number next to a draining one in a one-PASID cell shows its guest).
  const drainingIn = new Uint32Array(cells);
  for (const list of [data.drainingLocal, data.drainingShared]) {
    const end = lowerBound(list, hi);
    for (let i = lowerBound(list, lo); i < end; i++) {
      const c = ((list[i] - lo) / bucket) | 0;
      counts[c]++;
      drainingIn[c]++;
    }
  }
  const owner = new Int32Array(cells);
  for (let c = 0; c < cells; c++) {
    let best = localOwner[c];
    let most = 0;
    for (let gi = 0; gi < nGuests; gi++) {
      const n = sharedBy[c * nGuests + gi];
      if (n > most) {
        most = n;
        best = localOwner[c] === -1 ? gi : best;
      }
    }
    owner[c] = best;
  }
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(cols, rows);
  const px = img.data;
  const [ls, le] = data.local;
  const [ss, se] = data.shared;
  for (let c = 0; c < cols * rows; c++) {
    const start = lo + c * bucket;
    let colour;
    if (c < cells && counts[c] > 0) {
      const base = 2 * drainingIn[c] > counts[c] ? DRAINING : owner[c] === -2 ? SEVERAL : data.guests[owner[c]].rgb;
      const a = 0.5 + 0.5 * Math.min(1, counts[c] / bucket);
      colour = base.map((v, i) => Math.round(v * a + 255 * (1 - a)));
    } else if (c >= cells) {
      colour = [255, 255, 255];
    } else if (start < le && start + bucket > ls) {
      colour = TINT.local;
    } else if (start < se && start + bucket > ss) {
      colour = TINT.shared;
    } else {
      colour = TINT.none;
    }
    px[c * 4] = colour[0];
    px[c * 4 + 1] = colour[1];
    px[c * 4 + 2] = colour[2];
    px[c * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return { lo, hi, bucket, cols, rows, data };
}

/** The PASIDs [lo, hi) of the cell under a position (client pixels), or null. */
export function cellAt(canvas, layout, clientX, clientY) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((clientX - r.left) / r.width) * canvas.width);
  const y = Math.floor(((clientY - r.top) / r.height) * canvas.height);
  if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return null;
  const lo = layout.lo + (y * layout.cols + x) * layout.bucket;
  const hi = Math.min(lo + layout.bucket, layout.hi);
  return lo < hi ? [lo, hi] : null;
}

/** Text for the PASIDs under a position (client pixels). */
export function describeAt(canvas, layout, clientX, clientY) {
  const cell = cellAt(canvas, layout, clientX, clientY);
  if (!cell) return null;
  const [lo, hi] = cell;
  const { data } = layout;
  const inRange = (a) => lo < a[1] && hi > a[0];
  const where = inRange(data.local) ? 'local range' : inRange(data.shared) ? 'shared range' : lo === 0 ? 'PASID 0 is reserved' : 'outside both ranges';
  const lines = [`${hi - lo === 1 ? `PASID ${num(lo)}` : `PASIDs ${num(lo)}–${num(hi - 1)}`} · ${where}`];
  for (const g of data.guests) {
    const nl = countIn(g.local, lo, hi);
    const ns = countIn(g.shared, lo, hi);
    if (nl) lines.push(`${g.name}: ${num(nl)} gPASID${nl > 1 ? 's' : ''}`);
    if (ns) {
      let extra = '';
      if (hi - lo === 1) {
        for (let i = 1; i < g.pairs.length; i += 2) if (g.pairs[i] === lo) extra = ` (gPASID ${g.pairs[i - 1]})`;
      }
      lines.push(`${g.name}: ${num(ns)} hPASID${ns > 1 ? 's' : ''}${extra}`);
    }
  }
  const nd = countIn(data.drainingLocal, lo, hi) + countIn(data.drainingShared, lo, hi);
  if (nd) lines.push(`${num(nd)} draining: waiting for the VMM to confirm teardown`);
  if (lines.length === 1) lines.push('free');
  return lines;
}

/** The lowest and highest used or draining PASID in [lo, hi), or null if none. */
export function extent(data, lo, hi) {
  let min = Infinity;
  let max = -Infinity;
  const lists = [data.drainingLocal, data.drainingShared, ...data.guests.flatMap((g) => [g.local, g.shared])];
  for (const list of lists) {
    const a = lowerBound(list, lo);
    const b = lowerBound(list, hi);
    if (a < b) {
      min = Math.min(min, list[a]);
      max = Math.max(max, list[b - 1]);
    }
  }
  return min <= max ? [min, max] : null;
}

/** How many PASIDs each guest uses in [lo, hi): [{ name, n }] for the guests that do. */
export function usage(data, lo, hi) {
  return data.guests.map((g) => ({ name: g.name, n: countIn(g.local, lo, hi) + countIn(g.shared, lo, hi) })).filter((u) => u.n > 0);
}
