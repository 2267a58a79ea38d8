//! The core's reference-model property test, with the host's PASIDs from a real broker
//! process: `Host<BrokerSource>` must behave exactly as the model says, step by step,
//! like the in-process host does (`core/tests/model.rs`). A fresh broker without
//! spares serves one client lowest-free, as the model expects (spares keep a grant
//! among the lease's own, which after a restart or an overflowing release is not the
//! machine's lowest; `registry_model.rs` and the soak cover spares). One case also kills the broker mid-run and
//! restarts it: the client reclaims its lease and the model still agrees.

mod common;

#[path = "../../core/tests/support/model.rs"]
#[allow(dead_code)]
mod model;
#[path = "../../core/tests/support/strategy.rs"]
mod strategy;

use common::{config_text, layout, BrokerProc};
use pasid_broker_client::BrokerSource;
use pasid_core::Platform;
use proptest::prelude::*;

use model::Checker;
use strategy::op_strategy;

fn checker(broker: &BrokerProc, platform: Platform) -> Checker<BrokerSource> {
    let source = BrokerSource::connect(&broker.socket, &layout()).expect("lease");
    Checker::with_source(layout(), platform, source)
}

proptest! {
    // Each case starts a broker process: a few dozen cases keep this in seconds.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_brokered_host_agrees_with_the_model(
        p2 in proptest::bool::weighted(0.8),
        ops in proptest::collection::vec(op_strategy(), 1..60),
        restart_at in proptest::option::of(0usize..60),
    ) {
        let mut broker = BrokerProc::start(&config_text(30.0, 30.0, "[caps]\nspare = 0\n"));
        let platform = if p2 { Platform::P2 } else { Platform::P1 };
        let mut checker = checker(&broker, platform);
        for (i, op) in ops.iter().enumerate() {
            if restart_at == Some(i) {
                // kill -9 and restart: the next call reconnects and reclaims.
                broker.restart();
            }
            if let Err(disagreement) = checker.step(op) {
                prop_assert!(false, "{}", disagreement);
            }
        }
        // What the host holds is what the broker has granted this lease, no more.
        let held: Vec<u32> = checker.host.source().held().collect();
        prop_assert_eq!(held.len() as u32, checker.host.shared_in_use());
    }
}
