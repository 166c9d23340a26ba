//! The HTTP kinds over TLS, against a local HTTPS server whose certificate comes from a CA made
//! for the test: trusted through `ca_file` (and spoken over HTTP/2, which the server offers by
//! ALPN), refused without it, at once and with nothing sent; and a server that asks for the
//! connector's own certificate (mutual TLS), given by `client_cert` and `client_key`.

use std::path::Path;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::http::{HeaderMap, Version};
use axum::routing::post;
use serde_json::{Value, json};
use whenever_connectors::ErrorKind;

use crate::support::{
    TempFile, TlsServer, call, client_pair_settings, mutual_tls, private_ca, registry, serve_tls, try_registry,
    until_tls_files_are_checked,
};

const TOKEN: &str = "loyalty-token-SecretValue-31";

/// A loyalty service of one's own: `POST /award` answers the points it was asked to award.
fn loyalty_router() -> Router {
    Router::new().route(
        "/award",
        post(|headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
            let token = headers.get("authorization").and_then(|v| v.to_str().ok());
            axum::Json(json!({"awarded": body["points"], "authorized": token == Some(&format!("Bearer {TOKEN}"))}))
        }),
    )
}

/// The loyalty service over TLS with a certificate from a private CA, and that CA's PEM.
async fn loyalty_service() -> (TlsServer, String) {
    let (tls, ca_pem) = private_ca();
    (serve_tls(loyalty_router(), tls).await, ca_pem)
}

fn loyalty_config(url: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file
        .map(|p| format!("ca_file = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    format!(
        "[connectors.loyaltyPoints]\nkind = \"http\"\nbase_url = \"{url}\"\ntoken_env = \"LOYALTY_TOKEN\"\n\
         methods = [\"award\"]\nretries = 2\nbackoff_ms = 50\n{ca}"
    )
}

const ENV: &[(&str, &str)] = &[("LOYALTY_TOKEN", TOKEN)];

#[tokio::test]
async fn a_service_behind_a_private_ca_is_called_with_ca_file_over_http2() {
    let (server, ca_pem) = loyalty_service().await;
    let ca_file = TempFile::new("ca.pem", &ca_pem);
    let reg = registry(&loyalty_config(&server.url, Some(&ca_file.0)), ENV);
    for (points, key) in [(10, "order-1/award/0"), (25, "order-2/award/0")] {
        let r = call(&reg, "loyaltyPoints", "award", json!({"points": points}), key).await;
        assert_eq!(r, Ok(json!({"awarded": points, "authorized": true})));
    }
    let seen = server.log.to("/award");
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.version == Version::HTTP_2),
        "the client chose HTTP/2 by ALPN: {:?}",
        seen.iter().map(|s| s.version).collect::<Vec<_>>()
    );
    assert_eq!(seen[1].header("idempotency-key"), "order-2/award/0");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "the second call went over the first one's connection"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_call_at_once_and_sends_nothing() {
    let (server, _ca_pem) = loyalty_service().await;
    // No `ca_file`: the bundled web PKI roots do not know the test's CA.
    let reg = registry(&loyalty_config(&server.url, None), ENV);
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 10}), "order-1/award/0").await;
    let error = r.expect_err("the certificate is refused");
    assert_eq!(error.kind, ErrorKind::Failed, "{error:?}");
    assert!(
        error.message.contains("loyaltyPoints")
            && error.message.contains("certificate is not trusted")
            && error.message.contains("`ca_file`")
            && error.message.contains("UnknownIssuer"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(TOKEN));
    assert!(server.log.all().is_empty(), "nothing was sent");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "a refused certificate is not retried (retries = 2)"
    );
    // Another CA's certificate in `ca_file` does not help either.
    let (_, other_ca) = private_ca();
    let other = TempFile::new("other-ca.pem", &other_ca);
    let reg = registry(&loyalty_config(&server.url, Some(&other.0)), ENV);
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 10}), "order-1/award/0").await;
    assert!(
        r.is_err_and(|e| e.kind == ErrorKind::Failed),
        "refused with another CA's file"
    );
    assert!(server.log.all().is_empty());
}

