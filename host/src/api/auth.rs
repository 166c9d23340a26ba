//! Who may call what: the bearer tokens. `WHENEVER_TOKEN` may do everything; the tokens of
//! `[server.tokens.NAME]` only what their scopes allow, so that a shop's webhook sender cannot
//! deploy steps, nor a dashboard change tasks:
//!
//! - `read`: every `GET` (tasks, steps, deliveries, `/metrics`, the OpenAPI document);
//! - `tasks`: creating tasks and webhook deliveries, patching, retrying and deleting tasks;
//! - `deliver`: webhook deliveries only, to the hooks the token's `hooks` names (or to all): a
//!   sender that can neither read nor change a task (a shop cannot approve its own order);
//! - `steps`: deploying, rolling back and removing steps.
//!
//! A token used beyond its scopes is answered 403, naming the scope the request needs. `/healthz`
//! and `/readyz` need no token, and a webhook with a secret is authenticated by its signature instead.

use std::collections::BTreeSet;
use std::fmt;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::{Scope, TokenSection};
use crate::service::metrics::SecretOf;

/// The route of webhook deliveries.
const DELIVERIES: &str = "/v1/hooks/{hook}";

/// The scope a request needs: reads need `read`; changes to steps (their deploys, rollbacks and
/// removals) `steps`; webhook deliveries `deliver` (which `tasks` covers too); every other
/// change `tasks`.
fn scope_needed(method: &Method, route: Option<&str>) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        return Scope::Read;
    }
    match route {
        Some(route) if route.starts_with("/v1/steps/") => Scope::Steps,
        Some(DELIVERIES) => Scope::Deliver,
        _ => Scope::Tasks,
    }
}

/// Whether `scopes` let a token make a request that needs `needed`.
fn covers(scopes: &BTreeSet<Scope>, needed: Scope) -> bool {
    scopes.contains(&needed) || (needed == Scope::Deliver && scopes.contains(&Scope::Tasks))
}

/// A token with fewer rights than `WHENEVER_TOKEN`'s.
#[derive(Clone)]
pub struct ScopedToken {
    /// Its name in the config (`[server.tokens.NAME]`), told in a 403 so the operator knows
    /// which token a refused client holds.
    pub name: String,
    /// The secrets a client may present as `Authorization: Bearer TOKEN` (one from `env`; a
    /// file's lines, while a rotation is under way several).
    pub secrets: Vec<String>,
    /// The file the secrets come from, read again when it changes ([`super::secret_files`]).
    pub file: Option<std::path::PathBuf>,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// The hooks it may deliver to (`None`: every hook).
    pub hooks: Option<BTreeSet<String>>,
}

impl fmt::Debug for ScopedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// The config's scoped tokens with their secrets, read through `lookup` (the environment in
/// `whenever serve`) or from their files. Refuses a variable that is unset or empty, a file that
/// cannot be read or holds no token, two tokens (or a token and `full`, the `WHENEVER_TOKEN`)
/// with the same secret, whose scopes could not be told apart, and `hooks` on a token whose
/// scopes do not let it deliver (a mistake that would pass unseen).
pub fn scoped_tokens(
    tokens: &std::collections::BTreeMap<String, TokenSection>,
    full: Option<&str>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ScopedToken>, String> {
    let mut scoped: Vec<ScopedToken> = Vec::new();
    for (name, section) in tokens {
        let secrets = match (&section.env, &section.file) {
            (Some(var), _) => vec![
                lookup(var)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("token {name}: the environment variable {var} is not set"))?,
            ],
            (None, Some(file)) => super::secret_files::read(file).map_err(|e| format!("token {name}: {e}"))?,
            (None, None) => return Err(format!("token {name}: neither env nor file is set")),
        };
        let scopes = match section.scopes.is_empty() {
            true => BTreeSet::from([Scope::Read]),
            false => section.scopes.iter().copied().collect(),
        };
        if section.hooks.is_some() && !covers(&scopes, Scope::Deliver) {
            return Err(format!(
                "token {name}: `hooks` names where it may deliver, but its scopes do not let it deliver \
                 (add `deliver`)"
            ));
        }
        scoped.push(ScopedToken {
            name: name.clone(),
            secrets,
            file: section.file.clone().filter(|_| section.env.is_none()),
            scopes,
            hooks: section.hooks.as_ref().map(|hooks| hooks.iter().cloned().collect()),
        });
    }
    distinct(&scoped, full)?;
    Ok(scoped)
}

/// The name the history records for the token that may do everything.
pub const FULL_TOKEN: &str = "WHENEVER_TOKEN";

