//! Helpers shared by the unit tests.

use serde_json::Value;

use crate::{CallContext, ConnectorError, Registry};

/// A context for task `task-1`, step `step`, with this idempotency key.
pub(crate) fn ctx(key: &str) -> CallContext {
    CallContext::new("task-1", "step", key)
}

/// Calls through the registry as task `task-1` with this idempotency key.
pub(crate) async fn call(
    reg: &Registry,
    connector: &str,
    method: &str,
    args: Value,
    key: &str,
) -> Result<Value, ConnectorError> {
    reg.call(connector, method, &args, &ctx(key)).await
}

/// Calls through the registry as `task` with this idempotency key.
pub(crate) async fn call_as(
    reg: &Registry,
    task: &str,
    connector: &str,
    method: &str,
    args: Value,
    key: &str,
) -> Result<Value, ConnectorError> {
    reg.call(connector, method, &args, &CallContext::new(task, "step", key))
        .await
}
