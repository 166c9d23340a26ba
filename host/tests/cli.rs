//! The `whenever` binary: `run` and `match`, their output and exit codes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::refused;
use whenever_step_artifacts::StepFiles;
use whenever_step_artifacts::testing::{
    COMPLETES, ORDER_SCORING, RETURNS_ERROR, UNGRANTED_CONNECTOR, WAIT_FOR_A, WRITE_A, WRITE_B,
};

fn whenever(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whenever"))
        .args(args)
        .output()
        .expect("whenever runs")
}

/// `whenever` with the address space it may reserve limited to `gib` GiB (`ulimit -v`).
fn whenever_in_address_space(gib: u64, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", gib << 20))
        .arg(env!("CARGO_BIN_EXE_whenever"))
        .args(args)
        .output()
        .expect("whenever runs")
}

/// A scratch folder for one test, removed when it is dropped.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("whenever-cli-{name}-"))
        .tempdir()
        .expect("scratch dir")
}

/// A steps folder with `NAME.wasm` and `NAME.toml` for each step, in `scratch`.
fn steps_dir(scratch: &Path, steps: &[StepFiles]) -> PathBuf {
    let dir = scratch.join("steps");
    std::fs::create_dir_all(&dir).expect("steps dir");
    for step in steps {
        std::fs::copy(step.component, dir.join(format!("{}.wasm", step.name))).expect("copy wasm");
        std::fs::copy(step.manifest, dir.join(format!("{}.toml", step.name))).expect("copy toml");
    }
    dir
}

fn write_json(dir: &Path, file: &str, value: &Value) -> String {
    let path = dir.join(file);
    std::fs::write(&path, value.to_string()).expect("write");
    path.display().to_string()
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn run_prints_the_final_task_and_exits_3_when_waiting() {
    let scratch = scratch("waiting");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[WRITE_A, WRITE_B, WAIT_FOR_A]);
    let task = write_json(dir, "task.json", &json!({"start": true}));
    let output = whenever(&["run", &task, "--steps", &steps.display().to_string()]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = stdout_json(&output);
    assert_eq!(result["status"], json!("waiting"));
    assert_eq!(
        result["data"],
        json!({"start": true, "a": "A", "b": "B", "waited": true})
    );
    assert_eq!(result["runs"].as_array().map(Vec::len), Some(3));
    for key in ["id", "name", "tags"] {
        assert!(result.get(key).is_some(), "{key} is printed");
    }
    let timeline = String::from_utf8_lossy(&output.stderr);
    assert!(
        timeline.contains("▶ write-a") && timeline.contains("▶ write-b"),
        "{timeline}"
    );
    // What a run logged shows under it.
    assert!(
        timeline
            .lines()
            .any(|l| l.trim_start_matches([' ', '│']) == "info   writing a"),
        "write-a's log:\n{timeline}"
    );
    // Two runs in flight at once show as a second lane.
    assert!(timeline.contains("│ ▶"), "parallel runs visible:\n{timeline}");
    assert!(timeline.contains("is waiting"), "{timeline}");
    // And what it waits on, step by step, as `whenever task` shows it.
    let waiting_on = timeline
        .split_once("waiting on (each step's condition against the data)\n")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no `waiting on` block:\n{timeline}"));
    let lines: Vec<&str> = waiting_on.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        ["  done (they ran, and their conditions no longer hold): wait-for-a, write-a, write-b"],
        "{timeline}"
    );
}

#[test]
fn run_exits_0_when_completed_and_4_when_failed() {
    let scratch = scratch("complete");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[COMPLETES, RETURNS_ERROR]);
    let steps_arg = steps.display().to_string();

    let done = write_json(dir, "done.json", &json!({"finish": true}));
    let output = whenever(&["run", &done, "--steps", &steps_arg]);
    assert_eq!(output.status.code(), Some(0));
    let result = stdout_json(&output);
    assert_eq!(result["status"], json!("completed"));
    assert_eq!(result["tags"], json!(["finished", "test"]));

    let failing = write_json(dir, "fail.json", &json!({"failPlease": true}));
    let output = whenever(&["run", &failing, "--steps", &steps_arg]);
    assert_eq!(output.status.code(), Some(4));
    let result = stdout_json(&output);
    assert_eq!(result["status"], json!("failed"));
    assert!(result["message"].as_str().unwrap_or("").contains("returns-error"));
}

