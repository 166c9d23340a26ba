//! Scalable business logic: Cryptocurrency Payment. Charges bitcoin orders through Coinbase
//! (payment processing leaves them alone).
//!
//! Changes to the seed (see the README): the condition also needs the `walletAddress`, so an
//! order without one waits for it, and a person can retry with a new wallet (patch the wallet and
//! `cryptoPaymentProcessed: null`); a declined payment is recorded like a card's (`paymentFailed`,
//! `payment.error`, status `payment_failed`), so payment-failure-recovery tells the customer,
//! where the seed left such an order waiting in silence.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct CryptoPayment;

impl Step for CryptoPayment {
    fn condition() -> Value {
        condition!({
            order: {
                payment: {
                    method: "bitcoin",
                    walletAddress: String,
                },
                cryptoPaymentProcessed: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Processing bitcoin payment for order: {}", js::text(data, "order.id"));

        // Outside any `try` in the seed: a connector error fails the run.
        let result = connectors::call(
            "coinbase",
            "processPayment",
            &js::object([
                ("amount", js::lookup(data, "order.total").cloned()),
                ("currency", Some(json!("BTC"))),
                ("wallet", js::lookup(data, "order.payment.walletAddress").cloned()),
            ]),
        )?;

        if js::truthy(result.get("success")) {
            set(data, "order.paymentProcessed", true);
            js::assign(
                data,
                "order.payment.blockchainTxId",
                result.get("transactionId").cloned(),
            );
            // Fix: a success after a failed attempt clears what the failure left.
            remove(data, "order.paymentFailed");
            remove(data, "order.payment.error");
            remove(data, "order.payment.failedAt");
            log_info!(
                "Bitcoin payment successful: {}",
                js::string(result.get("transactionId"))
            );
        } else {
            // Fix: record the failure as payment processing does, so recovery handles it.
            let message = js::string(Some(&js::or(result.get("error"), "Payment failed")));
            log_error!("Bitcoin payment failed: {message}");
            set(data, "order.payment.error", message);
            set(data, "order.payment.failedAt", task::now());
            set(data, "order.paymentFailed", true);
            set(data, "order.status", "payment_failed");
            remove(data, "order.retryRequested");
        }

        set(data, "order.cryptoPaymentProcessed", true);
        Ok(())
    }
}

export_step!(CryptoPayment);
whenever_step_sdk::no_std_support!();
