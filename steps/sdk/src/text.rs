//! JSON text in and out of the guest (the task data, connector arguments and results), cheaper
//! in wasm than serde_json's own way, with the same values, text and errors.
//!
//! - In wasm a copy of a length not known at compile time is a `memory.copy` instruction, and
//!   wasmtime runs that as a call out of the guest into the host. serde_json copies every key
//!   and string it reads into its own `String`, and writes every token of its output with its
//!   own copy: dozens of those calls per run for a few bytes each. Here the short copies are
//!   made of fixed-size moves, which compile to plain loads and stores.
//! - serde_json's writer looks at each byte of a string for one to escape, and in wasm every
//!   turn of a loop also checks the run's deadline. Here a string is looked at eight bytes at a
//!   time until one of them needs escaping.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses JSON text into a value (what `serde_json::from_str::<Value>` gives, with the same
/// errors).
pub(crate) fn parse(text: &str) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = AnyValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Writes a value as compact JSON text (what `serde_json::to_string` gives); `hint` is the
/// expected length, so that the text is not grown step by step.
pub(crate) fn write(value: &Value, hint: usize) -> String {
    let mut out = Text(Vec::with_capacity(hint));
    out.value(value);
    // SAFETY: `Text::value` writes whole UTF-8 strings (split only before ASCII bytes it
    // escapes) and ASCII, and serde_json writes numbers in ASCII.
    unsafe { String::from_utf8_unchecked(out.0) }
}

/// Eight bytes with `byte` in each.
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// Whether any of the eight bytes of `chunk` is one JSON text must escape: `"`, `\\` or a
/// control character (below 0x20). Exact: a byte at 0x80 or above (UTF-8) never counts.
#[inline(always)]
fn needs_escape(chunk: u64) -> bool {
    let high = splat(0x80);
    let below = |limit: u8, x: u64| x.wrapping_sub(splat(limit)) & !x & high;
    let control = below(0x20, chunk);
    let quote = below(1, chunk ^ splat(b'"'));
    let backslash = below(1, chunk ^ splat(b'\\'));
    control | quote | backslash != 0
}

/// The lower-case hex digits serde_json writes `\u00XX` escapes with.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Output bytes, appended with [`copy_short`].
struct Text(Vec<u8>);

