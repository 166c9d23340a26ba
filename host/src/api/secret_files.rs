//! Secrets kept in files, read again when a file changes, so that they are rotated without a
//! restart: scoped tokens (`[server.tokens.NAME] file`) and webhook secrets (`[hooks.NAME]
//! secret_file`). A file holds one secret per line and any of them is accepted, so a rotation
//! is: add the new secret as a second line, move the clients (or the provider) to it, remove the
//! old line. A change that does not load (an unreadable or empty file, a token another token
//! has) is reported on stderr and the secrets in use stay, as with a broken certificate renewal
//! ([`super::tls`]).
//!
//! Which secret a request used is told by its fingerprint ([`fingerprint`]): `/metrics` counts
//! the uses of each (`whenever_secret_uses_total`), so the operator sees when no client uses the
//! old line any more, and the log names the fingerprints a file holds each time it is read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::auth::{ScopedToken, distinct};

/// How often the files are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The secrets in `file`: its lines, without surrounding whitespace, blank ones skipped. Refuses
/// a file that cannot be read or holds none.
pub fn read(file: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(format!("{} holds no secret", file.display()));
    }
    Ok(tokens)
}

/// What tells a secret apart without revealing it: the first 8 hex digits of its SHA-256, as
/// `printf %s "$SECRET" | sha256sum | cut -c1-8` prints them. 32 bits of a hash say nothing
/// usable about a secret worth the name, and tell a file's two lines apart.
pub fn fingerprint(secret: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut text = hex::encode(Sha256::digest(secret));
    text.truncate(8);
    text
}

/// `secrets`' fingerprints, for a log line: `3f2a9c1e, 7b1d00aa`.
fn fingerprints<S: AsRef<[u8]>>(secrets: &[S]) -> String {
    let each: Vec<String> = secrets.iter().map(|s| fingerprint(s.as_ref())).collect();
    each.join(", ")
}

/// A value read by every request and replaced now and then by the rereading: a reader takes the
/// value as it is (an `Arc`), and a replacement does not alter what readers already took.
/// Cloning shares it.
struct Swappable<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Swappable<T> {
    fn clone(&self) -> Self {
        Swappable(self.0.clone())
    }
}

impl<T> Swappable<T> {
    fn new(value: T) -> Swappable<T> {
        Swappable(Arc::new(RwLock::new(Arc::new(value))))
    }

