//! `slackCom`: posts messages to Slack channels. Kind `slack` is the real Slack
//! ([`SlackApi`]): `chat.postMessage` with a bot token, or an incoming webhook.

use std::fmt;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, CallOptions, ConnectorConfig, HTTP, SIMULATOR, SLACK, Settings};
use crate::http::{Caller, TlsClient};
use crate::http_service::{self, IDEMPOTENCY_HEADER, idempotency_value};
use crate::secret::Secret;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects, Outbox, OutboxMessage};

/// The name steps call this connector by.
pub const NAME: &str = "slackCom";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["send"];

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(SlackSimulator::new(cx)))
        }
        SLACK => Ok(Arc::new(SlackApi::new(config, cx)?)),
        HTTP => http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, SLACK, HTTP])),
    }
}

/// Slack's Web API unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";

/// The settings of kind `slack`, besides `timeout_ms`, `retries` and `backoff_ms`.
pub const SETTINGS: &[&str] = &[
    "token_env",
    "webhook_url_env",
    "base_url",
    "ca_file",
    "client_cert",
    "client_key",
];

/// How the real Slack posts.
enum Mode {
    /// `POST {base_url}/chat.postMessage` with a bot token.
    Bot { base_url: String, token: Secret },
    /// `POST` to an incoming-webhook URL (itself a secret).
    Webhook { url: Secret },
}

/// The real Slack, in one of two modes:
///
/// - bot token (`token_env`): `POST {base_url}/chat.postMessage`, JSON `{channel, text}`,
///   `Authorization: Bearer <token>`. `{ok:true, ts}` → `{ok:true, ts}`; Slack's
///   `{ok:false, error}` → error kind `failed` with Slack's error code (`channel_not_found`, ...).
/// - incoming webhook (`webhook_url_env`, the URL being the secret): `POST <url>`, JSON
///   `{text, channel}` (the channel is where the webhook is bound; it is still required, as by
///   the simulator). `200 ok` → `{ok:true, ts:null}` (webhooks return no timestamp); another
///   answer → `failed` with Slack's text (`no_service`, `channel_is_archived`, ...).
///
/// Both: `5xx`, `429` (honouring `Retry-After`), no connection → retried, then `unavailable`;
/// no answer in time → `timeout`. Sent messages go into the outbox, like the simulator's.
pub struct SlackApi {
    client: TlsClient,
    mode: Mode,
    options: CallOptions,
    outbox: Outbox,
    effects: Effects,
}

impl fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SlackApi");
        match &self.mode {
            Mode::Bot { base_url, token } => d
                .field("mode", &"bot")
                .field("base_url", base_url)
                .field("token", token),
            Mode::Webhook { url } => d.field("mode", &"webhook").field("webhook_url", url),
        };
        d.field("options", &self.options).finish()
    }
}

impl SlackApi {
    /// Reads the settings of kind `slack`: exactly one of `token_env` and `webhook_url_env`.
    pub fn new(config: &ConnectorConfig, cx: &BuildContext) -> Result<Self, ConfigError> {
        let s = Settings::new(NAME, config, cx, SETTINGS)?;
        let mode = match (s.has("token_env"), s.has("webhook_url_env")) {
            (true, false) => Mode::Bot {
                base_url: s.url("base_url", Some(DEFAULT_BASE_URL))?,
                token: s.secret("token_env")?,
            },
            (false, true) => {
                if s.has("base_url") {
                    return Err(s.error("setting `base_url` does not apply to `webhook_url_env`"));
                }
                let url = s.secret("webhook_url_env")?;
                // Checked without ever showing it: the URL is the secret.
                let ok = reqwest::Url::parse(url.expose())
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                if !ok {
                    return Err(s.error("the variable named by `webhook_url_env` does not hold an http(s) URL"));
                }
                Mode::Webhook { url }
            }
            _ => {
                return Err(s.error(
                    "kind `slack` needs exactly one of `token_env` (a bot token) and \
                     `webhook_url_env` (an incoming webhook)",
                ));
            }
        };
        Ok(SlackApi {
            client: s.http_client()?,
            mode,
            options: s.call_options()?,
            outbox: cx.outbox.clone(),
            effects: cx.effects.clone(),
        })
    }

    async fn send(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("slackCom.send", args)?;
        let channel = a.str("channel")?;
        let text = a.opt_str("text")?.ok_or_else(|| a.error("`text` is required"))?;
        let key = idempotency_value(ctx);
        let body = json!({"channel": channel, "text": text});
        let (ts, reference) = match &self.mode {
            Mode::Bot { base_url, token } => {
                let url = format!("{base_url}/chat.postMessage");
                let caller = Caller {
                    connector: NAME,
                    options: &self.options,
                    secrets: vec![token],
                };
                let reply = caller
                    .send(|| {
                        self.client
                            .post(&url)
                            .bearer_auth(token.expose())
                            .header(IDEMPOTENCY_HEADER, key.clone())
                            .json(&body)
                    })
                    .await?;
                let answer = reply.json().unwrap_or(Value::Null);
                if answer.get("ok").and_then(Value::as_bool) != Some(true) {
                    let error = answer
                        .get("error")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("slack answered {}: {}", reply.status, reply.message()));
                    return Err(caller.failed(&error));
                }
                let ts = answer.get("ts").and_then(Value::as_str).unwrap_or_default().to_string();
                (Value::String(ts.clone()), ts)
            }
            Mode::Webhook { url } => {
                let caller = Caller {
                    connector: NAME,
                    options: &self.options,
                    secrets: vec![url],
                };
                let reply = caller
                    .send(|| {
                        self.client
                            .post(url.expose())
                            .header(IDEMPOTENCY_HEADER, key.clone())
                            .json(&body)
                    })
                    .await?;
                if !reply.status.is_success() {
                    let text = reply.text();
                    let text = if text.is_empty() {
                        format!("slack webhook answered {}", reply.status)
                    } else {
                        text
                    };
                    return Err(caller.failed(&text));
                }
                (
                    Value::Null,
                    format!("webhook:{}", crate::idempotency::key_hash(&ctx.idempotency_key)),
                )
            }
        };
        self.outbox.push(OutboxMessage {
            task_id: ctx.task_id.clone(),
            connector: NAME.to_string(),
            to: channel.to_string(),
            subject: None,
            body: text.to_string(),
            at: Utc::now(),
        });
        self.effects.record(ctx, NAME, "send", &reference);
        Ok(json!({"ok": true, "ts": ts}))
    }
}

#[async_trait::async_trait]
impl Connector for SlackApi {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "send" => self.send(args, ctx).await,
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

/// A Slack-style message timestamp (`"1712345678.123456"`) derived from the idempotency key,
/// so the same call always gets the same `ts`.
pub fn deterministic_ts(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut high = [0u8; 8];
    high.copy_from_slice(&digest[..8]);
    let n = u64::from_be_bytes(high);
    format!("{}.{:06}", 1_700_000_000 + n % 100_000_000, (n >> 32) % 1_000_000)
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
        let text = a.opt_str("text")?.ok_or_else(|| a.error("`text` is required"))?;
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
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
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
            (sent[0].to.as_str(), sent[0].subject.as_deref(), sent[0].body.as_str()),
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
        assert!(secs.chars().chain(micros.chars()).all(|c| c.is_ascii_digit()));
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
