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
    let cli = whenever::cli::Cli::parse();
    if matches!(cli.command, whenever::cli::Command::Serve(_)) {
        file_size_limit_is_an_error();
        whenever::api::connections::raise_open_files_limit();
    } else {
        end_quietly_when_the_reader_leaves();
    }
    whenever::cli::main(cli).await
}

/// A command whose output is piped into a reader that stops early (`whenever tasks | head`)
/// ends there, as Unix tools do, instead of panicking in `println!` at the closed pipe: Rust
/// ignores SIGPIPE, and this restores its default. Not for `serve`, which writes to nothing a
/// reader of its output could close, and whose sockets must never stop the process.
fn end_quietly_when_the_reader_leaves() {
    #[cfg(unix)]
    // SAFETY: `SIG_DFL` installs no handler of ours, so no code of ours can run in a signal's
    // context; the call only changes what the process does on SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A write beyond the file size limit (`ulimit -f`, systemd's `LimitFSIZE=`) fails with an error
/// the store reports, its task driven again once there is room, instead of SIGXFSZ killing the
/// service in the middle of a commit.
fn file_size_limit_is_an_error() {
    #[cfg(unix)]
    // SAFETY: `SIG_IGN` installs no handler of ours; the call only changes what the process does
    // on SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
