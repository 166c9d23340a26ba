//! Connector results on their way into the SQLite store's `call_journal`.
//!
//! A connector result is journaled before the step sees it, so that a run interrupted by a crash
//! is re-run with its results replayed and no side effect happens twice. Waiting for a group
//! commit at every call suspended the run, holding its instance, for a commit cycle: the service
//! bench measured that at about 40% of a durable order's CPU. Instead the result is appended to a
//! file beside the database, through a shared mapping of the file (a copy into the page cache,
//! which outlives the process being killed, without a system call; a `write` per result cost
//! about 2% of a durable order's CPU) and queued; the
//! writer thread moves the queued results into `call_journal` in its next transaction, which is
//! never later than the one committing the run's outcome (the run's save is sent after its
//! calls were queued), and then empties the file. Opening the store first moves whatever a crash
//! left in the files into the table.
//!
//! Two files take turns: results are appended to the current one while the writer's transaction
//! holds the other one's, which the writer empties once that transaction has committed. A file is
//! mapped whole and keeps its size (it grows when a turn's results do not fit); emptying it zeroes
//! the part written, and reading it back stops at the first line that is not a result (zeros,
//! or a line cut short).
//!
//! The files are not synced to disk: a power cut, unlike a crash of the process, can lose results
//! appended since the last commit. Their run's outcome was not committed either, so the run is
//! re-run and calls again with the same idempotency keys, which a provider honouring them (as
//! Stripe does) answers without acting twice.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use memmap2::MmapMut;
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
        let mut digits = itoa::Buffer::new();
        let mut line = String::with_capacity(self.record.len() + task.len() + 64);
        line.push_str("{\"task\":");
        line.push_str(&task);
        // Numbers through `itoa` rather than `format!`, whose machinery was 0.4% of the CPU of
        // the HTTP bench row (perf) for this one line.
        line.push_str(",\"run\":");
        line.push_str(digits.format(self.run));
        line.push_str(",\"call\":");
        line.push_str(digits.format(self.call));
        line.push_str(",\"record\":");
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

/// The size a call log file is given (and mapped at) when it is opened: room for a turn's results
/// at about 8,000 connector calls a second.
const INITIAL_SIZE: u64 = 1 << 20;

/// The two files and the results appended since the writer last took them.
#[derive(Debug)]
pub(crate) struct CallLog {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    files: [MappedFile; 2],
    current: usize,
    queue: Vec<PendingCall>,
}

/// One of the two files, mapped whole.
#[derive(Debug)]
struct MappedFile {
    file: File,
    path: PathBuf,
    map: MmapMut,
    /// Bytes written since the file was last emptied: where the next line goes.
    used: usize,
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("connector journal file {}: {e}", path.display()))
}

impl MappedFile {
    /// Opens (creating) `path` and maps it, at least [`INITIAL_SIZE`] long; lines go after the
    /// first `used` bytes.
    fn open(path: &Path, used: usize) -> Result<MappedFile, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let len = file.metadata().map_err(|e| io_error(path, e))?.len();
        if len < INITIAL_SIZE {
            allocate(&file, INITIAL_SIZE).map_err(|e| io_error(path, e))?;
        }
        let map = map(&file, path)?;
        Ok(MappedFile {
            file,
            path: path.to_path_buf(),
            map,
            used,
        })
    }

    /// Copies `line` after the lines written so far, growing the file when it does not fit.
    fn append(&mut self, line: &[u8]) -> Result<(), StoreError> {
        let end = self.used + line.len();
        if end > self.map.len() {
            let size = (end as u64).max(self.map.len() as u64 * 2);
            allocate(&self.file, size).map_err(|e| io_error(&self.path, e))?;
            self.map = map(&self.file, &self.path)?;
        }
        self.map[self.used..end].copy_from_slice(line);
        self.used = end;
        Ok(())
    }

    /// Zeroes what was written (front first: a crash midway leaves a file that reads as empty).
    fn empty(&mut self) {
        self.map[..self.used].fill(0);
        self.used = 0;
    }
}

/// The results in the file at `path` (none if there is no file), up to the first line that is not
/// one, and the bytes they take.
pub(crate) fn read_back(path: &Path) -> (Vec<PendingCall>, usize) {
    let mut calls = Vec::new();
    let mut used = 0;
    if let Ok(file) = File::open(path) {
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            match PendingCall::read(&line) {
                Some(call) => {
                    used += line.len() + 1;
                    calls.push(call);
                }
                None => break,
            }
        }
    }
    (calls, used)
}

/// Maps `file` whole, shared: what is copied into the mapping is in the file.
/// Makes `file` `size` bytes long with its blocks allocated on disk, not a sparse file: a write
/// through the map into a hole the full disk cannot fill would be a SIGBUS that kills the host,
/// where allocating up front is an error the store reports ("No space left on device").
fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let len = libc::off_t::try_from(size).map_err(std::io::Error::other)?;
        // SAFETY: the descriptor is `file`'s own, open for writing, for the whole call.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => return Ok(()),
            // A file system that cannot allocate ahead: a plain length, as elsewhere.
            libc::EOPNOTSUPP | libc::EINVAL => {}
            errno => return Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
    file.set_len(size)
}

