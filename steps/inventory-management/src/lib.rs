//! Step 3: Inventory Management. Runs in parallel with fraud detection: checks every item across
//! the warehouses, reserves what is in stock and looks up backorders for the rest.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct InventoryManagement;

impl Step for InventoryManagement {
    fn condition() -> Value {
        condition!({
            order: {
                items: Array,
                inventoryChecked: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Checking inventory for order: {}", js::text(data, "order.id"));

        let order_id = js::lookup(data, "order.id").cloned();
        let mut all_items_available = true;
        let mut inventory_results = Vec::new();

        if let Some(items) = data.pointer_mut("/order/items").and_then(Value::as_array_mut) {
            for item in items.iter_mut() {
                // The seed's per-item `try { ... } catch (error) { ... }`.
                match check_item(item, order_id.as_ref()) {
                    Ok(result) => {
                        if result.get("available") != Some(&json!(true)) {
                            all_items_available = false;
                        }
                        inventory_results.push(result);
                    }
                    Err(error) => {
                        log_error!(
                            "Inventory check failed for {}: {}",
                            js::string(item.get("sku")),
                            error.message
                        );
                        all_items_available = false;

                        inventory_results.push(js::object([
                            ("sku", item.get("sku").cloned()),
                            ("quantity", item.get("quantity").cloned()),
                            ("available", Some(json!(false))),
                            ("error", Some(json!(error.message))),
                        ]));
                    }
                }
            }
        }

        set(
            data,
            "order.inventory",
            json!({
                "allAvailable": all_items_available,
                "results": inventory_results,
                "checkedAt": task::now(),
            }),
        );

        set(data, "order.inventoryChecked", true);

        if all_items_available {
            set(data, "order.inventoryReserved", true);
        } else {
            set(data, "order.hasBackorders", true);
        }

        log_info!("Inventory check complete. All available: {all_items_available}");
        Ok(())
    }
}

/// One item's `try` block: reserves it where it is in stock (noting the warehouse and the
/// reservation on the item) or looks up its backorder. The item is changed only once every call
/// has succeeded, as in the seed.
fn check_item(item: &mut Value, order_id: Option<&Value>) -> Result<Value, ConnectorError> {
    let sku = item.get("sku").cloned();
    let quantity = item.get("quantity").cloned();

    // Check inventory across all warehouses
    let inventory = connectors::call(
        "inventorySystem",
        "checkStock",
        &js::object([
            ("sku", sku.clone()),
            ("quantity", quantity.clone()),
            ("preferredWarehouses", Some(json!(["TX-MAIN", "CA-WEST", "NY-EAST"]))),
        ]),
    )?;

    if js::truthy(inventory.get("available")) {
        // Reserve inventory
        let reservation = connectors::call(
            "inventorySystem",
            "reserve",
            &js::object([
                ("sku", sku.clone()),
                ("quantity", quantity.clone()),
                ("warehouse", inventory.get("warehouse").cloned()),
                ("orderId", order_id.cloned()),
                ("expiresIn", Some(json!(900))), // 15 minutes
            ]),
        )?;

        // Add warehouse info to item
        if item.is_object() {
            js::assign(item, "warehouse", inventory.get("warehouse").cloned());
            js::assign(item, "reservationId", reservation.get("id").cloned());
        }

        Ok(js::object([
            ("sku", sku),
            ("quantity", quantity),
            ("available", Some(json!(true))),
            ("warehouse", inventory.get("warehouse").cloned()),
            ("reservationId", reservation.get("id").cloned()),
            ("reservedUntil", reservation.get("expiresAt").cloned()),
        ]))
    } else {
        // Check backorder availability
        let backorder = connectors::call(
            "inventorySystem",
            "checkBackorder",
            &js::object([("sku", sku.clone()), ("quantity", quantity.clone())]),
        )?;

        if item.is_object() {
            js::assign(item, "backorder", backorder.get("available").cloned());
            js::assign(item, "estimatedShipDate", backorder.get("restockDate").cloned());
        }

        Ok(js::object([
            ("sku", sku),
            ("quantity", quantity),
            ("available", Some(json!(false))),
            ("backorderAvailable", backorder.get("available").cloned()),
            ("estimatedRestockDate", backorder.get("restockDate").cloned()),
        ]))
    }
}

export_step!(InventoryManagement);
whenever_step_sdk::no_std_support!();
