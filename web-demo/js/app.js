// The playground's entry point: loads the wasm package, sets up both hosts and wires
// the page's events to the actions (actions.js), the maps (map-view.js) and the
// glossary. State lives in state.js, drawing in view.js.

import { loadWasm } from './wasm.js';
import { esc, errText } from './format.js';
import { PRESETS } from './presets.js';
import { batch, DEFAULT_CONFIG, keep, ops, render, rendering, setRenderer, state } from './state.js';
import { actions, onStateChange } from './actions.js';
import { render as draw } from './view.js';
import { hideMapTip, onMapClick, onMapHover, onMapKey } from './map-view.js';
import { renderGlossary, wireGlossary, withTerms } from './glossary.js';

/**
 * Records how long an interaction took until the next frame was painted (the tests
 * report these; nothing asserts them).
 */
function timed(what, fn) {
  const t0 = performance.now();
  fn();
  requestAnimationFrame(() => setTimeout(() => {
    // How many PASIDs the hosts held after it, so a report can tell small from big.
    const pasids = state.hosts.reduce((n, h) => n + h.snap.guests.reduce((m, g) => m + g.pairs.length / 2, 0), 0);
    state.timings.push({ what, ms: performance.now() - t0, pasids });
  }, 0));
}

function runAction(el) {
  const action = actions[el.dataset.action];
  if (!action) return;
  const what = el.dataset.testid ?? el.dataset.action;
  // One render per interaction, however many steps and renders the action asks for
  // (a preset that selects a guest, an attach that resets its field, a refusal demo).
  timed(what, () => batch(() => {
    try {
      action(el);
    } catch (e) {
      // Only the page's own argument errors get here (steps catch the core's).
      state.errors = { preset: { message: errText(e), expected: false } };
      render();
    }
  }));
}

function onClick(ev) {
  if (ev.target.matches?.('canvas.map')) {
    onMapClick(ev.target, ev);
    return;
  }
  const el = ev.target.closest('[data-action]');
  if (!el || el.disabled) return;
  ev.preventDefault();
  runAction(el);
}

function onInput(ev) {
  const el = ev.target;
  if (el.dataset?.keep) keep(el.dataset.keep, el.value);
}

function onChange(ev) {
  // A render blurs the focused field before it writes (view.js); the `change` that
  // fires then is not the user's, and its value was kept as it was typed.
  if (rendering()) return;
  onInput(ev);
  if (onStateChange(ev.target)) timed(ev.target.dataset.testid, render);
}

function onKey(ev) {
  const el = ev.target;
  if (el.matches?.('canvas.map')) {
    if (onMapKey(el, ev)) ev.preventDefault();
    return;
  }
  // Enter in a field submits its row: the row's main button.
  if (ev.key === 'Enter' && el.matches?.('input') && !ev.isComposing) {
    const button = el.closest('[data-scope]')?.querySelector('[data-primary]');
    if (button && !button.disabled) {
      ev.preventDefault();
      if (el.dataset.keep) keep(el.dataset.keep, el.value);
      onStateChange(el); // a RID map field is state read at submit time
      runAction(button);
    }
  }
}

export async function start() {
  const wasm = await loadWasm();
  setRenderer(draw);
  ops.reset([DEFAULT_CONFIG, DEFAULT_CONFIG]);
  document.querySelector('[data-testid="lead"]').innerHTML = withTerms(document.querySelector('[data-testid="lead"]').textContent);
  document.querySelector('[data-testid="glossary-slot"]').innerHTML = renderGlossary();
  document.querySelector('[data-testid="presets"]').innerHTML = PRESETS.filter((p) => !p.refusal)
    .map((p) => `<button data-action="preset" data-preset="${p.id}" data-testid="preset-${p.id}" title="${esc(p.blurb)}">${esc(p.title)}</button>`)
    .join('');
  document.addEventListener('click', onClick);
  document.addEventListener('input', onInput);
  document.addEventListener('change', onChange);
  document.addEventListener('keydown', onKey);
  document.addEventListener('mousemove', (ev) => {
    if (ev.target.matches?.('canvas.map')) onMapHover(ev);
  });
  // A mouse leaving hides the tooltip; a tap's compatibility events must not.
  document.addEventListener('pointerout', (ev) => {
    if (ev.pointerType === 'mouse' && ev.target.matches?.('canvas.map')) hideMapTip(ev.target);
  });
  document.addEventListener('focusout', (ev) => {
    if (ev.target.matches?.('canvas.map')) hideMapTip(ev.target);
  });
  wireGlossary();
  render();
  document.body.dataset.ready = 'true';
  // For the tests and the curious: the live state and the wasm API in this page.
  window.pasidPlayground = { state, ops, wasm };
}
