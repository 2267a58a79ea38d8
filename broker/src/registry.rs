//! The daemon's face of the lease state machine, [`pasid_core::lease`].
//!
//! The state machine itself (leases, spares, quarantine, reclaim; DESIGN.md §6) lives
//! in the core so that the playground's simulated broker runs the very code the daemon
//! runs. What stays here is what only the wire knows: the client's layout as it
//! travels ([`WireLayout`]), the refusals as [`WireError`]s (mapped in one place,
//! [`wire_error`]) and the status report with its admin rule.

use pasid_broker_client::protocol::{
    self, ErrorKind, LeaseReport, StatusReport, WireError, WireLayout,
};
use pasid_core::PasidLayout;

pub use pasid_core::lease::{
    Cap, Lease, LeaseError, LeaseId, LeaseState, LoadError, PasidState, Peer, Policy,
    ReclaimRefusal, Registry, Resume, StoreOp, StoredLease, StoredState, Totals,
};

// One definition per fact: the wire's token is the core's lease token.
const _: () = assert!(protocol::TOKEN_LEN == pasid_core::lease::TOKEN_LEN);

/// The refusal as it goes on the wire: its kind for programs, the core's message for
/// people.
pub fn wire_error(e: LeaseError) -> WireError {
    let kind = match e {
        LeaseError::LayoutMismatch => ErrorKind::LayoutMismatch,
        LeaseError::TooManyLeases { .. } | LeaseError::CapReached { .. } => ErrorKind::CapReached,
        LeaseError::Exhausted { .. } => ErrorKind::Exhausted,
        LeaseError::Unavailable { pasid } | LeaseError::NotHeld { pasid } => {
            ErrorKind::Unavailable { pasid }
        }
        // A connection that lost its lease to a newer one is told as a reclaim would
        // be: the lease is not (or no longer) this connection's.
        LeaseError::NotServing { .. } | LeaseError::ReclaimRefused { .. } => {
            ErrorKind::ReclaimRefused
        }
        // The core may grow refusals; the wire's kinds stay as they are.
        _ => ErrorKind::Protocol,
    };
    WireError {
        kind,
        message: e.to_string(),
    }
}

/// Checks a client's layout against the broker's; the message states both, since a
/// mismatch is a configuration to fix on one side or the other.
pub fn check_layout(reg: &Registry, client: &WireLayout) -> Result<(), WireError> {
    let ours = &reg.policy().layout;
    // A layout the core would not even accept cannot be the broker's.
    PasidLayout::new(client.width, client.local(), client.shared())
        .map_err(|_| LeaseError::LayoutMismatch)
        .and_then(|l| reg.check_layout(&l))
        .map_err(|e| WireError {
            message: format!(
                "{e}: client has {client}, broker has {}",
                WireLayout::from(ours)
            ),
            ..wire_error(e)
        })
}

/// The wire's reclaim request as the core takes it.
pub fn resume(r: &protocol::Resume) -> Resume<'_> {
    Resume {
        lease: r.lease,
        token: &r.token,
        held: &r.held,
        released: &r.released,
    }
}

