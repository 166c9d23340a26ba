//! A consistent copy of a SQLite store, made while its server runs. `VACUUM INTO` reads the
//! database in one read transaction (in WAL mode the server's writes go on beside it) and writes
//! a compact copy of what was committed when it began; the copy is synced, checked and only then
//! given its name, so a file at that name is always a whole backup.
//!
//! Connector results journaled in the `DB-calls-N` files but not yet committed are not in the
//! copy: a service started on it re-runs those runs, calling again with the same idempotency
//! keys, as after a power cut. A PostgreSQL store is backed up with `pg_dump`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The copy's size in bytes.
    pub bytes: u64,
    /// Tasks in the copy.
    pub tasks: u64,
    /// Step versions in the copy.
    pub step_versions: u64,
}

/// Why a backup was not made; no file is left at the target.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The source is a PostgreSQL URL.
    #[error("{0} is a PostgreSQL database: back it up with pg_dump")]
    Postgres(String),
    /// There is no database file at the source.
    #[error("there is no database at {0}")]
    NoDatabase(PathBuf),
    /// The target exists: a backup never overwrites a file.
    #[error("{0} exists: a backup never overwrites a file")]
    Exists(PathBuf),
    /// The target's folder does not exist (a backup makes no folders).
    #[error("{0} is not a folder: the copy cannot be made in it")]
    NoFolder(PathBuf),
    /// SQLite could not read the source or write the copy.
    #[error("cannot back up {db}: {message}")]
    Sqlite {
        /// The source.
        db: PathBuf,
        /// What failed.
        message: String,
    },
    /// The copy does not check out (or the source is not a whenever store).
    #[error("the copy of {db} does not check out: {message}")]
    Check {
        /// The source.
        db: PathBuf,
        /// What the check found.
        message: String,
    },
}

/// Copies the store at `db` to a new file `to`; safe while a server writes to `db`.
pub fn backup(db: &Path, to: &Path) -> Result<Backup, BackupError> {
    let source = db.to_string_lossy();
    if super::postgres::is_postgres_url(&source) {
        return Err(BackupError::Postgres(source.into_owned()));
    }
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    if to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let folder = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Err(BackupError::NoFolder(folder.to_path_buf()));
    }
    let partial = partial_name(to);
    let _ = std::fs::remove_file(&partial);
    let made = copy(db, &partial).and_then(|()| check(db, &partial));
    let backup = match made {
        Ok(backup) => backup,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // `hard_link` fails if `to` appeared meanwhile, where a rename would replace it.
    std::fs::hard_link(&partial, to)
        .and_then(|()| std::fs::remove_file(&partial))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            match e.kind() {
                std::io::ErrorKind::AlreadyExists => BackupError::Exists(to.to_path_buf()),
                _ => sqlite_error(db, format!("cannot name the copy {}: {e}", to.display())),
            }
        })?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The new name is durable too.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(backup)
}

/// Where the copy is written before it is whole: beside the target, hidden.
fn partial_name(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    to.with_file_name(format!(".{name}.partial"))
}

fn sqlite_error(db: &Path, message: String) -> BackupError {
    BackupError::Sqlite {
        db: db.to_path_buf(),
        message,
    }
}

/// Writes the snapshot of `db` into `partial` and syncs it.
fn copy(db: &Path, partial: &Path) -> Result<(), BackupError> {
    // Never creates a database where there was none.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db, flags).map_err(|e| sqlite_error(db, e.to_string()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| sqlite_error(db, e.to_string()))?;
    conn.execute("VACUUM INTO ?1", [partial.to_string_lossy()])
        .map_err(|e| sqlite_error(db, e.to_string()))?;
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| sqlite_error(db, format!("cannot sync {}: {e}", partial.display())))
}

/// Checks the copy page by page and counts what it holds.
fn check(db: &Path, partial: &Path) -> Result<Backup, BackupError> {
    let failed = |message: String| BackupError::Check {
        db: db.to_path_buf(),
        message,
    };
    let conn =
        Connection::open_with_flags(partial, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| failed(e.to_string()))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| failed(e.to_string()))?;
    if verdict != "ok" {
        return Err(failed(verdict));
    }
    let count = |table: &str| -> Result<u64, BackupError> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or_default())
            .map_err(|e| failed(format!("not a whenever store ({e})")))
    };
    let bytes = std::fs::metadata(partial).map(|m| m.len()).unwrap_or_default();
    Ok(Backup {
        bytes,
        tasks: count("tasks")?,
        step_versions: count("step_versions")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_refuses_an_existing_target_a_missing_source_or_folder_and_postgres() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("w.db");
        let to = dir.path().join("copy.db");
        assert!(matches!(backup(&db, &to), Err(BackupError::NoDatabase(_))));
        assert!(!db.exists(), "no database is made where there was none");
        std::fs::write(&to, b"keep me").expect("write");
        std::fs::write(&db, b"").expect("write");
        assert!(matches!(backup(&db, &to), Err(BackupError::Exists(_))));
        assert_eq!(std::fs::read(&to).expect("read"), b"keep me");
        let url = Path::new("postgres://postgres@127.0.0.1/test");
        let refused = backup(url, &dir.path().join("pg.db")).expect_err("refused");
        assert!(refused.to_string().contains("pg_dump"), "{refused}");
        let nowhere = dir.path().join("no-such-folder");
        let refused = backup(&db, &nowhere.join("copy.db")).expect_err("refused");
        assert!(
            matches!(&refused, BackupError::NoFolder(f) if *f == nowhere),
            "{refused}"
        );
        assert!(!nowhere.exists(), "no folder is made");
    }

    #[test]
    fn a_database_that_is_not_a_store_leaves_no_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("other.db");
        Connection::open(&db)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);"))
            .expect("made");
        let to = dir.path().join("copy.db");
        let refused = backup(&db, &to).expect_err("refused");
        assert!(refused.to_string().contains("not a whenever store"), "{refused}");
        assert!(!to.exists() && !partial_name(&to).exists());
    }
}
