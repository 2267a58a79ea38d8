//! Brokered alloc + release round trips against a real broker process over its Unix
//! socket (release build of `pasid-broker`, its store on a temp dir): one client, and 8
//! clients at once (threads, one connection and lease each); with the broker's default
//! 32 spares per lease (most grants need no store commit) and, as the peer in the same
//! run, with none (every grant waits for its commit).
//!
//! Criterion gives the median time per round trip; for 8 clients its throughput is
//! the aggregate rate (each iteration is one round trip per client, so "elements/s"
//! counts grants per second over all clients). Criterion reports no percentiles, so
//! afterwards the bench samples per-operation latencies itself
//! (`PASID_BROKER_LATENCY_OPS` round trips per client, default 20,000) and prints
//! median, p99, the aggregate grants/s, and the CPU time the broker and the clients
//! spent per round trip (from `/proc`: what a loaded machine cannot inflate much).
//! Timing is never asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pasid_broker_client::{BrokerSource, ClientOptions};
use pasid_core::{HostPasidSource, PasidLayout};

struct BrokerProcess {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker whose leases keep `spare` spares.
fn start_broker(spare: u32) -> BrokerProcess {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("broker.sock");
    let config = dir.path().join("broker.toml");
    std::fs::write(&config, format!("[caps]\nspare = {spare}\n")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
        .arg("--socket")
        .arg(&socket)
        .arg("--state")
        .arg(dir.path().join("state.db"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn broker");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "broker did not start");
        thread::sleep(Duration::from_millis(10));
    }
    BrokerProcess {
        child,
        socket,
        _dir: dir,
    }
}

fn layout() -> PasidLayout {
    PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap()
}

fn round_trip(src: &mut BrokerSource) {
    let p = src.alloc().expect("alloc");
    src.release(p).expect("release");
}

/// Runs `work` on `clients` threads at once, each with its own connection and lease
/// (made with `options` before the start); `at_start` runs as they are released.
/// Returns each thread's result, what `at_start` gave and the wall time from the start.
fn at_once<T: Send + 'static, S>(
    socket: &Path,
    clients: usize,
    options: ClientOptions,
    work: impl Fn(&mut BrokerSource) -> T + Clone + Send + 'static,
    at_start: impl FnOnce() -> S,
) -> (Vec<T>, S, Duration) {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = barrier.clone();
            let socket = socket.to_owned();
            let work = work.clone();
            let options = options.clone();
            thread::spawn(move || {
                let mut src = BrokerSource::connect_with(&socket, &layout(), options).unwrap();
                barrier.wait();
                work(&mut src)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let started = at_start();
    let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (results, started, start.elapsed())
}

/// `clients` threads, each doing `iters` round trips on its own lease, all started at
/// once; returns the wall time.
fn concurrent(socket: &Path, clients: usize, iters: u64) -> Duration {
    let work = move |src: &mut BrokerSource| {
        for _ in 0..iters {
            round_trip(src);
        }
    };
    at_once(socket, clients, ClientOptions::default(), work, || ()).2
}

fn bench(c: &mut Criterion) {
    for spare in [32, 0] {
        let broker = start_broker(spare);
        let mut g = c.benchmark_group(format!("broker alloc+release, {spare} spares"));
        {
            let mut src = BrokerSource::connect(&broker.socket, &layout()).unwrap();
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new("clients", 1), |b| {
                b.iter(|| round_trip(&mut src))
            });
        }
        g.throughput(Throughput::Elements(8));
        g.bench_function(BenchmarkId::new("clients", 8), |b| {
            b.iter_custom(|iters| concurrent(&broker.socket, 8, iters))
        });
        g.finish();
        // The client-side reserve only beside the default.
        let reserves: &[u32] = if spare == 0 { &[0] } else { &[0, 16] };
        latency_report(&broker.socket, broker.child.id(), spare, reserves);
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &text[text.rfind(')').map_or(0, |i| i + 1)..];
    let f: Vec<u64> = rest
        .split_ascii_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|w| w.parse().ok())
        .collect();
    // Clock ticks; 100 per second on Linux (USER_HZ).
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Per-operation latencies sampled by us: median and p99 of one alloc+release round
/// trip, and aggregate grants per second.
fn latency_report(socket: &Path, broker_pid: u32, spare: u32, reserves: &[u32]) {
    let ops: usize = std::env::var("PASID_BROKER_LATENCY_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    // With a client-side reserve (ClientOptions::reserve), pairs that stay within the
    // reserve never reach the broker once warm: reported beside the raw round trip, not
    // instead of it.
    for &reserve in reserves {
        for clients in [1usize, 8] {
            sample(socket, broker_pid, spare, clients, reserve, ops);
        }
    }
}

/// One row of the latency report.
fn sample(socket: &Path, broker_pid: u32, spare: u32, clients: usize, reserve: u32, ops: usize) {
    let options = ClientOptions {
        reserve,
        ..ClientOptions::default()
    };
    let work = move |src: &mut BrokerSource| {
        let mut lat = Vec::with_capacity(ops);
        for _ in 0..ops {
            let t = Instant::now();
            round_trip(src);
            lat.push(t.elapsed());
        }
        lat
    };
    let cpu_now = || (cpu_time(broker_pid), cpu_time(std::process::id()));
    let (lats, (broker_cpu, own_cpu), wall) = at_once(socket, clients, options, work, cpu_now);
    let broker_cpu = cpu_time(broker_pid) - broker_cpu;
    let own_cpu = cpu_time(std::process::id()) - own_cpu;
    let mut all: Vec<Duration> = lats.into_iter().flatten().collect();
    all.sort_unstable();
    println!(
            "broker alloc+release, {spare} spares, {clients} client(s), reserve {reserve}, {} pairs: median {:.1} µs, p99 {:.1} µs, {:.0} grants/s aggregate; CPU per round trip: broker {:.1} µs, clients {:.1} µs",
            all.len(),
            percentile(&all, 0.5).as_secs_f64() * 1e6,
            percentile(&all, 0.99).as_secs_f64() * 1e6,
            all.len() as f64 / wall.as_secs_f64(),
            broker_cpu.as_secs_f64() * 1e6 / all.len() as f64,
            own_cpu.as_secs_f64() * 1e6 / all.len() as f64,
        );
}

criterion_group!(benches, bench);
criterion_main!(benches);
