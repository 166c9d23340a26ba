//! The generic `http` kind: any connector, RetailMax's own services (`fraudGuard`,
//! `inventorySystem`, `fulfillmentSystem`) or a name of your own, as `POST {base_url}/{method}`
//! with the call's JSON arguments as the body, an `Idempotency-Key` header, and bearer or
//! custom-header auth with a token from the environment.
//!
//! Answers: `2xx` → its JSON body is the result (an empty body is `null`); `400`/`422` →
//! `invalid-args` with the service's message; other `4xx` → `failed` with the service's
//! message; `5xx`, `429` and connection failures are retried, then `unavailable`; a timeout is
//! `timeout`.

use std::fmt;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::{BuildContext, CallOptions, ConnectorConfig, Settings};
use crate::http::{Caller, TlsClient};
use crate::idempotency::key_hash;
use crate::secret::Secret;
use crate::{
    CallContext, ConfigError, Connector, ConnectorError, Effects, coinbase, email, fraud_guard, fulfillment, inventory,
    paypal, slack, stripe,
};

/// The settings of kind `http`, besides `timeout_ms`, `retries` and `backoff_ms`.
pub const SETTINGS: &[&str] = &[
    "base_url",
    "token_env",
    "auth_header",
    "auth_scheme",
    "methods",
    "effect_methods",
    "ca_file",
    "client_cert",
    "client_key",
];

/// The header carrying the call's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The methods a built-in connector answers (the default `methods` for kind `http`).
fn builtin_methods(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        stripe::NAME => stripe::METHODS,
        paypal::NAME => paypal::METHODS,
        coinbase::NAME => coinbase::METHODS,
        fraud_guard::NAME => fraud_guard::METHODS,
        inventory::NAME => inventory::METHODS,
        fulfillment::NAME => fulfillment::METHODS,
        email::NAME => email::METHODS,
        slack::NAME => slack::METHODS,
        _ => return None,
    })
}

/// The methods of a built-in connector that have side effects (the default `effect_methods`).
fn builtin_effect_methods(name: &str) -> &'static [&'static str] {
    match name {
        stripe::NAME => &["charge"],
        paypal::NAME => &["executePayment"],
        coinbase::NAME => &["processPayment"],
        inventory::NAME => &["reserve", "release"],
        fulfillment::NAME => &["createOrder"],
        email::NAME => &["sendEmail"],
        slack::NAME => &["send"],
        _ => &[],
    }
}

/// Builds connector `name` of kind `http` from its settings.
pub fn build(name: &str, config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    let s = Settings::new(name, config, cx, SETTINGS)?;
    let base_url = s.url("base_url", None)?;
    let token = s.opt_secret("token_env")?;
    let header = match s.opt_str("auth_header")? {
        None => reqwest::header::AUTHORIZATION,
        Some(h) => HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| s.error(format!("setting `auth_header` is not a header name: `{h}`")))?,
    };
    if token.is_none() && (s.has("auth_header") || s.has("auth_scheme")) {
        return Err(s.error("settings `auth_header` and `auth_scheme` need `token_env`"));
    }
    let scheme = match s.opt_str("auth_scheme")? {
        Some(scheme) => scheme.trim().to_string(),
        None if header == reqwest::header::AUTHORIZATION => "Bearer".to_string(),
        None => String::new(),
    };
    let auth = match token {
        None => None,
        Some(token) => {
            let text = if scheme.is_empty() {
                token.expose().to_string()
            } else {
                format!("{scheme} {}", token.expose())
            };
            let mut value = HeaderValue::from_str(&text)
                .map_err(|_| s.error("the token in the variable named by `token_env` is not a valid header value"))?;
            value.set_sensitive(true);
            Some(Auth { header, value, token })
        }
    };
    let methods = match s.opt_str_list("methods")? {
        Some(list) => Some(list),
        None => builtin_methods(name).map(|m| m.iter().map(|s| s.to_string()).collect()),
    };
    if let Some(bad) = methods.iter().flatten().find(|m| !is_method_name(m)) {
        return Err(s.error(format!(
            "setting `methods`: `{bad}` is not a method name (letters, digits, `_`, `-`, `.`)"
        )));
    }
    let effect_methods = match s.opt_str_list("effect_methods")? {
        Some(list) => list,
        None => builtin_effect_methods(name).iter().map(|s| s.to_string()).collect(),
    };
    Ok(Arc::new(HttpService {
        name: name.to_string(),
        client: s.http_client()?,
        base_url,
        auth,
        methods,
        effect_methods,
        options: s.call_options()?,
        effects: cx.effects.clone(),
    }))
}

