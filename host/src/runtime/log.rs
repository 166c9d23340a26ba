//! The run log: lines from the `log` import and the guest's stdout/stderr, capped per run.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Where a log line came from and how important it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Fine detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// `console.log`.
    Info,
    /// Warnings.
    Warn,
    /// `console.error`.
    Error,
    /// Written by the guest to stdout.
    Stdout,
    /// Written by the guest to stderr.
    Stderr,
}

impl LogLevel {
    /// The level as the API writes it (`info`, `stdout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Stdout => "stdout",
            LogLevel::Stderr => "stderr",
        }
    }
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its level or stream.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

#[derive(Debug, Default)]
struct Buffer {
    lines: Vec<LogLine>,
    bytes: usize,
    truncated: bool,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

impl Buffer {
    /// The unterminated text written so far to the stream of `level` (stdout, else stderr).
    fn partial(&mut self, level: LogLevel) -> &mut Vec<u8> {
        match level {
            LogLevel::Stdout => &mut self.partial_stdout,
            _ => &mut self.partial_stderr,
        }
    }
}

/// A run's log, shared by the `log` import and the stdout/stderr streams; at most `cap` bytes are
/// kept, then a marker line says how the rest was cut.
#[derive(Debug, Clone)]
pub struct RunLog {
    cap: usize,
    inner: Arc<Mutex<Buffer>>,
}

/// The marker that replaces what a run logged past its cap.
pub const TRUNCATED_MARKER: &str = "[log truncated: the run logged more than its limit]";

/// The line std's panic hook writes after a panic's message, on how to see a backtrace: no
/// step can set that variable in the sandbox, so the log leaves it out.
const BACKTRACE_NOTE: &str = "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";

impl RunLog {
    /// A log keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        RunLog {
            cap,
            inner: Arc::new(Mutex::new(Buffer::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a line (or cuts it, past the cap).
    pub fn push(&self, level: LogLevel, message: &str) {
        let mut buf = self.lock();
        push_line(&mut buf, self.cap, level, message);
    }

    fn write_stream(&self, level: LogLevel, bytes: &[u8]) {
        let mut buf = self.lock();
        if buf.truncated {
            return;
        }
        let mut partial = std::mem::take(buf.partial(level));
        partial.extend_from_slice(bytes);
        // Each line is read where it stands and the rest moved down once: a write of millions
        // of lines (one host call, which no deadline interrupts) costs its length, and stops
        // once the log is full.
        let mut start = 0;
        while !buf.truncated {
            let Some(end) = partial[start..].iter().position(|b| *b == b'\n') else {
                break;
            };
            let line = String::from_utf8_lossy(&partial[start..start + end]);
            start += end + 1;
            // std's panic hook ends with advice a step's author cannot follow in the sandbox.
            if !(level == LogLevel::Stderr && line == BACKTRACE_NOTE) {
                push_line(&mut buf, self.cap, level, &line);
            }
        }
        if buf.truncated {
            partial.clear();
        } else {
            partial.drain(..start);
        }
        // A guest writing one endless line must not grow the partial buffer without bound.
        if partial.len() > self.cap {
            let line = String::from_utf8_lossy(&partial).into_owned();
            partial.clear();
            push_line(&mut buf, self.cap, level, &line);
        }
        *buf.partial(level) = partial;
    }

    /// The lines so far (flushing unterminated stdout/stderr text) and whether any were cut.
    pub fn finish(&self) -> (Vec<LogLine>, bool) {
        let buf = self.flushed();
        (buf.lines.clone(), buf.truncated)
    }

    /// Like [`RunLog::finish`], but moves the lines out instead of copying them, leaving the
    /// log empty: for the end of a run, when nothing reads the log again.
    pub fn take(&self) -> (Vec<LogLine>, bool) {
        let mut buf = self.flushed();
        (std::mem::take(&mut buf.lines), buf.truncated)
    }

    /// The buffer, locked, with unterminated stdout/stderr text flushed into its lines.
    fn flushed(&self) -> std::sync::MutexGuard<'_, Buffer> {
        let mut buf = self.lock();
        for level in [LogLevel::Stdout, LogLevel::Stderr] {
            let partial = std::mem::take(buf.partial(level));
            if !partial.is_empty() {
                let line = String::from_utf8_lossy(&partial).into_owned();
                push_line(&mut buf, self.cap, level, &line);
            }
        }
        buf
    }

    /// A stream for the guest's stdout or stderr that writes into this log.
    pub(crate) fn stream(&self, level: LogLevel) -> LogStream {
        LogStream {
            log: self.clone(),
            level,
        }
    }
}

/// Keeps `message` as a line of `buf`, or what of it fits under `cap` and the marker. An empty
/// line counts as a byte: millions of them would otherwise all be kept.
fn push_line(buf: &mut Buffer, cap: usize, level: LogLevel, message: &str) {
    if buf.truncated {
        return;
    }
    if buf.bytes + message.len().max(1) > cap {
        let room = cap.saturating_sub(buf.bytes);
        let cut = message.floor_char_boundary(room);
        if cut > 0 {
            buf.lines.push(LogLine {
                level,
                message: message[..cut].to_string(),
            });
        }
        buf.lines.push(LogLine {
            level: LogLevel::Warn,
            message: TRUNCATED_MARKER.to_string(),
        });
        buf.bytes = cap;
        buf.truncated = true;
        return;
    }
    buf.bytes += message.len().max(1);
    buf.lines.push(LogLine {
        level,
        message: message.to_string(),
    });
}

/// The guest's stdout or stderr, written into a [`RunLog`]; never blocks, never fails.
#[derive(Debug, Clone)]
pub(crate) struct LogStream {
    log: RunLog,
    level: LogLevel,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write_stream(self.level, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.log.write_stream(self.level, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` (the CLI's timeline) and the serialized form (the API, which `whenever task`
    /// shows) name each level alike.
    #[test]
    fn a_level_is_named_as_it_is_serialized() {
        use LogLevel::*;
        for level in [Trace, Debug, Info, Warn, Error, Stdout, Stderr] {
            assert_eq!(
                serde_json::to_value(level).ok(),
                Some(serde_json::json!(level.as_str()))
            );
        }
    }

    #[test]
    fn cuts_past_the_cap_with_a_marker() {
        let log = RunLog::new(10);
        log.push(LogLevel::Info, "12345");
        log.push(LogLevel::Info, "67890abc");
        log.push(LogLevel::Info, "never kept");
        let (lines, truncated) = log.finish();
        assert!(truncated);
        assert_eq!(lines[0].message, "12345");
        assert_eq!(lines[1].message, "67890");
        assert_eq!(lines[2].message, TRUNCATED_MARKER);
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn the_backtrace_advice_after_a_panic_is_left_out() {
        let log = RunLog::new(1000);
        log.write_stream(
            LogLevel::Stderr,
            format!("thread '<unnamed>' panicked at src/lib.rs:9:9:\nboom\n{BACKTRACE_NOTE}\n").as_bytes(),
        );
        let (lines, _) = log.finish();
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["thread '<unnamed>' panicked at src/lib.rs:9:9:", "boom"]);
    }

    #[test]
    fn millions_of_empty_lines_in_one_write_fill_the_log_and_no_more() {
        let log = RunLog::new(1000);
        log.write_stream(LogLevel::Stdout, &vec![b'\n'; 5_000_000]);
        log.write_stream(LogLevel::Stdout, b"after\n");
        let (lines, truncated) = log.finish();
        assert!(truncated);
        assert_eq!(lines.len(), 1001, "1000 empty lines of a byte each, then the marker");
        assert_eq!(lines[1000].message, TRUNCATED_MARKER);
    }

    #[test]
    fn splits_streams_into_lines() {
        let log = RunLog::new(1000);
        log.write_stream(LogLevel::Stderr, b"panicked at x\nsecond");
        let (lines, truncated) = log.finish();
        assert!(!truncated);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "panicked at x");
        assert_eq!(lines[1].message, "second");
    }

    #[test]
    fn take_gives_what_finish_gives_and_leaves_the_log_empty() {
        let log = RunLog::new(1000);
        log.push(LogLevel::Info, "one");
        log.write_stream(LogLevel::Stdout, b"unterminated");
        let (peeked, _) = log.finish();
        let (taken, truncated) = log.take();
        assert!(!truncated);
        assert_eq!(taken, peeked);
        assert_eq!(taken.len(), 2);
        assert!(log.finish().0.is_empty());
    }
}
