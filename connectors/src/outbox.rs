//! The outbox: every e-mail and Slack message the simulators "sent", so demos and tests can
//! show and check what would have gone out. It keeps the newest messages, so its memory stays
//! bounded in a long-running host.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::recent::Recent;

/// One message sent through a messaging connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    /// The task whose step sent it.
    pub task_id: String,
    /// The connector that sent it (`eMailSmtpOAuth`, `slackCom`).
    pub connector: String,
    /// The recipient: e-mail address(es, comma-separated) or Slack channel.
    pub to: String,
    /// The e-mail subject; `None` for chat messages.
    pub subject: Option<String>,
    /// The body (HTML for e-mails, text for Slack).
    pub body: String,
    /// When it was sent.
    pub at: DateTime<Utc>,
}

/// How many messages an outbox keeps by default: the newest, so that a long-running host holds a
/// bounded outbox (an e-mail with its HTML body is a few KB).
pub const DEFAULT_MESSAGES_KEPT: usize = 5_000;

/// The messages sent so far, shared by every clone (an `Arc` inside): the newest
/// [`DEFAULT_MESSAGES_KEPT`] (or the chosen number) in full, and how many were sent in all.
#[derive(Debug, Clone)]
pub struct Outbox(Arc<Mutex<Recent<OutboxMessage>>>);

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox keeping the newest [`DEFAULT_MESSAGES_KEPT`] messages.
    pub fn new() -> Self {
        Self::keeping(DEFAULT_MESSAGES_KEPT)
    }

    /// An empty outbox keeping the newest `kept` messages (at least one).
    pub fn keeping(kept: usize) -> Self {
        Outbox(Arc::new(Mutex::new(Recent::new(kept))))
    }

    fn recent(&self) -> MutexGuard<'_, Recent<OutboxMessage>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a sent message (connectors call this once per message actually sent), forgetting
    /// the oldest one kept when full.
    pub fn push(&self, message: OutboxMessage) {
        self.recent().push(message);
    }

    /// A copy of every message kept, oldest first.
    pub fn messages(&self) -> Vec<OutboxMessage> {
        self.recent().iter().cloned().collect()
    }

    /// The messages kept that one task sent, oldest first.
    pub fn for_task(&self, task_id: &str) -> Vec<OutboxMessage> {
        self.recent().iter().filter(|m| m.task_id == task_id).cloned().collect()
    }

    /// How many messages were sent, kept or not.
    pub fn len(&self) -> usize {
        self.recent().added()
    }

    /// How many messages are kept in full.
    pub fn kept(&self) -> usize {
        self.recent().kept()
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(task: &str) -> OutboxMessage {
        OutboxMessage {
            task_id: task.to_string(),
            connector: "slackCom".to_string(),
            to: "#orders".to_string(),
            subject: None,
            body: format!("{task} paid"),
            at: Utc::now(),
        }
    }

    #[test]
    fn keeps_the_newest_messages_and_counts_every_one() {
        let outbox = Outbox::keeping(2);
        for task in ["a", "b", "c"] {
            outbox.push(message(task));
        }
        assert_eq!((outbox.len(), outbox.kept()), (3, 2));
        let bodies: Vec<String> = outbox.messages().into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, ["b paid", "c paid"]);
        assert!(outbox.for_task("a").is_empty());
        assert_eq!(outbox.for_task("c").len(), 1);
    }
}
