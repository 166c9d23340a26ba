//! The effects ledger: every side effect a connector performed (charge, capture, reservation,
//! release, fulfilment order, e-mail, Slack message), once per idempotency key, so tests can
//! count e.g. "exactly one charge per order". It keeps the newest effects in full and exact
//! totals per connector method, so its memory stays bounded in a long-running host.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::CallContext;
use crate::recent::Recent;

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

/// How many effects a ledger keeps by default: the newest, so that a long-running host holds a
/// bounded ledger (a few hundred bytes an effect); totals per connector method stay exact.
pub const DEFAULT_EFFECTS_KEPT: usize = 50_000;

/// The effects performed so far, shared by every clone (an `Arc` inside): the newest
/// [`DEFAULT_EFFECTS_KEPT`] (or the chosen number) in full, and exact totals per connector method.
#[derive(Debug, Clone)]
pub struct Effects(Arc<Mutex<Ledger>>);

#[derive(Debug)]
struct Ledger {
    recent: Recent<Effect>,
    /// How many effects each (connector, method) ever recorded: a handful of entries.
    totals: Vec<(String, String, usize)>,
}

impl Default for Effects {
    fn default() -> Self {
        Self::new()
    }
}

impl Effects {
    /// An empty ledger keeping the newest [`DEFAULT_EFFECTS_KEPT`] effects.
    pub fn new() -> Self {
        Self::keeping(DEFAULT_EFFECTS_KEPT)
    }

    /// An empty ledger keeping the newest `kept` effects (at least one).
    pub fn keeping(kept: usize) -> Self {
        Effects(Arc::new(Mutex::new(Ledger {
            recent: Recent::new(kept),
            totals: Vec::new(),
        })))
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
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
        let mut ledger = self.ledger();
        match ledger
            .totals
            .iter_mut()
            .find(|(c, m, _)| *c == connector && *m == method)
        {
            Some((_, _, total)) => *total += 1,
            None => ledger.totals.push((connector.to_string(), method.to_string(), 1)),
        }
        ledger.recent.push(effect);
    }

    /// A copy of every effect kept, oldest first.
    pub fn all(&self) -> Vec<Effect> {
        self.ledger().recent.iter().cloned().collect()
    }

    /// The effects kept that one task caused, oldest first.
    pub fn for_task(&self, task_id: &str) -> Vec<Effect> {
        self.ledger()
            .recent
            .iter()
            .filter(|e| e.task_id == task_id)
            .cloned()
            .collect()
    }

    /// How many times `connector.method` performed an effect (over all tasks, kept or not).
    pub fn count(&self, connector: &str, method: &str) -> usize {
        self.ledger()
            .totals
            .iter()
            .find(|(c, m, _)| c == connector && m == method)
            .map_or(0, |(_, _, total)| *total)
    }

    /// How many times `connector.method` performed an effect for one task, among the effects kept.
    pub fn count_for_task(&self, task_id: &str, connector: &str, method: &str) -> usize {
        self.ledger()
            .recent
            .iter()
            .filter(|e| e.task_id == task_id && e.connector == connector && e.method == method)
            .count()
    }

    /// How many effects were recorded, kept or not.
    pub fn len(&self) -> usize {
        self.ledger().recent.added()
    }

    /// How many effects are kept in full.
    pub fn kept(&self) -> usize {
        self.ledger().recent.kept()
    }

    /// Whether no effect was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(effects: &Effects, task: &str, n: usize) {
        let ctx = CallContext::new(task, "payment", format!("{task}:payment:1:{n}"));
        effects.record(&ctx, "stripe", "charge", &format!("txn_{n}"));
    }

    #[test]
    fn keeps_the_newest_effects_and_exact_totals() {
        let effects = Effects::keeping(3);
        for n in 0..5 {
            charge(&effects, &format!("order-{n}"), n);
        }
        let ctx = CallContext::new("order-9", "notify", "order-9:notify:1:1");
        effects.record(&ctx, "slackCom", "send", "ts-1");
        assert_eq!(
            effects.count("stripe", "charge"),
            5,
            "totals count forgotten effects too"
        );
        assert_eq!(effects.count("slackCom", "send"), 1);
        assert_eq!(effects.count("stripe", "refund"), 0);
        assert_eq!((effects.len(), effects.kept()), (6, 3));
        let kept: Vec<String> = effects.all().into_iter().map(|e| e.reference).collect();
        assert_eq!(kept, ["txn_3", "txn_4", "ts-1"]);
        assert!(effects.for_task("order-0").is_empty(), "the oldest effect is forgotten");
        assert_eq!(effects.count_for_task("order-4", "stripe", "charge"), 1);
    }
}
