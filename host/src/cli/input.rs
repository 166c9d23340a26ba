//! A document a command reads: from a file, or from stdin (`-`, or no file with a pipe), never
//! waiting on a terminal for input nobody meant to type. `run`, `create` and `patch` read so.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

/// The text of `path`, or of stdin for `-` or no path. With no path and stdin a terminal, the
/// command would sit waiting: that is refused, naming `what`. Empty input is refused as empty
/// rather than as JSON that ended too soon.
pub(super) fn read_input(path: Option<&Path>, what: &str) -> Result<String, String> {
    let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
        if path.is_none() && std::io::stdin().is_terminal() {
            return Err(format!("give {what}: a file, or `-` (or a pipe) for stdin"));
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return not_empty(text, what, "stdin");
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    not_empty(text, what, &path.display().to_string())
}

/// `text` unless it holds nothing but whitespace.
fn not_empty(text: String, what: &str, source: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(format!("{what} is empty ({source} held nothing)"));
    }
    Ok(text)
}