/// The status report: every lease for an admin, else only `own` (if any), so a
/// client learns nothing of other clients' leases.
pub fn status(reg: &Registry, admin: bool, own: Option<LeaseId>) -> StatusReport {
    let t = reg.totals();
    let report = |(id, l): (LeaseId, &Lease)| {
        let n = l.held.len() as u32;
        let orphaned = matches!(l.state, LeaseState::Orphaned { .. });
        LeaseReport {
            lease: id,
            uid: l.peer.uid,
            pid: l.peer.pid,
            state: l.state.name().to_owned(),
            held: if orphaned { 0 } else { n },
            spare: l.spare.len() as u32,
            quarantined: if orphaned { n } else { 0 },
        }
    };
    let leases = if admin {
        reg.leases().map(report).collect()
    } else {
        own.and_then(|id| reg.lease(id).map(|l| report((id, l))))
            .into_iter()
            .collect()
    };
    StatusReport {
        layout: WireLayout::from(&reg.policy().layout),
        reserved: t.reserved,
        free: t.free,
        held: t.held,
        spare: t.spare,
        quarantined: t.quarantined,
        all_leases: admin,
        leases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Registry, Vec<LeaseId>) {
        let policy = Policy {
            layout: PasidLayout::new(20, 1..4096, 4096..4200).unwrap(),
            reserved: vec![],
            quarantine_ms: 1000,
            grace_ms: 1000,
            spare: 2,
            default_cap: Cap {
                max_leases: 1,
                max_pasids: 4,
            },
            uid_caps: Default::default(),
        };
        let mut ops = Vec::new();
        let mut reg = Registry::load(policy, StoredState::default(), 0, &mut ops).unwrap();
        let ids = (0..3)
            .map(|uid| {
                let peer = Peer {
                    uid,
                    gid: uid,
                    pid: 100 + uid,
                    start: 1,
                };
                reg.open(peer, u64::from(uid), [uid as u8; 32], &mut ops)
                    .unwrap()
            })
            .collect();
        (reg, ids)
    }

    #[test]
    fn a_client_sees_its_own_lease_only_and_an_admin_sees_all() {
        let (reg, ids) = registry();
        let own = status(&reg, false, Some(ids[1]));
        assert!(!own.all_leases);
        assert_eq!(own.leases.len(), 1);
        assert_eq!(own.leases[0].lease, ids[1]);
        assert!(status(&reg, false, None).leases.is_empty());
        assert!(status(&reg, false, Some(999)).leases.is_empty());
        assert_eq!(status(&reg, true, None).leases.len(), 3);
    }

    #[test]
    fn refusals_keep_their_wire_kinds_and_informative_messages() {
        let (mut reg, ids) = registry();
        let mut ops = Vec::new();
        let peer = Peer {
            uid: 0,
            gid: 0,
            pid: 1,
            start: 1,
        };
        let e = wire_error(reg.open(peer, 9, [0; 32], &mut ops).unwrap_err());
        assert_eq!(e.kind, ErrorKind::CapReached);
        assert_eq!(e.message, "uid 0 has 1 leases, its cap is 1");
        let e = wire_error(reg.alloc(ids[0], 0, 5, &mut ops).unwrap_err());
        assert_eq!(e.kind, ErrorKind::CapReached);
        assert_eq!(
            e.message,
            "uid 0 has 0 host PASIDs (held or quarantined), its cap is 4"
        );
        let e = wire_error(reg.release(ids[0], 0, 4096, &mut ops).unwrap_err());
        assert_eq!(e.kind, ErrorKind::Unavailable { pasid: 4096 });
        assert_eq!(e.message, "host PASID 4096 is not held by this lease");
        let e = wire_error(reg.alloc(ids[0], 7, 1, &mut ops).unwrap_err());
        assert_eq!(e.kind, ErrorKind::ReclaimRefused);
        assert_eq!(
            e.message,
            format!("connection no longer serves lease {}", ids[0])
        );
        let wire = protocol::Resume {
            lease: ids[0],
            token: [9; 32],
            held: vec![],
            released: vec![],
        };
        let e = wire_error(
            reg.reclaim(peer, 8, resume(&wire), 0, &mut ops)
                .unwrap_err(),
        );
        assert_eq!(e.kind, ErrorKind::ReclaimRefused);
        assert_eq!(e.message, format!("lease {} is not this client's", ids[0]));
        let client = WireLayout {
            width: 20,
            local_start: 1,
            local_end: 4096,
            shared_start: 4096,
            shared_end: 8192,
        };
        let e = check_layout(&reg, &client).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LayoutMismatch);
        assert!(
            e.message.starts_with("layout mismatch: client has "),
            "{}",
            e.message
        );
        let ours = WireLayout::from(&reg.policy().layout);
        check_layout(&reg, &ours).unwrap();
        let bogus = WireLayout { width: 0, ..ours };
        assert_eq!(
            check_layout(&reg, &bogus).unwrap_err().kind,
            ErrorKind::LayoutMismatch
        );
    }
}