#[tokio::test]
async fn a_renewed_ca_file_is_used_from_the_next_call_and_one_that_does_not_load_is_not() {
    let (server, ca_pem) = loyalty_service().await;
    let (_, other_ca) = private_ca();
    let ca_file = TempFile::new("renewed-ca.pem", &other_ca);
    let reg = registry(&loyalty_config(&server.url, Some(&ca_file.0)), ENV);
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 1}), "order-1/award/0").await;
    assert!(
        r.is_err_and(|e| e.kind == ErrorKind::Failed),
        "another CA's file: refused"
    );
    // The file now holds the service's CA: no restart, no new registry.
    ca_file.renew(&ca_pem);
    until_tls_files_are_checked().await;
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 2}), "order-2/award/0").await;
    assert_eq!(r, Ok(json!({"awarded": 2, "authorized": true})));
    // A renewal that does not load leaves the CA loaded before in use.
    ca_file.renew("-----BEGIN CERTIFICATE-----\nhalf written");
    until_tls_files_are_checked().await;
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 3}), "order-3/award/0").await;
    assert_eq!(r, Ok(json!({"awarded": 3, "authorized": true})));
    assert_eq!(server.log.to("/award").len(), 2);
}

#[tokio::test]
async fn a_renewed_client_certificate_is_shown_from_the_next_call() {
    let (tls, ca_pem, client_cert, client_key) = mutual_tls();
    // A pair from another CA, which the service does not accept: the one to be replaced.
    let (_, _, old_cert, old_key) = mutual_tls();
    let server = serve_tls(loyalty_router(), tls).await;
    let ca = TempFile::new("renewed-mtls-ca.pem", &ca_pem);
    let cert = TempFile::new("renewed-client.pem", &old_cert);
    let key = TempFile::new("renewed-client-key.pem", &old_key);
    let config = format!(
        "{}{}",
        loyalty_config(&server.url, Some(&ca.0)),
        client_pair_settings(&cert, &key)
    );
    let reg = registry(&config, ENV);
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 1}), "order-1/award/0").await;
    let error = r.expect_err("the old certificate is refused");
    assert!(
        error.kind == ErrorKind::Failed && error.message.contains("client certificate"),
        "{error:?}"
    );
    // The certificate first, then its key: between the two the pair does not fit, and whichever
    // the connector sees, the call after the check shows the new pair.
    cert.renew(&client_cert);
    key.renew(&client_key);
    until_tls_files_are_checked().await;
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 2}), "order-2/award/0").await;
    assert_eq!(r, Ok(json!({"awarded": 2, "authorized": true})));
    assert_eq!(server.log.to("/award").len(), 1);
}

#[test]
fn every_http_kind_takes_its_tls_files_and_names_a_bad_ca_file() {
    let not_pem = TempFile::new("not-a-certificate.pem", "this is not PEM\n");
    let missing = std::env::temp_dir().join(format!("whenever-tls-{}-missing.pem", std::process::id()));
    let sections = [
        ("stripe", "kind = \"stripe\"\nsecret_key_env = \"KEY\""),
        (
            "paypal",
            "kind = \"paypal\"\nclient_id_env = \"KEY\"\nclient_secret_env = \"KEY\"",
        ),
        ("coinbase", "kind = \"coinbase\"\napi_key_env = \"KEY\""),
        ("slackCom", "kind = \"slack\"\ntoken_env = \"KEY\""),
        (
            "loyaltyPoints",
            "kind = \"http\"\nbase_url = \"https://loyalty.example\"",
        ),
    ];
    let (_, ca_pem, client_cert, client_key) = mutual_tls();
    let good = TempFile::new("good-ca.pem", &ca_pem);
    let (cert, key) = (
        TempFile::new("kinds-client.pem", &client_cert),
        TempFile::new("kinds-client-key.pem", &client_key),
    );
    for (name, section) in sections {
        let config = |ca: &Path| {
            format!(
                "[connectors.{name}]\n{section}\nca_file = {:?}\n",
                ca.display().to_string()
            )
        };
        let env = &[("KEY", "k-123")];
        let with_identity = format!("{}{}", config(&good.0), client_pair_settings(&cert, &key));
        assert!(
            try_registry(&with_identity, env).is_ok(),
            "{name} takes a `ca_file`, `client_cert` and `client_key`"
        );
        let e = try_registry(&config(&missing), env).expect_err("a missing file is refused");
        assert_eq!(e.connector, name);
        assert!(
            e.message.contains("cannot read `ca_file`") && e.message.contains(&missing.display().to_string()),
            "{name}: {}",
            e.message
        );
        let e = try_registry(&config(&not_pem.0), env).expect_err("a file without a certificate is refused");
        assert!(e.message.contains("is not a PEM certificate"), "{name}: {}", e.message);
    }
}

