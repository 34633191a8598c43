//! `kassactl`: see `kassactl --help` and the `kassa_tools` crate.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kassa_tools::cli::Cli::parse();
    ExitCode::from(kassa_tools::main(&cli))
}
