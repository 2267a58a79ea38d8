//! A VMM stand-in for the broker's tests: real processes against a real broker.
//!
//! `hold`: takes COUNT host PASIDs, prints them on one line, then sleeps until killed.
//!
//! `soak`: THREADS threads, each with its own lease, take and give back host PASIDs at
//! random until killed. Every grant is logged after its answer arrived and every
//! release before it is sent, with CLOCK_MONOTONIC nanoseconds, one line per event,
//! written at once (a kill -9 loses no line already logged): `G <ns> <thread> <pasid>`,
//! `R <ns> <thread> <pasid>`; `LOST <ns> <thread>` if a lease could not be reclaimed
//! (which the soak test counts as a failure).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pasid_broker_client::{BrokerSource, ClientOptions, ConnectError};
use pasid_core::{HostPasidSource, PasidLayout, SourceError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Test client of pasid-broker.
#[derive(Parser)]
struct Cli {
    /// The broker's socket.
    #[arg(long)]
    socket: PathBuf,
    /// End of the shared range (the layout is 20 bits, local 1..4096, shared 4096..END).
    #[arg(long, default_value_t = 1 << 19)]
    shared_end: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take COUNT host PASIDs, print them, sleep.
    Hold {
        /// How many.
        count: u32,
    },
    /// Random grants and releases on several leases, logged.
    Soak {
        /// The log file.
        #[arg(long)]
        log: PathBuf,
        /// Threads, one lease each.
        #[arg(long, default_value_t = 3)]
        threads: u32,
        /// Most PASIDs one thread holds.
        #[arg(long, default_value_t = 8)]
        max_held: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn log(file: &Mutex<File>, line: String) {
    let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
    // One write per line, O_APPEND: a kill cannot leave half a line behind others.
    f.write_all(line.as_bytes()).expect("log write");
}

fn connect(cli: &Cli, layout: &PasidLayout) -> BrokerSource {
    // The broker may be down (being restarted by the test): keep trying. A refusal
    // (caps, credentials, layout) is final.
    loop {
        match BrokerSource::connect_with(&cli.socket, layout, ClientOptions::default()) {
            Ok(s) => return s,
            Err(ConnectError::Refused(e)) => {
                eprintln!("pasid-broker-soak-client: refused: {e}");
                std::process::exit(2);
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn soak_thread(cli: &Cli, layout: &PasidLayout, file: &Mutex<File>, t: u32, max: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut src = connect(cli, layout);
    let mut held: Vec<u32> = Vec::new();
    loop {
        let grow = held.len() < max && (held.is_empty() || rng.random_bool(0.55));
        if grow {
            match src.alloc() {
                Ok(p) => {
                    log(file, format!("G {} {t} {p}\n", monotonic_ns()));
                    held.push(p);
                }
                Err(SourceError::Exhausted) | Err(SourceError::Disconnected) => {
                    thread::sleep(Duration::from_millis(2));
                }
                Err(_) => {
                    log(file, format!("LOST {} {t}\n", monotonic_ns()));
                    return;
                }
            }
        } else {
            let p = held.swap_remove(rng.random_range(0..held.len()));
            log(file, format!("R {} {t} {p}\n", monotonic_ns()));
            match src.release(p) {
                Ok(()) | Err(SourceError::Disconnected) => {}
                Err(_) => {
                    log(file, format!("LOST {} {t}\n", monotonic_ns()));
                    return;
                }
            }
        }
        if rng.random_bool(0.1) {
            thread::sleep(Duration::from_micros(rng.random_range(0..2000)));
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let layout = PasidLayout::new(20, 1..4096, 4096..cli.shared_end).expect("layout");
    match &cli.command {
        Command::Hold { count } => {
            let mut src = connect(&cli, &layout);
            let mut got = Vec::new();
            src.alloc_many(*count, &mut got).expect("alloc");
            let line: Vec<String> = got.iter().map(|p| p.to_string()).collect();
            println!("{}", line.join(" "));
            std::io::stdout().flush().expect("stdout");
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        }
        Command::Soak {
            log,
            threads,
            max_held,
            seed,
        } => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log file");
            let file = Arc::new(Mutex::new(file));
            let (threads, max_held, seed) = (*threads, *max_held, *seed);
            let cli = Arc::new(Cli { ..cli });
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (cli, file, layout) = (cli.clone(), file.clone(), layout.clone());
                    let (max, seed) = (max_held, seed.wrapping_mul(1000).wrapping_add(t as u64));
                    thread::spawn(move || soak_thread(&cli, &layout, &file, t, max, seed))
                })
                .collect();
            for h in handles {
                let _ = h.join();
            }
        }
    }
}