fn map(file: &File, path: &Path) -> Result<MmapMut, StoreError> {
    // SAFETY: the mapping is this store's own view of its own file. Nothing else in this process
    // touches the file, and nothing shrinks it while it is mapped (it only grows, before being
    // mapped again). Another process writing the same database's call log would corrupt the
    // journal with or without a mapping; the store is not meant to be shared between processes.
    unsafe { MmapMut::map_mut(file) }.map_err(|e| io_error(path, e))
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
        let (mut left, used_0) = read_back(&paths[0]);
        let (left_1, used_1) = read_back(&paths[1]);
        left.extend(left_1);
        let used = [used_0, used_1];
        let files = [
            MappedFile::open(&paths[0], used[0])?,
            MappedFile::open(&paths[1], used[1])?,
        ];
        let state = State {
            files,
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
        state.files[current].append(line.as_bytes())?;
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
    pub fn committed(&self, file: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.files[file].empty();
    }

    /// The transaction failed: its results go back to the queue (their file still holds them).
    pub fn restore(&self, mut calls: Vec<PendingCall>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        calls.append(&mut state.queue);
        state.queue = calls;
    }

    /// What a crash left is in the table now: empties both files, whole (a file may hold lines
    /// beyond those read back, if a crash came while it was being emptied).
    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for file in &mut state.files {
            file.map.fill(0);
            file.used = 0;
        }
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

    fn files(dir: &tempfile::TempDir) -> [PathBuf; 2] {
        [0, 1].map(|n| dir.path().join(format!("w.db-calls-{n}")))
    }

    /// Both files' blocks are on disk for their whole length, also after one grew: a full disk
    /// is then an error when a file is made or grown, never a SIGBUS at a write through the map.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_files_are_allocated_whole_not_sparse() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("w.db");
        let (log, _) = CallLog::open(&db).expect("opens");
        let big = PendingCall {
            record: format!("\"{}\"", "x".repeat(600_000)),
            ..call(0)
        };
        log.append(big.clone()).expect("appended");
        log.append(big).expect("appended: the file grows");
        for path in files(&dir) {
            let meta = std::fs::metadata(&path).expect("file");
            assert!(meta.len() >= INITIAL_SIZE, "{}", path.display());
            assert!(
                meta.blocks() * 512 >= meta.len(),
                "{}: {} bytes long, {} allocated",
                path.display(),
                meta.len(),
                meta.blocks() * 512
            );
        }
        let grown = std::fs::metadata(&files(&dir)[0]).expect("file").len();
        assert!(grown > INITIAL_SIZE, "the file grew: {grown}");
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
        let files = files(&dir);
        assert_eq!(read_back(&files[0]).0, vec![call(0), call(1)]);
        assert_eq!(read_back(&files[1]).0, vec![call(2)]);
        log.committed(0);
        assert_eq!(read_back(&files[0]), (Vec::new(), 0));
        assert_eq!(log.take(), (vec![call(2)], Some(1)));
        assert_eq!(log.take(), (Vec::new(), None));
        // Its next turn writes from the start again.
        log.append(call(3)).expect("appended");
        assert_eq!(read_back(&files[0]).0, vec![call(3)]);
    }

    #[test]
    fn a_turn_larger_than_the_file_grows_it_and_every_result_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("w.db");
        let big = |n: i64| PendingCall {
            record: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(1000)),
            ..call(n)
        };
        let count = (INITIAL_SIZE as i64 / 1000) * 3;
        {
            let (log, _) = CallLog::open(&db).expect("opens");
            for n in 0..count {
                log.append(big(n)).expect("appended");
            }
            // The process dies here.
        }
        assert!(std::fs::metadata(&files(&dir)[0]).expect("file").len() > INITIAL_SIZE);
        let (_, left) = CallLog::open(&db).expect("reopens");
        assert_eq!(left, (0..count).map(big).collect::<Vec<_>>());
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
        // A power cut came in the middle of the next line.
        let file = &files(&dir)[1];
        let (_, used) = read_back(file);
        let mut bytes = std::fs::read(file).expect("file");
        let cut = b"{\"task\":\"t\",\"ru";
        bytes[used..used + cut.len()].copy_from_slice(cut);
        std::fs::write(file, &bytes).expect("written");
        {
            let (log, left) = CallLog::open(&db).expect("reopens");
            assert_eq!(left, vec![call(0), call(1)]);
            // Until the store has moved them into its table, later lines go after them.
            log.append(call(2)).expect("appended");
        }
        let (log, left) = CallLog::open(&db).expect("reopens");
        // File 0's lines, then file 1's.
        assert_eq!(left, vec![call(0), call(2), call(1)]);
        log.clear();
        let (_, left) = CallLog::open(&db).expect("reopens");
        assert!(left.is_empty());
    }

    #[test]
    fn a_crash_while_a_file_is_emptied_brings_none_of_its_lines_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("w.db");
        let file = &files(&dir)[0];
        {
            let (log, _) = CallLog::open(&db).expect("opens");
            for n in 0..3 {
                log.append(call(n)).expect("appended");
            }
        }
        // Emptying zeroes from the front; the process died after the first line's bytes.
        let first = call(0).line().expect("encoded").len();
        let mut bytes = std::fs::read(file).expect("file");
        bytes[..first].fill(0);
        std::fs::write(file, &bytes).expect("written");
        let (log, left) = CallLog::open(&db).expect("reopens");
        assert!(left.is_empty());
        // Opening empties the files whole: a new line the length of the zeroed one does not
        // make the old lines after it readable again.
        log.clear();
        log.append(call(7)).expect("appended");
        drop(log);
        let (_, left) = CallLog::open(&db).expect("reopens");
        assert_eq!(left, vec![call(7)]);
    }
}
