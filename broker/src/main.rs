//! `pasid-broker`: the daemon, and `pasid-broker status`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pasid_broker::{status, Broker, BrokerOptions, Config};

/// Where the socket is when no path is given (the systemd unit's path).
const DEFAULT_SOCKET: &str = "/run/pasid-broker.sock";

/// One owner per machine for host-global PASIDs: leases them to VMM processes over a
/// Unix socket.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The Unix socket to listen on (not needed under systemd socket activation).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The state store (SQLite file, made if missing).
    #[arg(long)]
    state: Option<PathBuf>,
    /// A TOML configuration file (layout, reserved PASIDs, timers, socket, caps).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Shows the layout, the leases and the counts of free, held and quarantined PASIDs.
    Status {
        /// The broker's socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    let config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let state = cli.state.ok_or("--state PATH is required")?;
    let broker = Broker::bind(BrokerOptions {
        socket: cli.socket,
        state,
        config,
        metrics: cli.metrics,
    })
    .map_err(|e| e.to_string())?;
    if let Some(addr) = broker.metrics_addr() {
        eprintln!("pasid-broker: metrics on http://{addr}/metrics");
    }
    broker.serve().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Status { socket, json }) => {
            pasid_broker_client::query_status(socket)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let text = if *json {
                        status::to_json(&r) + "\n"
                    } else {
                        status::to_table(&r)
                    };
                    // A closed pipe (`| head`) is not worth a panic.
                    std::io::stdout()
                        .write_all(text.as_bytes())
                        .map_err(|e| e.to_string())
                })
        }
        None => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pasid-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
