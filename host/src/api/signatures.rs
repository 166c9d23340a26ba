//! Webhook signatures: a hook with a secret (`[hooks.NAME] secret_env`) accepts only deliveries
//! signed with it, in the scheme its provider uses (`[hooks.NAME] signature`), so a provider's
//! webhooks can point straight at the hook:
//!
//! | scheme | header | signed |
//! |---|---|---|
//! | `whenever` (default) | `X-Whenever-Signature: sha256=HEX` | the body |
//! | `github` | `X-Hub-Signature-256: sha256=HEX` | the body |
//! | `shopify` | `X-Shopify-Hmac-Sha256: BASE64` | the body |
//! | `stripe` | `Stripe-Signature: t=UNIX,v1=HEX[,v1=HEX…]` | `UNIX.body`, with `UNIX` at most `tolerance_s` from now |
//!
//! All are HMAC-SHA256 under the hook's secret, compared in constant time. Stripe's timestamp
//! bounds how long a captured delivery can be replayed.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SignatureScheme;

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The scheme's header is missing (or not text).
    #[error("this hook needs an {0} header")]
    Missing(&'static str),
    /// The header is not in the scheme's format.
    #[error("the {0} header is not in the form {1}")]
    Malformed(&'static str, &'static str),
    /// No signature in the header is the body's under the hook's secret.
    #[error("the signature of this delivery is not valid")]
    Invalid,
    /// The signed timestamp is too far from now (a replayed or delayed delivery).
    #[error("the delivery was signed {0} s away from now, more than the {1} s allowed")]
    Stale(u64, u64),
}

/// Like [`verify`], with any of `secrets` (a hook's secret while it is rotated: the old and the
/// new): the index of the one that signed it; refused as under the first when none did, and
/// [`SignatureError::Invalid`] when there is no secret at all.
pub fn verify_any(
    scheme: &SignatureScheme,
    secrets: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<usize, SignatureError> {
    let mut first = None;
    for (index, secret) in secrets.iter().enumerate() {
        match verify(scheme, secret, headers, body, now) {
            Ok(()) => return Ok(index),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or(SignatureError::Invalid))
}

/// Checks that `body`, delivered with `headers` at `now` (seconds since the Unix epoch), is
/// signed with `secret` in `scheme`.
pub fn verify(
    scheme: &SignatureScheme,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(SignatureError::Missing(name))
    };
    match scheme {
        SignatureScheme::Whenever | SignatureScheme::GitHub => {
            let name = if *scheme == SignatureScheme::Whenever {
                "x-whenever-signature"
            } else {
                "x-hub-signature-256"
            };
            let digest = header(name)?
                .strip_prefix("sha256=")
                .and_then(|hex_digest| hex::decode(hex_digest).ok())
                .ok_or(SignatureError::Malformed(name, "sha256=HEX"))?;
            check(secret, &[body], &digest)
        }
        SignatureScheme::Shopify => {
            let name = "x-shopify-hmac-sha256";
            let digest = base64::engine::general_purpose::STANDARD
                .decode(header(name)?)
                .map_err(|_| SignatureError::Malformed(name, "BASE64"))?;
            check(secret, &[body], &digest)
        }
        SignatureScheme::Stripe { tolerance } => {
            let name = "stripe-signature";
            let form = "t=UNIX,v1=HEX";
            let mut timestamp = None;
            let mut signatures = Vec::new();
            for part in header(name)?.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
                    Some(("v1", hex_digest)) => signatures.push(hex_digest),
                    _ => {}
                }
            }
            let timestamp = timestamp.ok_or(SignatureError::Malformed(name, form))?;
            if signatures.is_empty() {
                return Err(SignatureError::Malformed(name, form));
            }
            if signatures.len() > MAX_STRIPE_SIGNATURES {
                return Err(SignatureError::Malformed(
                    name,
                    "t=UNIX,v1=HEX with at most 8 v1 signatures",
                ));
            }
            // The body is hashed once, whatever the number of signatures to compare.
            let signed = mac_of(secret, &[format!("{timestamp}.").as_bytes(), body])?;
            let valid = signatures.iter().any(|hex_digest| {
                hex::decode(hex_digest).is_ok_and(|digest| signed.clone().verify_slice(&digest).is_ok())
            });
            if !valid {
                return Err(SignatureError::Invalid);
            }
            let off = now.abs_diff(timestamp);
            if off > tolerance.as_secs() {
                return Err(SignatureError::Stale(off, tolerance.as_secs()));
            }
            Ok(())
        }
    }
}

/// The most `v1=` signatures a `Stripe-Signature` header may carry (Stripe sends one per
/// signing secret, a second while one is rolled): each is compared with the body's MAC, and a
/// header of thousands would only be someone's way to spend the host's time.
const MAX_STRIPE_SIGNATURES: usize = 8;

/// Whether `digest` is the HMAC-SHA256 of the concatenated `parts` under `secret`.
fn check(secret: &[u8], parts: &[&[u8]], digest: &[u8]) -> Result<(), SignatureError> {
    mac_of(secret, parts)?
        .verify_slice(digest)
        .map_err(|_| SignatureError::Invalid)
}

