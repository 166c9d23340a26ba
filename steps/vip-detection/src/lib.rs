//! Scalable business logic: VIP Customer Detection. Upgrades customers who spent more than
//! 100000 to VIP, critical priority, with a personal shopper.
//!
//! Fixes (see the README): the seed's threshold `totalSpent > 100000` was only a comment, so every
//! order became VIP; it is now part of the condition, so other orders never run this step. And
//! the seed raced the tier analysis over `effectiveTier` (both start on the new order, the later
//! writer wins); waiting for `tierAnalyzed: true` makes VIP always win, after the tier analysis.
#![cfg_attr(target_arch = "wasm32", no_std)]

use whenever_step_sdk::prelude::*;

struct VipDetection;

impl Step for VipDetection {
    fn condition() -> Value {
        condition!({
            order: {
                customer: {
                    totalSpent: gt(100000),
                },
                tierAnalyzed: true,
                vipProcessingTriggered: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("VIP customer detected for order: {}", get_str(data, "order.id"));

        set(data, "order.customer.effectiveTier", "vip");
        set(data, "order.priority", "critical");
        set(data, "order.personalShopper", true);
        set(data, "order.vipProcessingTriggered", true);
        Ok(())
    }
}

export_step!(VipDetection);
whenever_step_sdk::no_std_support!();