impl Text {
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        self.0.reserve(bytes.len());
        let len = self.0.len();
        // SAFETY: `reserve` made room for `bytes.len()` more bytes past `len`, `bytes` cannot
        // overlap the vector's own spare capacity, and the new length covers only bytes written.
        unsafe {
            copy_short(bytes.as_ptr(), self.0.as_mut_ptr().add(len), bytes.len());
            self.0.set_len(len + bytes.len());
        }
    }

    /// Appends `value` as compact JSON, exactly as `serde_json::to_string` writes it.
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.push(b"null"),
            Value::Bool(true) => self.push(b"true"),
            Value::Bool(false) => self.push(b"false"),
            Value::Number(number) => self.number(number),
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.push(b"[");
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.push(b",");
                    }
                    self.value(item);
                }
                self.push(b"]");
            }
            Value::Object(entries) => {
                self.push(b"{");
                for (index, (key, item)) in entries.iter().enumerate() {
                    let comma: &[u8] = if index > 0 { b"," } else { b"" };
                    self.string_between(comma, key, b":");
                    self.value(item);
                }
                self.push(b"}");
            }
        }
    }

    /// Appends `number` as serde_json writes it: integers with `itoa`, as serde_json does, and
    /// floats through `Display`, which is serde_json's own number text (`serde_json::to_writer`
    /// needs `std`).
    fn number(&mut self, number: &Number) {
        let mut digits = itoa::Buffer::new();
        if let Some(whole) = number.as_u64() {
            self.push(digits.format(whole).as_bytes());
        } else if let Some(whole) = number.as_i64() {
            self.push(digits.format(whole).as_bytes());
        } else {
            // Writing to a `Text` cannot fail: `write_str` below always succeeds.
            let _ = fmt::Write::write_fmt(self, format_args!("{number}"));
        }
    }

    /// Appends `text` in quotes, escaped as serde_json escapes it: the quote and the backslash
    /// with a backslash, the control characters with a short escape where JSON has one, the
    /// others as `\u00XX`.
    fn string(&mut self, text: &str) {
        self.string_between(b"", text, b"");
    }

    /// Appends `lead`, `text` as [`Text::string`] writes it, and `trail` (an object's comma,
    /// key and colon, say). A string with nothing to escape, nearly every one, is written with
    /// one reservation for all of it.
    #[inline(always)]
    fn string_between(&mut self, lead: &[u8], text: &str, trail: &[u8]) {
        let bytes = text.as_bytes();
        if !plain(bytes) {
            self.push(lead);
            self.escaped(bytes);
            self.push(trail);
            return;
        }
        let total = lead.len() + bytes.len() + trail.len() + 2;
        self.0.reserve(total);
        let len = self.0.len();
        // SAFETY: `reserve` made room for `total` more bytes past `len`, written in order
        // below; the sources cannot overlap the vector's spare capacity, and the new length
        // covers only the bytes written.
        unsafe {
            let mut out = self.0.as_mut_ptr().add(len);
            copy_short(lead.as_ptr(), out, lead.len());
            out = out.add(lead.len());
            *out = b'"';
            copy_short(bytes.as_ptr(), out.add(1), bytes.len());
            out = out.add(bytes.len() + 1);
            *out = b'"';
            copy_short(trail.as_ptr(), out.add(1), trail.len());
            self.0.set_len(len + total);
        }
    }

    /// Appends `bytes` in quotes with the characters JSON text must escape escaped.
    #[cold]
    fn escaped(&mut self, bytes: &[u8]) {
        self.push(b"\"");
        let mut start = 0;
        let mut at = 0;
        while at < bytes.len() {
            if !needs_escape(chunk_at(bytes, at)) {
                at += 8;
                continue;
            }
            // One of these eight bytes needs escaping: byte by byte.
            let end = bytes.len().min(at + 8);
            while at < end {
                let byte = bytes[at];
                at += 1;
                let unicode;
                let escape: &[u8] = match byte {
                    b'"' => b"\\\"",
                    b'\\' => b"\\\\",
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    b'\t' => b"\\t",
                    0x08 => b"\\b",
                    0x0c => b"\\f",
                    0..0x20 => {
                        unicode = [
                            b'\\',
                            b'u',
                            b'0',
                            b'0',
                            HEX[usize::from(byte >> 4)],
                            HEX[usize::from(byte & 0xf)],
                        ];
                        &unicode
                    }
                    _ => continue,
                };
                self.push(&bytes[start..at - 1]);
                self.push(escape);
                start = at;
            }
        }
        self.push(&bytes[start..]);
        self.push(b"\"");
    }
}

/// Whether `bytes` holds nothing JSON text must escape. Checked eight bytes at a time, the last
/// eight (or, for a shorter string, two overlapping fours, or the first, middle and last byte)
/// read where they end, overlapping bytes already checked: no byte is copied to look at it.
#[inline(always)]
fn plain(bytes: &[u8]) -> bool {
    let len = bytes.len();
    let word64 = |at: usize| {
        // SAFETY: callers pass `at + 8 <= len`; the read needs no alignment.
        u64::from_le(unsafe { bytes.as_ptr().add(at).cast::<u64>().read_unaligned() })
    };
    let word32 = |at: usize| {
        // SAFETY: callers pass `at + 4 <= len`; the read needs no alignment.
        u64::from(u32::from_le(unsafe {
            bytes.as_ptr().add(at).cast::<u32>().read_unaligned()
        }))
    };
    let chunk = if len >= 8 {
        let mut at = 0;
        while at + 8 < len {
            if needs_escape(word64(at)) {
                return false;
            }
            at += 8;
        }
        word64(len - 8)
    } else if len >= 4 {
        word32(0) | word32(len - 4) << 32
    } else if let [first, .., last] | [first @ last] = bytes {
        // Up to three bytes: all of them, the other five lanes spaces.
        let middle = bytes[len / 2];
        u64::from(*first) | u64::from(middle) << 8 | u64::from(*last) << 16 | (splat(b' ') << 24)
    } else {
        return true;
    };
    !needs_escape(chunk)
}

