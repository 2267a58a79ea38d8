//! Whether a lease's process still runs, from `/proc/PID/stat`.
//!
//! The broker keeps a lease's PASIDs while the process that made it runs, even past
//! its grace period or quarantine: a VMM that lost its connection and has not called
//! since may still have them programmed in hardware. The start time tells a reused pid
//! apart. Where `/proc` shows nothing (another pid namespace) the timers alone decide.

use crate::registry::Peer;

/// The start time (clock ticks after boot) and state letter of `pid`, if visible.
fn stat(pid: u32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it
    // start after its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 3.. are here; starttime is field 22, the 20th after the name.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// The start time of `pid` (0 if unknown), to store with its lease.
pub fn start_time(pid: u32) -> u64 {
    if pid == 0 {
        return 0;
    }
    stat(pid).map_or(0, |(start, _)| start)
}

/// Whether the process of `peer` still runs (a zombie does not).
pub fn alive(peer: &Peer) -> bool {
    if peer.pid == 0 || peer.start == 0 {
        return false;
    }
    matches!(stat(peer.pid), Some((start, state)) if start == peer.start && state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let start = start_time(pid);
        assert_ne!(start, 0);
        let me = Peer {
            uid: 0,
            gid: 0,
            pid,
            start,
        };
        assert!(alive(&me));
        assert!(!alive(&Peer {
            start: start + 1,
            ..me
        }));
        assert!(!alive(&Peer { pid: 0, ..me }));
    }
}
