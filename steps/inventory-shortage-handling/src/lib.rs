//! Error handling: Inventory Shortage Handling. When some items are not in stock, offers the
//! customer a partial shipment (or, with nothing in stock, the backorder options) and alerts the
//! inventory team. The task then waits for the customer's choice, which a person patches in.
//!
//! Fix (see the README): the condition also waits for `paymentProcessed: true`. In the seed this
//! step and payment processing both start once inventory and fraud checks are done, and both
//! write `order.status`: whichever finished last decided whether a waiting backorder showed
//! "payment_confirmed" or "inventory_shortage_handled" (the host records a conflict). Waiting
//! for the payment makes the shortage handling come last, and the customer is offered shipping
//! options only for an order that is approved and paid (a rejected order is not offered any).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct InventoryShortageHandling;

impl Step for InventoryShortageHandling {
    fn condition() -> Value {
        condition!({
            order: {
                hasBackorders: true,
                paymentProcessed: true,
                inventoryShortageHandled: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Handling inventory shortage for order: {}", js::text(data, "order.id"));

        // Separate available items from backordered items
        let items = js::array(data, "order.items", "filter")?.to_vec();
        let available_items: Vec<Value> = items
            .iter()
            .filter(|item| js::truthy(item.get("warehouse")))
            .cloned()
            .collect();
        let backordered_items: Vec<Value> = items
            .iter()
            .filter(|item| js::truthy(item.get("backorder")))
            .cloned()
            .collect();

        let id = js::text(data, "order.id");
        let email = js::read(data, "order.customer.email")?.cloned();

        let (subject, html) = if !available_items.is_empty() {
            // Create partial shipment for available items
            set(
                data,
                "order.partialShipment",
                json!({
                    "items": available_items,
                    "canShipImmediately": true,
                    "estimatedShipDate": task::now(),
                }),
            );

            // Offer partial shipment to customer
            partial_shipment_email(&id, &available_items, &backordered_items, items.len())
        } else {
            // All items backordered
            backorder_email(&id)
        };

        connectors::call(
            "eMailSmtpOAuth",
            "sendEmail",
            &js::object([
                ("from", Some(json!("orders@retailmax.com"))),
                ("to", email),
                ("subject", Some(json!(subject))),
                ("html", Some(json!(html))),
            ]),
        )?;

        // Notify inventory team
        connectors::call(
            "slackCom",
            "send",
            &json!({
                "channel": "#inventory-alerts",
                "text": format!(
                    "📦 Inventory shortage for order {id}. {} items backordered. Customer notified.",
                    backordered_items.len()
                ),
            }),
        )?;

        set(data, "order.inventoryShortageHandled", true);
        set(data, "order.status", "inventory_shortage_handled");
        Ok(())
    }
}

/// The partial-shipment offer, exactly as the seed's template literal.
fn partial_shipment_email(id: &str, available: &[Value], backordered: &[Value], item_count: usize) -> (String, String) {
    let available_list: String = available
        .iter()
        .map(|item| {
            format!(
                "<li>{} (x{})</li>",
                js::string(item.get("name")),
                js::string(item.get("quantity"))
            )
        })
        .collect();
    let backordered_list: String = backordered
        .iter()
        .map(|item| {
            format!(
                "<li>{} (x{}) - Expected: {}</li>",
                js::string(item.get("name")),
                js::string(item.get("quantity")),
                js::string(Some(&js::or(item.get("estimatedShipDate"), "TBD")))
            )
        })
        .collect();
    let available_count = available.len();
    (
        format!("Partial Shipment Available - Order {id}"),
        format!(
            "
        <h2>Good News! Part of Your Order is Ready</h2>
        <p>We can ship {available_count} of {item_count} items from your order immediately.</p>
        <p><strong>Available for immediate shipment:</strong></p>
        <ul>
          {available_list}
        </ul>
        <p><strong>Backordered items:</strong></p>
        <ul>
          {backordered_list}
        </ul>
        <p><a href=\"https://retailmax.com/orders/{id}/shipping-options\">Choose Your Shipping Preference</a></p>
      "
        ),
    )
}

/// The all-backordered update, exactly as the seed's template literal.
fn backorder_email(id: &str) -> (String, String) {
    (
        format!("Order Update - {id}"),
        format!(
            "
        <h2>Order Update Required</h2>
        <p>Unfortunately, the items in your order are currently out of stock.</p>
        <p>We can:</p>
        <ul>
          <li>Hold your order until items are restocked</li>
          <li>Substitute with similar items</li>
          <li>Cancel and refund your order</li>
        </ul>
        <p><a href=\"https://retailmax.com/orders/{id}/backorder-options\">Choose Your Preference</a></p>
      "
        ),
    )
}

export_step!(InventoryShortageHandling);
whenever_step_sdk::no_std_support!();
