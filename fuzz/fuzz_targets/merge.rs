//! Diff and merge on arbitrary JSON: `before` and `after` separated by a NUL. Applying the diff
//! to `before` gives `after` exactly, and a merge patch applied twice is applied once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use whenever::scheduler::merge::{apply, diff, merge_patch};

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let Some((before_text, after_text)) = text.split_once('\0') else { return };
    let (Ok(before), Ok(after)) =
        (serde_json::from_str::<Value>(before_text), serde_json::from_str::<Value>(after_text))
    else {
        return;
    };
    let mut merged = before.clone();
    let skipped = apply(&mut merged, &diff(&before, &after));
    assert!(skipped.is_empty(), "skipped {skipped:?}");
    assert_eq!(merged, after);

    let mut once = before.clone();
    merge_patch(&mut once, &after);
    let mut twice = once.clone();
    merge_patch(&mut twice, &after);
    assert_eq!(once, twice, "merge patch is idempotent");
});
