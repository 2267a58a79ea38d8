// The hardware walk: the CPU's PASID translation of one guest's gPASID, as ENQCMD does
// it in VMX non-root operation, over the pages the core exports in the processor's
// format. The page acts as the VMM: it places the pages at physical addresses and
// hands them to the core's walk; every value shown comes from the core.

import { wasm } from './wasm.js';
import { esc, errText } from './format.js';
import { withTerms } from './glossary.js';
import { guestName, kept, state } from './state.js';

// Where this page, as the VMM, puts the pages (any 4 KiB-aligned addresses would do).
export const LOW_DIRECTORY = 0x10_0000;
export const HIGH_DIRECTORY = 0x10_1000;
export const FIRST_TABLE = 0x10_2000;

const hex = (n) => `0x${n.toString(16)}`;
const bits = (v, hi, lo) => (v >> lo) & ((1 << (hi - lo + 1)) - 1);

// The pages of the guest last walked, and the walks over them by gPASID.
let cache = { guest: '', pairs: null, tables: [], pages: [], walks: new Map() };

/** p2 guests (they alone can use ENQCMD: a p1 guest has no shared WQ) of both hosts. */
function candidates() {
  return state.hosts.flatMap((h) => h.snap.guests.filter((g) => g.config.platform === 'P2').map((g) => ({ h, g, value: `${h.key}:${g.id}` })));
}

