//! wasi-libc's `malloc` (dlmalloc) as a Rust allocator, without `std`: the same calls `std`'s
//! `System` allocator makes on `wasm32-wasip2`, so a `#![no_std]` step's memory is laid out as
//! it would be with `std`, in the instance's initial memory first (each `memory.grow` costs the
//! host a system call). wasi-libc's allocator needs no WASI import.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

/// The alignment `malloc` guarantees on wasm32, as `std` assumes it.
const MIN_ALIGN: usize = 8;

#[link(name = "c")]
unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn aligned_alloc(align: usize, size: usize) -> *mut u8;
    fn realloc(block: *mut u8, size: usize) -> *mut u8;
    fn free(block: *mut u8);
}

/// Whether `malloc` (or `realloc`) alone gives a block of `size` bytes aligned to `align`, as
/// `std`'s `System` decides it; otherwise the block comes from `aligned_alloc`.
#[inline]
fn malloc_aligns(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

/// wasi-libc's allocator.
pub(crate) struct Malloc;

// SAFETY: each method forwards to the C allocator as `std`'s `System` does; blocks aligned more
// strictly than `malloc` guarantees come from `aligned_alloc`, which `free` releases too. The
// step's allocator (`allocator.rs`) calls only these three; `alloc_zeroed` keeps the trait's
// default (`alloc`, then zeroing).
unsafe impl GlobalAlloc for Malloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls.
        unsafe {
            if malloc_aligns(layout.align(), layout.size()) {
                malloc(layout.size())
            } else {
                aligned_alloc(layout.align(), layout.size())
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        // SAFETY: `block` came from this allocator (the caller's promise).
        unsafe { free(block) }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `block` came from this allocator with `layout` (the caller's promise); the copy
        // stays within both blocks.
        unsafe {
            if malloc_aligns(layout.align(), new_size) {
                realloc(block, new_size)
            } else {
                let moved = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    free(block);
                }
                moved
            }
        }
    }
}
