// Small formatting helpers shared by the page's modules.

export const hex = (n, width) => n.toString(16).padStart(width, '0');

/** `{segment, bdf}` from a snapshot, as the usual `ssss:bb:dd.f` text. */
export function ridText({ segment, bdf }) {
  return `${hex(segment, 4)}:${hex(bdf >> 8, 2)}:${hex((bdf >> 3) & 0x1f, 2)}.${bdf & 7}`;
}

/** HTML-escapes text for template strings. */
export function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** A thrown value as a readable line: the core's message, then its code. */
export function errText(e) {
  if (e && typeof e.code === 'number') return `${e.message} (code ${e.code} ${e.codeName})`;
  if (e instanceof Error) return e.message;
  return String(e);
}

export const kindText = { Dedicated: 'dedicated (VF)', SharedWq: 'shared WQ', Local: 'local', Shared: 'shared' };

// Colour-blind-friendly, distinct on white.
export const PALETTE = ['#2563eb', '#db2777', '#16a34a', '#ea580c', '#7c3aed', '#0891b2', '#ca8a04', '#dc2626', '#4b5563', '#65a30d'];

// One formatter for the page: `toLocaleString` builds a new one on every call, which
// made number formatting a noticeable part of a render.
const NUMBER = new Intl.NumberFormat('en-US');

export const num = (n) => NUMBER.format(n);
