//! The step's memory allocator: small blocks from size classes with free lists, the rest from
//! the system allocator (wasi-libc's dlmalloc, `malloc.rs`).
//!
//! A step runs in a fresh instance that is thrown away after one call, so its allocator never
//! needs to give memory back or to fight fragmentation over time; what it does need is to be
//! cheap per call. dlmalloc's bookkeeping (bins, boundary tags, coalescing) was about a tenth of
//! the RetailMax steps' own instructions. Here a small block is a pop from its class's free list
//! or a bump in the current chunk, and freeing it is a push; a block that grows within its class
//! (a `String` or `Vec` being filled) stays where it is.
//!
//! Memory stays bounded as dlmalloc's does, give or take the classes' rounding: a freed block is
//! reused by the next block of its class, and a step that keeps allocating without freeing meets
//! the instance's memory limit as it would have.
//!
//! The footprint matters as much as the instructions. A first version (power-of-two classes up to
//! 4 KiB, carved from 64 KiB chunks) ran 3% fewer instructions per order but 25% slower: runs
//! outgrew the instance's initial memory, and every `memory.grow` (and the reset that shrinks it
//! back) is an `mprotect` in the host, eight times as many as before. Hence the fine classes, the
//! 1 KiB largest block and the page-sized chunks: as many `mprotect`s as with dlmalloc alone.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};

#[cfg(target_arch = "wasm32")]
use crate::malloc::Malloc as System;
// Natively the module is compiled only for its unit tests, which have `std`.
#[cfg(not(target_arch = "wasm32"))]
use std::alloc::System;

/// The smallest class, and the alignment every small block has.
const MIN_BLOCK: usize = 16;
/// The largest block served from the classes; larger ones go to the system allocator.
const MAX_BLOCK: usize = 1024;
/// The number of classes: 16, 32, 48, 64, then four to each doubling (80, 96, 112, 128, 160,
/// ..., 1024), so that a block wastes an eighth of its size on average, not a quarter as with
/// powers of two.
const CLASSES: usize = 20;
/// What the classes' blocks are carved from, taken from the system allocator at a time: a page,
/// so that a chunk seldom makes the step's memory grow where dlmalloc alone would not have.
const CHUNK: usize = 4 * 1024;

/// The class of a block of `layout`, or `None` when the system allocator serves it (too large,
/// or aligned more strictly than the classes' blocks are).
#[inline(always)]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_BLOCK || layout.align() > MIN_BLOCK {
        return None;
    }
    let size = layout.size().max(1);
    if size <= 64 {
        return Some((size - 1) / 16);
    }
    // The highest bit of `size - 1` (6 to 9 here), and the two bits below it.
    let high = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let quarter = ((size - 1) >> (high - 2)) & 3;
    Some(4 + (high - 6) * 4 + quarter)
}

/// The size of the blocks of class `class`.
#[inline(always)]
fn block_size(class: usize) -> usize {
    if class < 4 {
        return (class + 1) * 16;
    }
    let (high, quarter) = ((class - 4) / 4 + 6, (class - 4) % 4);
    (5 + quarter) << (high - 2)
}

/// The allocator's state: one free list per class and the chunk being carved.
struct Classes {
    /// Each class's freed blocks, linked through their first word.
    free: [*mut u8; CLASSES],
    /// The next uncarved byte of the current chunk.
    next: *mut u8,
    /// The end of the current chunk.
    end: *mut u8,
}

impl Classes {
    const fn new() -> Classes {
        Classes {
            free: [ptr::null_mut(); CLASSES],
            next: ptr::null_mut(),
            end: ptr::null_mut(),
        }
    }

    /// A block of class `class`, or null when no memory is left.
    #[inline(always)]
    unsafe fn take(&mut self, class: usize) -> *mut u8 {
        let head = self.free[class];
        if !head.is_null() {
            // SAFETY: a block on a free list holds the next block's address in its first word.
            self.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = block_size(class);
        if (self.end as usize) - (self.next as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, MIN_BLOCK)) };
            if chunk.is_null() {
                return chunk;
            }
            self.next = chunk;
            // SAFETY: the end of the chunk just allocated.
            self.end = unsafe { chunk.add(CHUNK) };
        }
        let block = self.next;
        // SAFETY: `size` bytes fit before `end` (checked above).
        self.next = unsafe { block.add(size) };
        block
    }

    /// Puts `block`, of class `class`, on its free list.
    #[inline(always)]
    unsafe fn give_back(&mut self, block: *mut u8, class: usize) {
        // SAFETY: a block of a class is at least a word long and aligned to 16.
        unsafe { block.cast::<*mut u8>().write(self.free[class]) };
        self.free[class] = block;
    }
}

/// The step's global allocator (installed by the SDK in wasm builds).
pub struct StepAllocator(UnsafeCell<Classes>);

// SAFETY: steps run in single-threaded wasm instances (wasm32-wasip2 has no threads); on other
// targets the SDK does not install it, and its tests use their own instance from one thread.
unsafe impl Sync for StepAllocator {}

