//! Test step: logs 100 MiB (half through the log import, half to stdout and stderr), then
//! succeeds. The host keeps 1 MiB of it and a marker.
use std::io::Write as _;

use whenever_step_sdk::prelude::*;

struct HugeLogs;

const LINE: usize = 64 << 10;
const TOTAL: usize = 100 << 20;

impl Step for HugeLogs {
    fn condition() -> Value {
        condition!({ hugeLogs: true, logged: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let line = "l".repeat(LINE - 1);
        let lines = TOTAL / LINE;
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr().lock();
        for n in 0..lines {
            match n % 4 {
                0 | 1 => whenever_step_sdk::log::log(whenever_step_sdk::log::Level::Info, &line),
                2 => {
                    let _ = writeln!(stdout, "{line}");
                }
                _ => {
                    let _ = writeln!(stderr, "{line}");
                }
            }
        }
        set(data, "logged", lines * LINE);
        Ok(())
    }
}

export_step!(HugeLogs);
