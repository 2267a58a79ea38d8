// The interaction times the browser tests measured (each click or change until the next
// frame, as the page records them in state.timings): reported, never asserted, since
// the machine is shared. Each test file prints its own; run as a script, this prints
// the whole run's from what the files appended to screenshots/timings.jsonl:
//   node test/timings.mjs
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const TIMINGS = new URL('../screenshots/timings.jsonl', import.meta.url).pathname;

// Under 10,000 PASIDs is a small preset (the 100 ms budget); the
// 300,000-PASID preset (and the lifecycle's 200,000 draining) has a 1 s budget.
const SIZES = [['small presets', (t) => t.pasids < 10000, 100], ['300k preset', (t) => t.pasids >= 10000, 1000]];

/**
 * Prints interaction times as `#` lines, small and big states apart: how many,
 * median, 90th percentile, slowest, how many went over the budget, the slowest controls.
 */
export function report(list, heading = 'interaction times') {
  for (const [title, small, budget] of SIZES) {
    const part = list.filter(small);
    if (!part.length) continue;
    const sorted = part.map((t) => t.ms).sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    const by = new Map();
    for (const { what, ms } of part) by.set(what, Math.max(by.get(what) ?? 0, ms));
    const worst = [...by].sort((a, b) => b[1] - a[1]);
    console.log(`# ${heading}, ${title}: ${part.length} interactions, median ${at(0.5).toFixed(0)} ms, p90 ${at(0.9).toFixed(0)} ms, max ${worst[0][1].toFixed(0)} ms (${worst[0][0]}), over ${budget} ms: ${sorted.filter((m) => m > budget).length}`);
    for (const [what, ms] of worst.slice(0, 4)) console.log(`#   ${what}: ${ms.toFixed(1)} ms`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const list = existsSync(TIMINGS) ? readFileSync(TIMINGS, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
  if (list.length) report(list, `all browser tests, ${new Set(list.map((t) => t.file)).size} files`);
  else console.log('# no interaction times recorded');
}
