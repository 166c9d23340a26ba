//! The human timeline on stderr: every start and finish with its offset from the task's start,
//! how many runs are in flight (parallel runs are visible), durations, errors and changes, and
//! (for `whenever run`) what each run logged.

use std::io::Write;

use crate::scheduler::Event;
use crate::task::{RunOutcomeRecord, RunRecord, Task};

/// Prints scheduler events as a timeline.
#[derive(Debug)]
pub struct Timeline {
    enabled: bool,
    /// The lanes of the runs in flight: each run keeps the lane it started in (the lowest free
    /// one), so that its finish, log and conflicts are drawn under its start.
    lanes: Vec<Option<u64>>,
    lines: Vec<String>,
    echo: bool,
    logs: bool,
}

/// The most log lines of one run the timeline shows; the task's JSON holds them all.
const LOG_LINES_SHOWN: usize = 20;
/// How many characters of one log line the timeline shows; the task's JSON holds it whole.
const LOG_LINE_CHARS_SHOWN: usize = 400;

impl Timeline {
    /// A timeline printing to stderr as events arrive, each run's log under it (or silent when
    /// `enabled` is false).
    pub fn new(enabled: bool) -> Self {
        Timeline {
            enabled,
            lanes: Vec::new(),
            lines: Vec::new(),
            echo: true,
            logs: true,
        }
    }

    /// A timeline that only collects its lines, without the runs' logs (for the demo, which
    /// prints them itself and shows the flow).
    pub fn collecting() -> Self {
        Timeline {
            enabled: true,
            lanes: Vec::new(),
            lines: Vec::new(),
            echo: false,
            logs: false,
        }
    }

    /// The lines printed so far.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    fn emit(&mut self, line: String) {
        if !self.enabled {
            return;
        }
        // Logs, errors and keys are the steps' text (see `printable`).
        let line = match super::printable::printable(&line) {
            std::borrow::Cow::Borrowed(_) => line,
            std::borrow::Cow::Owned(shown) => shown,
        };
        if self.echo {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        self.lines.push(line);
    }

    /// What is drawn left of a run in `lane`: a bar for each lane before it with a run in it.
    fn lanes_before(&self, lane: usize) -> String {
        self.lanes
            .iter()
            .take(lane)
            .map(|run| if run.is_some() { "│ " } else { "  " })
            .collect()
    }

    /// Handles one scheduler event.
    pub fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RunStarted { task, run } => {
                let lane = match self.lanes.iter().position(Option::is_none) {
                    Some(free) => free,
                    None => {
                        self.lanes.push(None);
                        self.lanes.len() - 1
                    }
                };
                self.lanes[lane] = Some(run.id);
                let lanes = self.lanes_before(lane);
                // In a cluster, which host ran it.
                let host = run.host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default();
                let line = format!(
                    "{:>9}  {lanes}▶ {} #{} ({}){host}",
                    offset(task, run, false),
                    run.step,
                    run.number,
                    run.version
                );
                self.emit(line);
            }
            Event::RunFinished { task, run } => {
                let lane = self.lanes.iter().position(|r| *r == Some(run.id));
                let lanes = self.lanes_before(lane.unwrap_or(self.lanes.len()));
                if let Some(lane) = lane {
                    self.lanes[lane] = None;
                }
                while self.lanes.last().is_some_and(Option::is_none) {
                    self.lanes.pop();
                }
                let calls = calls(run);
                let detail = match &run.outcome {
                    Some(RunOutcomeRecord::Ok) => {
                        format!("✓ {} in {:.1} ms: {}{calls}", run.step, run.duration_ms, changed(run))
                    }
                    Some(RunOutcomeRecord::Error(e)) => {
                        format!("✗ {} in {:.1} ms: {}{calls}", run.step, run.duration_ms, e.message)
                    }
                    None => format!("? {}", run.step),
                };
                let line = format!("{:>9}  {lanes}{detail}", offset(task, run, true));
                self.emit(line);
                if self.logs {
                    let logs = run.logs.iter().map(|log| (log.level.as_str(), log.message.as_str()));
                    for line in log_rows(logs, run.logs_truncated) {
                        self.emit(format!("{:>9}  {lanes}  {line}", ""));
                    }
                }
                for conflict in &run.conflicts {
                    let line = format!(
                        "{:>9}  {lanes}  ⚠ conflict on {} between {}; {} wins",
                        "",
                        dotted(&conflict.path),
                        conflict.steps.join(" and "),
                        conflict.winner
                    );
                    self.emit(line);
                }
            }
            Event::Settled { task } => {
                let mut line = format!("{:>9}  ■ task {} is {}", total(task), task.id, task.status);
                if let Some(message) = &task.message {
                    line.push_str(&format!(": {message}"));
                }
                self.emit(line);
            }
        }
    }
}

