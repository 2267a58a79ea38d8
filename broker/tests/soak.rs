//! The multi-process fault soak: at least 8 client processes with several leases
//! each take and give back host PASIDs at random against one broker, while the test
//! kills clients with SIGKILL (and starts new ones) and kills and restarts the broker.
//! An independent checker reads the clients' own logs (never the broker) and proves
//! that no host PASID was held by two live leases at once, and that a dead client's
//! PASIDs went to nobody before its quarantine ended. At the end, with every client
//! gone and the quarantine over, `pasid-broker status --json` shows every PASID free.
//!
//! `PASID_SOAK_SECS` sets the length (default 20 s, the CI size); `scripts/soak.sh
//! SECS` runs a long one.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProc, Proc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CLIENTS: usize = 8;
const THREADS: u32 = 3;
/// A small shared range, so PASIDs are reused (and quarantined) all the time.
const SOAK_END: u32 = 4096 + 128;
const QUARANTINE_S: f64 = 1.0;
const GRACE_S: f64 = 2.0;

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// One client process and what the checker needs of it.
struct Client {
    proc: Proc,
    log: PathBuf,
    /// Just before its SIGKILL, and once it was reaped.
    killed: Option<(u64, u64)>,
}

fn spawn_client(b: &BrokerProc, n: usize, seed: u64) -> Client {
    let log = b.dir.path().join(format!("client-{n}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_pasid-broker-soak-client"))
        .arg("--socket")
        .arg(&b.socket)
        .arg("--shared-end")
        .arg(SOAK_END.to_string())
        .arg("soak")
        .arg("--log")
        .arg(&log)
        .arg("--threads")
        .arg(THREADS.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn soak client");
    Client {
        proc: Proc { child: Some(child) },
        log,
        killed: None,
    }
}

fn kill(c: &mut Client) {
    let before = monotonic_ns();
    c.proc.kill9();
    c.killed = Some((before, monotonic_ns()));
}

/// One hold of one PASID by one lease, from the client's log.
#[derive(Debug)]
struct Hold {
    holder: (usize, u32),
    start: u64,
    /// When the hold ended, and the earliest the broker may grant the PASID again.
    end: u64,
    next_allowed: u64,
}

#[derive(Debug, Default)]
struct Verdict {
    grants: usize,
    releases: usize,
    lost: usize,
    violations: Vec<String>,
}

/// The checker: reads every client's log and checks every PASID's holds in time order.
fn check(clients: &[Client], quarantine_ns: u64) -> Verdict {
    let mut v = Verdict::default();
    let mut holds: HashMap<u32, Vec<Hold>> = HashMap::new();
    for (n, c) in clients.iter().enumerate() {
        let (kill_before, kill_after) = c.killed.expect("every client is killed at the end");
        let text = std::fs::read_to_string(&c.log).unwrap_or_default();
        let mut open: HashMap<(u32, u32), u64> = HashMap::new();
        for line in text.lines() {
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["G", ns, t, p] => {
                    let (ns, t, p) = (ns.parse().unwrap(), t.parse().unwrap(), p.parse().unwrap());
                    v.grants += 1;
                    if open.insert((t, p), ns).is_some() {
                        v.violations
                            .push(format!("client {n} thread {t} granted {p} twice"));
                    }
                }
                ["R", ns, t, p] => {
                    let (ns, t, p): (u64, u32, u32) =
                        (ns.parse().unwrap(), t.parse().unwrap(), p.parse().unwrap());
                    v.releases += 1;
                    match open.remove(&(t, p)) {
                        Some(start) => holds.entry(p).or_default().push(Hold {
                            holder: (n, t),
                            start,
                            end: ns,
                            next_allowed: ns,
                        }),
                        None => v.violations.push(format!(
                            "client {n} thread {t} released {p} it did not hold"
                        )),
                    }
                }
                ["LOST", ..] => v.lost += 1,
                _ => v
                    .violations
                    .push(format!("client {n}: bad log line {line:?}")),
            }
        }
        // Held until death: the broker may grant them again only after the quarantine
        // that began at the earliest when the kill was sent.
        for ((t, p), start) in open {
            holds.entry(p).or_default().push(Hold {
                holder: (n, t),
                start,
                end: kill_after,
                next_allowed: kill_after.max(kill_before + quarantine_ns),
            });
        }
    }
    for (p, mut hs) in holds {
        hs.sort_by_key(|h| h.start);
        let mut free_after = 0u64;
        let mut last: Option<&Hold> = None;
        for h in &hs {
            if h.start < free_after {
                let prev = last.expect("a bound comes from an earlier hold");
                v.violations.push(format!(
                    "host PASID {p}: granted to {:?} at {} while {:?} held it ({}..{}, free no earlier than {})",
                    h.holder, h.start, prev.holder, prev.start, prev.end, free_after
                ));
            }
            if h.next_allowed >= free_after {
                free_after = h.next_allowed;
                last = Some(h);
            }
        }
    }
    v
}