#[test]
fn run_takes_single_components_and_refuses_a_folder_without_steps() {
    let scratch = scratch("single");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[WRITE_A, WRITE_B, WAIT_FOR_A]);
    let task = write_json(dir, "task.json", &json!({"start": true}));
    let component = |name: &str| steps.join(format!("{name}.wasm")).display().to_string();

    // One component alone: only it runs (wait-for-a, beside it, is not loaded), and the task,
    // which no step completes, waits.
    let output = whenever(&["run", &task, "--steps", &component("write-a")]);
    assert_exit(&output, 3);
    assert_eq!(stdout_json(&output)["data"], json!({"start": true, "a": "A"}));
    // Two of them, each with its manifest beside it, as a folder of both would run.
    let output = whenever(&[
        "run",
        &task,
        "--steps",
        &component("write-a"),
        "--steps",
        &component("wait-for-a"),
    ]);
    assert_exit(&output, 3);
    assert_eq!(
        stdout_json(&output)["data"],
        json!({"start": true, "a": "A", "waited": true})
    );

    // A folder with no component in it would run nothing and leave the task waiting for steps
    // that are not there.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("empty dir");
    std::fs::write(empty.join("README.txt"), "not a step").expect("write");
    let output = whenever(&["run", &task, "--steps", &empty.display().to_string()]);
    refused(
        &output,
        2,
        &format!("{} holds no steps: no NAME.wasm in it", empty.display()),
    );
    assert!(output.stdout.is_empty(), "no task is printed");
    // A file that is not a component.
    let output = whenever(&["run", &task, "--steps", &task]);
    refused(
        &output,
        2,
        &format!("{task} is neither a folder of steps nor a component (NAME.wasm)"),
    );
}

/// `whenever` with `input` on its stdin.
fn whenever_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_whenever"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("whenever runs");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("whenever ends")
}

#[test]
fn run_reads_the_task_from_a_pipe_as_create_does() {
    let scratch = scratch("stdin");
    let steps = steps_dir(scratch.path(), &[WRITE_A]).display().to_string();
    let task = r#"{"start": true}"#;
    for args in [vec!["run", "--steps", &steps], vec!["run", "-", "--steps", &steps]] {
        let output = whenever_with_stdin(&args, task);
        assert_exit(&output, 3);
        assert_eq!(
            stdout_json(&output)["data"],
            json!({"start": true, "a": "A"}),
            "{args:?}"
        );
    }
    refused(
        &whenever_with_stdin(&["run", "--steps", &steps], "[1, 2]"),
        2,
        "the task data on stdin must be a JSON object",
    );
    refused(
        &whenever_with_stdin(&["run", "--steps", &steps], " \n"),
        2,
        "the task data is empty (stdin held nothing)",
    );
}

/// `output` ended with exit code `code`; its stderr is shown if not.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The step names of a printed task's runs, in order.
fn steps_run(task: &Value) -> Vec<String> {
    task["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|run| run["step"].as_str().map(str::to_string))
        .collect()
}

/// A step of one's own that never ran on a task that completed is named with why (its condition
/// against the final data); a manifest beside no component is named as read by nothing.
#[test]
fn run_says_which_of_your_steps_did_not_run_and_which_manifest_is_read_by_nothing() {
    let scratch = scratch("did-not-run");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[COMPLETES, WAIT_FOR_A, WRITE_A]);
    std::fs::write(steps.join("step.toml"), "connectors = [\"slackCom\"]\n").expect("manifest");
    let steps = steps.display().to_string();
    // `completes` writes the `a` that `wait-for-a` waits on, and completes the task in the same
    // run: wait-for-a's condition holds, but the task is completed by then.
    let task = write_json(dir, "task.json", &json!({"finish": true, "alsoWriteA": true}));
    let output = whenever(&["run", &task, "--steps", &steps]);
    assert_exit(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "whenever run: warning: {}/step.toml is no step's manifest, and is not read",
            steps
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("did not run (each step's condition against the final data)\n  wait-for-a  its condition holds, but the task completed first"),
        "{stderr}"
    );
    // One whose condition does not hold says why.
    let task = write_json(dir, "finish.json", &json!({"finish": true}));
    let output = whenever(&["run", &task, "--steps", &steps]);
    assert_exit(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("  wait-for-a  a: missing"), "{stderr}");
    assert!(stderr.contains("  write-a     start: missing"), "{stderr}");
    assert!(!stderr.contains("  completes "), "it ran: {stderr}");
}

