//! Capabilities: what a step may reach through connectors, and what of the task data it sees.
//!
//! A step's manifest asks for connectors and, for connectors the operator configured with
//! `kind = "http"`, for the hosts they may reach (`[http] hosts`). The operator's config narrows
//! that per step (`[steps.NAME] connectors = [...]`, `hosts = [...]`: the intersection). Every
//! connector call is checked against the result; a step without a manifest is granted nothing.
//! The config may also narrow what the step is given of the data (`reads = [...]`): the step
//! then sees at most those paths, whatever its manifest and its condition name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::StepManifest;
use super::view::{common_reads, read_covered};

/// The config `kind` of connectors that reach a service over HTTP (`POST {base_url}/{method}`).
pub const HTTP_KIND: &str = whenever_connectors::config::HTTP;

/// The setting of an `http` connector that holds the URL it reaches.
pub const BASE_URL_SETTING: &str = "base_url";

/// What the operator allows one step at most; `None` leaves the manifest's grant as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorGrants {
    /// At most these connectors.
    pub connectors: Option<Vec<String>>,
    /// At most these hosts for `http` connectors (names, `*.suffix` or `*`).
    pub hosts: Option<Vec<String>>,
    /// At most these paths of the task data (dot-separated), the condition's paths included.
    #[serde(default)]
    pub reads: Option<Vec<String>>,
}

/// What a step's manifest asks for that the operator's config withholds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    /// Connectors the manifest lists and the config does not allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<String>,
    /// Host patterns the manifest lists and the config does not allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Data paths the manifest `reads` that the config's `reads` do not cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    /// Limits the manifest asks above the config's ceilings (`[runtime.max_limits]` lowered
    /// after the version was deployed), each as `setting = asked, held to ceiling`: its runs are
    /// held to the ceiling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}

impl Withheld {
    /// Whether nothing was withheld.
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty() && self.hosts.is_empty() && self.reads.is_empty() && self.limits.is_empty()
    }
}

impl std::fmt::Display for Withheld {
    /// `stripe; host *.internal; reads order.lines; limits.timeout_ms = 60000, held to 10000`:
    /// the server's log and the CLI both show it so.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = self
            .connectors
            .iter()
            .cloned()
            .chain(self.hosts.iter().map(|h| format!("host {h}")))
            .chain(self.reads.iter().map(|p| format!("reads {p}")))
            .chain(self.limits.iter().map(|l| format!("limits.{l}")));
        f.write_str(&parts.collect::<Vec<_>>().join("; "))
    }
}

/// The operator's side of capabilities: per-step narrowing, and the host each `http` connector
/// reaches (from its `base_url`), which a step's `[http] hosts` must list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    steps: BTreeMap<String, OperatorGrants>,
    hosts: BTreeMap<String, String>,
}

impl Capabilities {
    /// No narrowing, and no connector reaching a host that must be granted.
    pub fn new() -> Capabilities {
        Capabilities::default()
    }

    /// Narrows what step `step` may use to at most `grants`.
    pub fn limit_step(mut self, step: &str, grants: OperatorGrants) -> Capabilities {
        self.steps.insert(step.to_string(), grants);
        self
    }

    /// Records that `connector` reaches `host` over HTTP: calling it needs the host granted.
    pub fn connector_host(mut self, connector: &str, host: &str) -> Capabilities {
        self.hosts.insert(connector.to_string(), host.to_ascii_lowercase());
        self
    }

    /// The host `connector` reaches, when it is an `http` connector.
    pub fn host_of(&self, connector: &str) -> Option<&str> {
        self.hosts.get(connector).map(String::as_str)
    }

