//! The effects ledger: every side effect a connector performed (charge, capture, reservation,
//! release, fulfilment order, e-mail, Slack message), once per idempotency key, so tests can
//! count e.g. "exactly one charge per order".

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::CallContext;

/// One side effect performed by a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effect {
    /// The task whose step caused it.
    pub task_id: String,
    /// The step that made the call.
    pub step: String,
    /// The connector that performed it (`stripe`, `inventorySystem`, ...).
    pub connector: String,
    /// The method called (`charge`, `reserve`, ...).
    pub method: String,
    /// The call's idempotency key.
    pub idempotency_key: String,
    /// The id of what was created or changed (`txn_…`, `RES-…`, a message id, ...).
    pub reference: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// The effects performed so far, shared by every clone (an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Effects(Arc<Mutex<Vec<Effect>>>);

impl Effects {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `connector.method` performed an effect for `ctx`, creating or changing `reference`.
    pub fn record(&self, ctx: &CallContext, connector: &str, method: &str, reference: &str) {
        let effect = Effect {
            task_id: ctx.task_id.clone(),
            step: ctx.step.clone(),
            connector: connector.to_string(),
            method: method.to_string(),
            idempotency_key: ctx.idempotency_key.clone(),
            reference: reference.to_string(),
            at: Utc::now(),
        };
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(effect);
    }

    /// A copy of every effect, oldest first.
    pub fn all(&self) -> Vec<Effect> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The effects one task caused, oldest first.
    pub fn for_task(&self, task_id: &str) -> Vec<Effect> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.task_id == task_id)
            .cloned()
            .collect()
    }

    /// How many times `connector.method` performed an effect (over all tasks).
    pub fn count(&self, connector: &str, method: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.connector == connector && e.method == method)
            .count()
    }

    /// How many times `connector.method` performed an effect for one task.
    pub fn count_for_task(&self, task_id: &str, connector: &str, method: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.task_id == task_id && e.connector == connector && e.method == method)
            .count()
    }

    /// How many effects were recorded.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no effect was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