    fn now(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

/// A webhook's secrets: one from the environment, or a file's. Cloning shares them.
#[derive(Clone)]
pub struct HookSecrets {
    current: Swappable<Vec<Vec<u8>>>,
    /// The file they come from, read again when it changes.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for HookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSecrets")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl HookSecrets {
    /// One secret that never changes (from the environment).
    pub fn fixed(secret: Vec<u8>) -> HookSecrets {
        HookSecrets {
            current: Swappable::new(vec![secret]),
            file: None,
        }
    }

    /// The secrets in `file` ([`read`]), read again by [`reread_on_change`].
    pub fn from_file(file: &Path) -> Result<HookSecrets, String> {
        let secrets = read(file)?.into_iter().map(String::into_bytes).collect();
        Ok(HookSecrets {
            current: Swappable::new(secrets),
            file: Some(file.to_path_buf()),
        })
    }

    /// The secrets as they are now.
    pub fn now(&self) -> Arc<Vec<Vec<u8>>> {
        self.current.now()
    }

    fn set(&self, secrets: &[String]) {
        self.current
            .replace(secrets.iter().map(|s| s.as_bytes().to_vec()).collect());
    }
}

/// The scoped tokens the API accepts now. Cloning shares them.
#[derive(Clone)]
pub(crate) struct LiveTokens(Swappable<Vec<ScopedToken>>);

impl LiveTokens {
    /// Starts with `tokens`.
    pub(crate) fn new(tokens: Vec<ScopedToken>) -> LiveTokens {
        LiveTokens(Swappable::new(tokens))
    }

    /// The tokens as they are now (a change after this call does not alter what it returned).
    pub(crate) fn now(&self) -> Arc<Vec<ScopedToken>> {
        self.0.now()
    }

    /// What each token's file held when read at start (its secrets), for [`LastRead::changed`].
    fn files(&self) -> Vec<LastRead> {
        self.now()
            .iter()
            .map(|t| LastRead(Some(Ok(t.secrets.clone()))))
            .collect()
    }

    /// Reads again the files of the tokens that have one; on a change that loads and keeps
    /// every secret distinct (from `full` too), serves it from the next request on. `seen` is
    /// what each file held when last read, so that a refused change is reported once.
    fn reread(&self, full: Option<&str>, seen: &mut [LastRead]) {
        let mut next: Vec<ScopedToken> = self.now().as_ref().clone();
        let mut changed = Vec::new();
        for (token, last) in next.iter_mut().zip(seen.iter_mut()) {
            let Some(read_now) = token.file.as_deref().and_then(|file| last.changed(file)) else {
                continue;
            };
            match read_now {
                Ok(secrets) => {
                    changed.push(format!("{} (secrets {})", token.name, fingerprints(&secrets)));
                    token.secrets = secrets;
                }
                Err(e) => eprintln!(
                    "whenever serve: token {}: {e}; it stays as it was until the file is fixed",
                    token.name
                ),
            }
        }
        if changed.is_empty() {
            return;
        }
        match distinct(&next, full) {
            Ok(()) => {
                self.0.replace(next);
                eprintln!("whenever serve: token {} read again from its file", changed.join(", "));
            }
            Err(e) => eprintln!("whenever serve: {e}; the tokens stay as they were"),
        }
    }
}

/// What a file held when last read, to tell when it changes.
struct LastRead(Option<Result<Vec<String>, String>>);

impl LastRead {
    /// `file` as it reads now, when that differs from last time.
    fn changed(&mut self, file: &Path) -> Option<Result<Vec<String>, String>> {
        let now = read(file);
        if self.0.as_ref() == Some(&now) {
            return None;
        }
        self.0 = Some(now.clone());
        Some(now)
    }
}

/// Whether any of `tokens` or `hooks` has a file to read again.
pub(crate) fn any_file(tokens: &LiveTokens, hooks: &[(String, HookSecrets)]) -> bool {
    tokens.now().iter().any(|t| t.file.is_some()) || hooks.iter().any(|(_, h)| h.file.is_some())
}

/// Reads the files of `tokens` and `hooks` every `interval` and serves what changed from the
/// next request on (see the module docs); `full` is the `WHENEVER_TOKEN`, which no scoped token
/// may share. Runs until dropped.
pub(crate) async fn reread_on_change(
    tokens: LiveTokens,
    full: Option<String>,
    hooks: Vec<(String, HookSecrets)>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut tokens_seen = tokens.files();
    // What was loaded at start, so that a change made since is seen at the first reading.
    let mut hooks_seen: Vec<LastRead> = hooks
        .iter()
        .map(|(_, secrets)| {
            let loaded = secrets
                .now()
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            LastRead(Some(Ok(loaded)))
        })
        .collect();
    loop {
        ticks.tick().await;
        tokens.reread(full.as_deref(), &mut tokens_seen);
        for ((hook, secrets), last) in hooks.iter().zip(&mut hooks_seen) {
            match secrets.file.as_deref().and_then(|file| last.changed(file)) {
                None => {}
                Some(Ok(now)) => {
                    secrets.set(&now);
                    eprintln!(
                        "whenever serve: hook {hook}: its secret read again from its file (secrets {})",
                        fingerprints(&now)
                    );
                }
                Some(Err(e)) => eprintln!("whenever serve: hook {hook}: {e}; its secret stays as it was"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_the_start_of_the_secrets_sha256() {
        assert_eq!(fingerprint(b"abc"), "ba7816bf", "the SHA-256 test vector of \"abc\"");
        assert_ne!(fingerprint(b"old-secret"), fingerprint(b"new-secret"));
        assert_eq!(fingerprints(&["abc", "abc"]), "ba7816bf, ba7816bf");
    }

    #[test]
    fn a_token_file_holds_one_token_per_line_and_at_least_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("shop");
        std::fs::write(&file, "  old-secret \n\n\tnew-secret\n").expect("written");
        assert_eq!(read(&file).expect("read"), ["old-secret", "new-secret"]);
        std::fs::write(&file, " \n\n").expect("written");
        let error = read(&file).expect_err("refused");
        assert!(error.ends_with("holds no secret"), "{error}");
        let missing = dir.path().join("missing");
        let error = read(&missing).expect_err("refused");
        assert!(
            error.starts_with(&format!("cannot read {}", missing.display())),
            "{error}"
        );
    }
}
