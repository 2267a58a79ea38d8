// One-click scenarios. Each resets both hosts and runs core calls as one undoable step;
// `log` adds a line under the step, `expectError` runs a call the core must refuse and
// shows its error next to the control it belongs to.

const P2 = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] };
const P1 = { ...P2, platform: 'p1' };

const VF1 = '0000:03:00.1';
const VF2 = '0000:03:00.2';
const WQ1 = '0000:00:0a.0';
const WQ2 = '0000:00:0b.0';
const DSA = '0000:6a:01.0'; // a DSA function with a dedicated WQ and a shared WQ

/** vm1 on host A: a VF and a DSA shared WQ, local and shared PASIDs, bound to both. */
function migratingGuest({ ops, h, log }, shared = 4) {
  const A = h('A').host;
  const g = ops.guest('A', 'p2', 64, 'vm1');
  A.attach(g, VF1, 'dedicated');
  A.attach(g, WQ1, 'shared-wq');
  const local = A.allocPasid(g, 'local');
  A.bind(g, local, VF1);
  for (let i = 0; i < shared; i++) {
    const gp = A.allocPasid(g, 'shared');
    A.bind(g, gp, WQ1);
    if (i === 0) A.bind(g, gp, VF1); // one process on both devices: gPASID on the VF, hPASID on the WQ
  }
  log(`vm1 on host A: local gPASID ${local} on the VF, ${shared} shared gPASIDs on the WQ`);
  return g;
}

