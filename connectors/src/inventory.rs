//! `inventorySystem`: stock levels per SKU and warehouse, reservations that hold stock for an
//! order until released or expired, and backorder dates.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, ConnectorConfig, SIMULATOR};
use crate::idempotency::key_hash;
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects};

/// The name steps call this connector by.
pub const NAME: &str = "inventorySystem";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["checkStock", "reserve", "release", "checkBackorder"];

/// The warehouses in the fixed order `checkStock` tries them after the preferred ones
/// (warehouses a stock file adds beyond these come after, alphabetically).
pub const WAREHOUSES: &[&str] = &["TX-MAIN", "CA-WEST", "NY-EAST", "IL-CENTRAL", "FL-SOUTH"];

/// How long a reservation holds its stock when `reserve` is not given `expiresIn` (seconds).
pub const DEFAULT_EXPIRES_IN: u64 = 900;

/// How many days ahead `checkBackorder` promises a restock.
pub const BACKORDER_DAYS: i64 = 14;

/// The setting naming a JSON stock file (`{"SKU": {"WAREHOUSE": quantity}}`) that replaces the
/// bundled demo catalogue.
pub const STOCK_SETTING: &str = "stock";

/// Quantities by SKU, then by warehouse.
pub type StockTable = BTreeMap<String, BTreeMap<String, u64>>;

/// The bundled demo catalogue: large quantities so load tests do not exhaust them, and
/// `CAMERA-CANON-R5` known but out of stock everywhere (so it can only be backordered).
pub fn demo_catalogue() -> StockTable {
    let rows: &[(&str, &[(&str, u64)])] = &[
        ("LAPTOP-DELL-XPS13", &[("TX-MAIN", 100_000), ("CA-WEST", 40_000)]),
        ("MOUSE-WIRELESS-PRO", &[("TX-MAIN", 400_000), ("NY-EAST", 160_000)]),
        ("MONITOR-LG-27", &[("TX-MAIN", 60_000)]),
        ("HEADPHONES-SONY-XM5", &[("CA-WEST", 80_000)]),
        ("KEYBOARD-MECH-K2", &[("NY-EAST", 50_000)]),
        (
            "CAMERA-CANON-R5",
            &[
                ("TX-MAIN", 0),
                ("CA-WEST", 0),
                ("NY-EAST", 0),
                ("IL-CENTRAL", 0),
                ("FL-SOUTH", 0),
            ],
        ),
    ];
    rows.iter()
        .map(|(sku, levels)| {
            let levels = levels.iter().map(|(w, q)| (w.to_string(), *q)).collect();
            (sku.to_string(), levels)
        })
        .collect()
}

/// Reads a stock file; the error message names the path and the problem.
pub fn load_stock_file(path: &Path) -> Result<StockTable, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read stock file `{shown}`: {e}"))?;
    let table: StockTable = serde_json::from_str(&text).map_err(|e| {
        format!(
            "stock file `{shown}` is not {{\"SKU\": {{\"WAREHOUSE\": quantity}}}} with non-negative integer quantities: {e}"
        )
    })?;
    for (sku, levels) in &table {
        if sku.trim().is_empty() {
            return Err(format!("stock file `{shown}` has an empty SKU"));
        }
        if levels.keys().any(|w| w.trim().is_empty()) {
            return Err(format!(
                "stock file `{shown}` has an empty warehouse name under `{sku}`"
            ));
        }
    }
    Ok(table)
}

/// Builds the implementation `config.kind` selects; the simulator takes an optional `stock` file.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[STOCK_SETTING])?;
            let stock = match config.settings.get(STOCK_SETTING) {
                None => demo_catalogue(),
                Some(toml::Value::String(path)) => {
                    load_stock_file(&cx.resolve(path)).map_err(|m| ConfigError::new(NAME, m))?
                }
                Some(_) => {
                    return Err(ConfigError::new(
                        NAME,
                        format!("setting `{STOCK_SETTING}` must be a path (a string)"),
                    ));
                }
            };
            Ok(Arc::new(InventorySimulator::with_stock(cx, stock)))
        }
        config::HTTP => crate::http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, config::HTTP])),
    }
}

