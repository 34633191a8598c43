//! `kassa-tools`: `kassactl`, the operator CLI. It talks to nodes only through the wire client
//! (`kassa_wire::client::BlockingClient`), never through `kassa-node`.
//!
//! `cli` parses the command line, `json` holds the HTTP API's JSON shapes (re-implemented),
//! `commands` plans a command (reading batch files before any connection) and executes the plan
//! against a [`commands::Ledger`], `table` formats the default output. [`main`] joins them for
//! the binary.

pub mod cli;
pub mod commands;
pub mod json;
pub mod table;

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use kassa_wire::client::{BlockingClient, ClientConfig};

use crate::cli::Cli;
use crate::commands::{execute, exit_code, plan, CliError};

/// Runs the parsed command line; returns the process exit code. Errors go to stderr.
pub fn main(cli: &Cli) -> u8 {
    let outcome = run(cli);
    match outcome {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "kassactl: error: {error}");
            exit_code(&error)
        }
    }
}

fn run(cli: &Cli) -> Result<u8, CliError> {
    let plan = plan(&cli.command, &mut std::io::stdin().lock())?;
    let mut config = ClientConfig::new(addresses(&cli.address)?, cli.cluster);
    config.deadline = Duration::from_millis(cli.deadline_ms);
    let mut client = BlockingClient::connect(config)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let code = execute(&plan, &mut client, cli.json, &mut out, &mut stderr.lock())?;
    out.flush()?;
    Ok(code)
}

/// `host:port[,host:port…]`, each resolved to one address (IPv4 preferred).
pub fn addresses(text: &str) -> Result<Vec<SocketAddr>, CliError> {
    text.split(',')
        .map(|part| {
            let resolved: Vec<SocketAddr> = part
                .trim()
                .to_socket_addrs()
                .map_err(|error| CliError::Input(format!("bad address `{part}`: {error}")))?
                .collect();
            resolved
                .iter()
                .find(|address| address.is_ipv4())
                .or(resolved.first())
                .copied()
                .ok_or_else(|| CliError::Input(format!("address `{part}` resolves to nothing")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_resolved_in_order() {
        let parsed = addresses("127.0.0.1:3000,127.0.0.2:3001").unwrap();
        assert_eq!(parsed[0].to_string(), "127.0.0.1:3000");
        assert_eq!(parsed[1].port(), 3001);
        let error = addresses("127.0.0.1").unwrap_err();
        assert_eq!(exit_code(&error), 2);
        assert!(error.to_string().starts_with("bad address `127.0.0.1`"));
    }
}
