//! Step 1: Customer Tier Analysis. Triggers as soon as an order with a customer arrives, in
//! parallel with fraud detection and inventory management.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::ToString;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct CustomerTierAnalysis;

impl Step for CustomerTierAnalysis {
    fn condition() -> Value {
        condition!({
            order: {
                customer: {
                    id: String,
                    tier: String,
                    totalSpent: Number,
                },
                tierAnalyzed: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!(
            "Analyzing customer tier for: {}",
            js::text(data, "order.customer.email")
        );

        // Upgrade tier based on spending history and current order. As in JavaScript, a missing
        // total makes the sum NaN, which passes no threshold.
        let lifetime_value = js::num(data, "order.customer.totalSpent") + js::num(data, "order.total");
        let tier = get_str(data, "order.customer.tier").to_string();
        let total_orders = js::num(data, "order.customer.totalOrders");

        if lifetime_value > 50000.0 || tier == "enterprise" {
            set(data, "order.customer.effectiveTier", "enterprise");
            set(data, "order.priority", "critical");
            set(data, "order.processingTime", 15); // minutes
            set(data, "order.personalizedService", true);
        } else if lifetime_value > 10000.0 || tier == "business" {
            set(data, "order.customer.effectiveTier", "business");
            set(data, "order.priority", "high");
            set(data, "order.processingTime", 30);
            set(data, "order.expeditedProcessing", true);
        } else if total_orders > 10.0 {
            set(data, "order.customer.effectiveTier", "loyal");
            set(data, "order.priority", "normal");
            set(data, "order.processingTime", 60);
            set(data, "order.loyaltyPerks", true);
        } else {
            set(data, "order.customer.effectiveTier", "standard");
            set(data, "order.priority", "normal");
            set(data, "order.processingTime", 120);
        }

        set(data, "order.tierAnalyzed", true);
        set(data, "order.tierAnalyzedAt", task::now());

        log_info!(
            "Customer tier: {}, Priority: {}",
            js::text(data, "order.customer.effectiveTier"),
            js::text(data, "order.priority")
        );
        Ok(())
    }
}

export_step!(CustomerTierAnalysis);
whenever_step_sdk::no_std_support!();
