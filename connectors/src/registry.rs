//! The registry: connectors by name, called once per idempotency key, with the shared outbox
//! and effects ledger.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::config::{BuildContext, ConnectorConfig, ConnectorsConfig, HTTP};
use crate::http::HttpClient;
use crate::{
    CallContext, ConfigError, Connector, ConnectorError, Effects, Env, IdempotencyCache, Outbox, coinbase, email,
    fraud_guard, fulfillment, http_service, inventory, paypal, slack, stripe,
};

/// Builds a connector's simulator.
type SimulatorFn = fn(&BuildContext) -> Arc<dyn Connector>;
/// Builds the implementation a connector's config selects.
type BuildFn = fn(&ConnectorConfig, &BuildContext) -> Result<Arc<dyn Connector>, ConfigError>;

/// Every built-in connector: its name, its simulator and its config-driven constructor.
const BUILTIN: &[(&str, SimulatorFn, BuildFn)] = &[
    (
        stripe::NAME,
        |cx| Arc::new(stripe::StripeSimulator::new(cx)),
        stripe::build,
    ),
    (
        paypal::NAME,
        |cx| Arc::new(paypal::PaypalSimulator::new(cx)),
        paypal::build,
    ),
    (
        coinbase::NAME,
        |cx| Arc::new(coinbase::CoinbaseSimulator::new(cx)),
        coinbase::build,
    ),
    (
        fraud_guard::NAME,
        |_| Arc::new(fraud_guard::FraudGuardSimulator),
        fraud_guard::build,
    ),
    (
        inventory::NAME,
        |cx| Arc::new(inventory::InventorySimulator::new(cx)),
        inventory::build,
    ),
    (
        fulfillment::NAME,
        |cx| Arc::new(fulfillment::FulfillmentSimulator::new(cx)),
        fulfillment::build,
    ),
    (email::NAME, |cx| Arc::new(email::EmailSimulator::new(cx)), email::build),
    (slack::NAME, |cx| Arc::new(slack::SlackSimulator::new(cx)), slack::build),
];

/// Whether `name` can name a connector of kind `http` of one's own.
fn is_connector_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names of the built-in connectors, as steps call them.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _, _)| *name).collect()
}

/// The built-in connectors `config` leaves as their simulators (no section, or `kind =
/// "simulator"`): nothing they are asked reaches a real service, which an operator should know.
pub fn simulated_names(config: &ConnectorsConfig) -> Vec<&'static str> {
    BUILTIN
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| config.get(*name).is_none_or(|c| c.kind == crate::config::SIMULATOR))
        .collect()
}

/// Connectors by name, with the outbox, effects ledger and once-only cache they share.
/// Cheap to clone (everything is behind `Arc`s); clones share all state.
#[derive(Clone)]
pub struct Registry {
    connectors: Arc<BTreeMap<String, Arc<dyn Connector>>>,
    outbox: Outbox,
    effects: Effects,
    cache: Arc<IdempotencyCache>,
    anonymous_calls: Arc<AtomicU64>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("connectors", &self.names())
            .field("outbox", &self.outbox.len())
            .field("effects", &self.effects.len())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::simulators()
    }
}

