//! A document a command reads: from a file, or from stdin (`-`, or no file with a pipe), never
//! waiting on a terminal for input nobody meant to type. `run`, `create` and `patch` read so.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

/// A document as read, and where from (`stdin`, or the file's path), for messages about it.
pub(super) struct Input {
    /// The text.
    pub(super) text: String,
    /// Where it came from.
    pub(super) source: String,
}

/// The text of `path`, or of stdin for `-` or no path. With no path and stdin a terminal, the
/// command would sit waiting: that is refused, naming `what`. Empty input is refused as empty
/// rather than as JSON that ended too soon.
pub(super) fn read_input(path: Option<&Path>, what: &str) -> Result<Input, String> {
    let (text, source) = match path.filter(|p| p.as_os_str() != "-") {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            if path.is_none() && std::io::stdin().is_terminal() {
                return Err(format!("give {what}: a file, or `-` (or a pipe) for stdin"));
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            (text, "stdin".to_string())
        }
    };
    if text.trim().is_empty() {
        return Err(format!("{what} is empty ({source} held nothing)"));
    }
    Ok(Input { text, source })
}
