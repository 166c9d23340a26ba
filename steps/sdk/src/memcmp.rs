//! `memcmp` for the step, its first byte compared before anything else.
//!
//! Every comparison of two strings calls it (`str`'s `Ord` compares the shorter length with
//! `memcmp`), and a step makes many: each key of each object it parses is placed in a sorted map
//! by comparing it with the keys already there, and each lookup compares again. Most of those
//! keys differ in their first byte. wasi-libc's loop costs about 80 instructions a call even
//! then, nearly all of it the prologue and epilogue of a function with a loop (registers saved
//! and restored). Here `memcmp` compares only the first byte, so small that LTO inlines it where
//! strings are compared; only strings that start alike call the loop, which takes eight bytes a
//! turn. Defined in the step, it is the one the linker takes, and wasi-libc's is never pulled
//! in.

/// C's `memcmp`: the first `len` bytes at `left` and `right` compared as unsigned bytes,
/// negative, zero or positive as `left` sorts before, equal to or after `right`.
///
/// # Safety
/// `left` and `right` must be valid for reading `len` bytes.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, len: usize) -> i32 {
    // SAFETY: the caller's promise, passed on.
    unsafe { compare(left, right, len) }
}

/// [`memcmp`]'s comparison.
///
/// # Safety
/// `left` and `right` must be valid for reading `len` bytes.
#[inline(always)]
unsafe fn compare(left: *const u8, right: *const u8, len: usize) -> i32 {
    if len == 0 {
        return 0;
    }
    // SAFETY: `len` is at least 1 (the caller's promise covers it).
    let (a, b) = unsafe { (*left, *right) };
    if a != b {
        return i32::from(a) - i32::from(b);
    }
    // SAFETY: as above.
    unsafe { compare_from_second(left, right, len) }
}

/// The comparison of bytes 1 to `len` (the first being equal): eight bytes at a time, then byte
/// by byte.
///
/// # Safety
/// `left` and `right` must be valid for reading `len` bytes.
#[inline(never)]
unsafe fn compare_from_second(left: *const u8, right: *const u8, len: usize) -> i32 {
    let mut at = 1;
    while at + 8 <= len {
        // SAFETY: `at + 8 <= len`, within both (the caller's promise); wasm loads need no
        // alignment.
        let (a, b) = unsafe {
            (
                left.add(at).cast::<u64>().read_unaligned(),
                right.add(at).cast::<u64>().read_unaligned(),
            )
        };
        if a != b {
            // Little-endian: the first byte that differs is the lowest one.
            let shift = (a ^ b).trailing_zeros() & !7;
            return i32::from((a >> shift) as u8) - i32::from((b >> shift) as u8);
        }
        at += 8;
    }
    while at < len {
        // SAFETY: `at < len`, within both (the caller's promise).
        let (a, b) = unsafe { (*left.add(at), *right.add(at)) };
        if a != b {
            return i32::from(a) - i32::from(b);
        }
        at += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::compare;
    use alloc::vec::Vec;

    /// Orders as `<[u8]>::cmp` does, for every pair of byte strings of up to 20 bytes over a
    /// small alphabet, at every length (so every place of the first difference, in a word or
    /// after the last, is met).
    #[test]
    fn orders_as_byte_slices_do() {
        let mut samples: Vec<Vec<u8>> = Vec::new();
        for len in 0..=20usize {
            for fill in [0u8, 1, b'a', b'b', 0x7f, 0x80, 0xff] {
                for place in 0..len {
                    let mut text = alloc::vec![b'a'; len];
                    text[place] = fill;
                    samples.push(text);
                }
            }
            samples.push(alloc::vec![b'a'; len]);
        }
        for a in &samples {
            for b in &samples {
                let len = a.len().min(b.len());
                // SAFETY: both hold at least `len` bytes.
                let ours = unsafe { compare(a.as_ptr(), b.as_ptr(), len) };
                let theirs = a[..len].cmp(&b[..len]);
                assert_eq!(ours.cmp(&0), theirs, "{a:?} against {b:?} over {len} bytes");
            }
        }
    }
}