/// The connector calls a run made, each failed one with its kind (`; calls stripe.charge,
/// slackCom.send (not-granted)`), or nothing when it made none.
fn calls(run: &RunRecord) -> String {
    if run.connector_calls.is_empty() {
        return String::new();
    }
    let calls: Vec<String> = run
        .connector_calls
        .iter()
        .map(|c| match &c.result {
            Ok(_) => format!("{}.{}", c.connector, c.method),
            Err(e) => format!("{}.{} ({})", c.connector, c.method, e.kind),
        })
        .collect();
    format!("; calls {}", calls.join(", "))
}

/// What a run logged, a row per line of text (`info   announcing order o-1`), at most
/// [`LOG_LINES_SHOWN`] of them, then how many more there are and whether the log was cut at its
/// cap. `logs` are (level, message) pairs; `whenever task` shows a server's runs alike.
pub(super) fn log_rows<'a>(logs: impl Iterator<Item = (&'a str, &'a str)>, cut: bool) -> Vec<String> {
    let all: Vec<(&str, &str)> = logs
        .flat_map(|(level, message)| message.lines().map(move |text| (level, text)))
        .collect();
    let mut rows: Vec<String> = all
        .iter()
        .take(LOG_LINES_SHOWN)
        .map(|(level, text)| format!("{level:<6} {}", shortened(text)))
        .collect();
    if all.len() > LOG_LINES_SHOWN {
        rows.push(format!(
            "… {} more log lines (the task's JSON holds them)",
            all.len() - LOG_LINES_SHOWN
        ));
    }
    if cut {
        rows.push("… the log was cut at the step's cap".to_string());
    }
    rows
}

/// One log line as shown: whole, or its first [`LOG_LINE_CHARS_SHOWN`] characters and how many
/// more there are (a step that logs a megabyte on one line would bury the timeline).
fn shortened(text: &str) -> String {
    match text.char_indices().nth(LOG_LINE_CHARS_SHOWN) {
        None => text.to_string(),
        Some((end, _)) => format!(
            "{} … {} more characters (the task's JSON holds them)",
            &text[..end],
            text[end..].chars().count()
        ),
    }
}

/// The paths a run changed, dotted and shortened, what it set apart from what it removed:
/// `set order.tierAnalyzed, order.priority; removed order.hold`, at most four paths in all, each
/// kind with how many more it has (`set k0, k1, k2, k3 and 2 more`).
fn changed(run: &RunRecord) -> String {
    if run.changes.is_empty() {
        return "no changes".to_string();
    }
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = Vec::new();
    let mut shown = 0;
    for (verb, removal) in [("set", false), ("removed", true)] {
        let paths: Vec<&str> = run
            .changes
            .iter()
            .filter(|c| c.value().is_none() == removal)
            .map(|c| c.path())
            .collect();
        if paths.is_empty() {
            continue;
        }
        let names: Vec<String> = paths
            .iter()
            .take(SHOWN.saturating_sub(shown).max(1))
            .map(|p| dotted(p))
            .collect();
        shown += names.len();
        let more = match paths.len() - names.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        parts.push(format!("{verb} {}{more}", names.join(", ")));
    }
    parts.join("; ")
}

