//! `slackCom`: posts messages to Slack channels.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects, Outbox, OutboxMessage};

/// The name steps call this connector by.
pub const NAME: &str = "slackCom";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["send"];

/// Builds the implementation `config.kind` selects.
pub fn build(
    config: &ConnectorConfig,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(SlackSimulator::new(cx)))
        }
        other => Err(config::unknown_kind(NAME, other)),
    }
}

/// A Slack-style message timestamp (`"1712345678.123456"`) derived from the idempotency key,
/// so the same call always gets the same `ts`.
pub fn deterministic_ts(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut high = [0u8; 8];
    high.copy_from_slice(&digest[..8]);
    let n = u64::from_be_bytes(high);
    format!(
        "{}.{:06}",
        1_700_000_000 + n % 100_000_000,
        (n >> 32) % 1_000_000
    )
}

/// The deterministic Slack: records each message in the outbox and answers `{ok:true, ts}`.
#[derive(Debug, Clone)]
pub struct SlackSimulator {
    outbox: Outbox,
    effects: Effects,
}

impl SlackSimulator {
    /// A simulator posting into `cx.outbox` and recording in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        SlackSimulator {
            outbox: cx.outbox.clone(),
            effects: cx.effects.clone(),
        }
    }

    fn send(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("slackCom.send", args)?;
        let channel = a.str("channel")?;
        let text = a
            .opt_str("text")?
            .ok_or_else(|| a.error("`text` is required"))?;
        let ts = deterministic_ts(&ctx.idempotency_key);
        self.outbox.push(OutboxMessage {
            task_id: ctx.task_id.clone(),
            connector: NAME.to_string(),
            to: channel.to_string(),
            subject: None,
            body: text.to_string(),
            at: Utc::now(),
        });
        self.effects.record(ctx, NAME, "send", &ts);
        Ok(json!({"ok": true, "ts": ts}))
    }
}

#[async_trait::async_trait]
impl Connector for SlackSimulator {
    async fn call(
        &self,
        method: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
        match method {
            "send" => self.send(args, ctx),
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_support::call;
    use crate::{ErrorKind, Registry};

    use super::*;

    #[tokio::test]
    async fn posts_into_the_outbox_once_per_key() {
        let reg = Registry::simulators();
        let args = json!({"channel": "#orders", "text": "Order o1 shipped"});
        let a = call(&reg, NAME, "send", args.clone(), "k").await;
        assert_eq!(a, Ok(json!({"ok": true, "ts": deterministic_ts("k")})));
        assert_eq!(call(&reg, NAME, "send", args.clone(), "k").await, a);
        let sent = reg.outbox().messages();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (
                sent[0].to.as_str(),
                sent[0].subject.as_deref(),
                sent[0].body.as_str()
            ),
            ("#orders", None, "Order o1 shipped")
        );
        assert_eq!(reg.effects().count(NAME, "send"), 1);
        let b = call(&reg, NAME, "send", args, "k2").await;
        assert!(b.is_ok() && b != a);
        assert_eq!(reg.outbox().len(), 2);
        assert_eq!(reg.effects().count(NAME, "send"), 2);
    }

    #[test]
    fn ts_looks_like_slack_and_is_deterministic() {
        let ts = deterministic_ts("abc");
        assert_eq!(ts, deterministic_ts("abc"));
        let (secs, micros) = ts.split_once('.').unwrap_or_default();
        assert_eq!((secs.len(), micros.len()), (10, 6));
        assert!(
            secs.chars()
                .chain(micros.chars())
                .all(|c| c.is_ascii_digit())
        );
    }

    #[tokio::test]
    async fn channel_and_text_are_required() {
        let reg = Registry::simulators();
        for (k, args) in [
            ("a", json!({"text": "hi"})),
            ("b", json!({"channel": "#x"})),
            ("c", json!({"channel": "", "text": "hi"})),
        ] {
            let r = call(&reg, NAME, "send", args, k).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
        }
        assert!(reg.outbox().is_empty());
    }
}