impl StepAllocator {
    /// An allocator with no memory taken yet.
    pub const fn new() -> StepAllocator {
        StepAllocator(UnsafeCell::new(Classes::new()))
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn classes(&self) -> &mut Classes {
        // SAFETY: single-threaded (see `Sync` above), and no caller holds the reference across
        // another call into the allocator.
        unsafe { &mut *self.0.get() }
    }
}

impl Default for StepAllocator {
    fn default() -> Self {
        StepAllocator::new()
    }
}

// SAFETY: every block handed out is `layout.size()` bytes aligned to `layout.align()` (a class's
// blocks are at least that large and 16-aligned, the chunk is 16-aligned and carved in multiples
// of 16), and blocks are freed to the allocator (class or system) that made them, which the
// layout alone decides.
unsafe impl GlobalAlloc for StepAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            // SAFETY: `take`'s contract is a class index, which `class_of` gives.
            Some(class) => unsafe { self.classes().take(class) },
            // SAFETY: the caller's layout, as given.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            // SAFETY: `block` was taken from this class (the same layout gave the same class).
            Some(class) => unsafe { self.classes().give_back(block, class) },
            // SAFETY: `block` came from the system allocator with this layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` rounded to the alignment fits in `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // Still within its block: nothing moves.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: from and to the system allocator, with the caller's layout.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a fresh block for the new layout; the old block's bytes that fit are
                // copied over (the two do not overlap), then the old block is freed.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if let Some(moved) = NonNull::new(moved) {
                        ptr::copy_nonoverlapping(block, moved.as_ptr(), layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    #[test]
    fn sizes_fall_into_the_smallest_class_that_holds_them() {
        assert_eq!(class_of(layout(0, 1)), Some(0));
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 8)), Some(0));
        assert_eq!(class_of(layout(17, 8)), Some(1));
        assert_eq!(class_of(layout(65, 16)), Some(4));
        assert_eq!(block_size(4), 80);
        assert_eq!(block_size(8), 160);
        assert_eq!(class_of(layout(MAX_BLOCK, 1)), Some(CLASSES - 1));
        assert_eq!(block_size(CLASSES - 1), MAX_BLOCK);
        assert_eq!(class_of(layout(MAX_BLOCK + 1, 1)), None);
        assert_eq!(class_of(layout(8, 32)), None);
        for size in 1..=MAX_BLOCK {
            let class = class_of(layout(size, 1)).expect("a class");
            assert!(block_size(class) >= size, "{size}");
            assert!(class == 0 || block_size(class - 1) < size, "{size}");
            assert_eq!(block_size(class) % MIN_BLOCK, 0, "{size}");
            // At most a fifth of a block is rounding (a quarter below 64 bytes).
            assert!(
                size <= 64 || (block_size(class) - size) * 5 < block_size(class),
                "{size}"
            );
        }
    }

    #[test]
    fn blocks_are_aligned_apart_and_reused_once_freed() {
        let allocator = StepAllocator::new();
        unsafe {
            let mut blocks = Vec::new();
            for size in [1, 7, 16, 24, 100, 1000, 4096, 5000, 70_000] {
                let block = allocator.alloc(layout(size, 8));
                assert!(!block.is_null());
                assert_eq!(block as usize % 8, 0);
                ptr::write_bytes(block, size as u8, size);
                blocks.push((block, size));
            }
            // No block was overwritten by another.
            for &(block, size) in &blocks {
                assert!(
                    std::slice::from_raw_parts(block, size).iter().all(|&b| b == size as u8),
                    "{size}"
                );
            }
            let (freed, size) = blocks[4];
            allocator.dealloc(freed, layout(size, 8));
            assert_eq!(
                allocator.alloc(layout(size - 2, 8)),
                freed,
                "the freed block of its class"
            );
            for &(block, size) in &blocks {
                allocator.dealloc(block, layout(size, 8));
            }
        }
    }

    #[test]
    fn a_block_grown_within_its_class_stays_and_one_grown_past_it_keeps_its_bytes() {
        let allocator = StepAllocator::new();
        unsafe {
            let block = allocator.alloc(layout(20, 1));
            ptr::copy_nonoverlapping(b"0123456789abcdefghij".as_ptr(), block, 20);
            assert_eq!(allocator.realloc(block, layout(20, 1), 32), block);
            let moved = allocator.realloc(block, layout(32, 1), 10_000);
            assert_ne!(moved, block);
            assert_eq!(std::slice::from_raw_parts(moved, 20), b"0123456789abcdefghij");
            let back = allocator.realloc(moved, layout(10_000, 1), 5);
            assert_eq!(std::slice::from_raw_parts(back, 5), b"01234");
            allocator.dealloc(back, layout(5, 1));
        }
    }

    #[test]
    fn many_blocks_span_chunks_without_overlap() {
        let allocator = StepAllocator::new();
        unsafe {
            let blocks: Vec<*mut u8> = (0..3 * CHUNK / 512).map(|_| allocator.alloc(layout(512, 16))).collect();
            let mut sorted = blocks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), blocks.len());
            for pair in sorted.windows(2) {
                assert!(pair[1] as usize - pair[0] as usize >= 512);
            }
        }
    }
}
