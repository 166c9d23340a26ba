//! Connector results on their way into the SQLite store's `call_journal`.
//!
//! A connector result is journaled before the step sees it, so that a run interrupted by a crash
//! is re-run with its results replayed and no side effect happens twice. Waiting for a group
//! commit at every call suspended the run, holding its instance, for a commit cycle: the service
//! bench measured that at about 40% of a durable order's CPU. Instead the result is appended to a
//! file beside the database (one `write`, which outlives the process being killed) and queued; the
//! writer thread moves the queued results into `call_journal` in its next transaction, which is
//! never later than the one committing the run's outcome (the run's save is sent after its
//! calls were queued), and then empties the file. Opening the store first moves whatever a crash
//! left in the files into the table.
//!
//! Two files take turns: results are appended to the current one while the writer's transaction
//! holds the other one's, which the writer empties once that transaction has committed.
//!
//! The files are not synced to disk: a power cut, unlike a crash of the process, can lose results
//! appended since the last commit. Their run's outcome was not committed either, so the run is
//! re-run and calls again with the same idempotency keys, which a provider honouring them (as
//! Stripe does) answers without acting twice.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::StoreError;
use super::rows::to_json;

/// One journaled connector result, as it goes into `call_journal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingCall {
    /// The task's id.
    pub task: String,
    /// The run's id in the task.
    pub run: i64,
    /// The call's index in the run.
    pub call: i64,
    /// The call record as JSON text.
    pub record: String,
}

impl PendingCall {
    /// The call as one line of a file: a JSON object whose `record` is the record itself, not
    /// the record's text as a string (escaping it cost 0.7% of a durable order's CPU).
    fn line(&self) -> Result<String, StoreError> {
        let task = to_json(&self.task)?;
        let mut line = String::with_capacity(self.record.len() + task.len() + 64);
        line.push_str("{\"task\":");
        line.push_str(&task);
        line.push_str(&format!(",\"run\":{},\"call\":{},\"record\":", self.run, self.call));
        line.push_str(&self.record);
        line.push_str("}\n");
        Ok(line)
    }

    /// A line [`PendingCall::line`] wrote (or an earlier version, which wrote the record as a
    /// string); `None` for anything else, such as a line cut short.
    fn read(line: &str) -> Option<PendingCall> {
        #[derive(Deserialize)]
        struct Line<'a> {
            task: String,
            run: i64,
            call: i64,
            #[serde(borrow)]
            record: &'a RawValue,
        }
        let read: Line<'_> = serde_json::from_str(line).ok()?;
        let raw = read.record.get();
        let record = if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).ok()?
        } else {
            raw.to_owned()
        };
        Some(PendingCall {
            task: read.task,
            run: read.run,
            call: read.call,
            record,
        })
    }
}

/// The two files and the results appended since the writer last took them.
#[derive(Debug)]
pub(crate) struct CallLog {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    files: [File; 2],
    paths: [PathBuf; 2],
    current: usize,
    queue: Vec<PendingCall>,
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("connector journal file {}: {e}", path.display()))
}

