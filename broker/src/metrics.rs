//! The optional Prometheus endpoint: gauges of the shared range, a grant counter and
//! a grant-latency histogram, in the text format (prometheus-client), served over
//! plain HTTP by tiny_http on its own thread.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::registry::Totals;

/// The broker's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    free: Gauge<i64, AtomicI64>,
    held: Gauge<i64, AtomicI64>,
    spare: Gauge<i64, AtomicI64>,
    quarantined: Gauge<i64, AtomicI64>,
    leases: Gauge<i64, AtomicI64>,
    grants: Counter<u64, AtomicU64>,
    grant_latency: Histogram,
}

use std::sync::atomic::AtomicI64;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pasid_broker");
        let free = Gauge::default();
        let held = Gauge::default();
        let spare = Gauge::default();
        let quarantined = Gauge::default();
        let leases = Gauge::default();
        let grants = Counter::default();
        // 5 µs .. ~80 ms: a grant is tens of µs unless the disk stalls.
        let grant_latency = Histogram::new(exponential_buckets(5e-6, 2.0, 15));
        registry.register("free_pasids", "Free host PASIDs", free.clone());
        registry.register("held_pasids", "Host PASIDs held by a lease", held.clone());
        registry.register(
            "spare_pasids",
            "Host PASIDs recorded to a lease ahead of its requests",
            spare.clone(),
        );
        registry.register(
            "quarantined_pasids",
            "Host PASIDs quarantined after their lease died",
            quarantined.clone(),
        );
        registry.register(
            "leases",
            "Leases (connected, orphaned or unconfirmed)",
            leases.clone(),
        );
        registry.register("grants", "Host PASIDs granted", grants.clone());
        registry.register(
            "grant_latency_seconds",
            "Time from a grant request's arrival to its answer",
            grant_latency.clone(),
        );
        Metrics {
            registry,
            free,
            held,
            spare,
            quarantined,
            leases,
            grants,
            grant_latency,
        }
    }

    /// Counts `n` PASIDs granted by one request that took `took`.
    pub fn granted(&self, n: u32, took: Duration) {
        self.grants.inc_by(n as u64);
        self.grant_latency.observe(took.as_secs_f64());
    }

    /// The text exposition with `totals` as the gauges' values.
    pub fn render(&self, totals: Totals) -> String {
        self.free.set(totals.free as i64);
        self.held.set(totals.held as i64);
        self.spare.set(totals.spare as i64);
        self.quarantined.set(totals.quarantined as i64);
        self.leases.set(totals.leases as i64);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (any path) on `addr`, on a thread of its own; `totals` reads
/// the registry's counts at each scrape.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    totals: impl Fn() -> Totals + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("metrics address is not IP"))?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let body = metrics.render(totals());
                let header = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4; charset=utf-8"[..],
                )
                .expect("a valid header");
                let _ = req.respond(tiny_http::Response::from_string(body).with_header(header));
            }
        })?;
    Ok(bound)
}
