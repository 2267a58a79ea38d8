//! The broker as a process: leases, quarantine, restart and reclaim, caps, reserved
//! PASIDs, layouts, bad input, status.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::{config_text, layout, layout_with_end, BrokerProc, SHARED_END};
use pasid_broker_client::framing;
use pasid_broker_client::protocol::{ErrorKind, Request, Response, WireLayout, PROTOCOL_VERSION};
use pasid_broker_client::{BrokerSource, ClientOptions, ConnectError};
use pasid_core::{HostPasidSource, SourceError};

const CAPACITY: u32 = SHARED_END - 4096;

fn raw(b: &BrokerProc) -> UnixStream {
    let s = UnixStream::connect(&b.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn ask(s: &mut UnixStream, req: &Request) -> Option<Response> {
    framing::write_message(s, req).ok()?;
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    framing::read_message(&mut r, &mut Vec::new()).ok()
}

fn hello(s: &mut UnixStream) -> Response {
    ask(
        s,
        &Request::Hello {
            version: PROTOCOL_VERSION,
            layout: WireLayout::from(&layout()),
            resume: None,
        },
    )
    .unwrap()
}

/// No spares: every grant is on record, in lowest-free order across leases.
const NO_SPARES: &str = "[caps]\nspare = 0\n";

#[test]
fn grants_lowest_first_and_a_release_frees_at_once() {
    let b = BrokerProc::start(&config_text(30.0, 30.0, NO_SPARES));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    assert_eq!(a.range(), 4096..SHARED_END);
    assert_eq!(a.alloc(), Ok(4096));
    let mut more = Vec::new();
    a.alloc_many(3, &mut more).unwrap();
    assert_eq!(more, [4097, 4098, 4099]);
    assert_eq!(a.free_count(), CAPACITY - 4);
    // A release is posted: its answer (and the broker's new free count) comes with
    // the next exchange.
    a.release(4097).unwrap();
    assert_eq!(a.free_count(), CAPACITY - 4);
    assert_eq!(a.alloc(), Ok(4097));
    assert_eq!(a.free_count(), CAPACITY - 4);
    assert_eq!(a.claim(4100), Ok(()));
    assert_eq!(a.held().collect::<Vec<_>>(), [4096, 4097, 4098, 4099, 4100]);
    let s = b.status();
    assert_eq!(
        (s.free, s.held, s.spare, s.quarantined),
        (CAPACITY - 5, 5, 0, 0)
    );
    for p in [4096, 4097, 4098, 4099, 4100] {
        a.release(p).unwrap();
    }
    // A clean goodbye with nothing held ends the lease at once.
    a.close().unwrap();
    let s = b.status();
    assert_eq!(
        (s.free, s.held, s.quarantined, s.leases.len()),
        (CAPACITY, 0, 0, 0)
    );
}

#[test]
fn spares_serve_grants_and_releases_and_never_reach_another_lease() {
    let mut b = BrokerProc::start(&config_text(30.0, 30.0, "[caps]\nspare = 4\n"));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    // The first grant records 4 more to the lease: 4097..=4100 are its spares.
    assert_eq!(a.alloc(), Ok(4096));
    let s = b.status();
    assert_eq!((s.free, s.held, s.spare), (CAPACITY - 5, 1, 4));
    // Grants and releases within the spares leave the pool alone.
    assert_eq!((a.alloc(), a.alloc()), (Ok(4097), Ok(4098)));
    a.release(4097).unwrap();
    assert_eq!(a.alloc(), Ok(4097));
    assert_eq!(a.claim(4099), Ok(()), "its own spare");
    assert_eq!(b.status().free, CAPACITY - 5);
    // Another lease gets neither a spare of a's nor the same numbers.
    let mut other = BrokerSource::connect(&b.socket, &layout()).unwrap();
    assert_eq!(other.alloc(), Ok(4101));
    // A claim may take another lease's spare: it was never handed out.
    assert_eq!(other.claim(4100), Ok(()));
    let s = b.status();
    assert_eq!(
        (s.held, s.spare),
        (6, 4),
        "a: 4096..=4099; other: 4101, 4100"
    );
    // A release beyond `spare` spares frees at once.
    for p in [4096, 4097, 4098, 4099] {
        a.release(p).unwrap();
    }
    a.flush().unwrap(); // the posted releases reach the broker
    assert_eq!(b.status().spare, 8);
    assert_eq!(a.alloc(), Ok(4096));
    a.release(4096).unwrap();
    // A broker restart cannot tell spares from grants: the reclaim keeps what the
    // client lists, the spares go through quarantine like anything unlisted.
    assert_eq!(a.alloc(), Ok(4096));
    b.kill9();
    b.restart();
    a.status().unwrap(); // reconnects and reclaims
    other.status().unwrap();
    let s = b.status();
    let lease = s.leases.iter().find(|l| l.lease == a.lease()).unwrap();
    assert_eq!(
        (lease.state.as_str(), lease.held, lease.spare),
        ("connected", 1, 0)
    );
    // a's 3 spares and other's 4 (4102..=4105) were unlisted.
    assert_eq!((s.held, s.spare, s.quarantined), (3, 0, 3 + 4));
    // A goodbye frees spares at once and quarantines only what is still held.
    assert_eq!(a.alloc(), Ok(4106), "a new spare block after the restart");
    a.close().unwrap();
    other.close().unwrap();
    let s = b.status();
    assert_eq!((s.held, s.spare, s.quarantined), (0, 0, 7 + 2 + 2));
}

#[test]
fn another_lease_cannot_release_claim_or_see_my_pasids() {
    let b = BrokerProc::start(&config_text(30.0, 30.0, ""));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let mine = a.alloc().unwrap();
    let mut other = BrokerSource::connect(&b.socket, &layout()).unwrap();
    assert_eq!(
        other.claim(mine),
        Err(SourceError::Unavailable { pasid: mine })
    );
    assert_ne!(other.alloc().unwrap(), mine);
    // Past the client's own check: the broker itself refuses the release.
    let mut s = raw(&b);
    assert!(matches!(hello(&mut s), Response::Welcome { .. }));
    match ask(&mut s, &Request::Release { pasid: mine }).unwrap() {
        Response::Error(e) => assert_eq!(e.kind, ErrorKind::Unavailable { pasid: mine }),
        r => panic!("{r:?}"),
    }
    // A reclaim with a guessed token is refused and takes nothing over.
    let mut t = raw(&b);
    let forged = Request::Hello {
        version: PROTOCOL_VERSION,
        layout: WireLayout::from(&layout()),
        resume: Some(pasid_broker_client::protocol::Resume {
            lease: a.lease(),
            token: [7; 32],
            held: vec![mine],
            released: vec![],
        }),
    };
    match ask(&mut t, &forged).unwrap() {
        Response::Error(e) => assert_eq!(e.kind, ErrorKind::ReclaimRefused),
        r => panic!("{r:?}"),
    }
    // A reclaim of one's own lease that says it released another lease's PASID
    // frees nothing of that lease's.
    let mut u = raw(&b);
    let Response::Welcome { lease, token, .. } = hello(&mut u) else {
        panic!("no lease");
    };
    // It holds one, so that its lease outlives the connection.
    let Some(Response::Granted { pasids, .. }) = ask(&mut u, &Request::Alloc { count: 1 }) else {
        panic!("no grant");
    };
    drop(u);
    let mut u = raw(&b);
    let sly = Request::Hello {
        version: PROTOCOL_VERSION,
        layout: WireLayout::from(&layout()),
        resume: Some(pasid_broker_client::protocol::Resume {
            lease,
            token,
            held: pasids,
            released: vec![mine],
        }),
    };
    match ask(&mut u, &sly).unwrap() {
        Response::Welcome { lease: l, .. } => assert_eq!(l, lease),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        other.claim(mine),
        Err(SourceError::Unavailable { pasid: mine }),
        "still a's"
    );
    // A lease's own status shows only itself, unless it is an admin (root or the
    // broker's uid, which a test run usually is); the registry's unit tests check
    // the non-admin view.
    let st = other.status().unwrap();
    if !st.all_leases {
        assert_eq!(st.leases.len(), 1);
        assert_eq!(st.leases[0].lease, other.lease());
    }
    assert_eq!(a.held().collect::<Vec<_>>(), [mine]);
    a.release(mine).unwrap();
}

#[test]
fn a_killed_clients_pasids_are_quarantined_then_free() {
    let b = BrokerProc::start(&config_text(2.0, 30.0, ""));
    let (mut holder, pasids) = b.holder(3);
    assert_eq!(pasids, [4096, 4097, 4098]);
    holder.kill9();
    b.wait_until(10, "quarantine", |s| s.quarantined == 3);
    let mut c = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let got = c.alloc().unwrap();
    // Granted while they were still quarantined: none of them (no timing assumed:
    // if the quarantine ended first, there is nothing to check).
    if b.status().quarantined == 3 {
        assert!(!pasids.contains(&got), "{got} granted from quarantine");
    }
    b.wait_until(10, "quarantine to end", |s| s.quarantined == 0);
    assert_eq!(c.claim(4096), Ok(()));
}

#[test]
fn a_reserve_saves_round_trips_survives_a_restart_and_goes_back_on_goodbye() {
    let mut b = BrokerProc::start(&config_text(30.0, 30.0, NO_SPARES));
    let options = ClientOptions {
        reserve: 4,
        ..ClientOptions::default()
    };
    let mut a = BrokerSource::connect_with(&b.socket, &layout(), options).unwrap();
    // One round trip takes 1 + 4: the lowest to the host, the rest in reserve.
    assert_eq!(a.alloc(), Ok(4096));
    assert_eq!(b.status().held, 5);
    assert_eq!((a.alloc(), a.alloc()), (Ok(4097), Ok(4098)));
    assert_eq!(
        b.status().held,
        5,
        "served from the reserve: no grant at the broker"
    );
    // Another lease never gets a reserved PASID.
    let mut other = BrokerSource::connect(&b.socket, &layout()).unwrap();
    assert_eq!(other.alloc(), Ok(4101));
    // A release refills the reserve instead of freeing; a bad one is refused.
    a.release(4097).unwrap();
    assert_eq!(
        a.release(4097),
        Err(SourceError::Unavailable { pasid: 4097 })
    );
    assert_eq!(b.status().held, 6);
    // The broker restarts: the reclaim lists the reserve too, nothing is lost.
    b.kill9();
    b.restart();
    assert_eq!(
        a.alloc(),
        Ok(4097),
        "from the reserve, without asking the broker"
    );
    a.status().unwrap(); // a round trip: reconnects and reclaims
    let s = b.status();
    let lease = s.leases.iter().find(|l| l.lease == a.lease()).unwrap();
    assert_eq!((lease.state.as_str(), lease.held), ("connected", 5));
    // Goodbye: the reserve is released first, so only what the host still held (and
    // never released) goes to quarantine.
    a.close().unwrap();
    let s = b.status();
    assert_eq!((s.held, s.quarantined), (1, 3));
}

#[test]
fn after_a_broker_kill_the_live_client_keeps_exactly_its_pasids() {
    let mut b = BrokerProc::start(&config_text(30.0, 30.0, NO_SPARES));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let mut mine = Vec::new();
    a.alloc_many(4, &mut mine).unwrap();
    a.release(mine.remove(1)).unwrap();
    // A grant is answered once on record, with every change queued before it (the
    // release too; a release alone is not waited for, see docs/broker.md).
    mine.push(a.alloc().unwrap());
    let lease = a.lease();
    b.kill9();
    b.restart();
    let s = b.status();
    assert_eq!(s.leases.len(), 1);
    assert_eq!(s.leases[0].state, "unconfirmed");
    // Another client's grants avoid the unconfirmed lease's PASIDs.
    let mut other = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let theirs = other.alloc().unwrap();
    assert!(!mine.contains(&theirs));
    // The next call reclaims transparently.
    let next = a.alloc().unwrap();
    assert_eq!(a.lease(), lease);
    mine.push(next);
    mine.sort_unstable();
    assert_eq!(a.held().collect::<Vec<_>>(), mine);
    let s = b.status();
    let l = s.leases.iter().find(|l| l.lease == lease).unwrap();
    assert_eq!((l.state.as_str(), l.held), ("connected", 5));
    assert_eq!(s.quarantined, 0);
    // Twice more, to be sure a reclaimed lease reclaims again.
    for _ in 0..2 {
        b.kill9();
        b.restart();
        a.release(next).ok();
        assert_eq!(a.lease(), lease);
    }
}

#[test]
fn a_release_lost_with_the_broker_is_freed_by_the_reclaim_not_quarantined() {
    let mut b = BrokerProc::start(&config_text(30.0, 30.0, NO_SPARES));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let mut mine = Vec::new();
    a.alloc_many(3, &mut mine).unwrap();
    // Posted, not sent: the broker dies with it unread.
    a.release(mine[0]).unwrap();
    b.kill9();
    b.restart();
    // The next call reclaims, naming the release: the broker frees the PASID (its
    // teardown was confirmed), so it is the lowest free again.
    assert_eq!(a.alloc(), Ok(mine[0]));
    let s = b.status();
    assert_eq!((s.held, s.quarantined), (3, 0));
    a.close().unwrap();
}

#[test]
fn an_unreclaimed_lease_is_quarantined_after_the_grace_then_free() {
    let mut b = BrokerProc::start(&config_text(1.0, 2.0, NO_SPARES));
    let (mut holder, pasids) = b.holder(2);
    assert_eq!(pasids.len(), 2);
    b.kill9();
    holder.kill9();
    b.restart();
    let s = b.status();
    // Unless the machine stalled past the grace period already:
    if !s.leases.is_empty() {
        assert_eq!((s.held, s.leases[0].state.as_str()), (2, "unconfirmed"));
    }
    b.wait_until(10, "grace to end", |s| {
        s.leases.is_empty() && s.quarantined == 2
    });
    b.wait_until(10, "quarantine to end", |s| s.free == CAPACITY);
}

#[test]
fn caps_bound_leases_and_pasids_per_uid() {
    let b = BrokerProc::start(&config_text(
        1.0,
        30.0,
        "[caps]\nmax_leases = 2\nmax_pasids = 5\n",
    ));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let mut c = BrokerSource::connect(&b.socket, &layout()).unwrap();
    match BrokerSource::connect(&b.socket, &layout()) {
        Err(ConnectError::Refused(e)) => assert_eq!(e.kind, ErrorKind::CapReached),
        r => panic!("{r:?}"),
    }
    let mut got = Vec::new();
    assert_eq!(a.alloc_many(6, &mut got), Err(SourceError::Exhausted));
    assert!(got.is_empty());
    a.alloc_many(3, &mut got).unwrap();
    c.alloc_many(2, &mut got).unwrap();
    assert_eq!(c.alloc(), Err(SourceError::Exhausted));
    assert_eq!(b.status().free, CAPACITY - 5);
}

#[test]
fn reserved_host_pasids_are_never_granted() {
    let b = BrokerProc::start(&config_text(
        1.0,
        30.0,
        "reserved = [[4096, 4100], [4150, 4160]]",
    ));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    assert_eq!(a.claim(4097), Err(SourceError::Unavailable { pasid: 4097 }));
    let mut all = Vec::new();
    a.alloc_many(CAPACITY - 14, &mut all).unwrap();
    assert_eq!(all.first(), Some(&4100));
    assert_eq!(all.last(), Some(&4149));
    assert_eq!(a.alloc(), Err(SourceError::Exhausted));
    assert_eq!(b.status().reserved, 14);
}

#[test]
fn a_client_with_another_layout_is_told_both() {
    let b = BrokerProc::start(&config_text(1.0, 30.0, ""));
    match BrokerSource::connect(&b.socket, &layout_with_end(8192)) {
        Err(ConnectError::Refused(e)) => {
            assert_eq!(e.kind, ErrorKind::LayoutMismatch);
            assert!(e
                .message
                .contains("client has width 20, local 1..4096, shared 4096..8192"));
            assert!(e.message.contains(&format!(
                "broker has width 20, local 1..4096, shared 4096..{SHARED_END}"
            )));
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn bad_input_gets_an_error_or_a_close_and_changes_no_other_lease() {
    let b = BrokerProc::start(&config_text(1.0, 30.0, ""));
    let mut bystander = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let held = bystander.alloc().unwrap();

    let expect_error_or_close = |bytes: &[u8], close_write: bool| {
        let mut s = raw(&b);
        let _ = s.write_all(bytes);
        if close_write {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        match framing::read_message::<Response>(&mut r, &mut Vec::new()) {
            Ok(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::Protocol),
            Ok(other) => panic!("{other:?}"),
            Err(_) => {} // closed
        }
        // Whatever it said, the connection is closed after it.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    };
    // Garbage.
    expect_error_or_close(&[0xde, 0xad, 0xbe, 0xef, 0x00], false);
    // A frame longer than the cap.
    expect_error_or_close(&vec![0x41; framing::MAX_FRAME + 100], false);
    // A truncated frame, then end of stream.
    let frame = framing::encode(&Request::Alloc { count: 1 }).unwrap();
    expect_error_or_close(&frame[..frame.len() - 2], true);
    // A valid request before the hello.
    expect_error_or_close(
        &framing::encode(&Request::Alloc { count: 1 }).unwrap(),
        false,
    );
    expect_error_or_close(&framing::encode(&Request::Goodbye).unwrap(), false);
    // A message type that does not exist.
    expect_error_or_close(&framing::encode(&99u8).unwrap(), false);
    // A second hello.
    let mut s = raw(&b);
    assert!(matches!(hello(&mut s), Response::Welcome { .. }));
    match ask(
        &mut s,
        &Request::Hello {
            version: PROTOCOL_VERSION,
            layout: WireLayout::from(&layout()),
            resume: None,
        },
    ) {
        Some(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::Protocol),
        r => panic!("{r:?}"),
    }
    // Another version.
    let mut s = raw(&b);
    match ask(
        &mut s,
        &Request::Hello {
            version: PROTOCOL_VERSION + 1,
            layout: WireLayout::from(&layout()),
            resume: None,
        },
    ) {
        Some(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::Version),
        r => panic!("{r:?}"),
    }
    // An absurd batch is refused, the connection stays.
    let mut s = raw(&b);
    assert!(matches!(hello(&mut s), Response::Welcome { .. }));
    assert!(matches!(
        ask(&mut s, &Request::Alloc { count: u32::MAX }),
        Some(Response::Error(_))
    ));
    assert!(matches!(
        ask(&mut s, &Request::Alloc { count: 1 }),
        Some(Response::Granted { .. })
    ));

    // The broker still serves, and the bystander's lease is as it was.
    assert_eq!(bystander.held().collect::<Vec<_>>(), [held]);
    let st = b.status();
    let l = st
        .leases
        .iter()
        .find(|l| l.lease == bystander.lease())
        .unwrap();
    assert_eq!((l.held, l.state.as_str()), (1, "connected"));
    bystander.release(held).unwrap();
    assert!(bystander.alloc().is_ok());
}

#[test]
fn status_prints_a_table_and_json() {
    let b = BrokerProc::start(&config_text(
        1.0,
        30.0,
        "reserved = [[4096, 4098]]\n[caps]\nspare = 5\n",
    ));
    let mut a = BrokerSource::connect(&b.socket, &layout()).unwrap();
    a.alloc().unwrap();
    let run = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pasid-broker"));
        c.arg("status").arg("--socket").arg(&b.socket);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(false);
    assert!(table.contains(&format!(
        "layout: width 20, local 1..4096, shared 4096..{SHARED_END}"
    )));
    assert!(table.contains(&format!(
        "{} free, 1 held, 5 spare, 0 quarantined, 2 reserved",
        CAPACITY - 8
    )));
    assert!(table.contains(&format!("{}", std::process::id())));
    let v: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    assert_eq!(v["free"], CAPACITY - 8);
    assert_eq!(v["held"], 1);
    assert_eq!(v["spare"], 5);
    assert_eq!(v["leases"][0]["spare"], 5);
    assert_eq!(v["leases"][0]["pid"], std::process::id());
    assert_eq!(v["leases"][0]["state"], "connected");
    assert_eq!(v["layout"]["shared"][1], SHARED_END);
    // A broker that is not there is an error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
        .args(["status", "--socket"])
        .arg(b.dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_second_broker_on_the_same_state_or_socket_refuses_to_start() {
    let b = BrokerProc::start(&config_text(1.0, 30.0, ""));
    let out = Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
        .arg("--socket")
        .arg(b.dir.path().join("other.sock"))
        .arg("--state")
        .arg(&b.state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another broker uses the state store"));
    let out = Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
        .arg("--socket")
        .arg(&b.socket)
        .arg("--state")
        .arg(b.dir.path().join("other.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another broker serves"));
}

#[test]
fn the_metrics_endpoint_serves_the_counts_and_grants() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("m.sock");
    // Port 0 is not knowable from outside: find a free port first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
        .arg("--socket")
        .arg(&socket)
        .arg("--state")
        .arg(dir.path().join("m.db"))
        .arg("--metrics")
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let _guard = common::Proc { child: Some(child) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut a = BrokerSource::connect(
        &socket,
        &pasid_core::PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap(),
    )
    .unwrap();
    a.alloc().unwrap();
    a.alloc().unwrap();
    let mut http = TcpStream::connect(("127.0.0.1", port)).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    // The default 32 spares: recorded with the first grant, the second took one.
    assert!(body.contains("pasid_broker_held_pasids 2"), "{body}");
    assert!(body.contains("pasid_broker_spare_pasids 31"), "{body}");
    assert!(body.contains(&format!(
        "pasid_broker_free_pasids {}",
        (1 << 19) - 4096 - 33
    )));
    assert!(body.contains("pasid_broker_grants_total 2"));
    assert!(body.contains("pasid_broker_leases 1"));
    assert!(body.contains("pasid_broker_grant_latency_seconds_count 2"));
}

#[test]
fn systemd_socket_activation_hands_the_broker_its_socket() {
    let Ok(activate) = which("systemd-socket-activate") else {
        eprintln!("systemd-socket-activate not installed: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    // No --socket: the broker must take the listening socket from LISTEN_FDS.
    let child = Command::new(activate)
        .arg("-l")
        .arg(&socket)
        .arg(env!("CARGO_BIN_EXE_pasid-broker"))
        .arg("--state")
        .arg(dir.path().join("a.db"))
        .spawn()
        .unwrap();
    let _guard = common::Proc { child: Some(child) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let layout = pasid_core::PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut a = BrokerSource::connect(&socket, &layout).unwrap();
    assert_eq!(a.alloc(), Ok(4096));
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

/// Runs one of our binaries as uid/gid 65534 (nobody), through setpriv.
fn as_nobody(bin: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
    c
}

#[test]
fn socket_mode_and_peer_credentials_decide_who_connects_and_what_they_see() {
    if !rustix::process::geteuid().is_root() || which("setpriv").is_err() {
        eprintln!("needs root and setpriv: skipped");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let open_dir = |b: &BrokerProc| {
        std::fs::set_permissions(b.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap()
    };
    let status_as_nobody = |b: &BrokerProc| {
        as_nobody(env!("CARGO_BIN_EXE_pasid-broker"))
            .args(["status", "--json", "--socket"])
            .arg(&b.socket)
            .output()
            .unwrap()
    };
    let hold_as_nobody = |b: &BrokerProc, n: u32| {
        let mut c = as_nobody(env!("CARGO_BIN_EXE_pasid-broker-soak-client"));
        c.arg("--socket")
            .arg(&b.socket)
            .args([
                "--shared-end",
                &SHARED_END.to_string(),
                "hold",
                &n.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        (common::Proc { child: Some(child) }, line)
    };

    // The default mode, 0660 and root's group: nobody cannot even connect.
    let b = BrokerProc::start(&config_text(1.0, 30.0, ""));
    open_dir(&b);
    let out = status_as_nobody(&b);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{out:?}"
    );

    // Mode 0666 and a cap for nobody: it connects, within its own cap, and sees no
    // lease but its own (its status connection has none).
    let b = BrokerProc::start(&config_text(
        1.0,
        30.0,
        "[socket]\nmode = \"0666\"\n[caps]\n[[caps.uid]]\nuid = 65534\nmax_leases = 1\nmax_pasids = 2\n",
    ));
    open_dir(&b);
    let mut root = BrokerSource::connect(&b.socket, &layout()).unwrap();
    let mine = root.alloc().unwrap();
    let (_holder, line) = hold_as_nobody(&b, 2);
    let theirs: Vec<u32> = line
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(theirs.len(), 2);
    assert!(!theirs.contains(&mine));
    let out = status_as_nobody(&b);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["all_leases"], false);
    assert_eq!(v["leases"].as_array().unwrap().len(), 0);
    let s = b.status();
    assert!(s.leases.iter().any(|l| l.uid == 65534 && l.held == 2));
    // Its lease cap is 1: a second nobody client is refused.
    let (mut second, line) = hold_as_nobody(&b, 1);
    assert!(line.is_empty());
    let out = second.child.take().unwrap().wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("uid 65534 has 1 leases, its cap is 1"));

    // allowed_uids: only root may use this broker.
    let b = BrokerProc::start(&config_text(
        1.0,
        30.0,
        "[socket]\nmode = \"0666\"\nallowed_uids = [0]\n",
    ));
    open_dir(&b);
    let (mut refused, line) = hold_as_nobody(&b, 1);
    assert!(line.is_empty());
    let out = refused.child.take().unwrap().wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("uid 65534 may not use this broker"));
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    // Signals arrive asynchronously: wait until the stop took effect.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sig == "STOP" && !proc_state_is(pid, 'T') {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn proc_state_is(pid: u32, want: char) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    rest.split_ascii_whitespace().next() == Some(&want.to_string())
}

#[test]
fn a_stalled_broker_is_a_lost_connection_and_the_lease_comes_back() {
    let b = BrokerProc::start(&config_text(30.0, 30.0, ""));
    let options = ClientOptions {
        reconnect_for: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let mut a = BrokerSource::connect_with(&b.socket, &layout(), options).unwrap();
    let first = a.alloc().unwrap();
    signal(b.proc.pid(), "STOP");
    // No answer within the timeout, nor to the reclaims: the call gives up.
    assert_eq!(a.alloc(), Err(SourceError::Disconnected));
    signal(b.proc.pid(), "CONT");
    // The next call reclaims; the grant whose answer was lost went to quarantine.
    let second = a.alloc().unwrap();
    assert_eq!(a.held().collect::<Vec<_>>(), [first, second]);
    let s = b.status();
    let l = s.leases.iter().find(|l| l.lease == a.lease()).unwrap();
    assert_eq!((l.state.as_str(), l.held), ("connected", 2));
    assert!(s.quarantined <= 1);
}
