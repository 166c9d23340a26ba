//! The real connectors, each against a local server that speaks its service's protocol (small
//! axum servers for the HTTP APIs, a small SMTP server for e-mail), started by the test itself
//! on 127.0.0.1. No mock sits inside the code path: requests go over real sockets.

mod support;

mod coinbase;
mod common;
mod http_kind;
mod paypal;
mod slack;
mod smtp;
mod stripe;
mod tls;