/// The eight bytes of `bytes` from `at`, those past its end read as spaces (which need no
/// escaping), so that a short string or a string's tail is checked at once too.
#[inline(always)]
fn chunk_at(bytes: &[u8], at: usize) -> u64 {
    if let Some(eight) = bytes.get(at..at + 8)
        && let Ok(chunk) = <[u8; 8]>::try_from(eight)
    {
        return u64::from_le_bytes(chunk);
    }
    let rest = bytes.get(at..).unwrap_or_default();
    let mut chunk = [b' '; 8];
    // SAFETY: `rest` is shorter than eight bytes here (else the branch above returned), and
    // `chunk` is a local array of eight.
    unsafe { copy_short(rest.as_ptr(), chunk.as_mut_ptr(), rest.len()) };
    u64::from_le_bytes(chunk)
}

impl fmt::Write for Text {
    #[inline]
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push(text.as_bytes());
        Ok(())
    }
}

/// A `String` holding `text`, copied with [`copy_short`]. Not through [`Text::push`]: on this,
/// the parser's hottest path, its `reserve` check cost 1 µs more per run (`step_run`'s bare
/// floor 22.8 → 23.8 µs, two alternating pairs).
#[inline]
pub(crate) fn owned(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    // SAFETY: the vector has room for `text.len()` bytes, a fresh allocation does not overlap
    // `text`, and the bytes copied are `text`'s, so valid UTF-8.
    unsafe {
        copy_short(text.as_ptr(), bytes.as_mut_ptr(), text.len());
        bytes.set_len(text.len());
        String::from_utf8_unchecked(bytes)
    }
}

/// Copies `len` bytes from `src` to `dst` (which must not overlap): up to 32 bytes as two
/// fixed-size moves that may overlap each other, longer with `copy_nonoverlapping`.
///
/// # Safety
/// `src` must be valid for reading and `dst` for writing `len` bytes, and they must not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, len: usize) {
    use core::ptr::copy_nonoverlapping as copy;
    // SAFETY (each arm): both moves stay within the first `len` bytes of `src` and `dst`.
    unsafe {
        match len {
            0 => {}
            1 => *dst = *src,
            2..=3 => {
                copy(src, dst, 2);
                copy(src.add(len - 2), dst.add(len - 2), 2);
            }
            4..=7 => {
                copy(src, dst, 4);
                copy(src.add(len - 4), dst.add(len - 4), 4);
            }
            8..=16 => {
                copy(src, dst, 8);
                copy(src.add(len - 8), dst.add(len - 8), 8);
            }
            17..=32 => {
                copy(src, dst, 16);
                copy(src.add(len - 16), dst.add(len - 16), 16);
            }
            _ => copy(src, dst, len),
        }
    }
}

