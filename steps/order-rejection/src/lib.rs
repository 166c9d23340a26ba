//! New step (a fix, see the README): Order Rejection. In the seed a rejected order
//! (`fraudRejected: true`, by fraud detection or by a person after a review) has no step at all:
//! its stock stays reserved, the customer hears nothing and the task waits forever. This step
//! releases the reservations, tells the customer, sets the status and completes the task.
//!
//! It waits for `inventoryChecked: true` so that the reservations inventory management is making
//! at the same time are known, and released, rather than left behind.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct OrderRejection;

impl Step for OrderRejection {
    fn condition() -> Value {
        condition!({
            order: {
                fraudRejected: true,
                inventoryChecked: true,
                orderRejected: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        let id = js::text(data, "order.id");
        log_info!("Rejecting order: {id}");

        // Release inventory reservations (unless a failed payment already released them). A
        // failing release fails the run, so no stock is left held without anyone knowing.
        let mut released = 0;
        if !get_bool(data, "order.inventoryReleased") {
            let reservations: Vec<Value> = get(data, "order.items")
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.get("reservationId"))
                .filter(|id| js::truthy(Some(id)))
                .cloned()
                .collect();
            for reservation_id in reservations {
                connectors::call(
                    "inventorySystem",
                    "release",
                    &json!({ "reservationId": reservation_id }),
                )?;
                released += 1;
            }
            if released > 0 {
                set(data, "order.inventoryReserved", false);
                set(data, "order.inventoryReleased", true);
            }
        }

        // Tell the customer; as with the confirmation, a failed e-mail does not block the order.
        let (subject, html) = rejection_email(data);
        let email = connectors::call(
            "eMailSmtpOAuth",
            "sendEmail",
            &js::object([
                ("from", Some(json!("orders@retailmax.com"))),
                ("to", js::lookup(data, "order.customer.email").cloned()),
                ("subject", Some(json!(subject))),
                ("html", Some(json!(html))),
            ]),
        );
        // (Fields of its own: `customerNotified` would wake the internal team notification.)
        match email {
            Ok(_) => set(data, "order.rejectionEmailSent", true),
            Err(error) => {
                log_error!("Rejection e-mail failed: {}", error.message);
                set(data, "order.rejectionEmailSent", false);
                set(data, "order.rejectionEmailError", error.message);
            }
        }

        set(data, "order.status", "rejected");
        set(data, "order.rejectedAt", task::now());
        set(data, "order.orderRejected", true);
        set(
            data,
            "orderProcessing",
            js::object([
                ("status", Some(json!("rejected"))),
                ("reason", Some(json!("fraud"))),
                ("fraudScore", js::lookup(data, "order.fraud.finalScore").cloned()),
                ("releasedReservations", Some(json!(released))),
            ]),
        );

        let mut tags = vec!["order_processing".to_string(), "rejected".to_string()];
        if let Some(Value::String(channel)) = js::lookup(data, "order.channel") {
            tags.push(channel.clone());
        }
        task::add_tags(&tags.iter().map(String::as_str).collect::<Vec<_>>());
        task::set_name(&format!(
            "Order: {id} - {} {} (${}) - rejected",
            js::text(data, "order.customer.firstName"),
            js::text(data, "order.customer.lastName"),
            js::text(data, "order.total")
        ));

        log_info!("Order {id} rejected; {released} reservations released");
        task::complete();
        Ok(())
    }
}

/// The cancellation e-mail, in the style of the seed's others.
fn rejection_email(data: &Value) -> (String, String) {
    let id = js::text(data, "order.id");
    let first_name = js::text(data, "order.customer.firstName");
    let payment_note = if get_bool(data, "order.paymentProcessed") {
        "Any payment taken for this order will be refunded in full."
    } else {
        "You have not been charged for this order."
    };
    (
        format!("Order Cancelled - {id}"),
        format!(
            "
        <h2>We could not complete your order, {first_name}</h2>
        <p>We're sorry: we were unable to verify order {id}, and it has been cancelled.</p>
        <p>{payment_note}</p>
        <p>If you believe this is a mistake, please contact our customer service team.</p>
      "
        ),
    )
}

export_step!(OrderRejection);
whenever_step_sdk::no_std_support!();