/// Stock held for an order.
#[derive(Debug, Clone)]
struct Reservation {
    sku: String,
    warehouse: String,
    quantity: u64,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    stock: StockTable,
    /// Quantity held by live reservations, by (SKU, warehouse).
    held: HashMap<(String, String), u64>,
    reservations: HashMap<String, Reservation>,
    /// Reservations by expiry, soonest first (entries of released ones are skipped when popped).
    expiries: BinaryHeap<Reverse<(DateTime<Utc>, String)>>,
}

impl State {
    /// Frees the stock of reservations expired at `now`.
    fn expire(&mut self, now: DateTime<Utc>) {
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, id))) = self.expiries.pop() else {
                break;
            };
            if self.reservations.get(&id).is_some_and(|r| r.expires_at == at) {
                self.remove(&id);
            }
        }
    }

    /// Removes a reservation and frees its stock; false when there is none of that id.
    fn remove(&mut self, id: &str) -> bool {
        let Some(r) = self.reservations.remove(id) else {
            return false;
        };
        let key = (r.sku, r.warehouse);
        if let Some(held) = self.held.get_mut(&key) {
            *held = held.saturating_sub(r.quantity);
            if *held == 0 {
                self.held.remove(&key);
            }
        }
        true
    }

    /// What is in `warehouse` for `sku` and not held by a reservation.
    fn unreserved(&self, sku: &str, warehouse: &str) -> u64 {
        let total = self
            .stock
            .get(sku)
            .and_then(|levels| levels.get(warehouse))
            .copied()
            .unwrap_or(0);
        let held = self
            .held
            .get(&(sku.to_string(), warehouse.to_string()))
            .copied()
            .unwrap_or(0);
        total.saturating_sub(held)
    }
}

