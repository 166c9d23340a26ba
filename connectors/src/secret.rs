//! Secrets: API keys, tokens and passwords, read from the environment variables a connector's
//! config names (`secret_key_env = "STRIPE_SECRET_KEY"`), never from the config file itself, and
//! never shown: [`Secret`] has no `Display` and its `Debug` prints a placeholder, and connectors
//! scrub secrets out of every message a provider sends back before it reaches an error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A secret value. `Debug` shows `Secret(<redacted>)`; there is no `Display`, so a secret cannot
/// end up in a `format!` by accident. Read it with [`Secret::expose`] where a request needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (an `Authorization` header, ...).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where connectors read their secrets: the process environment (the default), or a fixed set
/// of variables (for tests, and for hosts that load secrets from elsewhere).
/// `Debug` lists variable names only, never values.
#[derive(Clone, Default)]
pub struct Env {
    vars: Option<Arc<BTreeMap<String, String>>>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vars {
            None => f.write_str("Env(process)"),
            Some(vars) => f.debug_tuple("Env").field(&vars.keys().collect::<Vec<_>>()).finish(),
        }
    }
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Env { vars: None }
    }

    /// No variables at all (every `*_env` setting then fails to resolve).
    pub fn empty() -> Self {
        Env {
            vars: Some(Arc::new(BTreeMap::new())),
        }
    }

    /// Exactly these variables (the process environment is not consulted).
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: Some(Arc::new(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect())),
        }
    }

    /// The variable's value as a secret; `None` when it is unset, empty or not Unicode.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        let value = match &self.vars {
            None => std::env::var(name).ok(),
            Some(vars) => vars.get(name).cloned(),
        }?;
        if value.trim().is_empty() {
            None
        } else {
            Some(Secret(value))
        }
    }
}

/// Secrets shorter than this are not scrubbed from messages (replacing every `a` in a message
/// would garble it while protecting nothing).
const MIN_REDACTED_LEN: usize = 4;

/// `text` with every occurrence of any of `secrets` replaced by `[redacted]`.
pub(crate) fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        let value = s.expose();
        if value.len() >= MIN_REDACTED_LEN && out.contains(value) {
            out = out.replace(value, "[redacted]");
        }
    }
    out
}

/// Whether `name` is acceptable as the name of an environment variable holding a secret:
/// upper-case letters, digits and underscores, not starting with a digit. Requiring upper case
/// keeps a secret pasted into an `*_env` setting by mistake (API keys and tokens contain lower
/// case or dashes) from being echoed in an error message.
pub(crate) fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("sk_test_abcdef");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "sk_test_abcdef");
        let env = Env::from_vars([("KEY", "sk_test_abcdef")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("KEY") && !shown.contains("sk_test"), "{shown}");
        assert_eq!(format!("{:?}", Env::process()), "Env(process)");
    }

    #[test]
    fn env_reads_fixed_vars_and_treats_empty_as_unset() {
        let env = Env::from_vars([("A", "value"), ("EMPTY", "  ")]);
        assert_eq!(
            env.secret("A").map(|s| s.expose().to_string()).as_deref(),
            Some("value")
        );
        assert!(env.secret("EMPTY").is_none());
        assert!(env.secret("MISSING").is_none());
        assert!(Env::process().secret("WHENEVER_SURELY_UNSET_VARIABLE_1234").is_none());
    }

    #[test]
    fn redact_replaces_every_secret() {
        let a = Secret::new("sk_live_123");
        let b = Secret::new("xy");
        assert_eq!(
            redact("bad key sk_live_123 (sk_live_123) xy", &[&a, &b]),
            "bad key [redacted] ([redacted]) xy"
        );
    }

    #[test]
    fn env_names_are_upper_case_identifiers() {
        for ok in ["STRIPE_SECRET_KEY", "_X", "A1"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "sk_live_abc", "xoxb-123", "A B", "lower"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }
}
