//! What tells that a file changed without reading it: its modification time and length. The
//! server's certificate and the steps folders are polled this way, and compared between polls.

use std::path::Path;
use std::time::SystemTime;

/// A file's modification time and length.
pub(crate) type FileStamp = (SystemTime, u64);

/// `path`'s stamp now; `None` while it cannot be read (missing, or without a modification
/// time), which is itself a state a poll compares.
pub(crate) fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_of_another_length_changes_the_stamp_and_a_missing_file_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cert.pem");
        assert_eq!(file_stamp(&path), None);
        std::fs::write(&path, "one").expect("write");
        let first = file_stamp(&path).expect("a stamp");
        assert_eq!(first.1, 3);
        std::fs::write(&path, "longer").expect("write");
        assert_ne!(file_stamp(&path), Some(first));
    }
}