/// The warehouses holding `levels`, in the fixed order, then any others alphabetically.
fn ordered_warehouses(levels: &BTreeMap<String, u64>) -> Vec<&str> {
    let fixed = WAREHOUSES.iter().copied().filter(|w| levels.contains_key(*w));
    let others = levels.keys().map(String::as_str).filter(|w| !WAREHOUSES.contains(w));
    fixed.chain(others).collect()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The deterministic inventory: a stock table (the demo catalogue or a stock file), where
/// reservations hold stock (`RES-<HASH OF THE IDEMPOTENCY KEY>`) until released or expired.
#[derive(Debug)]
pub struct InventorySimulator {
    state: Mutex<State>,
    effects: Effects,
}

impl InventorySimulator {
    /// A simulator over the demo catalogue, recording reservations and releases in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        Self::with_stock(cx, demo_catalogue())
    }

    /// A simulator over `stock`.
    pub fn with_stock(cx: &BuildContext, stock: StockTable) -> Self {
        InventorySimulator {
            state: Mutex::new(State {
                stock,
                ..State::default()
            }),
            effects: cx.effects.clone(),
        }
    }

    /// What is in `warehouse` for `sku` now and not held by a live reservation.
    pub fn unreserved(&self, sku: &str, warehouse: &str) -> u64 {
        let mut state = self.lock();
        state.expire(Utc::now());
        state.unreserved(sku, warehouse)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_stock(&self, args: &Value) -> Result<Value, ConnectorError> {
        let a = Args::new("inventorySystem.checkStock", args)?;
        let sku = a.str("sku")?;
        let quantity = a.positive_int("quantity")?;
        let preferred = a.opt_str_list("preferredWarehouses")?;

        let mut state = self.lock();
        state.expire(Utc::now());
        let Some(levels) = state.stock.get(sku) else {
            return Ok(json!({"available": false}));
        };
        let mut tried: Vec<&str> = Vec::new();
        let candidates = preferred
            .iter()
            .copied()
            .filter(|w| levels.contains_key(*w))
            .chain(ordered_warehouses(levels));
        for warehouse in candidates {
            if tried.contains(&warehouse) {
                continue;
            }
            tried.push(warehouse);
            if state.unreserved(sku, warehouse) >= quantity {
                return Ok(json!({"available": true, "warehouse": warehouse}));
            }
        }
        Ok(json!({"available": false}))
    }

    fn reserve(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("inventorySystem.reserve", args)?;
        let sku = a.str("sku")?;
        let quantity = a.positive_int("quantity")?;
        let warehouse = a.str("warehouse")?;
        a.opt_str("orderId")?;
        let expires_in = a.opt_positive_int("expiresIn")?.unwrap_or(DEFAULT_EXPIRES_IN);
        let now = Utc::now();
        let expires_at = i64::try_from(expires_in)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| a.error(format!("`expiresIn` is too large: {expires_in}")))?;
        let id = format!("RES-{}", key_hash(&ctx.idempotency_key).to_uppercase());

        let mut state = self.lock();
        state.expire(now);
        if let Some(existing) = state.reservations.get(&id) {
            // The same call again (reached without the registry's cache): same answer, no second hold.
            return Ok(json!({"id": id, "expiresAt": rfc3339(existing.expires_at)}));
        }
        if !state.stock.contains_key(sku) {
            return Err(ConnectorError::failed(format!("unknown SKU `{sku}`")));
        }
        let available = state.unreserved(sku, warehouse);
        if available < quantity {
            return Err(ConnectorError::failed(format!(
                "not enough unreserved stock of `{sku}` in `{warehouse}`: {quantity} requested, {available} available"
            )));
        }
        *state.held.entry((sku.to_string(), warehouse.to_string())).or_insert(0) += quantity;
        state.reservations.insert(
            id.clone(),
            Reservation {
                sku: sku.to_string(),
                warehouse: warehouse.to_string(),
                quantity,
                expires_at,
            },
        );
        state.expiries.push(Reverse((expires_at, id.clone())));
        drop(state);
        self.effects.record(ctx, NAME, "reserve", &id);
        Ok(json!({"id": id, "expiresAt": rfc3339(expires_at)}))
    }

    fn release(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("inventorySystem.release", args)?;
        let id = a.str("reservationId")?;
        let mut state = self.lock();
        state.expire(Utc::now());
        let released = state.remove(id);
        drop(state);
        if released {
            self.effects.record(ctx, NAME, "release", id);
        }
        Ok(json!({"released": released}))
    }

    fn check_backorder(&self, args: &Value) -> Result<Value, ConnectorError> {
        let a = Args::new("inventorySystem.checkBackorder", args)?;
        let sku = a.str("sku")?;
        a.opt_positive_int("quantity")?;
        if !self.lock().stock.contains_key(sku) {
            return Ok(json!({"available": false}));
        }
        let restock = Utc::now() + TimeDelta::days(BACKORDER_DAYS);
        Ok(json!({"available": true, "restockDate": rfc3339(restock)}))
    }
}

#[async_trait::async_trait]
impl Connector for InventorySimulator {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "checkStock" => self.check_stock(args),
            "reserve" => self.reserve(args, ctx),
            "release" => self.release(args, ctx),
            "checkBackorder" => self.check_backorder(args),
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

    use crate::test_support::{call, call_as, ctx};
    use crate::{ErrorKind, Registry};

    use super::*;

    fn small_stock() -> StockTable {
        let mut t = StockTable::new();
        t.insert(
            "WIDGET".into(),
            [
                ("TX-MAIN", 5u64),
                ("CA-WEST", 5),
                ("NY-EAST", 5),
                ("IL-CENTRAL", 5),
                ("FL-SOUTH", 5),
                ("AA-EXTRA", 5),
            ]
            .into_iter()
            .map(|(w, q)| (w.to_string(), q))
            .collect(),
        );
        t
    }