/// Builds a [`Value`] as serde_json's own `Deserialize` does, copying strings with [`owned`].
struct AnyValue;

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(owned(value)))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(item) = items.next_element_seed(AnyValue)? {
            out.push(item);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = entries.next_key_seed(Key)? {
            let value = entries.next_value_seed(AnyValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// An object's key, copied with [`owned`].
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        Ok(owned(key))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<String, E> {
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLES: &[&str] = &[
        "null",
        "true",
        "-0",
        "12345678901234567890",
        "-9223372036854775808",
        "1.5e300",
        "0.1",
        "-1.5",
        "1e-7",
        "5e-324",
        "123456789012.5",
        "18446744073709551615",
        "[0,-1,2.0,-0.0,1e21,9007199254740993]",
        r#""""#,
        r#""a""#,
        r#""\u00e9t\u00e9 \"quoted\" \\ \n tab\t""#,
        r#""ünïcödé and a longer string of more than thirty-two bytes""#,
        "[]",
        "{}",
        r#"{"b":1,"a":[1,2,{"c":null}],"a":"duplicate: the last wins","k😀y":"v"}"#,
        r#"{"order":{"id":"ORD-1","total":299.99,"items":[{"sku":"A","qty":2,"price":99.5}],"customer":{"tier":"gold","email":"x@example.com"}}}"#,
    ];

    #[test]
    fn parses_as_serde_json_does() {
        for text in SAMPLES {
            let ours = parse(text).expect(text);
            let theirs: Value = serde_json::from_str(text).expect(text);
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in [
            "",
            "{",
            "[1,]",
            r#"{"a" 1}"#,
            "nul",
            "1 2",
            r#""\ud800""#,
            "[[[[",
            "\"a",
        ] {
            let theirs = serde_json::from_str::<Value>(text).expect_err(text).to_string();
            let ours = parse(text).expect_err(text).to_string();
            assert_eq!(ours, theirs, "{text}");
        }
        // Nesting deeper than serde_json's limit of 128 is refused the same way.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let theirs = serde_json::from_str::<Value>(&deep).expect_err("deep").to_string();
        assert_eq!(parse(&deep).expect_err("deep").to_string(), theirs);
        assert!(theirs.contains("recursion limit"), "{theirs}");
    }

    #[test]
    fn writes_as_serde_json_does() {
        for text in SAMPLES {
            let value: Value = serde_json::from_str(text).expect(text);
            for hint in [0, 3, 1024] {
                assert_eq!(write(&value, hint), serde_json::to_string(&value).expect(text));
            }
        }
    }

    #[test]
    fn escapes_every_character_as_serde_json_does() {
        // Every ASCII character, alone and at each place of a string longer than eight bytes
        // (so that the eight-byte check meets it in every lane), and some beyond ASCII.
        let mut texts: Vec<String> = Vec::new();
        for code in (0..0x80u32).chain([0x80, 0xe9, 0x7ff, 0x800, 0x2028, 0xfeff, 0x1f600]) {
            let c = char::from_u32(code).expect("a char");
            texts.push(c.to_string());
            for place in 0..20 {
                let mut text: String = "abcdefghijklmnopqrs".into();
                text.insert(place, c);
                texts.push(text);
            }
        }
        texts.push("\u{1}\"\\\u{1f}plain text of some length\u{7f}é\n".into());
        // Every length up to 24, with the character to escape last and first.
        for len in 1..=24 {
            let plain = "x".repeat(len - 1);
            texts.push(format!("{plain}\""));
            texts.push(format!("\n{plain}"));
        }
        for text in texts {
            let value = Value::String(text.clone());
            assert_eq!(
                write(&value, 0),
                serde_json::to_string(&value).expect("write"),
                "{text:?}"
            );
            let key = json!({ text.clone(): [text.clone(), 1] });
            assert_eq!(write(&key, 0), serde_json::to_string(&key).expect("write"), "{text:?}");
        }
    }

    #[test]
    fn the_eight_byte_check_is_exact() {
        for byte in 0..=u8::MAX {
            let must = byte < 0x20 || byte == b'"' || byte == b'\\';
            for lane in 0..8 {
                let mut chunk = [b'a'; 8];
                chunk[lane] = byte;
                assert_eq!(
                    needs_escape(u64::from_le_bytes(chunk)),
                    must,
                    "byte {byte:#x} in lane {lane}"
                );
            }
            // Next to bytes that could make a borrow run into it.
            let mut chunk = [0xffu8; 8];
            chunk[3] = byte;
            assert_eq!(
                needs_escape(u64::from_le_bytes(chunk)),
                must,
                "byte {byte:#x} among 0xff"
            );
        }
    }

    #[test]
    fn plain_looks_at_every_byte_of_every_length() {
        for len in 0..=24 {
            assert!(plain(&alloc::vec![b'a'; len]), "{len} plain bytes");
            for place in 0..len {
                for byte in [0u8, 0x1f, b'"', b'\\', b' ', b'a', 0x7f, 0x80, 0xff] {
                    let mut bytes = alloc::vec![b'a'; len];
                    bytes[place] = byte;
                    let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
                    assert_eq!(plain(&bytes), !escaped, "{byte:#x} at {place} of {len}");
                }
            }
        }
    }

    #[test]
    fn copies_every_length() {
        let source: String = (0..100u8).map(|i| char::from(b'a' + i % 26)).collect();
        for len in 0..=source.len() {
            assert_eq!(owned(&source[..len]), &source[..len]);
            let mut out = Text(Vec::new());
            out.push(&source.as_bytes()[..len]);
            out.push(&source.as_bytes()[len..]);
            assert_eq!(out.0, source.as_bytes());
        }
    }
}