impl CallLog {
    /// Opens (creating) the files beside the database `db`; returns the log and what a crash
    /// left in the files (a line cut short by a power loss is left out).
    pub fn open(db: &Path) -> Result<(CallLog, Vec<PendingCall>), StoreError> {
        let paths = [0, 1].map(|n| {
            let mut name = db.as_os_str().to_owned();
            name.push(format!("-calls-{n}"));
            PathBuf::from(name)
        });
        let mut left = Vec::new();
        for path in &paths {
            if let Ok(file) = File::open(path) {
                for line in BufReader::new(file).lines() {
                    let Ok(line) = line else { break };
                    match PendingCall::read(&line) {
                        Some(call) => left.push(call),
                        None => break,
                    }
                }
            }
        }
        let open = |path: &PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io_error(path, e))
        };
        let files = [open(&paths[0])?, open(&paths[1])?];
        let state = State {
            files,
            paths,
            current: 0,
            queue: Vec::new(),
        };
        Ok((
            CallLog {
                state: Mutex::new(state),
            },
            left,
        ))
    }

    /// Appends one result; once this returns it survives a crash of this process.
    pub fn append(&self, call: PendingCall) -> Result<(), StoreError> {
        let line = call.line()?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let current = state.current;
        state.files[current]
            .write_all(line.as_bytes())
            .map_err(|e| io_error(&state.paths[current], e))?;
        state.queue.push(call);
        Ok(())
    }

    /// Takes the queued results for the writer's transaction, and which file holds them (`None`
    /// when there are none); later results go to the other file.
    pub fn take(&self) -> (Vec<PendingCall>, Option<usize>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.queue.is_empty() {
            return (Vec::new(), None);
        }
        let taken = state.current;
        state.current = 1 - taken;
        (std::mem::take(&mut state.queue), Some(taken))
    }

    /// The transaction holding the results of file `file` committed: empties that file.
    pub fn committed(&self, file: usize) -> Result<(), StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.files[file]
            .set_len(0)
            .map_err(|e| io_error(&state.paths[file], e))
    }

    /// The transaction failed: its results go back to the queue (their file still holds them).
    pub fn restore(&self, mut calls: Vec<PendingCall>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        calls.append(&mut state.queue);
        state.queue = calls;
    }

    /// What a crash left is in the table now: empties both files.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.committed(0)?;
        self.committed(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: i64) -> PendingCall {
        PendingCall {
            task: "t".into(),
            run: 0,
            call: n,
            record: format!("{{\"n\":{n}}}"),
        }
    }

    #[test]
    fn a_line_holds_the_record_itself_and_lines_of_the_earlier_format_still_read() {
        let line = call(3).line().expect("encoded");
        assert_eq!(line, "{\"task\":\"t\",\"run\":0,\"call\":3,\"record\":{\"n\":3}}\n");
        assert_eq!(PendingCall::read(line.trim_end()), Some(call(3)));
        let earlier = r#"{"task":"t","run":0,"call":3,"record":"{\"n\":3}"}"#;
        assert_eq!(PendingCall::read(earlier), Some(call(3)));
        assert_eq!(PendingCall::read(&line[..line.len() - 3]), None);
    }

    fn bytes(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn appended_results_are_taken_in_turns_and_a_file_is_emptied_once_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("w.db");
        let (log, left) = CallLog::open(&db).expect("opens");
        assert!(left.is_empty());
        log.append(call(0)).expect("appended");
        log.append(call(1)).expect("appended");
        let (taken, file) = log.take();
        assert_eq!(taken, vec![call(0), call(1)]);
        assert_eq!(file, Some(0));
        // Appended while the writer holds file 0: they go to file 1.
        log.append(call(2)).expect("appended");
        let files = [0, 1].map(|n| dir.path().join(format!("w.db-calls-{n}")));
        assert!(bytes(&files[0]) > 0 && bytes(&files[1]) > 0);
        log.committed(0).expect("emptied");
        assert_eq!(bytes(&files[0]), 0);
        assert_eq!(log.take(), (vec![call(2)], Some(1)));
        assert_eq!(log.take(), (Vec::new(), None));
    }

    #[test]
    fn a_failed_transaction_puts_its_results_back_in_front() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = CallLog::open(&dir.path().join("w.db")).expect("opens");
        log.append(call(0)).expect("appended");
        let (taken, _) = log.take();
        log.append(call(1)).expect("appended");
        log.restore(taken);
        assert_eq!(log.take().0, vec![call(0), call(1)]);
    }

    #[test]
    fn what_a_crash_left_is_read_back_and_a_cut_line_is_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("w.db");
        {
            let (log, _) = CallLog::open(&db).expect("opens");
            log.append(call(0)).expect("appended");
            let _ = log.take();
            log.append(call(1)).expect("appended");
            // The process dies here: nothing was committed or emptied.
        }
        let mut cut = OpenOptions::new()
            .append(true)
            .open(dir.path().join("w.db-calls-1"))
            .expect("file");
        cut.write_all(b"{\"task\":\"t\",\"ru").expect("written");
        let (log, left) = CallLog::open(&db).expect("reopens");
        assert_eq!(left, vec![call(0), call(1)]);
        log.clear().expect("emptied");
        let (_, left) = CallLog::open(&db).expect("reopens");
        assert!(left.is_empty());
    }
}
