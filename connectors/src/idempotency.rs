//! The shared once-only cache: a call repeated with the same idempotency key returns the first
//! call's result (Ok or Err) and performs no second effect, even when the repeats are concurrent.
//!
//! The [`Registry`](crate::Registry) puts every connector call through one such cache, so the
//! guarantee holds for simulators and real implementations alike; real implementations should
//! also pass the key on to their provider so it survives a host restart.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::ConnectorError;

/// A connector call's outcome.
pub type CallResult = Result<Value, ConnectorError>;

/// How many keys the cache remembers by default before forgetting the oldest. A repeat of a
/// call within one process comes within moments of the first (a run re-run after its journal
/// write failed, concurrent duplicates); after a restart the journal replays results instead. A
/// remembered call costs a few hundred bytes (`--bench retention` measures the whole registry).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A call's outcome as the cache keeps it: a success as its JSON text, which takes a fraction of
/// the memory of the parsed value (a few hundred bytes for a small object).
#[derive(Debug)]
enum Stored {
    Ok(Box<str>),
    Err(ConnectorError),
}

impl Stored {
    fn of(result: &CallResult) -> Stored {
        match result {
            // serde_json's writer, not `Display`'s formatter; a `Value` always serializes.
            Ok(value) => Stored::Ok(
                serde_json::to_string(value)
                    .unwrap_or_else(|_| value.to_string())
                    .into_boxed_str(),
            ),
            Err(error) => Stored::Err(error.clone()),
        }
    }

    fn result(&self) -> CallResult {
        match self {
            Stored::Ok(text) => serde_json::from_str(text).map_err(|e| {
                ConnectorError::failed(format!("the remembered result of this call cannot be read back: {e}"))
            }),
            Stored::Err(error) => Err(error.clone()),
        }
    }
}

/// Once-only results by (connector, method, idempotency key); cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct IdempotencyCache {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    /// By [`joined_key`]; the text is shared with `order`.
    cells: HashMap<Arc<str>, Arc<OnceCell<Stored>>>,
    order: VecDeque<Arc<str>>,
}

/// One text naming (connector, method, key) unambiguously: the connector and the method are
/// prefixed with their lengths, so no choice of names makes two triples meet.
///
/// Written piece by piece: through `format!` this one line was 0.4% of the CPU of the service
/// bench's HTTP row (perf).
fn joined_key(connector: &str, method: &str, key: &str) -> String {
    let mut digits = itoa::Buffer::new();
    let mut joined = String::with_capacity(connector.len() + method.len() + key.len() + 8);
    joined.push_str(digits.format(connector.len()));
    joined.push(':');
    joined.push_str(connector);
    joined.push_str(digits.format(method.len()));
    joined.push(':');
    joined.push_str(method);
    joined.push_str(key);
    joined
}

impl Default for IdempotencyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl IdempotencyCache {
    /// An empty cache remembering up to [`DEFAULT_CAPACITY`] keys.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty cache remembering up to `capacity` keys (at least one); the oldest are forgotten
    /// first, so a long-running host does not grow without bound.
    pub fn with_capacity(capacity: usize) -> Self {
        IdempotencyCache {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
        }
    }

    /// Runs `call` once for this (connector, method, key) and returns its result; later or
    /// concurrent calls with the same triple wait for and return that same result.
    ///
    /// The lock is never held across `.await`: concurrent callers share a `OnceCell`. If the
    /// first caller is cancelled before finishing, the next one runs `call` instead.
    pub async fn once<F, Fut>(&self, connector: &str, method: &str, key: &str, call: F) -> CallResult
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = CallResult>,
    {
        let cell = self.cell(connector, method, key);
        // The caller that runs `call` returns its result as it came; the others read it back.
        let mut fresh = None;
        let stored = cell
            .get_or_init(|| async {
                let result = call().await;
                let stored = Stored::of(&result);
                fresh = Some(result);
                stored
            })
            .await;
        match fresh {
            Some(result) => result,
            None => stored.result(),
        }
    }

    /// The stored result for this call, if it has finished.
    pub fn get(&self, connector: &str, method: &str, key: &str) -> Option<CallResult> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let cell = state.cells.get(joined_key(connector, method, key).as_str())?;
        cell.get().map(Stored::result)
    }

    /// How many keys the cache remembers.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).cells.len()
    }

    /// Whether the cache remembers no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cell(&self, connector: &str, method: &str, key: &str) -> Arc<OnceCell<Stored>> {
        let joined = joined_key(connector, method, key);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = state.cells.get(joined.as_str()) {
            return Arc::clone(cell);
        }
        while state.cells.len() >= self.capacity {
            match state.order.pop_front() {
                Some(oldest) => {
                    state.cells.remove(&oldest);
                }
                None => break,
            }
        }
        let joined: Arc<str> = Arc::from(joined);
        let cell = Arc::new(OnceCell::new());
        state.cells.insert(Arc::clone(&joined), Arc::clone(&cell));
        state.order.push_back(joined);
        cell
    }
}

