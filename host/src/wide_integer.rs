//! Integers in JSON text beyond 64 bits. serde_json (without `arbitrary_precision`, which would
//! slow every number) reads one as the nearest float, silently: an order number
//! `123456789012345678901234567890` would be kept as `1.2345678901234568e+29`, and two ids that
//! differ in their last digits would become one. Input holding one is refused, naming it, before
//! anything is stored.

use std::fmt;

/// An integer literal of some JSON text that fits neither `i64` nor `u64`, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WideInteger {
    /// The literal as written.
    pub literal: String,
    /// Its line, from 1.
    pub line: usize,
    /// Its column on that line, from 1 (in bytes, as serde_json counts).
    pub column: usize,
}

impl fmt::Display for WideInteger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rounded = self.literal.parse::<f64>().unwrap_or(f64::NAN);
        write!(
            f,
            "the integer {} at line {} column {} is beyond 64 bits, and would be kept rounded (as \
             {rounded:e}); send it as a string",
            self.literal, self.line, self.column
        )
    }
}

/// The fewest digits an integer beyond 64 bits has (`i64::MIN` and `u64::MAX` have 19 and 20).
const FEWEST_DIGITS: usize = 19;

/// The first integer literal outside the strings of the JSON `text` that fits neither `i64`
/// nor `u64`. Text without a run of 19 digits, nearly all, is passed over in one quick look.
pub fn first_wide_integer(text: &[u8]) -> Option<WideInteger> {
    if !has_digit_run(text) {
        return None;
    }
    let (mut line, mut line_start) = (1, 0);
    let (mut in_string, mut escaped) = (false, false);
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'\n' => {
                line += 1;
                line_start = at + 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = text[at..]
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .map_or(text.len(), |length| at + length);
                let token = &text[at..end];
                if is_wide(token) {
                    return Some(WideInteger {
                        literal: String::from_utf8_lossy(token).into_owned(),
                        line,
                        column: at - line_start + 1,
                    });
                }
                at = end;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// Whether `text` has a run of [`FEWEST_DIGITS`] digits anywhere (strings too).
fn has_digit_run(text: &[u8]) -> bool {
    let mut run = 0;
    for byte in text {
        run = if byte.is_ascii_digit() { run + 1 } else { 0 };
        if run == FEWEST_DIGITS {
            return true;
        }
    }
    false
}

/// Whether the number `token` is an integer (no fraction, no exponent) outside `i64` and `u64`.
fn is_wide(token: &[u8]) -> bool {
    if token.len() < FEWEST_DIGITS || token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    text.parse::<i64>().is_err() && text.parse::<u64>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_beyond_64_bits_is_found_where_it_is() {
        let text = b"{\"a\": 1,\n \"big\": 123456789012345678901234567890}";
        let wide = first_wide_integer(text).expect("found");
        assert_eq!(
            wide,
            WideInteger {
                literal: "123456789012345678901234567890".into(),
                line: 2,
                column: 9
            }
        );
        assert!(
            wide.to_string()
                .contains("would be kept rounded (as 1.2345678901234568e29)"),
            "{wide}"
        );
        let below = first_wide_integer(b"[-9223372036854775809]").expect("below i64");
        assert_eq!(below.literal, "-9223372036854775809");
        assert!(first_wide_integer(b"[18446744073709551616]").is_some(), "above u64");
    }

    #[test]
    fn what_fits_64_bits_floats_and_strings_are_not_wide() {
        for text in [
            "[18446744073709551615, -9223372036854775808, 9223372036854775807]",
            "[1234567890123456789012345.0, 1e400, 12345678901234567890123e-3]",
            r#"{"id": "123456789012345678901234567890", "q": "\"12345678901234567890123"}"#,
            r#"{"at": "2025-08-18T16:45:00Z", "total": 1299.99}"#,
        ] {
            assert_eq!(first_wide_integer(text.as_bytes()), None, "{text}");
        }
    }
}