/// The HMAC-SHA256 of the concatenated `parts` under `secret`, not yet finalized: a clone of it
/// compares with one digest in constant time ([`Mac::verify_slice`]).
fn mac_of(secret: &[u8], parts: &[&[u8]]) -> Result<Hmac<Sha256>, SignatureError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Invalid)?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;

    fn hmac(parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("key");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn whenever_and_github_sign_the_body_in_hex_under_their_own_header() {
        let signature = format!("sha256={}", hex::encode(hmac(&[BODY])));
        for (scheme, name) in [
            (SignatureScheme::Whenever, "x-whenever-signature"),
            (SignatureScheme::GitHub, "x-hub-signature-256"),
        ] {
            assert_eq!(verify(&scheme, SECRET, &headers(name, &signature), BODY, 0), Ok(()));
            assert_eq!(
                verify(&scheme, SECRET, &headers(name, &signature), b"{}", 0),
                Err(SignatureError::Invalid)
            );
            assert_eq!(
                verify(&scheme, SECRET, &headers(name, "md5=00"), BODY, 0),
                Err(SignatureError::Malformed(name, "sha256=HEX"))
            );
            assert_eq!(
                verify(&scheme, SECRET, &HeaderMap::new(), BODY, 0),
                Err(SignatureError::Missing(name))
            );
        }
        // Each scheme reads its own header only.
        assert_eq!(
            verify(
                &SignatureScheme::GitHub,
                SECRET,
                &headers("x-whenever-signature", &signature),
                BODY,
                0
            ),
            Err(SignatureError::Missing("x-hub-signature-256"))
        );
    }

    #[test]
    fn a_delivery_signed_with_any_of_the_secrets_is_accepted_and_none_accepts_nothing() {
        let name = "x-whenever-signature";
        let signed = headers(name, &format!("sha256={}", hex::encode(hmac(&[BODY]))));
        let scheme = SignatureScheme::Whenever;
        let other = b"whsec_other".to_vec();
        for (secrets, signer) in [
            (vec![other.clone(), SECRET.to_vec()], 1),
            (vec![SECRET.to_vec(), other.clone()], 0),
        ] {
            assert_eq!(verify_any(&scheme, &secrets, &signed, BODY, 0), Ok(signer));
        }
        assert_eq!(
            verify_any(&scheme, std::slice::from_ref(&other), &signed, BODY, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_any(&scheme, &[other], &HeaderMap::new(), BODY, 0),
            Err(SignatureError::Missing(name)),
            "the first secret's refusal"
        );
        assert_eq!(
            verify_any(&scheme, &[], &signed, BODY, 0),
            Err(SignatureError::Invalid),
            "no secret accepts nothing"
        );
    }

    #[test]
    fn shopify_signs_the_body_in_base64() {
        let name = "x-shopify-hmac-sha256";
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac(&[BODY]));
        let scheme = SignatureScheme::Shopify;
        assert_eq!(verify(&scheme, SECRET, &headers(name, &signature), BODY, 0), Ok(()));
        assert_eq!(
            verify(&scheme, b"other", &headers(name, &signature), BODY, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&scheme, SECRET, &headers(name, "not base64!"), BODY, 0),
            Err(SignatureError::Malformed(name, "BASE64"))
        );
    }

    #[test]
    fn stripe_signs_the_timestamp_and_body_and_refuses_an_old_delivery() {
        let name = "stripe-signature";
        let scheme = SignatureScheme::Stripe {
            tolerance: std::time::Duration::from_secs(crate::config::STRIPE_TOLERANCE_S),
        };
        let t = 1_700_000_000u64;
        let good = hex::encode(hmac(&[format!("{t}.").as_bytes(), BODY]));
        // A rolled secret: Stripe sends a v1 for each; one valid is enough.
        let header = format!("t={t},v1={},v1={good},v0=ignored", "ab".repeat(32));
        assert_eq!(verify(&scheme, SECRET, &headers(name, &header), BODY, t + 10), Ok(()));
        assert_eq!(
            verify(&scheme, SECRET, &headers(name, &header), BODY, t + 301),
            Err(SignatureError::Stale(301, 300))
        );
        // The timestamp is signed: another one does not verify.
        let moved = format!("t={},v1={good}", t + 1);
        assert_eq!(
            verify(&scheme, SECRET, &headers(name, &moved), BODY, t),
            Err(SignatureError::Invalid)
        );
        for malformed in [format!("v1={good}"), format!("t={t}"), "garbage".to_string()] {
            assert_eq!(
                verify(&scheme, SECRET, &headers(name, &malformed), BODY, t),
                Err(SignatureError::Malformed(name, "t=UNIX,v1=HEX"))
            );
        }
        // Eight signatures are compared, the good one last; a ninth is refused unread.
        let eight = format!("t={t},{}v1={good}", "v1=,".repeat(MAX_STRIPE_SIGNATURES - 1));
        assert_eq!(verify(&scheme, SECRET, &headers(name, &eight), BODY, t), Ok(()));
        let nine = format!("t={t},v1=,{}", eight.split_once(',').map_or("", |(_, rest)| rest));
        assert_eq!(
            verify(&scheme, SECRET, &headers(name, &nine), BODY, t),
            Err(SignatureError::Malformed(
                name,
                "t=UNIX,v1=HEX with at most 8 v1 signatures"
            ))
        );
    }
}