/** Whether two `pasidPairs` lists hold the same translation. */
function samePairs(a, b) {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Walks `gpasid` over the guest's pages. The pages are a function of its translation
 * alone, so they are exported again only when its PASID pairs changed (not on every
 * step of any host), and each gPASID is walked once over them.
 */
function walkOf(h, g, gpasid) {
  const guest = `${h.key}:${g.id}`;
  if (cache.guest !== guest || !samePairs(cache.pairs, g.pairs)) {
    const tables = [...h.host.translationTables(g.id)];
    const pages = h.host.exportTranslation(g.id, {
      low: LOW_DIRECTORY,
      high: HIGH_DIRECTORY,
      tables: tables.map((table, i) => ({ table, phys: FIRST_TABLE + i * 0x1000 })),
    });
    // As Uint8Arrays the walk takes each page in one copy, not as 4,096 numbers read
    // one by one (the export gives plain arrays, so that it stays JSON).
    const all = [pages.low, pages.high, ...pages.tables].map((p) => ({ phys: p.phys, bytes: Uint8Array.from(p.bytes) }));
    cache = { guest, pairs: g.pairs, tables, pages: all, walks: new Map() };
  }
  if (!cache.walks.has(gpasid)) cache.walks.set(gpasid, wasm.walk(LOW_DIRECTORY, HIGH_DIRECTORY, gpasid, cache.pages));
  return { trace: cache.walks.get(gpasid), tables: cache.tables };
}

function bitBoxes(gp) {
  let out = '';
  for (let b = 19; b >= 0; b--) {
    const part = b === 19 ? 'dir' : b >= 10 ? 'pde' : 'pte';
    out += `<span class="bit ${part}" title="bit ${b}">${(gp >> b) & 1}</span>`;
  }
  return `<div class="bits" data-testid="walk-bits" aria-label="gPASID ${gp} in binary">${out}
    <div class="bit-legend"><span class="dir">bit 19: directory</span><span class="pde">bits 18:10: directory entry</span><span class="pte">bits 9:0: table entry</span></div></div>`;
}

const FAULT_TEXT = {
  DirectoryNotPresent: 'the directory entry is not present (bit 0 clear): no table covers this gPASID',
  DirectoryReserved: 'the directory entry has a reserved bit set',
  EntryInvalid: 'the table entry is not valid (bit 31 clear): this gPASID has no hPASID',
  EntryReserved: 'the table entry has a reserved bit set',
  Unreadable: 'a page was not handed over (not a CPU fault)',
};

export function renderWalk() {
  const options = candidates();
  if (!options.some((o) => o.value === state.walk.guest)) {
    // Default: the first p2 guest holding a shared PASID, else the first p2 guest.
    const pick = options.find((o) => o.g.pairs.some((v, i) => i % 2 === 1 && v !== 0)) ?? options[0];
    state.walk.guest = pick ? pick.value : '';
  }
  const head = `<h2>The CPU's walk: ${withTerms('{{ENQCMD}} in a guest')}</h2>
    <p class="muted">${withTerms('A shared WQ sees host PASIDs only, so the CPU translates the {{gPASID}} an ENQCMD carries through two levels of pages the library writes, in the exact hardware format. Pick a guest and a gPASID.')}</p>`;
  if (!options.length) {
    return `${head}<p class="muted" data-testid="walk-empty">No p2 guest yet: a p1 guest has no shared WQ, so the CPU never translates its PASIDs. Pick a p2 preset or the tour.</p>`;
  }
  const sel = options.find((o) => o.value === state.walk.guest);
  const firstShared = sel.g.pairs.find((v, i) => i % 2 === 0 && sel.g.pairs[i + 1] !== 0);
  const text = kept('walk:gpasid', String(firstShared ?? sel.g.pairs[0] ?? 1));
  const controls = `<div class="row" data-scope>
      <label>guest <select data-testid="walk-guest">${options.map((o) => `<option value="${o.value}" ${o.value === sel.value ? 'selected' : ''}>${esc(guestName(o.h, o.g.id))} on host ${o.h.key}</option>`).join('')}</select></label>
      <label>gPASID <input data-testid="walk-gpasid" data-keep="walk:gpasid" value="${esc(text)}" size="8" inputmode="numeric"></label>
      <button data-action="walk" data-testid="walk-go" data-primary>walk</button>
    </div>`;
  const gp = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(gp >= 0 && gp < 1 << 20)) {
    return `${head}${controls}<p class="err" role="alert" data-testid="walk-error">A gPASID is a number in 0..1,048,575 (20 bits), got "${esc(text)}"</p>`;
  }
  let w;
  try {
    w = walkOf(sel.h, sel.g, gp);
  } catch (e) {
    return `${head}${controls}<p class="err" role="alert" data-testid="walk-error">${esc(errText(e))}</p>`;
  }
  const t = w.trace;
  const d = t.directory_entry;
  const e = t.table_entry;
  const dirStep = `<li data-testid="walk-directory" data-directory="${t.directory}" data-phys="${t.directory_phys}">
      <b>bit 19 = ${bits(gp, 19, 19)}</b> → the <b>${t.directory}</b> PASID directory, whose address the VMCS field
      <span class="mono">${hex(t.vmcs_field)}</span> holds: <span class="mono">${hex(t.directory_phys)}</span></li>`;
  const dirEntry = d ? `<li data-testid="walk-dir-entry" data-index="${t.directory_index}" data-value="${d.value}" data-present="${d.present}" data-table="${d.table_phys ?? ''}">
      <b>bits 18:10 = ${t.directory_index}</b> → 8-byte entry at <span class="mono">${hex(t.directory_phys)} + 8 × ${t.directory_index} = ${hex(d.phys)}</span>:
      <span class="mono entry">${d.value}</span>; present (bit 0) = <b>${d.present ? 1 : 0}</b>${d.present ? `; table address (bits 63:12) = <span class="mono">${hex(d.table_phys)}</span>` : ''}</li>` : '';
  const tableEntry = e ? `<li data-testid="walk-table-entry" data-index="${t.table_index}" data-value="${e.value}" data-valid="${e.valid}" data-hpasid="${e.host_pasid ?? ''}">
      <b>bits 9:0 = ${t.table_index}</b> → 4-byte entry at <span class="mono">${hex(d.table_phys)} + 4 × ${t.table_index} = ${hex(e.phys)}</span>:
      <span class="mono entry">${e.value}</span>; valid (bit 31) = <b>${e.valid ? 1 : 0}</b>${e.valid ? `; host PASID (bits 19:0) = <b>${e.host_pasid}</b>` : ''}</li>` : '';
  const outcome = t.host_pasid !== null
    ? `<li class="ok" data-testid="walk-result" data-hpasid="${t.host_pasid}">ENQCMD goes to the shared WQ carrying <b>hPASID ${t.host_pasid}</b>, not ${gp}.</li>`
    : `<li class="fault" data-testid="walk-result" data-fault="${t.fault}" data-exit-enqcmd="${t.exit_reason_enqcmd ?? ''}" data-exit-enqcmds="${t.exit_reason_enqcmds ?? ''}">
        ${t.exit_reason_enqcmd ? `<b>VM exit</b>: basic exit reason <b>${t.exit_reason_enqcmd}</b> for ENQCMD (<b>${t.exit_reason_enqcmds}</b> for ENQCMDS)` : '<b>no translation</b>'}: ${FAULT_TEXT[t.fault]}.</li>`;
  const pages = `<p class="muted" data-testid="walk-pages">The VMM hands the CPU ${2 + w.tables.length} pages: low directory at ${hex(LOW_DIRECTORY)} (VMCS 0x2038), high directory at ${hex(HIGH_DIRECTORY)} (VMCS 0x203a)${w.tables.length ? `, and ${w.tables.length} table${w.tables.length > 1 ? 's' : ''} from ${hex(FIRST_TABLE)}` : ', and no table: this guest has no shared PASID yet'}.</p>`;
  return `${head}${controls}${bitBoxes(gp)}<ol class="walk-steps" aria-live="polite">${dirStep}${dirEntry}${tableEntry}${outcome}</ol>${pages}`;
}
