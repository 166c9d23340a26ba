//! A document a command reads: from a file, or from stdin (`-`, or no file with a pipe), never
//! waiting on a terminal for input nobody meant to type. `run`, `create`, `patch` and `match`
//! read so.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

use serde_json::Value;

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
    // Where it came from (`stdin`, or the path), and how messages about its content name it.
    let (text, origin, source) = match path.filter(|p| p.as_os_str() != "-") {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                // JSON given where a file's path goes: say how to give it.
                let inline = path.to_str().is_some_and(|p| p.trim_start().starts_with(['{', '[']));
                let hint = if inline {
                    format!(" ({what} is read from a file; to give it inline, pipe it to stdin and pass `-`)")
                } else {
                    String::new()
                };
                format!("cannot read {}: {e}{hint}", path.display())
            })?,
            path.display().to_string(),
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
            (text, "stdin".to_string(), format!("{what} on stdin"))
        }
    };
    if text.trim().is_empty() {
        return Err(format!("{what} is empty ({origin} held nothing)"));
    }
    Ok(Input { text, source })
}

/// [`read_input`], read as JSON: text that is not JSON, or that holds an integer beyond 64 bits
/// (which would be kept rounded, and sent on so: the server's own check would never see it),
/// is refused naming where it came from.
pub(super) fn read_json(path: Option<&Path>, what: &str) -> Result<(Value, Input), String> {
    let input = read_input(path, what)?;
    let value = serde_json::from_str(&input.text).map_err(|e| format!("{} is not valid JSON: {e}", input.source))?;
    if let Some(wide) = crate::wide_integer::first_wide_integer(input.text.as_bytes()) {
        return Err(format!("{}: {wide}", input.source));
    }
    Ok((value, input))
}