export const PRESETS = [
  {
    id: 'p1-sriov',
    title: 'p1: SR-IOV only',
    blurb: 'No shared WQ: guests pick PASIDs per VF themselves; the host records them, programmed as is.',
    run({ ops, h, log, expectError }) {
      ops.reset([P1, P1]);
      const A = h('A').host;
      const vm1 = ops.guest('A', 'p1', 0, 'vm1');
      A.attach(vm1, VF1, 'dedicated');
      A.attach(vm1, VF2, 'dedicated');
      for (const [rid, p] of [[VF1, 1], [VF1, 2], [VF2, 1]]) log(`vm1 picks PASID ${p} on ${rid}: programmed ${A.record(vm1, rid, p)}`);
      const vm2 = ops.guest('A', 'p1', 0, 'vm2');
      A.attach(vm2, '0000:04:00.1', 'dedicated');
      A.record(vm2, '0000:04:00.1', 1);
      A.record(vm2, '0000:04:00.1', 7);
      log('vm2 uses PASIDs 1 and 7 on its own VF: RID-local, no clash with vm1');
      expectError(log, 'vm1 picks PASID 2 on 03:00.1 again', () => A.record(vm1, VF1, 2), `A:${vm1}:record`);
      expectError(log, 'vm1 asks the vIOMMU for a PASID (p1 offers none)', () => A.allocPasid(vm1, 'local'), `A:${vm1}:vcmd`);
      expectError(log, 'a shared WQ for vm1', () => A.attach(vm1, WQ1, 'shared-wq'), `A:${vm1}:attach`);
      expectError(log, 'a p2 guest on the p1 host', () => A.createGuest('p2', 8), 'A:addGuest');
    },
  },
  {
    id: 'p2-mixed',
    title: 'p2: shared WQ + SR-IOV',
    blurb: 'Each guest has a VF and a shared WQ; one gPASID is programmed as itself on the VF and as its hPASID on the WQ.',
    run({ ops, h, log, expectError }) {
      ops.reset([P2, P2]);
      const A = h('A').host;
      const vm1 = ops.guest('A', 'p2', 8, 'vm1');
      A.attach(vm1, VF1, 'dedicated');
      A.attach(vm1, WQ1, 'shared-wq');
      const l1 = A.allocPasid(vm1, 'local');
      const s1 = A.allocPasid(vm1, 'shared');
      const s2 = A.allocPasid(vm1, 'shared');
      log(`vm1: local ${l1}; shared ${s1}→${A.translate(vm1, s1)}, ${s2}→${A.translate(vm1, s2)}`);
      log(`bind ${l1} to VF: programmed ${A.bind(vm1, l1, VF1)}`);
      log(`bind ${s1} to VF: programmed ${A.bind(vm1, s1, VF1)}; to WQ: programmed ${A.bind(vm1, s1, WQ1)}`);
      A.bind(vm1, s2, WQ1);
      const vm2 = ops.guest('A', 'p2', 8, 'vm2');
      A.attach(vm2, VF2, 'dedicated');
      A.attach(vm2, WQ2, 'shared-wq');
      const t1 = A.allocPasid(vm2, 'shared');
      A.bind(vm2, t1, WQ2);
      A.bind(vm2, t1, VF2);
      log(`vm2: shared ${t1}→${A.translate(vm2, t1)}: the same gPASID as vm1's, a different hPASID`);
      expectError(log, `vm1 binds local gPASID ${l1} to its shared WQ`, () => A.bind(vm1, l1, WQ1), `A:${vm1}:bind`);
      expectError(log, `vm1 frees gPASID ${s1} while bound`, () => A.freePasid(vm1, s1), `A:${vm1}:free`);
    },
  },
  {
    id: 'p2-migration',
    title: 'p2: migration across hosts with different free PASIDs',
    blurb: 'Host B already runs a guest holding shared PASIDs, so vm1 gets other hPASIDs there; its gPASIDs stay.',
    run(ctx) {
      const { ops, h, log } = ctx;
      ops.reset([P2, P2]);
      const B = h('B').host;
      const resident = ops.guest('B', 'p2', 256, 'resident');
      B.attach(resident, '0000:05:00.0', 'shared-wq');
      for (let i = 0; i < 100; i++) B.allocPasid(resident, 'shared');
      log(`host B: resident guest holds 100 shared PASIDs (${B.sharedInUse} in use)`);
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
  {
    id: 'p2-shared-wq',
    title: 'p2: one shared WQ, three guests; draining',
    blurb: 'A DSA shared WQ used by vm1, vm2 and vm3: each binds its gPASID 1 there, and each binding programs that guest\'s own hPASID. vm1 also has a mixed RID: a dedicated and a shared WQ on one function. vm2 frees a shared PASID: it stops translating at once but drains, still counted against its quota, until the VMM confirms the teardown.',
    run({ ops, h, log, expectError }) {
      ops.reset([P2, P2]);
      const A = h('A').host;
      const [vm1, vm2, vm3] = ['vm1', 'vm2', 'vm3'].map((name) => {
        const g = ops.guest('A', 'p2', 4, name);
        A.attach(g, WQ1, 'shared-wq');
        const gp = A.allocPasid(g, 'shared');
        log(`${name}: gPASID ${gp} on the shared WQ ${WQ1}: programmed hPASID ${A.bind(g, gp, WQ1)}`);
        return g;
      });
      // A DSA function with a dedicated WQ and a shared WQ, both vm1's.
      A.attach(vm1, DSA, 'dedicated');
      A.attach(vm1, DSA, 'shared-wq');
      const local = A.allocPasid(vm1, 'local');
      const shared = A.allocPasid(vm1, 'shared');
      log(`vm1 on the mixed RID ${DSA}: local ${local} on the dedicated WQ (programmed ${A.bindUse(vm1, local, DSA, 'dedicated')}), shared ${shared} on the shared WQ (programmed ${A.bindUse(vm1, shared, DSA, 'shared-wq')})`);
      expectError(log, `vm1 binds gPASID ${shared} to ${DSA} without saying which use`, () => A.bind(vm1, shared, DSA), `A:${vm1}:bind`);
      const gone = A.allocPasid(vm2, 'shared');
      A.bind(vm2, gone, WQ1);
      log(`vm2: gPASID ${gone} → hPASID ${A.translate(vm2, gone)}; unbound (the VMM clears PASID ${A.unbind(vm2, gone, WQ1)} on the WQ), then freed`);
      const d = A.freePasid(vm2, gone);
      log(`gPASID ${d.gpasid} and hPASID ${d.hpasid} drain until the teardown is confirmed`);
      expectError(log, `vm2's freed gPASID ${gone} is used again before the teardown`, () => A.translate(vm2, gone), `A:${vm2}:free`);
      log(`vm3 is untouched: gPASID 1 → hPASID ${A.translate(vm3, 1)}`);
    },
  },
  {
    id: 'p2-quota-attack',
    title: 'p2: quota exhaustion attack from one guest',
    blurb: 'An attacker allocates shared PASIDs in a loop. Host A caps it with a quota; host B gave it a quota larger than the shared range.',
    run({ ops, h, log, expectError }) {
      const small = { ...P2, shared: [4096, 4096 + 64] };
      ops.reset([small, small]);
      for (const [key, quota] of [['A', 32], ['B', 1000]]) {
        const host = h(key).host;
        const attacker = ops.guest(key, 'p2', quota, key === 'A' ? 'attacker' : 'attacker-B');
        const victim = ops.guest(key, 'p2', 8, key === 'A' ? 'victim' : 'victim-B');
        let got = 0;
        const err = expectError(log, `host ${key}: attacker (quota ${quota}) allocates shared PASIDs until refused`, () => {
          for (;;) {
            host.allocPasid(attacker, 'shared');
            got++;
          }
        }, `${key}:${attacker}:alloc`);
        log(`host ${key}: attacker got ${got}; ${host.sharedInUse} of 64 shared PASIDs in use (${err.codeName})`);
        try {
          const gp = host.allocPasid(victim, 'shared');
          log(`host ${key}: victim still gets shared gPASID ${gp} → hPASID ${host.translate(victim, gp)}`);
        } catch (e) {
          expectError(log, `host ${key}: victim asks for a shared PASID`, () => { throw e; }, `${key}:${victim}:alloc`);
        }
      }
    },
  },
  {
    id: 'stress',
    title: 'p2: 300,000 shared PASIDs (map speed)',
    blurb: 'A 2^19 local range and 2^19 shared range, two guests holding 300k shared PASIDs between them.',
    run({ ops, h, log }) {
      const big = { platform: 'p2', width: 20, local: [1, 1 << 19], shared: [1 << 19, 1 << 20] };
      ops.reset([big, big]);
      const A = h('A').host;
      const t0 = performance.now();
      for (const [name, n] of [['bulk1', 200000], ['bulk2', 100000]]) {
        const g = ops.guest('A', 'p2', n, name);
        for (let i = 0; i < n; i++) A.allocPasid(g, 'shared');
      }
      const g3 = ops.guest('A', 'p2', 0, 'locals');
      for (let i = 0; i < 50000; i++) A.allocPasid(g3, 'local');
      log(`350,000 allocations in ${(performance.now() - t0).toFixed(0)} ms`);
    },
  },
  // Refusals: each sets up both hosts, picks vm1 and tries to migrate it.
  {
    id: 'refuse-p1-target',
    refusal: true,
    title: 'p2 guest → p1 host',
    blurb: 'Host B is p1: its vIOMMU cannot offer PASID allocation, so a p2 guest cannot land there.',
    run(ctx) {
      ctx.ops.reset([P2, P1]);
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
  {
    id: 'refuse-quota',
    refusal: true,
    title: 'too few free hPASIDs on B',
    blurb: "Host B's shared range has 8 PASIDs and a resident guest holds 6 of them; vm1 needs 4.",
    run(ctx) {
      ctx.ops.reset([P2, { ...P2, shared: [4096, 4104] }]);
      const B = ctx.h('B').host;
      const resident = ctx.ops.guest('B', 'p2', 8, 'resident');
      for (let i = 0; i < 6; i++) B.allocPasid(resident, 'shared');
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
  {
    id: 'refuse-small-range',
    refusal: true,
    title: 'shared range too small',
    blurb: "Host B's whole shared range has 3 PASIDs; vm1 holds 4 shared ones.",
    run(ctx) {
      ctx.ops.reset([P2, { ...P2, shared: [4096, 4099] }]);
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
  {
    id: 'refuse-rid-in-use',
    refusal: true,
    title: 'RID already in use',
    blurb: "The RID map sends vm1's VF to 03:00.1 on host B, which a resident guest owns.",
    run(ctx) {
      ctx.ops.reset([P2, P2]);
      const B = ctx.h('B').host;
      const resident = ctx.ops.guest('B', 'p2', 8, 'resident');
      B.attach(resident, VF1, 'dedicated');
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
  {
    id: 'refuse-rid-kind',
    refusal: true,
    title: 'RID kind mismatch',
    blurb: "Host B's VMM set up 00:0a.0 as a VF, and the RID map says so; vm1's device there is a DSA shared WQ.",
    run(ctx) {
      ctx.ops.reset([P2, P2]);
      ctx.selected = `A:${migratingGuest(ctx)}`;
      ctx.ridKinds = { [WQ1]: 'dedicated' };
    },
  },
  {
    id: 'refuse-tampered-quota',
    refusal: true,
    tamper: 'quota',
    title: 'blob over its quota',
    blurb: "vm1's blob is edited on the way to claim a quota of 1 while holding 4 shared PASIDs (CRC fixed up).",
    run(ctx) {
      ctx.ops.reset([P2, P2]);
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
  {
    id: 'refuse-corrupt',
    refusal: true,
    tamper: 'bitflip',
    title: 'corrupted blob',
    blurb: 'One bit of the blob flips in transit; the checksum catches it.',
    run(ctx) {
      ctx.ops.reset([P2, P2]);
      ctx.selected = `A:${migratingGuest(ctx)}`;
    },
  },
];
