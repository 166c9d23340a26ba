//! The `whenever` command line: `run`, `match`, `demo`, `serve`, the client commands that talk to a
//! running server, and `backup`. Output is for people on stderr and for
//! machines on stdout; exit codes mean something (0 completed, 3 waiting, 4 failed, 2 bad input,
//! 1 internal error).

mod backup;
mod client;
mod input;
mod matching;
mod new_step;
mod printable;
mod run;
mod serve;
pub mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the task completed.
pub const EXIT_COMPLETED: u8 = 0;
/// Exit code: an internal error.
pub const EXIT_INTERNAL: u8 = 1;
/// Exit code: bad input (a file, JSON, a pattern, a step).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the task is waiting.
pub const EXIT_WAITING: u8 = 3;
/// Exit code: the task failed.
pub const EXIT_FAILED: u8 = 4;

/// The exit code that says how a task stands: 0 completed, 3 waiting (or still running), 4
/// failed (`whenever run`, and the client commands that wait for a task).
fn exit_for(status: crate::task::TaskStatus) -> u8 {
    use crate::task::TaskStatus;
    match status {
        TaskStatus::Completed => EXIT_COMPLETED,
        TaskStatus::Waiting | TaskStatus::Running => EXIT_WAITING,
        TaskStatus::Failed => EXIT_FAILED,
    }
}

/// Whenever: data-triggered automation with sandboxed WebAssembly steps.
#[derive(Debug, Parser)]
#[command(name = "whenever", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one task locally until it is completed, waiting or failed.
    Run {
        /// The task data (a JSON object): a file, or `-` (or no file, from a pipe) for stdin.
        task: Option<PathBuf>,
        /// A folder of steps (`NAME.wasm` with `NAME.toml`), or one `NAME.wasm`; repeatable.
        /// Default: the bundled RetailMax steps.
        #[arg(long = "steps")]
        steps: Vec<PathBuf>,
        /// The bundled RetailMax steps too, with `--steps` (a step there of the same name
        /// replaces the bundled one): your step tried beside the flow it joins.
        #[arg(long)]
        retailmax: bool,
        /// The config file (connectors, scheduler, runtime).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print no timeline on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run the RetailMax demo: every scenario on the bundled steps and simulators.
    Demo,
    /// Check a condition against data: prints `true` (exit 0), or `false` and the first failing
    /// path (exit 1).
    Match {
        /// The condition (a JSON pattern).
        #[arg(long)]
        condition: PathBuf,
        /// The data (JSON).
        #[arg(long)]
        data: PathBuf,
    },
    /// Create a step crate of your own: its source, manifest and a task to run it on.
    New(new_step::NewArgs),
    /// Run the service: durable tasks on SQLite, the HTTP API, webhooks, live deploys.
    Serve(serve::ServeArgs),
    /// Create a task on a running server (with `--key`, at most once however often it is run).
    Create(client::CreateArgs),
    /// Deploy a step (a component and its manifest) to a running server.
    Deploy(client::DeployArgs),
    /// List the steps a server serves (with a NAME: that step, its versions and who changed it when).
    Steps(client::StepsArgs),
    /// List a server's tasks (filters and paging).
    Tasks(client::TasksArgs),
    /// Show one task with its history (`--follow`: again at each change, until it ends).
    Task(client::TaskArgs),
    /// Apply a JSON merge patch to a task's data; the task resumes.
    Patch(client::PatchArgs),
    /// Run a failed step of a task again.
    Retry(client::RetryArgs),
    /// Delete a settled task with its history (a running one is refused).
    Delete(client::DeleteArgs),
    /// Make an earlier version of a step serve again.
    Rollback(client::RollbackArgs),
    /// Stop serving a step (its versions are kept, for a rollback).
    Remove(client::RemoveArgs),
    /// List the hosts sharing a server's store: live or gone, the format each writes, the tasks
    /// each holds (an upgrade one host at a time, watched).
    Hosts(client::HostsArgs),
    /// Copy a SQLite store to a new file, consistently, while its server runs.
    Backup {
        /// The store (`whenever serve --db`).
        #[arg(long)]
        db: PathBuf,
        /// The new file (never overwritten).
        to: PathBuf,
    },
}

/// Runs the command line and returns the process exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Run {
            task,
            steps,
            retailmax,
            config,
            quiet,
        } => run::run(task.as_deref(), &steps, retailmax, config.as_deref(), quiet).await,
        Command::Match { condition, data } => matching::run(&condition, &data),
        Command::Demo => crate::demo::main().await,
        Command::New(args) => new_step::run(&args),
        Command::Serve(args) => serve::run(args).await,
        Command::Create(args) => client::create(args).await,
        Command::Deploy(args) => client::deploy(args).await,
        Command::Steps(args) => client::steps(args).await,
        Command::Tasks(args) => client::tasks(args).await,
        Command::Task(args) => client::task(args).await,
        Command::Patch(args) => client::patch(args).await,
        Command::Retry(args) => client::retry(args).await,
        Command::Delete(args) => client::delete(args).await,
        Command::Rollback(args) => client::rollback(args).await,
        Command::Remove(args) => client::remove(args).await,
        Command::Hosts(args) => client::hosts(args).await,
        Command::Backup { db, to } => backup::run(&db, &to).await,
    };
    ExitCode::from(code)
}
