//! The pieces of a `#![no_std]` step's runtime that `std` would otherwise provide; the
//! [`no_std_support!`](crate::no_std_support) macro installs them in the step's crate.

use core::alloc::Layout;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::log::{Level, log};

/// Set once a panic is being reported: a panic while reporting it (out of memory, say) traps at
/// once instead of recursing.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Logs the panic's message (where and why, as `std`'s hook prints it) to the run's log, then
/// traps.
pub fn panicked(info: &PanicInfo<'_>) -> ! {
    if !PANICKING.swap(true, Ordering::Relaxed) {
        log(Level::Error, &alloc::format!("{info}"));
    }
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's `cabi_realloc` on the global allocator, as `std` and wit-bindgen define
/// it: a fresh block when `old_len` is 0 (a dangling, aligned pointer for 0 bytes), else `old`
/// grown or shrunk to `new_len`; a trap when memory runs out.
///
/// # Safety
/// `old` is null with `old_len` 0, or a block from this function of `old_len` bytes and `align`;
/// `align` is a power of two.
pub unsafe fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    let block = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: the caller promises a power-of-two `align`; `new_len` is not 0.
        unsafe { alloc::alloc::alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: `old` is a block of this layout from the global allocator (the caller's
        // promise), and the canonical ABI never asks for 0 bytes when growing.
        unsafe { alloc::alloc::realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len) }
    };
    if block.is_null() {
        core::arch::wasm32::unreachable();
    }
    block
}
