//! The `whenever` binary: a thin shell over `whenever::cli`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the host allocates many small JSON values per run; glibc's malloc spent ~15% of the
/// service's CPU in the profile, mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    whenever::allocator::configure();
    whenever::cli::main(whenever::cli::Cli::parse()).await
}
