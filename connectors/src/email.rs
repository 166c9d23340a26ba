//! `eMailSmtpOAuth`: sends e-mail (SMTP with OAuth in the real implementation).

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::idempotency::key_hash;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects, Outbox, OutboxMessage};

/// The name steps call this connector by.
pub const NAME: &str = "eMailSmtpOAuth";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["sendEmail"];

/// Recipients in this domain bounce: the call fails with `mailbox unavailable`.
pub const BOUNCE_DOMAIN: &str = "bounce.test";

/// Builds the implementation `config.kind` selects.
pub fn build(
    config: &ConnectorConfig,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(EmailSimulator::new(cx)))
        }
        other => Err(config::unknown_kind(NAME, other)),
    }
}

/// The deterministic mail server: records each e-mail in the outbox and answers
/// `messageId` `msg_<hash of the idempotency key>`; recipients at [`BOUNCE_DOMAIN`] fail.
#[derive(Debug, Clone)]
pub struct EmailSimulator {
    outbox: Outbox,
    effects: Effects,
}

impl EmailSimulator {
    /// A simulator sending into `cx.outbox` and recording in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        EmailSimulator {
            outbox: cx.outbox.clone(),
            effects: cx.effects.clone(),
        }
    }

    fn send_email(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("eMailSmtpOAuth.sendEmail", args)?;
        let recipients: Vec<&str> = match a.get("to") {
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            Some(Value::Array(_)) => a.opt_str_list("to")?.into_iter().map(str::trim).collect(),
            Some(_) => return Err(a.error("`to` must be an address or a list of addresses")),
            None => return Err(a.error("`to` is required")),
        };
        if recipients.is_empty() {
            return Err(a.error("`to` names no recipient"));
        }
        let mut domains = Vec::with_capacity(recipients.len());
        for r in &recipients {
            match r.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    domains.push(domain.to_ascii_lowercase())
                }
                _ => return Err(a.error(format!("`{r}` is not an e-mail address"))),
            }
        }
        a.opt_str("from")?;
        let subject = a.opt_str("subject")?;
        let body = match a.opt_str("html")? {
            Some(html) => html,
            None => a.opt_str("text")?.unwrap_or_default(),
        };
        if domains.iter().any(|d| d == BOUNCE_DOMAIN) {
            return Err(ConnectorError::failed("mailbox unavailable"));
        }
        let message_id = format!("msg_{}", key_hash(&ctx.idempotency_key));
        self.outbox.push(OutboxMessage {
            task_id: ctx.task_id.clone(),
            connector: NAME.to_string(),
            to: recipients.join(", "),
            subject: Some(subject.unwrap_or_default().to_string()),
            body: body.to_string(),
            at: Utc::now(),
        });
        self.effects.record(ctx, NAME, "sendEmail", &message_id);
        Ok(json!({"messageId": message_id}))
    }
}

#[async_trait::async_trait]
impl Connector for EmailSimulator {
    async fn call(
        &self,
        method: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
        match method {
            "sendEmail" => self.send_email(args, ctx),
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

    fn mail(to: Value) -> Value {
        json!({"from": "shop@example.com", "to": to, "subject": "Your order", "html": "<p>Thanks!</p>"})
    }

    #[tokio::test]
    async fn sends_into_the_outbox_once_per_key() {
        let reg = Registry::simulators();
        let a = call(&reg, NAME, "sendEmail", mail(json!("ann@example.com")), "k").await;
        assert_eq!(
            a,
            Ok(json!({"messageId": format!("msg_{}", key_hash("k"))}))
        );
        assert_eq!(
            call(&reg, NAME, "sendEmail", mail(json!("ann@example.com")), "k").await,
            a
        );
        let sent = reg.outbox().messages();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].task_id, "task-1");
        assert_eq!(sent[0].connector, NAME);
        assert_eq!(sent[0].to, "ann@example.com");
        assert_eq!(sent[0].subject.as_deref(), Some("Your order"));
        assert_eq!(sent[0].body, "<p>Thanks!</p>");
        assert_eq!(reg.effects().count(NAME, "sendEmail"), 1);
        assert!(
            call(
                &reg,
                NAME,
                "sendEmail",
                mail(json!(["a@x.com", "b@y.com"])),
                "k2"
            )
            .await
            .is_ok()
        );
        assert_eq!(reg.outbox().messages()[1].to, "a@x.com, b@y.com");
        assert_eq!(reg.outbox().len(), 2);
    }

    #[tokio::test]
    async fn bounce_domain_fails_without_sending() {
        let reg = Registry::simulators();
        for (k, to) in [
            ("a", json!("bob@bounce.test")),
            ("b", json!(["ok@example.com", "bob@BOUNCE.test"])),
        ] {
            let r = call(&reg, NAME, "sendEmail", mail(to), k).await;
            assert_eq!(r, Err(ConnectorError::failed("mailbox unavailable")));
        }
        // Only the domain itself bounces.
        assert!(
            call(
                &reg,
                NAME,
                "sendEmail",
                mail(json!("bob@notbounce.test")),
                "c"
            )
            .await
            .is_ok()
        );
        assert_eq!(reg.outbox().len(), 1);
        assert_eq!(reg.effects().len(), 1);
    }

    #[tokio::test]
    async fn bad_recipients_are_invalid_args() {
        let reg = Registry::simulators();
        for (k, to) in [
            ("a", json!(null)),
            ("b", json!("nobody")),
            ("c", json!(5)),
            ("d", json!([])),
            ("e", json!(" , ")),
        ] {
            let r = call(&reg, NAME, "sendEmail", mail(to), k).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs), "{k}");
        }
        assert!(reg.outbox().is_empty());
    }
}
