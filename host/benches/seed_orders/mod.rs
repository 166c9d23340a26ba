//! The RetailMax seed orders the service and instructions benches send: each the demo's order
//! with an id of its own, `ORDER_ID_PREFIX` (a constant of the bench that includes this module)
//! followed by its number, as a value or as the JSON text an HTTP client posts.

use std::sync::LazyLock;

use serde_json::{Value, json};

/// The seed order, parsed once: the clients copy it rather than parse it again for every order
/// (which took about 1% of the process's CPU).
static SEED: LazyLock<Value> = LazyLock::new(whenever::demo::seed_order);

/// The id of order `n`.
pub fn order_id(n: usize) -> String {
    format!("{}{n:08}", crate::ORDER_ID_PREFIX)
}

/// Order `n`: the seed order with its own id.
pub fn order(n: usize) -> Value {
    let mut order = SEED.clone();
    order["order"]["id"] = json!(order_id(n));
    order
}

/// The seed order as JSON text, with the id of order 0: an HTTP client's body is this text with
/// its order's id written in (a client elsewhere would not spend the server's cores building it,
/// and under valgrind its share of the count stays small).
static SEED_TEXT: LazyLock<String> = LazyLock::new(|| order(0).to_string());

/// Order `n` as JSON text (the text of [`order`]`(n)`).
pub fn order_text(n: usize) -> String {
    SEED_TEXT.replacen(&order_id(0), &order_id(n), 1)
}
