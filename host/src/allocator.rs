//! Settings of mimalloc, the global allocator of the `whenever` binary and of the benches, for a
//! process that runs for long under a steady load.

/// `mi_option_purge_delay`: its position in mimalloc's `mi_option_e` (v3's `mimalloc.h`), which
/// `libmimalloc-sys` does not name.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed inside mimalloc stays with the process before it is returned to the
/// operating system: 10 s, against mimalloc's 1 s. Under a steady load the same memory is freed
/// and taken again and again; returned after a second, it came back as fresh pages the kernel
/// faulted in and zeroed, at a cost to every order. In the service bench the longer delay gave
/// 8–15% more orders per second (seven alternating pairs, docs/performance.md). After a burst the
/// memory goes back ten seconds later.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Applies [`PURGE_DELAY_MS`], unless `MIMALLOC_PURGE_DELAY` in the environment chooses the delay
/// (mimalloc reads it at start). Call once, early; it has an effect only where mimalloc is the
/// global allocator.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options, which it reads at each purge; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long) }
    }
}

/// The purge delay mimalloc applies now, in milliseconds.
// `c_long` is 64 bits here but 32 on some targets: the conversion is not useless everywhere.
#[allow(clippy::useless_conversion)]
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads one of mimalloc's options.
    i64::from(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_mimallocs_option_and_configure_sets_it() {
        // mimalloc's own default (1 s) unless the environment set one: the position is the right one.
        let expected = std::env::var("MIMALLOC_PURGE_DELAY").ok().and_then(|v| v.parse().ok());
        assert_eq!(purge_delay_ms(), expected.unwrap_or(1_000));
        configure();
        assert_eq!(purge_delay_ms(), expected.unwrap_or(PURGE_DELAY_MS));
    }
}