    fn small_registry() -> Registry {
        let reg = Registry::simulators();
        let cx = reg.build_context(Path::new(""));
        reg.with_connector(NAME, Arc::new(InventorySimulator::with_stock(&cx, small_stock())))
    }

    async fn check(reg: &Registry, sku: &str, qty: u64, preferred: &[&str], key: &str) -> Value {
        let args = json!({"sku": sku, "quantity": qty, "preferredWarehouses": preferred});
        call(reg, NAME, "checkStock", args, key)
            .await
            .unwrap_or_else(|e| json!(e.to_string()))
    }

    #[test]
    fn demo_catalogue_holds_the_documented_skus() {
        let c = demo_catalogue();
        let q = |s: &str, w: &str| c.get(s).and_then(|l| l.get(w)).copied();
        assert!(q("LAPTOP-DELL-XPS13", "TX-MAIN") >= Some(50));
        assert!(q("LAPTOP-DELL-XPS13", "CA-WEST") >= Some(20));
        assert!(q("MOUSE-WIRELESS-PRO", "TX-MAIN") >= Some(200));
        assert!(q("MOUSE-WIRELESS-PRO", "NY-EAST") >= Some(80));
        assert!(q("MONITOR-LG-27", "TX-MAIN") >= Some(30));
        assert!(q("HEADPHONES-SONY-XM5", "CA-WEST") >= Some(40));
        assert!(q("KEYBOARD-MECH-K2", "NY-EAST") >= Some(25));
        assert!(c.get("CAMERA-CANON-R5").is_some_and(|l| l.values().all(|q| *q == 0)));
        assert!(q("LAPTOP-DELL-XPS13", "TX-MAIN") > q("LAPTOP-DELL-XPS13", "CA-WEST"));
        assert!(q("MOUSE-WIRELESS-PRO", "TX-MAIN") > q("MOUSE-WIRELESS-PRO", "NY-EAST"));
    }

    #[tokio::test]
    async fn check_stock_on_the_demo_catalogue() {
        let reg = Registry::simulators();
        assert_eq!(
            check(&reg, "LAPTOP-DELL-XPS13", 1, &[], "a").await,
            json!({"available": true, "warehouse": "TX-MAIN"})
        );
        assert_eq!(
            check(&reg, "LAPTOP-DELL-XPS13", 1, &["CA-WEST"], "b").await,
            json!({"available": true, "warehouse": "CA-WEST"})
        );
        assert_eq!(
            check(&reg, "HEADPHONES-SONY-XM5", 1, &["TX-MAIN"], "c").await,
            json!({"available": true, "warehouse": "CA-WEST"})
        );
        assert_eq!(
            check(&reg, "KEYBOARD-MECH-K2", 2, &[], "d").await,
            json!({"available": true, "warehouse": "NY-EAST"})
        );
        assert_eq!(
            check(&reg, "CAMERA-CANON-R5", 1, &[], "e").await,
            json!({"available": false})
        );
        assert_eq!(
            check(&reg, "NO-SUCH-SKU", 1, &[], "f").await,
            json!({"available": false})
        );
        assert_eq!(
            check(&reg, "MONITOR-LG-27", 1_000_000_000, &[], "g").await,
            json!({"available": false})
        );
        // More than TX-MAIN has but CA-WEST alone is not enough either; 100000 fits TX-MAIN exactly.
        assert_eq!(
            check(&reg, "LAPTOP-DELL-XPS13", 100_000, &[], "h").await,
            json!({"available": true, "warehouse": "TX-MAIN"})
        );
        assert_eq!(
            check(&reg, "LAPTOP-DELL-XPS13", 100_001, &[], "i").await,
            json!({"available": false})
        );
    }