impl Registry {
    /// A registry with no connectors (add them with [`Registry::with_connector`]).
    pub fn empty() -> Registry {
        Registry {
            connectors: Arc::new(BTreeMap::new()),
            outbox: Outbox::new(),
            effects: Effects::new(),
            cache: Arc::new(IdempotencyCache::new()),
            anonymous_calls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Every built-in connector as its simulator, the inventory over the bundled demo catalogue.
    pub fn simulators() -> Registry {
        let reg = Registry::empty();
        let cx = reg.build_context(Path::new(""));
        let connectors = BUILTIN
            .iter()
            .map(|(name, simulator, _)| (name.to_string(), simulator(&cx)))
            .collect();
        Registry {
            connectors: Arc::new(connectors),
            ..reg
        }
    }

    /// The connectors `config` describes, relative setting paths resolved against the current
    /// directory, secrets read from the process environment; built-in connectors it does not
    /// name are their simulators.
    pub fn from_config(config: &ConnectorsConfig) -> Result<Registry, ConfigError> {
        Self::from_config_in(config, Path::new(""))
    }

    /// Like [`Registry::from_config`], relative setting paths (e.g. a stock file) resolved
    /// against `base_dir` (typically the config file's directory).
    pub fn from_config_in(config: &ConnectorsConfig, base_dir: &Path) -> Result<Registry, ConfigError> {
        Self::from_config_with_env(config, base_dir, Env::process())
    }

    /// Like [`Registry::from_config_in`], the environment variables that `*_env` settings name
    /// read from `env` instead of the process environment.
    ///
    /// A section may name a built-in connector (any of its kinds) or, with `kind = "http"`,
    /// a connector of its own.
    pub fn from_config_with_env(config: &ConnectorsConfig, base_dir: &Path, env: Env) -> Result<Registry, ConfigError> {
        let reg = Registry::empty();
        let cx = BuildContext {
            env,
            ..reg.build_context(base_dir)
        };
        let mut connectors = BTreeMap::new();
        for (name, c) in config {
            if BUILTIN.iter().any(|(b, _, _)| b == name) {
                continue;
            }
            if c.kind != HTTP {
                return Err(ConfigError::new(
                    name.as_str(),
                    format!(
                        "no connector is called `{name}` (known: {}); a service of your own \
                         takes `kind = \"http\"`",
                        builtin_names().join(", ")
                    ),
                ));
            }
            if !is_connector_name(name) {
                return Err(ConfigError::new(
                    name.as_str(),
                    "a connector name is letters, digits, `_` and `-`",
                ));
            }
            connectors.insert(name.clone(), http_service::build(name, c, &cx)?);
        }
        for (name, simulator, build) in BUILTIN {
            let connector = match config.get(*name) {
                Some(c) => build(c, &cx)?,
                None => simulator(&cx),
            };
            connectors.insert(name.to_string(), connector);
        }
        Ok(Registry {
            connectors: Arc::new(connectors),
            ..reg
        })
    }

    /// This registry with `c` as connector `name`, added or replacing (for tests and extensions).
    /// The outbox, effects ledger and cache stay shared with clones made before.
    pub fn with_connector(mut self, name: &str, c: Arc<dyn Connector>) -> Registry {
        Arc::make_mut(&mut self.connectors).insert(name.to_string(), c);
        self
    }

    /// What connectors built for this registry share: its outbox and effects ledger (secrets
    /// from the process environment, a new shared HTTP client).
    pub fn build_context(&self, base_dir: &Path) -> BuildContext {
        BuildContext {
            outbox: self.outbox.clone(),
            effects: self.effects.clone(),
            base_dir: base_dir.to_path_buf(),
            env: Env::process(),
            http: HttpClient::default(),
        }
    }

    /// Calls `connector.method` with `args`, once per `ctx.idempotency_key`: a repeat returns
    /// the stored result (Ok or Err) without calling again. An unknown connector, or a method
    /// the connector does not list, is [`ErrorKind::Unknown`](crate::ErrorKind::Unknown). An
    /// empty key is never deduplicated (the connector gets a unique stand-in key).
    pub async fn call(
        &self,
        connector: &str,
        method: &str,
        args: &Value,
        ctx: &CallContext,
    ) -> Result<Value, ConnectorError> {
        let Some(c) = self.connectors.get(connector) else {
            return Err(ConnectorError::unknown(format!(
                "unknown connector `{connector}` (known: {})",
                self.names().join(", ")
            )));
        };
        let methods = c.methods();
        if !methods.is_empty() && !methods.contains(&method) {
            return Err(ConnectorError::unknown(format!(
                "unknown method `{connector}.{method}` (known: {})",
                methods.join(", ")
            )));
        }
        if ctx.idempotency_key.is_empty() {
            let n = self.anonymous_calls.fetch_add(1, Ordering::Relaxed);
            let ctx = CallContext {
                idempotency_key: format!("anonymous:{}:{}:{n}", ctx.task_id, ctx.step),
                ..ctx.clone()
            };
            return c.call(method, args, &ctx).await;
        }
        self.cache
            .once(connector, method, &ctx.idempotency_key, || c.call(method, args, ctx))
            .await
    }

    /// The connector names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }

    /// Whether a connector of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.connectors.contains_key(name)
    }

    /// The e-mails and Slack messages sent (by simulators and real connectors alike).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Every side effect performed, once per idempotency key.
    pub fn effects(&self) -> &Effects {
        &self.effects
    }

    /// The once-only cache calls go through.
    pub fn idempotency_cache(&self) -> &IdempotencyCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use serde_json::json;

    use super::*;
    use crate::ErrorKind;
    use crate::test_support::{call, call_as};

    fn simulator_config() -> ConnectorConfig {
        ConnectorConfig::simulator()
    }

    fn with_setting(key: &str, value: toml::Value) -> ConnectorConfig {
        let mut c = simulator_config();
        c.settings.insert(key.to_string(), value);
        c
    }

    #[test]
    fn the_simulated_connectors_are_those_the_config_leaves_as_simulators() {
        let mut config = ConnectorsConfig::new();
        assert_eq!(simulated_names(&config), builtin_names());
        config.insert(
            "stripe".into(),
            ConnectorConfig {
                kind: "stripe".into(),
                settings: toml::Table::new(),
            },
        );
        config.insert("paypal".into(), simulator_config());
        let simulated = simulated_names(&config);
        assert!(
            !simulated.contains(&"stripe") && simulated.contains(&"paypal"),
            "{simulated:?}"
        );
        assert_eq!(simulated.len(), builtin_names().len() - 1);
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("whenever-conn-{name}-{}", std::process::id()));
        assert!(std::fs::create_dir_all(&dir).is_ok());
        dir
    }

