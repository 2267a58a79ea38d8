//! What the broker's integration tests share: a broker process and client processes
//! that are killed and waited for when the test ends, pass or fail.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pasid_broker_client::protocol::StatusReport;
use pasid_core::PasidLayout;

/// The layout every test uses: a small shared range, so "all free" is cheap to check.
pub const SHARED_END: u32 = 4096 + 64;

pub fn layout() -> PasidLayout {
    PasidLayout::new(20, 1..4096, 4096..SHARED_END).unwrap()
}

pub fn layout_with_end(end: u32) -> PasidLayout {
    PasidLayout::new(20, 1..4096, 4096..end).unwrap()
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Option<Child>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// kill -9 and wait.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A broker process on a temp dir: its socket, state store and config file.
pub struct BrokerProc {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub proc: Proc,
}

pub fn config_text(quarantine: f64, grace: f64, extra: &str) -> String {
    format!(
        "[layout]\nwidth = 20\nlocal = [1, 4096]\nshared = [4096, {SHARED_END}]\n{extra}\n\
         [timers]\nquarantine_secs = {quarantine}\ngrace_secs = {grace}\n"
    )
}

fn wait_for_socket(socket: &Path, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(socket).is_err() {
        if let Some(status) = proc
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("broker exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "broker did not come up");
        thread::sleep(Duration::from_millis(10));
    }
}

impl BrokerProc {
    /// A broker with `config` (TOML text) in a fresh temp dir.
    pub fn start(config: &str) -> BrokerProc {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("broker.sock");
        let state = dir.path().join("state.db");
        let config_path = dir.path().join("broker.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut b = BrokerProc {
            dir,
            socket,
            state,
            config: config_path,
            proc: Proc { child: None },
        };
        b.restart();
        b
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_pasid-broker"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state")
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn broker")
    }

    /// (Re)starts the broker on the same socket, store and config.
    pub fn restart(&mut self) {
        self.proc.kill9();
        self.proc.child = Some(self.spawn());
        wait_for_socket(&self.socket, &mut self.proc);
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    pub fn status(&self) -> StatusReport {
        pasid_broker_client::query_status(&self.socket).expect("status")
    }

    /// Polls the status until `done` holds (or panics after `secs`).
    pub fn wait_until(&self, secs: u64, what: &str, done: impl Fn(&StatusReport) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status();
            if done(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client process holding `count` host PASIDs; returns it and its PASIDs.
    pub fn holder(&self, count: u32) -> (Proc, Vec<u32>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pasid-broker-soak-client"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--shared-end")
            .arg(SHARED_END.to_string())
            .arg("hold")
            .arg(count.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let out = child.stdout.take().unwrap();
        let proc = Proc { child: Some(child) };
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        let pasids = line
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        (proc, pasids)
    }
}
