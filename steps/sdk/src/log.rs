//! Run logs. `log_info!` is the seed's `console.log`, `log_error!` its `console.error`.

use crate::bindings::whenever::step::log as host;

pub use host::Level;

/// Appends a line at `level` to the current run's log.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Logs an informational line (`console.log`).
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &$crate::__private::format!($($arg)*)) };
}

/// Logs a warning.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &$crate::__private::format!($($arg)*)) };
}

/// Logs an error line (`console.error`).
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &$crate::__private::format!($($arg)*)) };
}
