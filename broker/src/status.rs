//! `pasid-broker status`: the report as a table for people or JSON for programs.

use pasid_broker_client::protocol::StatusReport;

/// The report as JSON (one object: layout, totals, leases).
pub fn to_json(r: &StatusReport) -> String {
    let leases: Vec<serde_json::Value> = r
        .leases
        .iter()
        .map(|l| {
            serde_json::json!({
                "lease": l.lease, "uid": l.uid, "pid": l.pid, "state": l.state,
                "held": l.held, "spare": l.spare, "quarantined": l.quarantined,
            })
        })
        .collect();
    let v = serde_json::json!({
        "layout": {
            "width": r.layout.width,
            "local": [r.layout.local_start, r.layout.local_end],
            "shared": [r.layout.shared_start, r.layout.shared_end],
        },
        "reserved": r.reserved,
        "free": r.free,
        "held": r.held,
        "spare": r.spare,
        "quarantined": r.quarantined,
        "all_leases": r.all_leases,
        "leases": leases,
    });
    serde_json::to_string_pretty(&v).expect("a JSON value always prints")
}

/// The report as a table.
pub fn to_table(r: &StatusReport) -> String {
    let mut out = format!(
        "layout: {}\nhost PASIDs: {} free, {} held, {} spare, {} quarantined, {} reserved\n",
        r.layout, r.free, r.held, r.spare, r.quarantined, r.reserved
    );
    if !r.all_leases {
        out.push_str(
            "(only your own lease is shown: run as root or as the broker's user for all)\n",
        );
    }
    out.push_str(&format!(
        "{:>8} {:>8} {:>8} {:<12} {:>8} {:>8} {:>12}\n",
        "LEASE", "UID", "PID", "STATE", "HELD", "SPARE", "QUARANTINED"
    ));
    for l in &r.leases {
        out.push_str(&format!(
            "{:>8} {:>8} {:>8} {:<12} {:>8} {:>8} {:>12}\n",
            l.lease, l.uid, l.pid, l.state, l.held, l.spare, l.quarantined
        ));
    }
    out
}