/// The token that may do everything, kept in `file` (`WHENEVER_TOKEN_FILE`) rather than in
/// `WHENEVER_TOKEN`: served as a token with every scope, so that it is read again when the file
/// changes, like the scoped tokens' files ([`super::secret_files`]).
pub fn full_token_from_file(file: &std::path::Path) -> Result<ScopedToken, String> {
    Ok(ScopedToken {
        name: FULL_TOKEN.to_string(),
        secrets: super::secret_files::read(file).map_err(|e| format!("WHENEVER_TOKEN_FILE: {e}"))?,
        file: Some(file.to_path_buf()),
        scopes: BTreeSet::from([Scope::Read, Scope::Tasks, Scope::Deliver, Scope::Steps]),
        hooks: None,
    })
}

/// Refuses two tokens (or a token and `full`, the `WHENEVER_TOKEN`) that share a secret: their
/// scopes could not be told apart.
pub(super) fn distinct(tokens: &[ScopedToken], full: Option<&str>) -> Result<(), String> {
    let mut seen: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for token in tokens {
        for secret in &token.secrets {
            if full == Some(secret.as_str()) {
                return Err(format!("token {}: the same secret as WHENEVER_TOKEN", token.name));
            }
            if let Some(twin) = seen.insert(secret, &token.name)
                && twin != token.name
            {
                return Err(format!("tokens {twin} and {}: the same secret", token.name));
            }
        }
    }
    Ok(())
}

/// Who made a request, as the history records it: the name of the token it carried
/// (`WHENEVER_TOKEN`, or a scoped token's name). [`authenticate`] leaves it with the request,
/// and a handler takes it as an argument.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<String>);

/// Who a step's history records for a change made through an API without tokens (which only
/// listens on loopback): someone on this machine, not named.
pub const NO_TOKEN: &str = "an API client without a token";

impl Caller {
    /// The token's name; `None` when the API has no tokens.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Who a step's changes record: the token's name, or [`NO_TOKEN`] (a step route always
    /// carries a token when the API has tokens).
    pub fn step_changer(&self) -> &str {
        self.name().unwrap_or(NO_TOKEN)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_default())
    }
}

/// The middleware: lets a request through when auth is off, for `/healthz` and `/readyz`, for a signed
/// webhook, or with a token whose scopes cover it; 401 or 403 otherwise.
pub(super) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let options = &state.options;
    // A reread changes tokens' secrets, never which tokens there are: this needs no lock.
    if !options.has_tokens() {
        return next.run(request).await;
    }
    let path = request.uri().path();
    // Probes carry no token; neither answer says more than how the host is.
    if path == "/healthz" || path == "/readyz" {
        return next.run(request).await;
    }
    // A webhook with a secret is authenticated by its signature (checked by the handler, which
    // is given the hook's name decoded, as here).
    if let Some(hook) = hook_named(path)
        && options.hooks.get(hook.as_ref()).is_some_and(|h| h.signed.is_some())
    {
        return next.run(request).await;
    }
    let Some(given) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive, and one or more spaces follow it (RFC 9110):
        // `bearer  TOKEN` is `Bearer TOKEN`.
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token.trim_start_matches(' '))
    else {
        return ApiError::Unauthorized(
            unsigned_hook_needs_token(options, path)
                .unwrap_or_else(|| "this server needs Authorization: Bearer TOKEN".into()),
        )
        .into_response();
    };
    if options
        .token
        .as_deref()
        .is_some_and(|token| constant_time_eq(given.as_bytes(), token.as_bytes()))
    {
        used(&state, FULL_TOKEN, given);
        request.extensions_mut().insert(Caller(Some(FULL_TOKEN.into())));
        return next.run(request).await;
    }
    // Every secret of every scoped token is compared, so the time taken does not tell which
    // one matched.
    let scoped = state.tokens.now();
    let matched = scoped.iter().fold(None, |found, t| {
        let matches = t.secrets.iter().fold(false, |any, secret| {
            any | constant_time_eq(given.as_bytes(), secret.as_bytes())
        });
        if matches { Some(t) } else { found }
    });
    let Some(scoped) = matched else {
        return ApiError::Unauthorized("the bearer token is not valid".into()).into_response();
    };
    used(&state, &scoped.name, given);
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let needed = scope_needed(request.method(), route);
    if covers(&scoped.scopes, needed) {
        if needed == Scope::Deliver
            && let Some(refused) = hook_refused(scoped, request.uri().path())
        {
            return refused.into_response();
        }
        request.extensions_mut().insert(Caller(Some(scoped.name.clone())));
        return next.run(request).await;
    }
    let has: Vec<String> = scoped.scopes.iter().map(Scope::to_string).collect();
    ApiError::Forbidden(format!(
        "the token {} may not do this: {} {} needs the scope `{needed}`, and it has {}",
        scoped.name,
        request.method(),
        route.unwrap_or(request.uri().path()),
        if has.is_empty() {
            "none".to_string()
        } else {
            has.join(", ")
        }
    ))
    .into_response()
}