    /// The manifest `step` runs with (its grants narrowed by the operator's config), and what
    /// was withheld from it.
    pub fn narrow(&self, step: &str, manifest: StepManifest) -> (StepManifest, Withheld) {
        let Some(limit) = self.steps.get(step) else {
            return (manifest, Withheld::default());
        };
        let mut narrowed = manifest;
        let mut withheld = Withheld::default();
        if let Some(allowed) = &limit.connectors {
            let (kept, dropped) = narrowed.connectors.into_iter().partition(|c| allowed.contains(c));
            narrowed.connectors = kept;
            withheld.connectors = dropped;
        }
        if let Some(allowed) = &limit.hosts {
            let asked = std::mem::take(&mut narrowed.http.hosts);
            // The intersection of two sets of patterns: each pattern of one side that the other
            // side covers whole.
            let mut kept: Vec<String> = Vec::new();
            for pattern in asked.iter().filter(|p| allowed.iter().any(|a| host_matches(a, p))) {
                push_unique(&mut kept, pattern);
            }
            for pattern in allowed.iter().filter(|a| asked.iter().any(|p| host_matches(p, a))) {
                push_unique(&mut kept, pattern);
            }
            withheld.hosts = asked.iter().filter(|p| !kept.contains(p)).cloned().collect();
            narrowed.http.hosts = kept;
        }
        if let Some(allowed) = &limit.reads {
            // A manifest without `reads` asks for the whole data: the config's paths are given.
            let kept = match &narrowed.reads {
                None => allowed.clone(),
                Some(asked) => {
                    let kept = common_reads(asked, allowed);
                    withheld.reads = asked.iter().filter(|p| !read_covered(p, allowed)).cloned().collect();
                    kept
                }
            };
            narrowed.reads = Some(kept);
        }
        (narrowed, withheld)
    }

    /// The paths of the data the operator's config gives `step` at most (`[steps.NAME] reads`),
    /// which its view is narrowed to, condition paths included.
    pub fn reads_limit(&self, step: &str) -> Option<&[String]> {
        self.steps.get(step)?.reads.as_deref()
    }

    /// Whether `step`, running with `manifest` (already narrowed), may call `connector`; the
    /// error says why not, for the step and its run history.
    pub fn check_call(
        &self,
        step: &str,
        manifest: &StepManifest,
        withheld: &Withheld,
        connector: &str,
    ) -> Result<(), String> {
        if !manifest.grants(connector) {
            if withheld.connectors.iter().any(|c| c == connector) {
                return Err(format!(
                    "step {step} is not granted the connector {connector:?}: its manifest asks for it, \
                     but the host's config withholds it ([steps.{step}] connectors)"
                ));
            }
            return Err(format!(
                "step {step} is not granted the connector {connector:?} (add it to the step's manifest, \
                 {step}.toml beside {step}.wasm: connectors = [{connector:?}])"
            ));
        }
        let Some(host) = self.host_of(connector) else {
            return Ok(());
        };
        if manifest.http.hosts.iter().any(|pattern| host_matches(pattern, host)) {
            return Ok(());
        }
        if withheld.hosts.iter().any(|pattern| host_matches(pattern, host)) {
            return Err(format!(
                "step {step} is not granted the host {host} that connector {connector:?} reaches: its \
                 manifest lists it, but the host's config withholds it ([steps.{step}] hosts)"
            ));
        }
        Err(format!(
            "step {step} is not granted the host {host} that connector {connector:?} reaches \
             (list it under [http] hosts in the step's manifest)"
        ))
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_string());
    }
}

/// Whether host `pattern` covers `host`: the same name (case-insensitive), `*.suffix` for any
/// name under `suffix` (not `suffix` itself), or `*` for any host. A pattern given as `host`
/// is covered as a whole (`*.b.example` is covered by `*.example`).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1 && host.ends_with(suffix) && {
                let dot = host.len() - suffix.len() - 1;
                host.as_bytes()[dot] == b'.'
            }
        }
        None => pattern == host,
    }
}

/// Why a host pattern is not usable, or `None` when it is (`name`, `*.suffix` or `*`).
pub fn host_pattern_problem(pattern: &str) -> Option<String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if pattern == "*" || pattern.parse::<std::net::Ipv6Addr>().is_ok() {
        return None;
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
    {
        return Some(format!(
            "{pattern:?} is not a host name pattern (write a name like \"inventory.internal\", \
             \"*.internal\" for every name under it, or \"*\"; no scheme, port or path)"
        ));
    }
    None
}

