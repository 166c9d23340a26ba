//! Test step: writes what it sees of its environment, arguments and working directory.
use whenever_step_sdk::prelude::*;

struct ReadsEnvironment;

impl Step for ReadsEnvironment {
    fn condition() -> Value {
        condition!({ readEnvironment: true, environment: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let vars: Map<String, Value> = std::env::vars().map(|(k, v)| (k, Value::String(v))).collect();
        let args: Vec<String> = std::env::args().collect();
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .map_err(|e| e.to_string());
        set(
            data,
            "environment",
            json!({
                "vars": vars,
                "args": args,
                "home": std::env::var("HOME").ok(),
                "cwd": match cwd { Ok(dir) => json!({"ok": dir}), Err(e) => json!({"error": e}) },
            }),
        );
        Ok(())
    }
}

export_step!(ReadsEnvironment);
