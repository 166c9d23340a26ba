//! `whenever backup --db FILE TO`.

use std::path::Path;
use std::time::Instant;

use super::{EXIT_BAD_INPUT, EXIT_COMPLETED, EXIT_INTERNAL};
use crate::store::backup::{BackupError, backup};

/// Copies the store and says what the copy holds; exit 2 for a source or target that cannot
/// be used, 1 when the copy itself failed.
pub(crate) async fn run(db: &Path, to: &Path) -> u8 {
    let started = Instant::now();
    let (from, into) = (db.to_path_buf(), to.to_path_buf());
    let made = tokio::task::spawn_blocking(move || backup(&from, &into)).await;
    match made {
        Ok(Ok(copy)) => {
            println!(
                "backed up {} to {}: {} tasks, {} step versions, {:.1} MB, in {:.1} s",
                db.display(),
                to.display(),
                copy.tasks,
                copy.step_versions,
                copy.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            EXIT_COMPLETED
        }
        Ok(Err(e)) => {
            eprintln!("whenever backup: {e}");
            match e {
                BackupError::Postgres(_)
                | BackupError::NoDatabase(_)
                | BackupError::Exists(_)
                | BackupError::NoFolder(_) => EXIT_BAD_INPUT,
                BackupError::Sqlite { .. } | BackupError::Check { .. } => EXIT_INTERNAL,
            }
        }
        Err(e) => {
            eprintln!("whenever backup: {e}");
            EXIT_INTERNAL
        }
    }
}