/// A blank tag, one too long, and those beyond a task's 64 are not added, and the run's log says
/// so; the others land.
#[test]
fn tags_a_task_cannot_hold_are_not_added_and_the_log_says_so() {
    let scratch = scratch("tags");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[COMPLETES]).display().to_string();
    let many: Vec<String> = (0..70).map(|i| format!("t{i}")).collect();
    let mut extra = vec![" ".to_string(), "x".repeat(200)];
    extra.extend(many.iter().cloned());
    let task = write_json(dir, "task.json", &json!({"finish": true, "extraTags": extra}));
    let output = whenever(&["run", &task, "--steps", &steps]);
    assert_exit(&output, 0);
    let task = stdout_json(&output);
    let mut expected = vec!["finished".to_string(), "test".to_string()];
    expected.extend(many.into_iter().take(62));
    assert_eq!(task["tags"], json!(expected), "{task}");
    let warnings: Vec<&str> = task["runs"][0]["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|log| log["level"] == "warn")
        .filter_map(|log| log["message"].as_str())
        .collect();
    assert_eq!(
        warnings,
        [
            "task.add-tags: the blank tag \" \" is not added",
            "task.add-tags: a tag of 200 characters is not added (at most 128)",
            "task.add-tags: the task holds at most 64 tags; the rest are not added",
        ],
        "{task}"
    );
}

/// What a step logs reaches the terminal escaped: an ANSI sequence that would clear the screen,
/// or a carriage return that would type over a line, is shown, not obeyed. The JSON keeps it
/// as written.
#[test]
fn a_steps_text_reaches_the_terminal_escaped() {
    let scratch = scratch("escaped");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[COMPLETES]).display().to_string();
    let say = "\u{1b}[2J\u{1b}[31mFAKE: all tasks completed\rover";
    let task = write_json(dir, "task.json", &json!({"finish": true, "say": say}));
    let output = whenever(&["run", &task, "--steps", &steps]);
    assert_exit(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\r'), "{stderr:?}");
    assert!(
        stderr.contains("info   \\u{1b}[2J\\u{1b}[31mFAKE: all tasks completed\\u{d}over"),
        "{stderr}"
    );
    assert_eq!(stdout_json(&output)["runs"][0]["logs"][0]["message"], say);
}

/// A manifest granting a connector that no config or simulator provides is refused before any
/// run, naming the step and the connector.
#[test]
fn run_refuses_a_manifest_granting_an_unknown_connector() {
    let scratch = scratch("unknown-connector");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[WRITE_A]);
    std::fs::write(steps.join("write-a.toml"), "connectors = [\"strpie\"]\n").expect("manifest");
    let task = write_json(dir, "task.json", &json!({"start": true}));
    let output = whenever(&["run", &task, "--steps", &steps.display().to_string()]);
    refused(
        &output,
        2,
        "step write-a: invalid step manifest: connectors: `strpie` is no connector of this host",
    );
}

/// The timeline lists each run's connector calls, a failed one with its kind.
#[test]
fn the_timeline_names_a_runs_calls_and_how_each_failed() {
    let scratch = scratch("calls");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[UNGRANTED_CONNECTOR]).display().to_string();
    let task = write_json(dir, "task.json", &json!({"tryStripe": true}));
    let output = whenever(&["run", &task, "--steps", &steps]);
    assert_exit(&output, 3);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("✓ ungranted-connector in ") && l.ends_with("; calls stripe.charge (not-granted)")),
        "{stderr}"
    );
}