#[tokio::test]
async fn a_service_that_asks_for_a_client_certificate_gets_the_connectors_own() {
    let (tls, ca_pem, client_cert, client_key) = mutual_tls();
    let server = serve_tls(loyalty_router(), tls).await;
    let ca = TempFile::new("mtls-ca.pem", &ca_pem);
    let cert = TempFile::new("mtls-client.pem", &client_cert);
    let key = TempFile::new("mtls-client-key.pem", &client_key);
    let with_identity = format!(
        "{}{}",
        loyalty_config(&server.url, Some(&ca.0)),
        client_pair_settings(&cert, &key)
    );
    let reg = registry(&with_identity, ENV);
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 5}), "order-1/award/0").await;
    assert_eq!(r, Ok(json!({"awarded": 5, "authorized": true})));
    assert_eq!(server.log.to("/award").len(), 1);
    // Without the certificate the service refuses the connection: nothing reaches it.
    let reg = registry(&loyalty_config(&server.url, Some(&ca.0)), ENV);
    let r = call(&reg, "loyaltyPoints", "award", json!({"points": 5}), "order-2/award/0").await;
    let error = r.expect_err("refused without a client certificate");
    assert_eq!(error.kind, ErrorKind::Failed, "{error:?}");
    assert!(
        error.message.contains("client certificate")
            && error.message.contains("`client_cert`")
            && error.message.contains("CertificateRequired"),
        "{}",
        error.message
    );
    assert_eq!(server.log.to("/award").len(), 1, "nothing more reached the service");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        2,
        "one connection each: a refusal is not retried (retries = 2)"
    );
}

#[test]
fn a_client_certificate_needs_its_key_and_both_must_load() {
    let (_, ca_pem, client_cert, client_key) = mutual_tls();
    let cert = TempFile::new("pair-client.pem", &client_cert);
    let key = TempFile::new("pair-client-key.pem", &client_key);
    let not_a_key = TempFile::new("pair-not-a-key.pem", &ca_pem);
    let config = |extra: String| format!("{}{extra}", loyalty_config("https://loyalty.example", None));
    let path = |file: &TempFile| format!("{:?}", file.0.display().to_string());
    let refused = |extra: String| try_registry(&config(extra), ENV).expect_err("refused").message;
    assert!(try_registry(&config(client_pair_settings(&cert, &key)), ENV).is_ok());
    let message = refused(format!("client_cert = {}\n", path(&cert)));
    assert!(message.contains("`client_cert` needs `client_key`"), "{message}");
    let message = refused(format!("client_key = {}\n", path(&key)));
    assert!(message.contains("`client_key` needs `client_cert`"), "{message}");
    // A certificate where the key should be: named, both files shown.
    let message = refused(client_pair_settings(&cert, &not_a_key));
    assert!(
        message.contains("are not a PEM certificate and its private key")
            && message.contains(&not_a_key.0.display().to_string()),
        "{message}"
    );
}
