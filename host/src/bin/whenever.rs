//! The `whenever` binary: a thin shell over `whenever::cli`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    whenever::cli::main(whenever::cli::Cli::parse()).await
}