    #[tokio::test]
    async fn check_stock_prefers_the_preferred_then_the_fixed_order() {
        let reg = small_registry();
        assert_eq!(
            check(&reg, "WIDGET", 5, &[], "a").await,
            json!({"available": true, "warehouse": "TX-MAIN"})
        );
        assert_eq!(
            check(&reg, "WIDGET", 5, &["FL-SOUTH", "NY-EAST"], "b").await,
            json!({"available": true, "warehouse": "FL-SOUTH"})
        );
        assert_eq!(
            check(&reg, "WIDGET", 5, &["NOWHERE", "IL-CENTRAL"], "c").await,
            json!({"available": true, "warehouse": "IL-CENTRAL"})
        );
        // Use up warehouses one by one: the next in the fixed order answers, the extra one last.
        let mut expected = vec!["TX-MAIN", "CA-WEST", "NY-EAST", "IL-CENTRAL", "FL-SOUTH", "AA-EXTRA"];
        let mut n = 0;
        while !expected.is_empty() {
            let w = expected.remove(0);
            assert_eq!(
                check(&reg, "WIDGET", 3, &[], &format!("chk{n}")).await,
                json!({"available": true, "warehouse": w})
            );
            let r = call(
                &reg,
                NAME,
                "reserve",
                json!({"sku": "WIDGET", "quantity": 3, "warehouse": w, "orderId": "o"}),
                &format!("res{n}"),
            )
            .await;
            assert!(r.is_ok(), "{r:?}");
            n += 1;
        }
        assert_eq!(check(&reg, "WIDGET", 3, &[], "last").await, json!({"available": false}));
        // A preferred warehouse with too little left is skipped.
        assert_eq!(
            check(&reg, "WIDGET", 2, &["CA-WEST"], "two").await,
            json!({"available": true, "warehouse": "CA-WEST"})
        );
        assert_eq!(
            check(&reg, "WIDGET", 3, &["CA-WEST"], "three").await,
            json!({"available": false})
        );
    }

    #[tokio::test]
    async fn check_stock_arguments_are_checked() {
        let reg = Registry::simulators();
        for (k, args) in [
            ("a", json!({"quantity": 1})),
            ("b", json!({"sku": "MONITOR-LG-27"})),
            ("c", json!({"sku": "MONITOR-LG-27", "quantity": 0})),
            (
                "d",
                json!({"sku": "MONITOR-LG-27", "quantity": 1, "preferredWarehouses": "TX-MAIN"}),
            ),
            (
                "e",
                json!({"sku": "MONITOR-LG-27", "quantity": 1, "preferredWarehouses": [1]}),
            ),
        ] {
            let r = call(&reg, NAME, "checkStock", args, k).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
        }
    }

