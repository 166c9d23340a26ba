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
/// ends there by SIGPIPE, as Unix tools do, instead of panicking in `println!` at the closed
/// pipe. SIGPIPE itself stays ignored (Rust's default) while the command runs: its sockets (a
/// request to the server, a connector's call) meet a peer that closed as an error to report —
/// a server that answered 413 and closed while the body was still being sent — where the signal
/// killed the command without a word. Only a write to the closed stdout or stderr raises it.
fn end_quietly_when_the_reader_leaves() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if wrote_into_a_closed_pipe(info) {
            die_of_sigpipe();
        }
        report(info);
    }));
}

/// Whether the panic is `print!`'s at a standard stream whose reader has gone (EPIPE).
fn wrote_into_a_closed_pipe(info: &std::panic::PanicHookInfo<'_>) -> bool {
    #[cfg(unix)]
    {
        let message = info.payload_as_str().unwrap_or("");
        message.starts_with("failed printing to std") && message.ends_with(&format!("(os error {})", libc::EPIPE))
    }
    #[cfg(not(unix))]
    {
        let _ = info;
        false
    }
}

/// Ends the process as SIGPIPE's default does.
fn die_of_sigpipe() {
    #[cfg(unix)]
    // SAFETY: `SIG_DFL` installs no handler of ours, so no code of ours runs in a signal's
    // context; `raise` then ends the process as an unignored SIGPIPE does.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141);
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