/// The host name of a URL (`https://user@Inventory.internal:8443/api` → `inventory.internal`).
pub fn url_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = match parsed.host()? {
        url::Host::Domain(name) => name.to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(connectors: &[&str], hosts: &[&str]) -> StepManifest {
        let mut m = StepManifest {
            connectors: connectors.iter().map(|c| c.to_string()).collect(),
            ..StepManifest::default()
        };
        m.http.hosts = hosts.iter().map(|h| h.to_string()).collect();
        m
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn host_patterns_match_names_suffixes_and_anything() {
        assert!(host_matches("inventory.internal", "Inventory.Internal"));
        assert!(!host_matches("inventory.internal", "evil-inventory.internal"));
        assert!(host_matches("*.internal", "fraud.internal"));
        assert!(host_matches("*.internal", "a.b.internal"));
        assert!(!host_matches("*.internal", "internal"));
        assert!(!host_matches("*.internal", "xinternal"));
        assert!(!host_matches("*.internal", "fraud.internal.evil.com"));
        assert!(host_matches("*", "anything.example"));
        // Patterns covered whole, for narrowing.
        assert!(host_matches("*.internal", "*.b.internal"));
        assert!(!host_matches("*.b.internal", "*.internal"));
        assert!(!host_matches("*.internal", "*"));
    }

    #[test]
    fn bad_host_patterns_are_named() {
        for good in ["inventory.internal", "*.internal", "*", "127.0.0.1", "svc_1", "::1"] {
            assert_eq!(host_pattern_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "https://inventory.internal",
            "inventory.internal:80",
            "a/b",
            "*a.internal",
            "a.*.b",
            ".x",
            "a..b",
        ] {
            let problem = host_pattern_problem(bad).unwrap_or_default();
            assert!(problem.contains("not a host name pattern"), "{bad}: {problem}");
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://user:pw@Inventory.internal:8443/api?x=1").as_deref(),
            Some("inventory.internal")
        );
        assert_eq!(url_host("http://127.0.0.1:9000").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("http://[::1]:9000/x").as_deref(), Some("::1"));
        assert_eq!(url_host("inventory.internal"), None);
        assert_eq!(url_host("not a url"), None);
    }

    #[test]
    fn the_operator_narrows_connectors_to_the_intersection() {
        let caps = Capabilities::new().limit_step(
            "pay",
            OperatorGrants {
                connectors: Some(strings(&["stripe", "slackCom"])),
                hosts: None,
                reads: None,
            },
        );
        let (narrowed, withheld) = caps.narrow("pay", manifest(&["stripe", "paypal"], &["a.internal"]));
        assert_eq!(narrowed.connectors, strings(&["stripe"]));
        assert_eq!(narrowed.http.hosts, strings(&["a.internal"]), "hosts not narrowed");
        assert_eq!(withheld.connectors, strings(&["paypal"]));
        // slackCom was allowed by the operator but never asked for: not granted.
        assert!(!narrowed.grants("slackCom"));
        // Other steps are untouched.
        let (other, withheld) = caps.narrow("other", manifest(&["paypal"], &[]));
        assert_eq!(other.connectors, strings(&["paypal"]));
        assert!(withheld.is_empty());
    }

    #[test]
    fn the_operator_narrows_hosts_to_the_intersection_of_patterns() {
        let caps = Capabilities::new().limit_step(
            "s",
            OperatorGrants {
                connectors: None,
                hosts: Some(strings(&["fraud.internal", "*.shop.example"])),
                reads: None,
            },
        );
        let (narrowed, withheld) = caps.narrow(
            "s",
            manifest(&["fraudGuard"], &["*.internal", "eu.shop.example", "other.example"]),
        );
        assert_eq!(narrowed.http.hosts, strings(&["eu.shop.example", "fraud.internal"]));
        assert_eq!(withheld.hosts, strings(&["*.internal", "other.example"]));
        let (all, _) = caps.narrow("s", manifest(&[], &["*"]));
        assert_eq!(all.http.hosts, strings(&["fraud.internal", "*.shop.example"]));
        let caps = Capabilities::new().limit_step(
            "s",
            OperatorGrants {
                connectors: Some(vec![]),
                hosts: Some(vec![]),
                reads: None,
            },
        );
        let (none, withheld) = caps.narrow("s", manifest(&["stripe"], &["a.internal"]));
        assert!(none.connectors.is_empty() && none.http.hosts.is_empty());
        assert_eq!(withheld.connectors, strings(&["stripe"]));
        assert_eq!(withheld.hosts, strings(&["a.internal"]));
    }

    #[test]
    fn the_operator_narrows_reads_to_the_paths_both_give() {
        let caps = Capabilities::new().limit_step(
            "s",
            OperatorGrants {
                reads: Some(strings(&["order", "customer.email"])),
                ..OperatorGrants::default()
            },
        );
        let with_reads = |reads: &[&str]| StepManifest {
            reads: Some(strings(reads)),
            ..StepManifest::default()
        };
        // A path below an allowed one is kept; one above an allowed one gives only that one.
        let (narrowed, withheld) = caps.narrow("s", with_reads(&["order.total", "customer", "payment.token"]));
        assert_eq!(narrowed.reads, Some(strings(&["customer.email", "order.total"])));
        assert_eq!(withheld.reads, strings(&["customer", "payment.token"]));
        // A manifest without `reads` (the whole data) is given the config's paths.
        let (narrowed, withheld) = caps.narrow("s", StepManifest::default());
        assert_eq!(narrowed.reads, Some(strings(&["order", "customer.email"])));
        assert!(withheld.is_empty());
        assert_eq!(caps.reads_limit("s"), Some(&strings(&["order", "customer.email"])[..]));
        assert_eq!(caps.reads_limit("other"), None);
        let (other, _) = caps.narrow("other", StepManifest::default());
        assert_eq!(other.reads, None, "other steps are untouched");
    }

    #[test]
    fn calls_need_the_connector_and_for_http_the_host() {
        let caps = Capabilities::new().connector_host("fraudGuard", "Fraud.Internal");
        let step = manifest(&["fraudGuard", "stripe"], &["fraud.internal"]);
        let none = Withheld::default();
        assert_eq!(
            caps.check_call("s", &step, &none, "stripe"),
            Ok(()),
            "not an http connector"
        );
        assert_eq!(caps.check_call("s", &step, &none, "fraudGuard"), Ok(()));
        let error = caps.check_call("s", &step, &none, "paypal").unwrap_err();
        assert!(
            error.contains("\"paypal\"") && error.contains("add it to the step's manifest"),
            "{error}"
        );

        let no_hosts = manifest(&["fraudGuard"], &[]);
        let error = caps.check_call("s", &no_hosts, &none, "fraudGuard").unwrap_err();
        assert!(
            error.contains("fraud.internal") && error.contains("[http] hosts"),
            "{error}"
        );

        let withheld = Withheld {
            connectors: strings(&["paypal"]),
            hosts: strings(&["*.internal"]),
            ..Withheld::default()
        };
        assert_eq!(withheld.to_string(), "paypal; host *.internal");
        let error = caps.check_call("s", &no_hosts, &withheld, "paypal").unwrap_err();
        assert!(error.contains("config withholds it ([steps.s] connectors)"), "{error}");
        let error = caps.check_call("s", &no_hosts, &withheld, "fraudGuard").unwrap_err();
        assert!(error.contains("config withholds it ([steps.s] hosts)"), "{error}");

        // Nothing at all for a step without a manifest.
        let nothing = StepManifest::default();
        for connector in ["stripe", "fraudGuard", "slackCom"] {
            assert!(
                caps.check_call("third-party", &nothing, &none, connector).is_err(),
                "{connector}"
            );
        }
    }
}