#[test]
fn no_host_pasid_is_ever_held_by_two_live_leases() {
    let secs: u64 = std::env::var("PASID_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let config = format!(
        "[layout]\nshared = [4096, {SOAK_END}]\nreserved = [[4100, 4102]]\n\
         [timers]\nquarantine_secs = {QUARANTINE_S}\ngrace_secs = {GRACE_S}\n\
         [caps]\nmax_leases = 100000\nmax_pasids = 100000\n"
    );
    let mut b = BrokerProc::start(&config);
    let mut rng = SmallRng::seed_from_u64(secs);
    let mut live: Vec<Client> = Vec::new();
    let mut dead: Vec<Client> = Vec::new();
    let mut spawned = 0;
    for _ in 0..CLIENTS {
        live.push(spawn_client(&b, spawned, rng.random()));
        spawned += 1;
    }
    let started = Instant::now();
    let total = Duration::from_secs(secs);
    // At least two broker restarts, evenly spread, plus one per further 10 s.
    let restarts = 2.max(secs / 10);
    let mut next_restart = 1;
    let (mut client_kills, mut broker_kills) = (0, 0);
    while started.elapsed() < total {
        thread::sleep(Duration::from_millis(rng.random_range(100..600)));
        if started.elapsed() >= total * next_restart / (restarts as u32 + 1) {
            next_restart += 1;
            b.kill9();
            broker_kills += 1;
            thread::sleep(Duration::from_millis(rng.random_range(50..400)));
            b.restart();
        } else {
            let i = rng.random_range(0..live.len());
            let mut c = live.swap_remove(i);
            kill(&mut c);
            client_kills += 1;
            dead.push(c);
            live.push(spawn_client(&b, spawned, rng.random()));
            spawned += 1;
        }
    }
    for mut c in live.drain(..) {
        kill(&mut c);
        dead.push(c);
    }
    // Every client is gone: after grace and quarantine, everything is free.
    b.wait_until(30, "every lease to end", |s| {
        s.leases.is_empty() && s.held == 0 && s.quarantined == 0
    });
    let out = Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
        .args(["status", "--json", "--socket"])
        .arg(&b.socket)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let capacity = SOAK_END - 4096 - 2;
    assert_eq!(status["free"], capacity, "{status}");
    assert_eq!(status["held"], 0);
    assert_eq!(status["quarantined"], 0);

    let v = check(&dead, (QUARANTINE_S * 1e9) as u64);
    eprintln!(
        "soak: {secs} s, {spawned} client processes x {THREADS} leases, {client_kills} client kills, \
         {broker_kills} broker kills, {} grants, {} releases, {} violations",
        v.grants,
        v.releases,
        v.violations.len()
    );
    assert!(
        v.violations.is_empty(),
        "{:#?}",
        &v.violations[..v.violations.len().min(20)]
    );
    assert_eq!(v.lost, 0, "a live client lost its lease");
    assert!(broker_kills >= 2);
    assert!(v.grants > 100, "the soak did too little to prove anything");
}
