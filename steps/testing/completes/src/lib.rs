//! Test step: names and tags the task (`extraTags` too, when the data has them), logs `say`,
//! writes `a` with `alsoWriteA`, then completes it.
use whenever_step_sdk::prelude::*;

struct Completes;

impl Step for Completes {
    fn condition() -> Value {
        condition!({ finish: true, done: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        task::set_name(&format!("Finished {}", task::id()));
        task::add_tags(&["finished", "test"]);
        let extra: Vec<&str> = get(data, "extraTags")
            .as_array()
            .map(|tags| tags.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        task::add_tags(&extra);
        if let Some(line) = get(data, "say").as_str() {
            log_info!("{line}");
        }
        // What `wait-for-a` waits on, written by the run that completes the task.
        if get(data, "alsoWriteA").as_bool() == Some(true) {
            set(data, "a", "A");
        }
        set(data, "done", true);
        set(data, "doneAt", task::now());
        task::complete();
        Ok(())
    }
}

export_step!(Completes);