    #[test]
    fn registry_is_send_sync_and_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Registry>();
    }

    #[test]
    fn simulators_register_every_builtin_connector() {
        let reg = Registry::simulators();
        assert_eq!(
            reg.names(),
            vec![
                "coinbase",
                "eMailSmtpOAuth",
                "fraudGuard",
                "fulfillmentSystem",
                "inventorySystem",
                "paypal",
                "slackCom",
                "stripe"
            ]
        );
        assert!(reg.contains("stripe") && !reg.contains("nope"));
        assert_eq!(builtin_names().len(), 8);
    }

    #[tokio::test]
    async fn unknown_connector_and_method_are_unknown_errors() {
        let reg = Registry::simulators();
        let e = call(&reg, "mailchimp", "send", json!({}), "k").await.err();
        assert!(e.is_some_and(|e| e.kind == ErrorKind::Unknown && e.message.contains("`mailchimp`")));
        let e = call(&reg, "stripe", "refund", json!({}), "k").await.err();
        assert!(e.is_some_and(|e| e.kind == ErrorKind::Unknown && e.message.contains("`stripe.refund`")));
        assert!(reg.effects().is_empty());
    }

    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl Connector for Counting {
        async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            match method {
                "count" => Ok(json!({"n": n, "args": args, "key": ctx.idempotency_key})),
                _ => Err(crate::args::unknown_method("counting", method)),
            }
        }
    }

    #[tokio::test]
    async fn with_connector_adds_and_replaces_and_applies_idempotency() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let reg = Registry::simulators()
            .with_connector("counting", counting.clone())
            .with_connector("stripe", counting.clone());
        assert!(reg.contains("counting"));
        let a = call(&reg, "counting", "count", json!({"x": 1}), "k").await;
        let b = call(&reg, "counting", "count", json!({"x": 1}), "k").await;
        assert_eq!(a, b);
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // The replaced stripe is the counting one; it lists no methods so it decides itself.
        let s = call(&reg, "stripe", "count", json!({}), "k").await;
        assert!(s.is_ok_and(|v| v["n"] == json!(1)));
        let e = call(&reg, "counting", "other", json!({}), "k").await.err();
        assert!(e.is_some_and(|e| e.kind == ErrorKind::Unknown && e.message.contains("counting.other")));
    }

    #[tokio::test]
    async fn an_empty_key_is_never_deduplicated() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let reg = Registry::empty().with_connector("counting", counting.clone());
        let a = call(&reg, "counting", "count", json!({}), "").await;
        let b = call(&reg, "counting", "count", json!({}), "").await;
        assert!(a.is_ok() && b.is_ok() && a != b);
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        assert!(reg.idempotency_cache().is_empty());
        // Simulators then hand out distinct ids too.
        let reg = Registry::simulators();
        let args = json!({"amount": 100, "source": "tok_visa"});
        let a = call(&reg, "stripe", "charge", args.clone(), "").await;
        let b = call(&reg, "stripe", "charge", args, "").await;
        assert!(a.is_ok() && a != b);
        assert_eq!(reg.effects().count("stripe", "charge"), 2);
    }

    #[tokio::test]
    async fn clones_share_connectors_outbox_effects_and_cache() {
        let reg = Registry::simulators();
        let clone = reg.clone();
        let args = json!({"channel": "#c", "text": "hi"});
        let a = call(&reg, "slackCom", "send", args.clone(), "k").await;
        let b = call(&clone, "slackCom", "send", args, "k").await;
        assert_eq!(a, b);
        assert_eq!(reg.outbox().len(), 1);
        assert_eq!(clone.effects().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_orders_charge_exactly_once_each() {
        let reg = Registry::simulators();
        let mut handles = Vec::new();
        for order in 0..50 {
            for _attempt in 0..4 {
                let reg = reg.clone();
                handles.push(tokio::spawn(async move {
                    let task = format!("order-{order}");
                    let key = format!("{task}/pay/run1/call0");
                    let args = json!({"amount": 1000 + order, "currency": "usd", "source": "tok_visa"});
                    call_as(&reg, &task, "stripe", "charge", args, &key).await
                }));
            }
        }
        for h in handles {
            assert!(matches!(h.await, Ok(Ok(_))));
        }
        assert_eq!(reg.effects().count("stripe", "charge"), 50);
        for order in 0..50 {
            assert_eq!(
                reg.effects()
                    .count_for_task(&format!("order-{order}"), "stripe", "charge"),
                1
            );
        }
    }

    #[test]
    fn an_empty_config_gives_the_simulators() {
        let reg = Registry::from_config(&ConnectorsConfig::new());
        assert_eq!(reg.map(|r| r.names()).ok(), Some(Registry::simulators().names()));
    }

    #[test]
    fn every_builtin_accepts_kind_simulator_and_rejects_unknown_kinds() {
        for name in builtin_names() {
            let mut config = ConnectorsConfig::new();
            config.insert(name.to_string(), simulator_config());
            assert!(Registry::from_config(&config).is_ok(), "{name}");
            config.insert(
                name.to_string(),
                ConnectorConfig {
                    kind: "carrier-pigeon".into(),
                    settings: toml::Table::new(),
                },
            );
            let e = Registry::from_config(&config).err();
            assert!(
                e.as_ref().is_some_and(|e| e.connector == name
                    && e.message.contains("`carrier-pigeon`")
                    && e.message.contains(name)
                    && e.message.contains("simulator")
                    && e.message.contains("http")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn every_builtin_takes_kind_http_and_names_of_ones_own_need_it() {
        let http = |url: &str| {
            let mut c = ConnectorConfig {
                kind: "http".into(),
                settings: toml::Table::new(),
            };
            c.settings.insert("base_url".into(), toml::Value::String(url.into()));
            c
        };
        let mut config = ConnectorsConfig::new();
        for name in builtin_names() {
            config.insert(name.to_string(), http("http://127.0.0.1:9"));
        }
        config.insert("loyaltyPoints".into(), http("https://loyalty.example.com/api"));
        let reg = Registry::from_config_with_env(&config, Path::new(""), Env::empty());
        let Ok(reg) = reg else { panic!("{reg:?}") };
        assert!(reg.contains("loyaltyPoints"));
        assert_eq!(reg.names().len(), 9);

        let mut config = ConnectorsConfig::new();
        config.insert("loyaltyPoints".into(), simulator_config());
        let e = Registry::from_config(&config).err();
        assert!(e.is_some_and(|e| e.message.contains("kind = \"http\"")));
        let mut config = ConnectorsConfig::new();
        config.insert("bad name/..".into(), http("http://127.0.0.1:9"));
        assert!(Registry::from_config(&config).is_err());
        let mut config = ConnectorsConfig::new();
        config.insert("svc".into(), http("ftp://files.example.com"));
        let e = Registry::from_config(&config).err();
        assert!(e.is_some_and(|e| e.connector == "svc" && e.message.contains("`base_url`")));
    }

    #[test]
    fn unknown_connectors_and_settings_are_config_errors() {
        let mut config = ConnectorsConfig::new();
        config.insert("stripee".into(), simulator_config());
        let e = Registry::from_config(&config).err();
        assert!(e.is_some_and(|e| e.connector == "stripee" && e.message.contains("no connector")));

        let mut config = ConnectorsConfig::new();
        config.insert(
            "stripe".into(),
            with_setting("apiKey", toml::Value::String("sk".into())),
        );
        let e = Registry::from_config(&config).err();
        assert!(e.is_some_and(|e| e.connector == "stripe" && e.message.contains("`apiKey`")));

        let mut config = ConnectorsConfig::new();
        config.insert("inventorySystem".into(), with_setting("stock", toml::Value::Integer(3)));
        let e = Registry::from_config(&config).err();
        assert!(e.is_some_and(|e| e.connector == "inventorySystem" && e.message.contains("`stock`")));
    }

    #[tokio::test]
    async fn a_stock_file_replaces_the_demo_catalogue() {
        let dir = temp_dir("stock-ok");
        assert!(std::fs::write(dir.join("stock.json"), r#"{"GADGET": {"FL-SOUTH": 3, "TX-MAIN": 1}}"#).is_ok());
        // Parsed the way the host parses its config file; the path is relative to `dir`.
        let text = "[connectors.inventorySystem]\nkind = \"simulator\"\nstock = \"stock.json\"\n";
        #[derive(serde::Deserialize)]
        struct File {
            connectors: ConnectorsConfig,
        }
        let file: Result<File, _> = toml::from_str(text);
        let Ok(file) = file else { panic!("config parses") };
        let reg = Registry::from_config_in(&file.connectors, &dir);
        let Ok(reg) = reg else { panic!("{reg:?}") };
        let check = |sku: &str, qty: u64, key: &str| {
            let reg = reg.clone();
            let args = json!({"sku": sku, "quantity": qty});
            let key = key.to_string();
            async move { call(&reg, "inventorySystem", "checkStock", args, &key).await }
        };
        assert_eq!(
            check("GADGET", 2, "a").await,
            Ok(json!({"available": true, "warehouse": "FL-SOUTH"}))
        );
        assert_eq!(
            check("GADGET", 1, "b").await,
            Ok(json!({"available": true, "warehouse": "TX-MAIN"}))
        );
        assert_eq!(
            check("LAPTOP-DELL-XPS13", 1, "c").await,
            Ok(json!({"available": false}))
        );
        // An absolute path works through from_config too.
        let mut config = ConnectorsConfig::new();
        let abs = dir.join("stock.json").display().to_string();
        config.insert(
            "inventorySystem".into(),
            with_setting("stock", toml::Value::String(abs)),
        );
        assert!(Registry::from_config(&config).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_stock_file_is_a_config_error_naming_path_and_problem() {
        let dir = temp_dir("stock-bad");
        assert!(std::fs::write(dir.join("bad.json"), r#"{"GADGET": {"TX-MAIN": "many"}}"#).is_ok());
        for (file, problem) in [("bad.json", "non-negative integer"), ("absent.json", "cannot read")] {
            let mut config = ConnectorsConfig::new();
            config.insert(
                "inventorySystem".into(),
                with_setting("stock", toml::Value::String(file.into())),
            );
            let e = Registry::from_config_in(&config, &dir).err();
            assert!(
                e.as_ref().is_some_and(|e| e.connector == "inventorySystem"
                    && e.message.contains(file)
                    && e.message.contains(problem)),
                "{e:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