#[test]
fn run_with_retailmax_tries_a_step_beside_the_flow_it_joins() {
    let scratch = scratch("retailmax");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[ORDER_SCORING]).display().to_string();
    let order = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo/seed-order.json");

    // Alone, the step scores the seed's order and nothing completes it.
    let output = whenever(&["run", order, "--steps", &steps, "-q"]);
    assert_exit(&output, 3);
    assert_eq!(steps_run(&stdout_json(&output)), ["order-scoring"]);

    // Beside the bundled RetailMax steps, the order is scored and completes as the seed's does.
    let output = whenever(&["run", order, "--steps", &steps, "--retailmax", "-q"]);
    assert_exit(&output, 0);
    let task = stdout_json(&output);
    assert_eq!(task["data"]["order"]["scored"], json!(true), "{task}");
    let ran = steps_run(&task);
    for step in ["order-scoring", "payment-processing", "order-completion"] {
        assert!(ran.iter().any(|s| s == step), "{step} ran: {ran:?}");
    }

    // A step named as a bundled one replaces it: this `fraud-detection` approves nothing, so
    // payment waits.
    let replacing = dir.join("replacing");
    std::fs::create_dir_all(&replacing).expect("dir");
    std::fs::copy(ORDER_SCORING.component, replacing.join("fraud-detection.wasm")).expect("copy");
    let output = whenever(&[
        "run",
        order,
        "--steps",
        &replacing.display().to_string(),
        "--retailmax",
        "-q",
    ]);
    assert_exit(&output, 3);
    let task = stdout_json(&output);
    assert!(task["data"]["order"]["fraudApproved"].is_null(), "{task}");
    assert!(!steps_run(&task).iter().any(|s| s == "payment-processing"), "{task}");
}