/// What a delivery without a token to hook `path` is told, where hooks with a secret are
/// configured: that this one has none (a misspelt hook name, most often), and which do.
fn unsigned_hook_needs_token(options: &super::ApiOptions, path: &str) -> Option<String> {
    let hook = hook_named(path)?;
    let signed = super::hooks::signed_hooks(options);
    if signed.is_empty() {
        return None;
    }
    Some(format!(
        "hook {hook:?} has no secret in this server's config, so a delivery to it needs \
         Authorization: Bearer TOKEN (the hooks with a secret: {})",
        signed.join(", ")
    ))
}

/// The hook a delivery's `path` (`/v1/hooks/{hook}`) names, percent-decoded as the router
/// decodes it for the handler, so that the check here and the handler's agree on which hook it
/// is; `None` for another route or a name that is not UTF-8 once decoded.
fn hook_named(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let hook = path.strip_prefix("/v1/hooks/").filter(|hook| !hook.contains('/'))?;
    percent_encoding::percent_decode_str(hook).decode_utf8().ok()
}

/// Counts a use of the token `name`'s secret `given` (which matched), so that a rotation can
/// tell when the old secret is no longer used. A refused scope counts too: the client still
/// holds that secret.
fn used(state: &AppState, name: &str, given: &str) {
    state.service.metrics().secret_used(SecretOf {
        kind: "token",
        name: name.to_string(),
        fingerprint: super::secret_files::fingerprint(given.as_bytes()),
    });
}

