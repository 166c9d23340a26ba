//! Test step: names and tags the task (`extraTags` too, when the data has them), then completes
//! it.
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
        set(data, "done", true);
        set(data, "doneAt", task::now());
        task::complete();
        Ok(())
    }
}

export_step!(Completes);
