//! What one store commit costs, alone and grouped: the floor under a brokered grant's
//! latency (BENCHMARKS.md, "Broker"). `cargo run --release -p pasid-broker --example
//! store_commit_cost`.

use pasid_broker::registry::StoreOp;
use pasid_broker::store::Store;
use pasid_broker_client::protocol::WireLayout;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let layout = WireLayout {
        width: 20,
        local_start: 1,
        local_end: 4096,
        shared_start: 4096,
        shared_end: 1 << 19,
    };
    let mut s = Store::open(&dir.path().join("x.db"), &layout).unwrap();
    for batch in [1usize, 8, 64] {
        let n = 20000 / batch;
        let t = std::time::Instant::now();
        for i in 0..n {
            let mut ops = Vec::new();
            for j in 0..batch {
                let p = 4096 + ((i * batch + j) % 1000) as u32;
                ops.push(StoreOp::Hold { pasid: p, lease: 1 });
                ops.push(StoreOp::Free { pasid: p });
            }
            s.commit(&ops).unwrap();
        }
        let el = t.elapsed();
        println!(
            "batch {batch}: {:.1} µs per commit, {:.2} µs per grant",
            el.as_secs_f64() * 1e6 / n as f64,
            el.as_secs_f64() * 1e6 / (n * batch) as f64
        );
    }
}