/// The refusal of a delivery to the hook `path` names when `token` may deliver only to others.
fn hook_refused(token: &ScopedToken, path: &str) -> Option<ApiError> {
    let allowed = token.hooks.as_ref()?;
    let hook = hook_named(path).unwrap_or_default();
    if allowed.contains(hook.as_ref()) {
        return None;
    }
    let names: Vec<&str> = allowed.iter().map(String::as_str).collect();
    Some(ApiError::Forbidden(format!(
        "the token {} may not deliver to hook {hook:?}: it may deliver to {}",
        token.name,
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn reads_need_read_step_changes_steps_deliveries_deliver_and_every_other_change_tasks() {
        assert_eq!(scope_needed(&Method::GET, Some("/v1/steps/{name}")), Scope::Read);
        assert_eq!(scope_needed(&Method::GET, Some("/metrics")), Scope::Read);
        assert_eq!(
            scope_needed(&Method::GET, Some("/v1/steps/{name}/changes")),
            Scope::Read
        );
        assert_eq!(scope_needed(&Method::PUT, Some("/v1/steps/{name}")), Scope::Steps);
        assert_eq!(
            scope_needed(&Method::POST, Some("/v1/steps/{name}/rollback")),
            Scope::Steps
        );
        assert_eq!(scope_needed(&Method::DELETE, Some("/v1/steps/{name}")), Scope::Steps);
        assert_eq!(scope_needed(&Method::POST, Some("/v1/tasks")), Scope::Tasks);
        assert_eq!(scope_needed(&Method::POST, Some("/v1/hooks/{hook}")), Scope::Deliver);
        assert_eq!(
            scope_needed(&Method::GET, Some("/v1/hooks/{hook}/deliveries/{key}")),
            Scope::Read
        );
        assert_eq!(scope_needed(&Method::PATCH, Some("/v1/tasks/{id}")), Scope::Tasks);
        assert_eq!(scope_needed(&Method::DELETE, None), Scope::Tasks);
    }

    fn section(env: &str, scopes: &[Scope]) -> TokenSection {
        TokenSection {
            env: Some(env.into()),
            file: None,
            scopes: scopes.to_vec(),
            hooks: None,
        }
    }

    #[test]
    fn a_hook_is_named_by_its_decoded_path_segment() {
        assert_eq!(hook_named("/v1/hooks/re%20turns").as_deref(), Some("re turns"));
        assert_eq!(hook_named("/v1/hooks/x%2541").as_deref(), Some("x%41"));
        assert_eq!(hook_named("/v1/hooks/shop/deliveries/k1"), None, "another route");
        assert_eq!(hook_named("/v1/hooks/%FF"), None, "not UTF-8");
        assert_eq!(hook_named("/v1/tasks"), None);
    }

    #[test]
    fn tasks_covers_deliveries_and_deliver_covers_nothing_else() {
        let tasks = BTreeSet::from([Scope::Tasks]);
        let deliver = BTreeSet::from([Scope::Deliver]);
        assert!(covers(&tasks, Scope::Deliver) && covers(&tasks, Scope::Tasks));
        assert!(covers(&deliver, Scope::Deliver));
        for needed in [Scope::Tasks, Scope::Read, Scope::Steps] {
            assert!(!covers(&deliver, needed), "{needed}");
        }
    }

    #[test]
    fn a_token_with_hooks_delivers_to_those_only_and_must_be_able_to_deliver() {
        let env = |_: &str| Some("sender-secret".to_string());
        let listed = |scopes: &[Scope]| {
            BTreeMap::from([(
                "sender".to_string(),
                TokenSection {
                    hooks: Some(vec!["checkout".into(), "re turns".into()]),
                    ..section("SENDER", scopes)
                },
            )])
        };
        let scoped = scoped_tokens(&listed(&[Scope::Deliver]), None, env).expect("valid");
        let sender = &scoped[0];
        assert!(hook_refused(sender, "/v1/hooks/checkout").is_none());
        assert!(
            hook_refused(sender, "/v1/hooks/re%20turns").is_none(),
            "names are decoded"
        );
        let refused = hook_refused(sender, "/v1/hooks/refunds").expect("refused").to_string();
        assert!(
            refused.contains("sender") && refused.contains("\"refunds\"") && refused.contains("checkout, re turns"),
            "{refused}"
        );
        let everywhere = scoped_tokens(
            &BTreeMap::from([("s".to_string(), section("S", &[Scope::Deliver]))]),
            None,
            env,
        )
        .expect("valid");
        assert!(
            hook_refused(&everywhere[0], "/v1/hooks/refunds").is_none(),
            "no list: every hook"
        );
        let error = scoped_tokens(&listed(&[Scope::Read]), None, env).expect_err("refused");
        assert!(
            error.contains("token sender") && error.contains("add `deliver`"),
            "{error}"
        );
        assert!(
            scoped_tokens(&listed(&[Scope::Tasks]), None, env).is_ok(),
            "tasks delivers"
        );
    }

    #[test]
    fn scoped_tokens_are_read_from_their_variables_and_refused_when_unset_or_shared() {
        let env = |name: &str| match name {
            "SHOP" => Some("shop-secret".to_string()),
            "DASH" => Some("dash-secret".to_string()),
            "EMPTY" => Some(String::new()),
            "ADMIN_TOO" => Some("admin".to_string()),
            _ => None,
        };
        let tokens = BTreeMap::from([
            ("shop".to_string(), section("SHOP", &[Scope::Tasks])),
            ("dashboard".to_string(), section("DASH", &[])),
        ]);
        let scoped = scoped_tokens(&tokens, Some("admin"), env).expect("valid");
        let named: Vec<(&str, Vec<String>, Vec<Scope>)> = scoped
            .iter()
            .map(|t| (t.name.as_str(), t.secrets.clone(), t.scopes.iter().copied().collect()))
            .collect();
        assert_eq!(
            named,
            vec![
                ("dashboard", vec!["dash-secret".to_string()], vec![Scope::Read]),
                ("shop", vec!["shop-secret".to_string()], vec![Scope::Tasks]),
            ],
            "no scopes listed: read only"
        );
        // From a file: every line a secret; a line another token has is refused.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ops");
        std::fs::write(&file, "ops-old\nops-new\n").expect("written");
        let from_file = |scopes: &[Scope]| TokenSection {
            env: None,
            file: Some(file.clone()),
            ..section("", scopes)
        };
        let tokens = BTreeMap::from([("ops".to_string(), from_file(&[Scope::Tasks]))]);
        let scoped = scoped_tokens(&tokens, Some("admin"), env).expect("valid");
        assert_eq!(scoped[0].secrets, ["ops-old", "ops-new"]);
        assert_eq!(scoped[0].file.as_deref(), Some(file.as_path()));
        std::fs::write(&file, "ops-new\nshop-secret\n").expect("written");
        let tokens = BTreeMap::from([
            ("ops".to_string(), from_file(&[])),
            ("shop".to_string(), section("SHOP", &[])),
        ]);
        let error = scoped_tokens(&tokens, Some("admin"), env).expect_err("refused");
        assert!(error.contains("tokens ops and shop: the same secret"), "{error}");
        for (tokens, says) in [
            (
                BTreeMap::from([("x".to_string(), section("UNSET", &[]))]),
                "UNSET is not set",
            ),
            (
                BTreeMap::from([("x".to_string(), section("EMPTY", &[]))]),
                "EMPTY is not set",
            ),
            (
                BTreeMap::from([("x".to_string(), section("ADMIN_TOO", &[]))]),
                "same secret as WHENEVER_TOKEN",
            ),
            (
                BTreeMap::from([
                    ("a".to_string(), section("SHOP", &[])),
                    ("b".to_string(), section("SHOP", &[])),
                ]),
                "tokens a and b: the same secret",
            ),
        ] {
            let error = scoped_tokens(&tokens, Some("admin"), env).expect_err("refused");
            assert!(error.contains(says), "{error}");
        }
    }
}