    #[tokio::test]
    async fn reserve_returns_a_deterministic_id_and_rfc3339_expiry() {
        let reg = Registry::simulators();
        let before = Utc::now();
        let r = call(
            &reg,
            NAME,
            "reserve",
            json!({"sku": "MONITOR-LG-27", "quantity": 2, "warehouse": "TX-MAIN", "orderId": "o1", "expiresIn": 600}),
            "k",
        )
        .await;
        let r = r.unwrap_or_default();
        assert_eq!(r["id"], json!(format!("RES-{}", key_hash("k").to_uppercase())));
        let at = r["expiresAt"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let at = at.map(|t| t.with_timezone(&Utc));
        assert!(at.is_some_and(|t| t >= before + TimeDelta::seconds(599) && t <= Utc::now() + TimeDelta::seconds(601)));
        assert_eq!(reg.effects().count(NAME, "reserve"), 1);
    }

    #[tokio::test]
    async fn a_reservation_holds_stock_until_released() {
        let reg = small_registry();
        let reserve = |key: &'static str, order: &'static str| {
            let reg = reg.clone();
            async move {
                call_as(
                    &reg,
                    order,
                    NAME,
                    "reserve",
                    json!({"sku": "WIDGET", "quantity": 4, "warehouse": "TX-MAIN", "orderId": order, "expiresIn": 900}),
                    key,
                )
                .await
            }
        };
        let first = reserve("k1", "order-1").await;
        let id = first.as_ref().map(|v| v["id"].clone()).unwrap_or_default();
        assert!(id.is_string());
        // The second order cannot take what the first holds.
        let second = reserve("k2", "order-2").await;
        let err = second.err();
        assert_eq!(err.as_ref().map(|e| e.kind), Some(ErrorKind::Failed));
        assert!(err.is_some_and(|e| e.message.contains("4 requested, 1 available")));
        assert_eq!(
            check(&reg, "WIDGET", 4, &["TX-MAIN"], "c1").await,
            json!({"available": true, "warehouse": "CA-WEST"})
        );
        // Release frees it.
        let rel = call(&reg, NAME, "release", json!({"reservationId": id}), "rel1").await;
        assert_eq!(rel, Ok(json!({"released": true})));
        assert_eq!(
            check(&reg, "WIDGET", 4, &["TX-MAIN"], "c2").await,
            json!({"available": true, "warehouse": "TX-MAIN"})
        );
        let third = reserve("k3", "order-2").await;
        assert!(third.is_ok());
        // Releasing again (another key) finds nothing.
        let again = call(&reg, NAME, "release", json!({"reservationId": id}), "rel2").await;
        assert_eq!(again, Ok(json!({"released": false})));
        assert_eq!(reg.effects().count(NAME, "reserve"), 2);
        assert_eq!(reg.effects().count(NAME, "release"), 1);
        assert_eq!(reg.effects().count_for_task("order-2", NAME, "reserve"), 1);
    }

    #[tokio::test]
    async fn release_of_an_unknown_id_is_not_released() {
        let reg = Registry::simulators();
        let r = call(&reg, NAME, "release", json!({"reservationId": "RES-NOPE"}), "k").await;
        assert_eq!(r, Ok(json!({"released": false})));
        assert!(reg.effects().is_empty());
        let r = call(&reg, NAME, "release", json!({}), "k2").await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }

    #[tokio::test]
    async fn reserve_failures() {
        let reg = small_registry();
        let r = call(
            &reg,
            NAME,
            "reserve",
            json!({"sku": "NOPE", "quantity": 1, "warehouse": "TX-MAIN"}),
            "a",
        )
        .await;
        assert!(r.is_err_and(|e| e.kind == ErrorKind::Failed && e.message.contains("NOPE")));
        let r = call(
            &reg,
            NAME,
            "reserve",
            json!({"sku": "WIDGET", "quantity": 1, "warehouse": "MARS"}),
            "b",
        )
        .await;
        assert!(r.is_err_and(|e| e.kind == ErrorKind::Failed && e.message.contains("MARS")));
        for (k, args) in [
            ("c", json!({"quantity": 1, "warehouse": "TX-MAIN"})),
            ("d", json!({"sku": "WIDGET", "warehouse": "TX-MAIN"})),
            ("e", json!({"sku": "WIDGET", "quantity": 1})),
            (
                "f",
                json!({"sku": "WIDGET", "quantity": 1, "warehouse": "TX-MAIN", "expiresIn": -3}),
            ),
            (
                "g",
                json!({"sku": "WIDGET", "quantity": 1, "warehouse": "TX-MAIN", "expiresIn": u64::MAX}),
            ),
        ] {
            let r = call(&reg, NAME, "reserve", args, k).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs), "{k}");
        }
        assert!(reg.effects().is_empty());
    }

    #[tokio::test]
    async fn same_key_reserves_once() {
        let reg = small_registry();
        let args = json!({"sku": "WIDGET", "quantity": 3, "warehouse": "TX-MAIN", "orderId": "o"});
        let a = call(&reg, NAME, "reserve", args.clone(), "k").await;
        let b = call(&reg, NAME, "reserve", args.clone(), "k").await;
        assert!(a.is_ok());
        assert_eq!(a, b);
        assert_eq!(reg.effects().count(NAME, "reserve"), 1);
        // Only 3 of 5 are held: 2 are left.
        assert_eq!(
            check(&reg, "WIDGET", 2, &["TX-MAIN"], "c").await,
            json!({"available": true, "warehouse": "TX-MAIN"})
        );
        assert_eq!(
            check(&reg, "WIDGET", 3, &["TX-MAIN"], "d").await,
            json!({"available": true, "warehouse": "CA-WEST"})
        );
        // Another key is another reservation (and fails: not enough left).
        let c = call(&reg, NAME, "reserve", args, "k-other").await;
        assert!(c.is_err_and(|e| e.kind == ErrorKind::Failed));
    }

    #[tokio::test]
    async fn the_simulator_itself_does_not_hold_twice_for_one_key() {
        let sim = InventorySimulator::with_stock(&BuildContext::default(), small_stock());
        let args = json!({"sku": "WIDGET", "quantity": 3, "warehouse": "TX-MAIN"});
        let a = sim.call("reserve", &args, &ctx("k")).await;
        let b = sim.call("reserve", &args, &ctx("k")).await;
        assert!(a.is_ok());
        assert_eq!(a, b);
        assert_eq!(sim.unreserved("WIDGET", "TX-MAIN"), 2);
    }

    #[tokio::test]
    async fn expired_reservations_free_their_stock() {
        let sim = InventorySimulator::with_stock(&BuildContext::default(), small_stock());
        let args = json!({"sku": "WIDGET", "quantity": 5, "warehouse": "TX-MAIN", "expiresIn": 60});
        assert!(sim.call("reserve", &args, &ctx("k")).await.is_ok());
        assert_eq!(sim.unreserved("WIDGET", "TX-MAIN"), 0);
        let mut state = sim.lock();
        state.expire(Utc::now() + TimeDelta::seconds(61));
        assert_eq!(state.unreserved("WIDGET", "TX-MAIN"), 5);
        assert!(state.reservations.is_empty());
    }

    #[tokio::test]
    async fn backorder_for_known_and_unknown_skus() {
        let reg = Registry::simulators();
        let r = call(
            &reg,
            NAME,
            "checkBackorder",
            json!({"sku": "CAMERA-CANON-R5", "quantity": 1}),
            "a",
        )
        .await;
        let r = r.unwrap_or_default();
        assert_eq!(r["available"], json!(true));
        let date = r["restockDate"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let days = date.map(|d| (d.with_timezone(&Utc) - Utc::now()).num_hours());
        assert!(days.is_some_and(|h| (14 * 24 - 1..=14 * 24).contains(&h)), "{days:?}");
        let r = call(&reg, NAME, "checkBackorder", json!({"sku": "NOPE", "quantity": 1}), "b").await;
        assert_eq!(r, Ok(json!({"available": false})));
        let r = call(&reg, NAME, "checkBackorder", json!({"quantity": 1}), "c").await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs));
    }

    #[test]
    fn stock_files_load_or_name_the_path_and_problem() {
        let dir = std::env::temp_dir().join(format!("whenever-conn-inv-{}", std::process::id()));
        assert!(std::fs::create_dir_all(&dir).is_ok());
        let good = dir.join("good.json");
        assert!(std::fs::write(&good, r#"{"GADGET": {"CA-WEST": 7, "TX-MAIN": 0}}"#).is_ok());
        let t = load_stock_file(&good);
        assert_eq!(
            t.ok()
                .and_then(|t| t.get("GADGET").and_then(|l| l.get("CA-WEST")).copied()),
            Some(7)
        );
        for (name, text, needle) in [
            ("notjson.json", "{nope", "not {"),
            ("negative.json", r#"{"A": {"TX-MAIN": -1}}"#, "non-negative"),
            ("shape.json", r#"{"A": 3}"#, "not {"),
            ("emptysku.json", r#"{"": {"TX-MAIN": 1}}"#, "empty SKU"),
        ] {
            let p = dir.join(name);
            assert!(std::fs::write(&p, text).is_ok());
            let e = load_stock_file(&p).err().unwrap_or_default();
            assert!(e.contains(name) && e.contains(needle), "{e}");
        }
        let e = load_stock_file(&dir.join("missing.json")).err().unwrap_or_default();
        assert!(e.contains("missing.json") && e.contains("cannot read"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