/// The first 12 hex characters of the SHA-256 of `key`: the deterministic part of the ids
/// simulators hand out (`txn_…`, `RES-…`, ...), so demo output is reproducible.
pub fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut text = hex::encode(digest);
    text.truncate(12);
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    #[test]
    fn a_joined_key_prefixes_the_connector_and_method_with_their_lengths() {
        assert_eq!(
            joined_key("stripe", "charge", "t_1:pay:1:1"),
            "6:stripe6:charget_1:pay:1:1"
        );
        assert_eq!(joined_key("", "", ""), "0:0:");
        let long = "x".repeat(1234);
        assert_eq!(joined_key(&long, "m", "k"), format!("1234:{long}1:mk"));
        // The names cannot shift into each other.
        assert_ne!(joined_key("ab", "c", "k"), joined_key("a", "bc", "k"));
    }

    #[tokio::test]
    async fn same_key_runs_once_and_returns_the_stored_result() {
        let cache = IdempotencyCache::new();
        let runs = AtomicUsize::new(0);
        for _ in 0..3 {
            let r = cache
                .once("c", "m", "k", || async {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    Ok(json!(n))
                })
                .await;
            assert_eq!(r, Ok(json!(0)));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get("c", "m", "k"), Some(Ok(json!(0))));
    }

    #[tokio::test]
    async fn errors_are_stored_too() {
        let cache = IdempotencyCache::new();
        let first = cache
            .once("c", "m", "k", || async { Err(ConnectorError::failed("no")) })
            .await;
        let second = cache.once("c", "m", "k", || async { Ok(json!(1)) }).await;
        assert_eq!(first, Err(ConnectorError::failed("no")));
        assert_eq!(second, first);
    }

    #[tokio::test]
    async fn different_keys_methods_or_connectors_run_separately() {
        let cache = IdempotencyCache::new();
        let runs = AtomicUsize::new(0);
        // The three with ':' in a name would meet if the cache joined the names with ':'; the
        // last one's connector looks like a length prefix.
        let triples = [
            ("c", "m", "k"),
            ("c", "m", "k2"),
            ("c", "m2", "k"),
            ("c2", "m", "k"),
            ("a:b", "c", "k"),
            ("a", "b:c", "k"),
            ("a", "b", "c:k"),
            ("1:a", "", "k"),
        ];
        for (c, m, k) in triples {
            cache
                .once(c, m, k, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(json!(null))
                })
                .await
                .ok();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 8);
        assert_eq!(cache.len(), 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_with_one_key_run_once() {
        let cache = Arc::new(IdempotencyCache::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..16 {
            let cache = Arc::clone(&cache);
            let runs = Arc::clone(&runs);
            handles.push(tokio::spawn(async move {
                cache
                    .once("c", "m", "k", || async move {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok(json!(runs.fetch_add(1, Ordering::SeqCst)))
                    })
                    .await
            }));
        }
        for h in handles {
            assert!(matches!(h.await, Ok(Ok(v)) if v == json!(0)));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn capacity_forgets_the_oldest_keys() {
        let cache = IdempotencyCache::with_capacity(2);
        for k in ["a", "b", "c"] {
            cache.once("c", "m", k, || async { Ok(json!(k)) }).await.ok();
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("c", "m", "a"), None);
        assert_eq!(cache.get("c", "m", "c"), Some(Ok(json!("c"))));
    }

    #[tokio::test]
    async fn a_remembered_result_reads_back_with_its_key_order_and_numbers() {
        let cache = IdempotencyCache::new();
        let value = json!({"zeta": 1, "alpha": 0.1, "mid": {"b": [1.5e300, -0.0], "a": "é"}});
        let first = cache.once("c", "m", "k", || async { Ok(value.clone()) }).await;
        let again = cache
            .once("c", "m", "k", || async { Ok(json!("a second effect")) })
            .await;
        assert_eq!(first.as_ref().map(Value::to_string), Ok(value.to_string()));
        assert_eq!(again.as_ref().map(Value::to_string), Ok(value.to_string()));
        assert_eq!(
            cache.get("c", "m", "k").map(|r| r.map(|v| v.to_string())),
            Some(Ok(value.to_string()))
        );
    }

    #[test]
    fn key_hash_is_12_hex_chars_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(key_hash("abc"), "ba7816bf8f01");
        assert_eq!(key_hash("abc"), key_hash("abc"));
        assert_ne!(key_hash("abc"), key_hash("abd"));
    }
}