/// A method name that can go into a URL path as is.
fn is_method_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 100
        && !m.starts_with('.')
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The `Idempotency-Key` header for a call: the key itself when it is a valid header value of
/// at most 255 characters (Stripe's limit), else `sha256-<hex of the key>` (same key, same value).
pub(crate) fn idempotency_value(ctx: &CallContext) -> HeaderValue {
    let key = &ctx.idempotency_key;
    let fits = key.len() <= 255 && key.bytes().all(|b| (0x20..0x7f).contains(&b));
    match fits.then(|| HeaderValue::from_str(key).ok()).flatten() {
        Some(v) => v,
        None => {
            use sha2::{Digest, Sha256};
            let hex = hex::encode(Sha256::digest(key.as_bytes()));
            HeaderValue::from_str(&format!("sha256-{hex}")).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"))
        }
    }
}

/// How a call authenticates: one header, its value built from a secret.
struct Auth {
    header: HeaderName,
    value: HeaderValue,
    token: Secret,
}

/// A connector of kind `http`.
pub struct HttpService {
    name: String,
    client: TlsClient,
    base_url: String,
    auth: Option<Auth>,
    methods: Option<Vec<String>>,
    effect_methods: Vec<String>,
    options: CallOptions,
    effects: Effects,
}

impl fmt::Debug for HttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpService")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("auth_header", &self.auth.as_ref().map(|a| a.header.as_str()))
            .field("token", &self.auth.as_ref().map(|a| &a.token))
            .field("methods", &self.methods)
            .field("effect_methods", &self.effect_methods)
            .field("options", &self.options)
            .finish()
    }
}

impl HttpService {
    fn caller(&self) -> Caller<'_> {
        Caller {
            connector: &self.name,
            options: &self.options,
            secrets: self.auth.iter().map(|a| &a.token).collect(),
        }
    }
}

#[async_trait::async_trait]
impl Connector for HttpService {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let name = &self.name;
        if let Some(methods) = &self.methods
            && !methods.iter().any(|m| m == method)
        {
            return Err(ConnectorError::unknown(format!(
                "unknown method `{name}.{method}` (known: {})",
                methods.join(", ")
            )));
        }
        if !is_method_name(method) {
            return Err(ConnectorError::unknown(format!(
                "unknown method `{name}.{method}`: not a valid method name"
            )));
        }
        let url = format!("{}/{method}", self.base_url);
        let key = idempotency_value(ctx);
        let caller = self.caller();
        let reply = caller
            .send(|| {
                let mut request = self
                    .client
                    .post(&url)
                    .header(IDEMPOTENCY_HEADER, key.clone())
                    .json(args);
                if let Some(auth) = &self.auth {
                    request = request.header(auth.header.clone(), auth.value.clone());
                }
                request
            })
            .await?;
        if reply.status.is_success() {
            let value = if reply.body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                reply.json().ok_or_else(|| {
                    ConnectorError::failed(format!(
                        "{name}.{method}: the service answered {} with a body that is not JSON",
                        reply.status
                    ))
                })?
            };
            if self.effect_methods.iter().any(|m| m == method) {
                let reference = value
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| key_hash(&ctx.idempotency_key));
                self.effects.record(ctx, name, method, &reference);
            }
            return Ok(value);
        }
        let message = reply.message();
        let message = if message.is_empty() {
            format!("{name}.{method}: the service answered {}", reply.status)
        } else {
            message
        };
        match reply.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Err(caller.invalid(&message)),
            _ => Err(caller.failed(&message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_path_safe() {
        for ok in ["analyze", "check_stock", "v2.reserve", "a-b"] {
            assert!(is_method_name(ok), "{ok}");
        }
        for bad in ["", "../admin", "a/b", ".hidden", "a b", "a?x=1", "é"] {
            assert!(!is_method_name(bad), "{bad}");
        }
    }

    #[test]
    fn idempotency_values_are_the_key_or_its_hash() {
        let v = idempotency_value(&CallContext::new("t", "s", "order-1/pay/1/0"));
        assert_eq!(v.to_str().ok(), Some("order-1/pay/1/0"));
        let v = idempotency_value(&CallContext::new("t", "s", "bad\nkey"));
        assert!(v.to_str().is_ok_and(|s| s.starts_with("sha256-") && s.len() == 71));
        let long = "k".repeat(300);
        let a = idempotency_value(&CallContext::new("t", "s", long.as_str()));
        let b = idempotency_value(&CallContext::new("t", "s", long.as_str()));
        assert_eq!(a, b);
    }
}
