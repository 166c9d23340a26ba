//! Scoped tokens kept in files (`[server.tokens.NAME] file = "..."`), read again when a file
//! changes: a token is rotated without a restart. A file holds one token per line and any of
//! them is accepted, so a rotation is: add the new token as a second line, move the clients to
//! it, remove the old line. A change that does not load (an unreadable or empty file, a secret
//! another token has) is reported on stderr and the tokens in use stay, as with a broken
//! certificate renewal ([`super::tls`]).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::auth::{ScopedToken, distinct};

/// How often the token files are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The tokens in `file`: its lines, without surrounding whitespace, blank ones skipped. Refuses
/// a file that cannot be read or holds no token.
pub fn read(file: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(format!("{} holds no token", file.display()));
    }
    Ok(tokens)
}

/// The scoped tokens the API accepts now. Cloning shares them.
#[derive(Clone, Default)]
pub(crate) struct LiveTokens(Arc<RwLock<Arc<Vec<ScopedToken>>>>);

impl LiveTokens {
    /// Starts with `tokens`.
    pub(crate) fn new(tokens: Vec<ScopedToken>) -> LiveTokens {
        LiveTokens(Arc::new(RwLock::new(Arc::new(tokens))))
    }

    /// The tokens as they are now (a change after this call does not alter what it returned).
    pub(crate) fn now(&self) -> Arc<Vec<ScopedToken>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any token comes from a file, and so may change.
    pub(crate) fn any_from_a_file(&self) -> bool {
        self.now().iter().any(|t| t.file.is_some())
    }

    /// Reads the token files every `interval` and, when one's tokens changed, serves them from
    /// the next request on (`full`, the `WHENEVER_TOKEN`, and the other tokens' secrets must
    /// stay distinct from them). Runs until dropped.
    pub(crate) async fn reload_on_change(self, full: Option<String>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        // What each file held when last read, so that a refused change is reported once.
        let mut seen: Vec<Option<Result<Vec<String>, String>>> = self
            .now()
            .iter()
            .map(|t| t.file.as_ref().map(|_| Ok(t.secrets.clone())))
            .collect();
        loop {
            ticks.tick().await;
            let mut next: Vec<ScopedToken> = self.now().as_ref().clone();
            let mut changed = Vec::new();
            for (token, was) in next.iter_mut().zip(&mut seen) {
                let Some(read_now) = token.file.as_deref().map(read) else {
                    continue;
                };
                if was.as_ref() == Some(&read_now) {
                    continue;
                }
                match &read_now {
                    Ok(secrets) => {
                        token.secrets = secrets.clone();
                        changed.push(token.name.clone());
                    }
                    Err(e) => eprintln!(
                        "whenever serve: token {}: {e}; it stays as it was until the file is fixed",
                        token.name
                    ),
                }
                *was = Some(read_now);
            }
            if changed.is_empty() {
                continue;
            }
            match distinct(&next, full.as_deref()) {
                Ok(()) => {
                    *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                    eprintln!("whenever serve: token {} read again from its file", changed.join(", "));
                }
                Err(e) => eprintln!("whenever serve: {e}; the tokens stay as they were"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_holds_one_token_per_line_and_at_least_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("shop");
        std::fs::write(&file, "  old-secret \n\n\tnew-secret\n").expect("written");
        assert_eq!(read(&file).expect("read"), ["old-secret", "new-secret"]);
        std::fs::write(&file, " \n\n").expect("written");
        let error = read(&file).expect_err("refused");
        assert!(error.ends_with("holds no token"), "{error}");
        let missing = dir.path().join("missing");
        let error = read(&missing).expect_err("refused");
        assert!(
            error.starts_with(&format!("cannot read {}", missing.display())),
            "{error}"
        );
    }
}
