//! Test step: reads a file through WASI, so the component imports `wasi:filesystem`.
use whenever_step_sdk::prelude::*;

struct ReadsFile;

impl Step for ReadsFile {
    fn condition() -> Value {
        condition!({ readFile: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let text = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
        set(data, "file", text);
        Ok(())
    }
}

export_step!(ReadsFile);
