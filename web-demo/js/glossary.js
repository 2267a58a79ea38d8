// The words a newcomer meets on the page, each explained in a sentence or two. A term
// in the text is a small button: hover, focus or tap shows its meaning in one shared
// tooltip (role=tooltip, aria-describedby), and the full list sits in a <details>.

import { esc } from './format.js';

export const TERMS = {
  PASID: 'Process Address Space ID: a 20-bit number a PCIe device puts on its DMA requests so the IOMMU knows which process\'s address space they belong to. PASID 0 is reserved.',
  RID: 'Requester ID: the PCIe address (bus:device.function, plus a segment) of one device function. The IOMMU looks up its tables by RID, then by PASID.',
  VF: 'SR-IOV Virtual Function: a slice of a device that appears as its own RID and is given whole to one guest, so its PASID space is that guest\'s alone ("dedicated").',
  'shared WQ': 'Shared work queue (Intel DSA/IAA): one RID that many guests and the host submit to. The device cannot tell guests apart by RID, so every PASID it sees must be unique host-wide.',
  ENQCMD: 'The CPU instruction that submits work to a shared WQ. It puts the process\'s PASID (from the IA32_PASID MSR) into the descriptor; in a guest the CPU first translates that guest PASID to a host PASID.',
  vIOMMU: 'The virtual IOMMU the VMM (e.g. QEMU) shows the guest. On p2 it offers PASID allocation through virtual commands; on p1 it does not.',
  VCMD: 'VT-d virtual command registers (VCCAP, VCMD, VCRSP) of a vIOMMU: the guest writes ALLOC or FREE to VCMD and reads the result from VCRSP. ECAP bit 44 (VCS) says they exist.',
  gPASID: 'Guest PASID: the number the guest sees and uses, always in the host\'s local range. On a VF it is programmed as is.',
  hPASID: 'Host PASID: a host-global PASID from the shared range, which a shared WQ really sees. The guest never sees it; the CPU\'s translation table maps gPASID → hPASID.',
  p1: 'Platform p1: no shared WQ. Guests pick their own PASIDs per RID (VF); the host only records them. No allocation interface, no translation.',
  p2: 'Platform p2: shared WQs present. The vIOMMU allocates each PASID on request, local (for VFs) or shared (with an hPASID behind it).',
  'local range': 'The host PASIDs that are also every guest\'s PASID range: RID-local PASIDs of dedicated devices and all gPASIDs. Several guests use the same numbers, each on its own RIDs.',
  'shared range': 'Host-global PASIDs for shared WQs. Each one belongs to exactly one guest at a time; it never overlaps the local range.',
  draining: 'A freed PASID (or one of a destroyed guest) that no longer translates, but that the hardware may still hold in a PASID-table entry, the IOTLB or device TLB, or a work queue. It is not handed out again, and still counts against the guest\'s quota, until the VMM confirms the teardown.',
  teardown: 'What the VMM does before a PASID may be reused, in Linux\'s order: clear the PASID-table entry, invalidate the IOTLB and device TLB, drain the work queue, then say so (completeTeardown). Only then does the number go back to the pool.',
  VMM: 'Virtual machine monitor: the user-space process (QEMU, say) that runs one VM. A host runs many, one per VM, and host PASIDs must be unique across all of them.',
  broker: 'The one owner of a machine\'s shared range (a daemon, docs/broker.md): every VMM process asks it for host PASIDs, so two VMMs never get the same one. It holds a dead VMM\'s PASIDs in quarantine for a while before reuse.',
  lease: 'A VMM\'s account at the broker, tied to its connection and a secret token. Its host PASIDs are its alone; if the connection drops (a crash) or the broker restarts, only the same VMM, showing the token, can take them back (a reclaim).',
  spare: 'A host PASID the broker recorded to a lease ahead of its requests, so the next grant needs no write to the broker\'s store. Spares free at once when the lease ends, and give way when others run short.',
  quarantine: 'Where a dead VMM\'s host PASIDs wait before anyone may get them again: the hardware may still hold them until the kernel has torn the VMM\'s devices down. It ends at a deadline the broker keeps across restarts.',
  reclaim: 'A VMM reconnecting to the broker with its lease\'s token and the exact list of host PASIDs it holds: it gets the lease back; the lease\'s PASIDs it did not list go to quarantine.',
};

/** Lower-case spellings that point at the same entry. */
const ALIASES = { leases: 'lease', spares: 'spare', quarantined: 'quarantine', reclaims: 'reclaim', vmms: 'VMM', pasids: 'PASID', gpasids: 'gPASID', hpasids: 'hPASID', vfs: 'VF', rids: 'RID', 'shared wqs': 'shared WQ', enqcmds: 'ENQCMD' };

function entry(word) {
  if (word in TERMS) return word;
  const lower = word.toLowerCase();
  return Object.keys(TERMS).find((k) => k.toLowerCase() === lower) ?? ALIASES[lower];
}

/** A term in running text: `term('gPASID')`, or `term('gPASIDs', 'gPASID')`. */
export function term(text, key = entry(text)) {
  if (!key) return esc(text);
  return `<button type="button" class="term" data-term="${esc(key)}" aria-describedby="glossary-tip">${esc(text)}</button>`;
}

/**
 * Marks every glossary word in `text` (HTML-escaped first) as a term. `{{word}}` in the
 * text marks one explicitly; plain text is left as it is, so copy stays readable.
 */
export function withTerms(text) {
  return esc(text).replace(/\{\{([^}|]+)(?:\|([^}]+))?\}\}/g, (_, shown, key) => term(shown, key ?? entry(shown)));
}

export function renderGlossary() {
  return `<details class="glossary" data-testid="glossary"><summary>Glossary</summary><dl>${Object.entries(TERMS)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></details>`;
}

/** Wires the one tooltip: pointer hover, keyboard focus and tap (click) all show it. */
export function wireGlossary(root = document) {
  const tip = root.getElementById('glossary-tip');
  let shownFor = null;
  const show = (el) => {
    tip.innerHTML = `<b>${esc(el.dataset.term)}</b>: ${esc(TERMS[el.dataset.term])}`;
    tip.hidden = false;
    const r = el.getBoundingClientRect();
    const left = Math.max(8, Math.min(r.left + window.scrollX, window.scrollX + document.documentElement.clientWidth - 330));
    tip.style.left = `${left}px`;
    tip.style.top = `${r.bottom + window.scrollY + 6}px`;
    shownFor = el;
  };
  const hide = () => {
    tip.hidden = true;
    shownFor = null;
  };
  root.addEventListener('mouseover', (ev) => {
    const el = ev.target.closest?.('.term');
    if (el) show(el);
  });
  root.addEventListener('mouseout', (ev) => {
    if (ev.target.closest?.('.term') && document.activeElement !== shownFor) hide();
  });
  root.addEventListener('focusin', (ev) => {
    const el = ev.target.closest?.('.term');
    if (el) show(el);
  });
  root.addEventListener('focusout', (ev) => {
    if (ev.target.closest?.('.term')) hide();
  });
  root.addEventListener('click', (ev) => {
    const el = ev.target.closest?.('.term');
    if (el) {
      show(el); // a tap is a click without hover: show, and keep it until a tap elsewhere
    } else if (!tip.hidden && !ev.target.closest?.('#glossary-tip')) {
      hide();
    }
  });
  root.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') hide();
  });
}
