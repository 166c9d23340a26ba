//! Idempotent task creation: a request that carries a key (`Idempotency-Key`, or a webhook's
//! delivery id) creates at most one task, however often it is sent.
//!
//! Webhook senders and HTTP clients deliver at least once: a request whose answer was lost (a
//! timeout, a server killed after its commit) is sent again. Without a key that second delivery
//! would be a second order, charged a second time. With one, the task's id is derived from the
//! scope and the key, so the store's unique task id refuses the second task in the same commit
//! that would have stored it, on one host or on a cluster's shared database alike, with no table
//! or lock of its own; the repeat is answered with the task the first delivery created. The
//! key lives as long as that task: once it is deleted the key may create a new one.
//!
//! The task remembers the SHA-256 of the request body that created it, so a key reused for a
//! different request is refused instead of silently answered with an unrelated task (as the
//! IETF's `Idempotency-Key` draft and Stripe do).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The longest key accepted, in bytes (Stripe's limit).
pub const MAX_KEY_BYTES: usize = 255;

/// A key that cannot identify a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The key is empty (or only spaces).
    #[error("the idempotency key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("the idempotency key is {0} bytes long; at most {MAX_KEY_BYTES} are accepted")]
    TooLong(usize),
    /// The key holds a control character.
    #[error("the idempotency key holds a control character")]
    ControlCharacter,
}

/// The request that created a task under an idempotency key: its scope, its key and its
/// body's digest. A task created without a key has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestKey {
    /// Where the key was given: `tasks` (`POST /v1/tasks`) or `hook:NAME` (a webhook), so
    /// that two hooks' delivery ids never meet.
    pub scope: String,
    /// The key as the client gave it.
    pub key: String,
    /// The SHA-256 (hex) of the request body that created the task.
    pub body_sha256: String,
}

impl RequestKey {
    /// The key `key` of a request to `scope` with body `body`; the key is trimmed of spaces.
    pub fn new(scope: &str, key: &str, body: &[u8]) -> Result<RequestKey, KeyError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong(key.len()));
        }
        if key.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacter);
        }
        Ok(RequestKey {
            scope: scope.to_string(),
            key: key.to_string(),
            body_sha256: hex::encode(Sha256::digest(body)),
        })
    }

    /// The id of the task this key creates: the same scope and key always give the same id (and
    /// different ones, different ids), whatever the body. It has the shape of a fresh id.
    pub fn task_id(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"whenever request key\0");
        hash.update(self.scope.as_bytes());
        hash.update(b"\0");
        hash.update(self.key.as_bytes());
        format!("t_{}", &hex::encode(hash.finalize())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scope_and_key_give_one_task_id_whatever_the_body() {
        let first = RequestKey::new("hook:orders", "evt_1", b"{\"a\":1}").expect("key");
        let again = RequestKey::new("hook:orders", " evt_1 ", b"{\"a\":1}").expect("key");
        let other_body = RequestKey::new("hook:orders", "evt_1", b"{\"a\":2}").expect("key");
        assert_eq!(first.task_id(), again.task_id());
        assert_eq!(first, again, "the same request");
        assert_eq!(first.task_id(), other_body.task_id());
        assert_ne!(first, other_body, "another request under the same key");
        assert!(first.task_id().starts_with("t_") && first.task_id().len() == 18);
    }

    #[test]
    fn another_scope_or_key_gives_another_id() {
        let key = RequestKey::new("hook:orders", "evt_1", b"{}").expect("key");
        let other_hook = RequestKey::new("hook:refunds", "evt_1", b"{}").expect("key");
        let api = RequestKey::new("tasks", "evt_1", b"{}").expect("key");
        let other_key = RequestKey::new("hook:orders", "evt_2", b"{}").expect("key");
        // The separator keeps ("a", "b:c") and ("a:b", "c") apart.
        let shifted = RequestKey::new("hook:orders\0evt", "_1", b"{}").expect("key");
        let ids = [key, other_hook, api, other_key, shifted].map(|k| k.task_id());
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id} is unique");
        }
    }

    #[test]
    fn keys_that_cannot_identify_a_request_are_refused() {
        assert_eq!(RequestKey::new("tasks", "  ", b"{}"), Err(KeyError::Empty));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            RequestKey::new("tasks", &long, b"{}"),
            Err(KeyError::TooLong(MAX_KEY_BYTES + 1))
        );
        assert!(RequestKey::new("tasks", &"k".repeat(MAX_KEY_BYTES), b"{}").is_ok());
        assert_eq!(RequestKey::new("tasks", "a\nb", b"{}"), Err(KeyError::ControlCharacter));
    }
}
