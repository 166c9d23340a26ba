//! Host-side connectors for Whenever steps.
//!
//! A step calls `call(connector, method, args-json)`; the host hands that to a [`Registry`],
//! which finds the [`Connector`] by name, checks the method, and runs the call once per
//! idempotency key (see [`idempotency`]). Every connector exists as a deterministic simulator
//! (the sandbox contract, like a payment provider's test cards); real implementations sit beside
//! the simulators behind the same trait and are chosen per connector by the config's `kind`
//! (`stripe`, `paypal`, `coinbase`, `slack`, `smtp`, and the generic `http` for any service that
//! takes `POST {base_url}/{method}`), with secrets read from environment variables the config
//! names. The crate's README documents every kind's settings.
//!
//! ```
//! use serde_json::json;
//! use whenever_connectors::{CallContext, Registry};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let registry = Registry::simulators();
//! let ctx = CallContext::new("order-1", "charge-card", "order-1/charge-card/1/0");
//! let args = json!({"amount": 124799, "currency": "usd", "source": "tok_visa"});
//! let paid = registry.call("stripe", "charge", &args, &ctx).await?;
//! assert_eq!(paid["fee"], json!(36.49));
//! // The same key again: the same answer and still one charge.
//! assert_eq!(registry.call("stripe", "charge", &args, &ctx).await?, paid);
//! assert_eq!(registry.effects().count("stripe", "charge"), 1);
//! # Ok::<(), whenever_connectors::ConnectorError>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod args;
pub mod coinbase;
pub mod config;
pub mod effects;
pub mod email;
pub mod error;
pub mod fraud_guard;
pub mod fulfillment;
pub mod http;
pub mod http_service;
pub mod idempotency;
pub mod inventory;
pub mod outbox;
pub mod paypal;
mod recent;
pub mod registry;
pub mod secret;
pub mod slack;
pub mod stripe;
pub mod tls_files;

pub use config::{BuildContext, CallOptions, ConnectorConfig, ConnectorsConfig};
pub use effects::{DEFAULT_EFFECTS_KEPT, Effect, Effects};
pub use error::{ConfigError, ConnectorError, ErrorKind};
pub use idempotency::IdempotencyCache;
pub use outbox::{DEFAULT_MESSAGES_KEPT, Outbox, OutboxMessage};
pub use registry::Registry;
pub use secret::{Env, Secret};

/// Who is calling: used for idempotency and the effects ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallContext {
    /// The task the calling step runs on.
    pub task_id: String,
    /// The calling step's name.
    pub step: String,
    /// Unique per call (derived by the host from task, step, run and call number); a repeat with
    /// the same key returns the first result and performs no second effect. Empty means "none":
    /// the call is then never deduplicated.
    pub idempotency_key: String,
}

impl CallContext {
    /// A context for one call.
    pub fn new(task_id: impl Into<String>, step: impl Into<String>, idempotency_key: impl Into<String>) -> Self {
        CallContext {
            task_id: task_id.into(),
            step: step.into(),
            idempotency_key: idempotency_key.into(),
        }
    }
}

/// A host-side service steps can call by name (a payment provider, e-mail, Slack, ...).
///
/// Implementations must be cheap to call concurrently and must never hold a `std` lock across
/// an `.await`. Idempotency is applied by the [`Registry`] around `call`.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Calls `method` with JSON `args`.
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError>;

    /// The methods this connector answers, so the registry can reject others as
    /// [`ErrorKind::Unknown`] before calling; empty (the default) means every method reaches `call`.
    fn methods(&self) -> &[&str] {
        &[]
    }
}

#[cfg(test)]
mod test_support;