#[test]
fn a_limited_address_space_gets_a_smaller_step_pool_or_an_error_naming_the_setting() {
    let scratch = scratch("address-space");
    let dir = scratch.path();
    let steps = steps_dir(dir, &[WRITE_A, WRITE_B, WAIT_FOR_A]);
    let steps = steps.display().to_string();
    let task = write_json(dir, "task.json", &json!({"start": true}));
    let config = |instances: u32| {
        let path = dir.join(format!("instances-{instances}.toml"));
        std::fs::write(&path, format!("[runtime]\nmax_instances = {instances}\n")).expect("write config");
        path.display().to_string()
    };
    let waited = json!({"start": true, "a": "A", "b": "B", "waited": true});
    // 1,000 instances reserve about 8 TiB of address space: in 40 GiB the pool is made smaller,
    // and said so, and the task runs as it would.
    let output = whenever_in_address_space(40, &["run", &task, "--steps", &steps]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stdout_json(&output)["data"], waited);
    assert!(
        stderr.contains("may reserve 40.0 GiB of address space (ulimit -v)")
            && stderr.contains("instead of 1000")
            && stderr.contains("`[runtime] max_instances`"),
        "{stderr}"
    );
    // A number the operator chose is kept: one that fits runs without a word...
    let output = whenever_in_address_space(40, &["run", &task, "--steps", &steps, "--config", &config(2)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stdout_json(&output)["data"], waited);
    assert!(!stderr.contains("address space"), "{stderr}");
    // ...and one that does not is refused, naming the limit and the setting.
    let output = whenever_in_address_space(40, &["run", &task, "--steps", &steps, "--config", &config(1000)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reserve the address space of the step pool (1000 instances")
            && stderr.contains("40.0 GiB")
            && stderr.contains("`[runtime] max_instances`"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_bad_input_with_exit_2() {
    let scratch = scratch("bad-input");
    let dir = scratch.path();
    let malformed = dir.join("malformed.json");
    std::fs::write(&malformed, "{\"order\": ").expect("write");
    let output = whenever(&["run", &malformed.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("malformed.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );

    let array = write_json(dir, "array.json", &json!([1, 2]));
    let output = whenever(&["run", &array]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be a JSON object"));

    // A steps folder holding something that is not a component.
    let steps = dir.join("steps");
    std::fs::create_dir_all(&steps).expect("dir");
    std::fs::write(steps.join("broken.wasm"), b"not wasm at all").expect("write");
    let task = write_json(dir, "task.json", &json!({"start": true}));
    let output = whenever(&["run", &task, "--steps", &steps.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );

    let output = whenever(&["run", &dir.join("missing.json").display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
}

/// Output into a reader that has gone (`whenever … | head`) ends the command quietly, as Unix
/// tools do: by SIGPIPE, where it used to panic in `println!` at the closed pipe (exit 101).
#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    const SIGPIPE: i32 = 13;
    let scratch = scratch("pipe");
    let condition = write_json(scratch.path(), "condition.json", &json!({"a": "$number"}));
    let data = write_json(scratch.path(), "data.json", &json!({"a": 1}));
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_whenever"))
        .args(["match", "--condition", &condition, "--data", &data])
        .stdout(writer)
        .output()
        .expect("whenever runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.signal(), Some(SIGPIPE), "{:?}: {stderr}", output.status);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn match_prints_true_or_false_with_the_failing_path_and_exits_by_it() {
    let scratch = scratch("match");
    let dir = scratch.path();
    let condition = write_json(
        dir,
        "condition.json",
        &json!({"order": {"total": "$number", "payment": {"method": "$string"}, "fraudChecked": null}}),
    );
    let good = write_json(
        dir,
        "good.json",
        &json!({"order": {"total": 10, "payment": {"method": "card"}}}),
    );
    let bad = write_json(
        dir,
        "bad.json",
        &json!({"order": {"total": 10, "payment": {"method": 12}}}),
    );

    let output = whenever(&["match", "--condition", &condition, "--data", &good]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "true");

    let output = whenever(&["match", "--condition", &condition, "--data", &bad]);
    assert_eq!(output.status.code(), Some(1), "false exits 1, as grep does");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("false"));
    let why = lines.next().unwrap_or("");
    assert!(why.contains("order.payment.method") && why.contains("string"), "{why}");

    let invalid = write_json(dir, "invalid.json", &json!({"order": {"total": {"$gt": "abc"}}}));
    let output = whenever(&["match", "--condition", &invalid, "--data", &good]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("order.total") && stderr.contains("$gt"), "{stderr}");

    // An integer beyond 64 bits in a task is refused by `run`, not run rounded.
    let output = whenever_with_stdin(&["run", "-"], r#"{"order": {"ref": 18446744073709551616}}"#);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("the task data on stdin: the integer 18446744073709551616 at line 1 column 19 is beyond 64 bits"),
        "{stderr}"
    );
    // So is data nested past the 120 levels a server takes.
    let deep = format!("{{\"deep\": {}{}}}", "[".repeat(120), "]".repeat(120));
    let output = whenever_with_stdin(&["run", "-"], &deep);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the task data on stdin nests arrays and objects 121 levels deep, past the 120"),
        "{stderr}"
    );

    // The data (or the condition) may come on stdin, as for `run`; text that is not JSON is told
    // as such, not as a pattern's mistake.
    let piped = json!({"order": {"total": 10, "payment": {"method": "card"}}}).to_string();
    let output = whenever_with_stdin(&["match", "--condition", &condition, "--data", "-"], &piped);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let not_json = scratch.path().join("not.json");
    std::fs::write(&not_json, "{order: 1}").expect("written");
    let output = whenever(&["match", "--condition", &not_json.display().to_string(), "--data", &good]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not valid JSON: key must be a string"), "{stderr}");
    // JSON given where a file goes is told how to give it.
    let output = whenever(&["match", "--condition", r#"{"order": "$object"}"#, "--data", &good]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the condition is read from a file; to give it inline, pipe it to stdin and pass `-`"),
        "{stderr}"
    );
}

/// The README's first command: every scenario as the seed expects it, told for people.
#[test]
fn the_demo_runs_every_scenario_as_expected_and_says_so() {
    let output = whenever(&["demo"]);
    assert_exit(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("Whenever demo: RetailMax order processing\n14 steps deployed"),
        "{stdout}"
    );
    let statuses: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  status     "))
        .collect();
    assert_eq!(statuses.len(), whenever::demo::scenarios().len(), "{stdout}");
    assert!(
        statuses.iter().all(|s| !s.contains("expected")),
        "a scenario ended otherwise than expected: {statuses:?}"
    );
    // The seed's order is paid by card: the transaction and Stripe's fee on $1,247.99.
    let paid = stdout
        .lines()
        .find(|line| line.starts_with("  payment    "))
        .unwrap_or_else(|| panic!("no payment line:\n{stdout}"));
    assert!(
        paid.starts_with("  payment    txn_") && paid.ends_with(", fee 36.49"),
        "{paid}"
    );
    assert!(stdout.contains("  payment    failed: INSTRUMENT_DECLINED"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("All scenarios done: ") && last.ends_with(" messages in the outbox."),
        "{last}"
    );
}
