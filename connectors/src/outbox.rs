//! The outbox: every e-mail and Slack message the simulators "sent", so demos and tests can
//! show and check what would have gone out.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

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

/// The messages sent so far, shared by every clone (an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Outbox(Arc<Mutex<Vec<OutboxMessage>>>);

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a sent message (connectors call this once per message actually sent).
    pub fn push(&self, message: OutboxMessage) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(message);
    }

    /// A copy of every message sent, oldest first.
    pub fn messages(&self) -> Vec<OutboxMessage> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The messages one task sent, oldest first.
    pub fn for_task(&self, task_id: &str) -> Vec<OutboxMessage> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|m| m.task_id == task_id)
            .cloned()
            .collect()
    }

    /// How many messages were sent.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