/// A JSON Pointer as people read a path: keys joined by `.` and unescaped (`~1` is `/`), a key
/// that holds a `.` or a space quoted, so that `d.k` the key and `d` then `k` differ.
fn dotted(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(the whole data)".to_string();
    }
    pointer
        .strip_prefix('/')
        .unwrap_or(pointer)
        .split('/')
        .map(|segment| {
            let key = segment.replace("~1", "/").replace("~0", "~");
            if key.is_empty() || key.contains(['.', ' ', '"']) {
                format!("{key:?}")
            } else {
                key
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn offset(task: &Task, run: &RunRecord, end: bool) -> String {
    let at = if end {
        run.ended_at.unwrap_or(run.started_at)
    } else {
        run.started_at
    };
    let micros = (at - task.created_at).num_microseconds().unwrap_or(0);
    format!("+{:.1}ms", micros as f64 / 1000.0)
}

fn total(task: &Task) -> String {
    let end = task
        .runs
        .iter()
        .filter_map(|r| r.ended_at)
        .max()
        .unwrap_or(task.created_at);
    let micros = (end - task.created_at).num_microseconds().unwrap_or(0);
    format!("+{:.1}ms", micros as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::merge::Change;

    fn run_with(id: u64, step: &str, changes: Vec<Change>) -> RunRecord {
        let mut run = RunRecord::starting(id, step, "0123456789ab", 1);
        run.changes = changes;
        run.outcome = Some(RunOutcomeRecord::Ok);
        run
    }

    fn set(path: &str) -> Change {
        Change::Set {
            path: path.into(),
            value: serde_json::json!(1),
        }
    }

    #[test]
    fn a_run_s_changes_are_told_set_apart_from_removed_in_keys_as_written() {
        let run = run_with(
            0,
            "s",
            vec![
                set("/order/tier"),
                Change::Remove { path: "/hold".into() },
                set("/a~1b/t~0x"),
                set("/d.k"),
            ],
        );
        assert_eq!(changed(&run), "set order.tier, a/b.t~x, \"d.k\"; removed hold");
        let many = run_with(0, "s", (0..6).map(|i| set(&format!("/k{i}"))).collect());
        assert_eq!(changed(&many), "set k0, k1, k2, k3 and 2 more");
        let mut mixed: Vec<Change> = (0..5).map(|i| set(&format!("/k{i}"))).collect();
        mixed.push(Change::Remove { path: "/gone".into() });
        assert_eq!(
            changed(&run_with(0, "s", mixed)),
            "set k0, k1, k2, k3 and 1 more; removed gone"
        );
        assert_eq!(dotted(""), "(the whole data)");
        assert_eq!(changed(&run_with(0, "s", Vec::new())), "no changes");
    }

    #[test]
    fn a_run_in_a_cluster_names_the_host_that_ran_it() {
        let task = Task::new(serde_json::json!({}));
        let run = RunRecord {
            host: Some("web-2".into()),
            ..run_with(0, "charge", Vec::new())
        };
        let mut timeline = Timeline::collecting();
        timeline.event(&Event::RunStarted { task: &task, run: &run });
        assert_eq!(
            timeline.lines()[0][11..].trim_end(),
            "▶ charge #1 (0123456789ab) on web-2"
        );
    }

    #[test]
    fn a_run_finishes_in_the_lane_it_started_in() {
        let task = Task::new(serde_json::json!({}));
        let (a, b, c) = (
            run_with(0, "a", Vec::new()),
            run_with(1, "b", Vec::new()),
            run_with(2, "c", Vec::new()),
        );
        let mut timeline = Timeline::collecting();
        for run in [&a, &b, &c] {
            timeline.event(&Event::RunStarted { task: &task, run });
        }
        // a (lane 0) finishes first: b and c keep their lanes.
        for run in [&a, &c, &b] {
            timeline.event(&Event::RunFinished { task: &task, run });
        }
        let drawn: Vec<&str> = timeline.lines().iter().map(|l| l[11..].trim_end()).collect();
        assert_eq!(
            drawn,
            [
                "▶ a #1 (0123456789ab)",
                "│ ▶ b #1 (0123456789ab)",
                "│ │ ▶ c #1 (0123456789ab)",
                "✓ a in 0.0 ms: no changes",
                "  │ ✓ c in 0.0 ms: no changes",
                "  ✓ b in 0.0 ms: no changes",
            ]
        );
    }

    #[test]
    fn a_runs_log_shows_a_row_per_line_up_to_its_cap_and_says_what_is_left_out() {
        let rows = log_rows([("info", "one"), ("stdout", "two\nthree")].into_iter(), false);
        assert_eq!(rows, ["info   one", "stdout two", "stdout three"]);

        let many: Vec<String> = (0..25).map(|i| format!("line {i}")).collect();
        let rows = log_rows(many.iter().map(|m| ("warn", m.as_str())), true);
        assert_eq!(rows.len(), LOG_LINES_SHOWN + 2);
        assert_eq!(rows[0], "warn   line 0");
        assert_eq!(rows[LOG_LINES_SHOWN - 1], "warn   line 19");
        assert_eq!(rows[LOG_LINES_SHOWN], "… 5 more log lines (the task's JSON holds them)");
        assert_eq!(rows[LOG_LINES_SHOWN + 1], "… the log was cut at the step's cap");
    }

    #[test]
    fn a_long_log_line_is_shown_up_to_its_cap_and_says_how_much_is_left_out() {
        let long = format!("{}é{}", "a".repeat(LOG_LINE_CHARS_SHOWN - 1), "b".repeat(1000));
        let rows = log_rows([("info", long.as_str())].into_iter(), false);
        let shown = format!(
            "info   {}é … 1000 more characters (the task's JSON holds them)",
            "a".repeat(LOG_LINE_CHARS_SHOWN - 1)
        );
        assert_eq!(rows, [shown]);
        let exact = "c".repeat(LOG_LINE_CHARS_SHOWN);
        assert_eq!(
            log_rows([("info", exact.as_str())].into_iter(), false),
            [format!("info   {exact}")]
        );
    }
}
