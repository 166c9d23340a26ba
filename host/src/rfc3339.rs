//! UTC times as RFC 3339 text, written digit by digit: the same text as chrono's
//! `to_rfc3339_opts(format, true)` (and, for [`SecondsFormat::AutoSi`], as chrono's `Serialize`),
//! without `fmt`'s machinery. A durable order writes about forty times (each run's start and end
//! in its records, each save's stamp); in a profile of the in-process RetailMax row formatting them
//! fell from 1.07% of the host's CPU to 0.58% (docs/performance.md).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// `t` as RFC 3339 text with `format`'s fraction of a second and `Z` for UTC.
pub fn text(t: &DateTime<Utc>, format: SecondsFormat) -> String {
    with_text(t, format, str::to_owned)
}

/// Hands `use_text` the text of `t`: written on the stack by [`write`], or chrono's where the
/// fast path leaves it to chrono. The one way [`text`] and [`serialize`] both take.
fn with_text<R>(t: &DateTime<Utc>, format: SecondsFormat, use_text: impl FnOnce(&str) -> R) -> R {
    let mut out = [0u8; 30];
    // What `write` writes is ASCII digits and separators, so the check never fails; chrono's
    // text stands behind it all the same.
    match write(t, format, &mut out).and_then(|len| std::str::from_utf8(&out[..len]).ok()) {
        Some(written) => use_text(written),
        None => use_text(&t.to_rfc3339_opts(format, true)),
    }
}

/// Writes `t` into `out` and returns the length; `None` for what the fast path leaves to chrono
/// (a year outside 0–9999, a leap second, a format other than those the host writes).
fn write(t: &DateTime<Utc>, format: SecondsFormat, out: &mut [u8; 30]) -> Option<usize> {
    let year = t.year();
    let nano = t.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    let digits = |out: &mut [u8; 30], at: usize, value: u32, width: usize| {
        let mut value = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(out, 0, year as u32, 4);
    out[4] = b'-';
    digits(out, 5, t.month(), 2);
    out[7] = b'-';
    digits(out, 8, t.day(), 2);
    out[10] = b'T';
    digits(out, 11, t.hour(), 2);
    out[13] = b':';
    digits(out, 14, t.minute(), 2);
    out[16] = b':';
    digits(out, 17, t.second(), 2);
    let mut len = 19;
    let fraction = match format {
        SecondsFormat::Millis => Some((nano / 1_000_000, 3)),
        SecondsFormat::Micros => Some((nano / 1_000, 6)),
        SecondsFormat::Nanos => Some((nano, 9)),
        SecondsFormat::AutoSi if nano == 0 => None,
        SecondsFormat::AutoSi if nano.is_multiple_of(1_000_000) => Some((nano / 1_000_000, 3)),
        SecondsFormat::AutoSi if nano.is_multiple_of(1_000) => Some((nano / 1_000, 6)),
        SecondsFormat::AutoSi => Some((nano, 9)),
        SecondsFormat::Secs => None,
        _ => return None,
    };
    if let Some((value, width)) = fraction {
        out[len] = b'.';
        digits(out, len + 1, value, width);
        len += 1 + width;
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// Serializes a time as chrono's `Serialize` does, through [`text`]'s way (for `serialize_with`).
pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    with_text(t, SecondsFormat::AutoSi, |text| serializer.serialize_str(text))
}

/// [`serialize`] for an optional time (`None` is null, as chrono's `Option` serializes).
pub fn serialize_option<S: serde::Serializer>(t: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const FORMATS: [SecondsFormat; 5] = [
        SecondsFormat::Secs,
        SecondsFormat::Millis,
        SecondsFormat::Micros,
        SecondsFormat::Nanos,
        SecondsFormat::AutoSi,
    ];

    fn at(secs: i64, nano: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, nano).single().expect("a valid time")
    }

    #[test]
    fn the_text_is_chronos_for_every_kind_of_fraction() {
        for nano in [
            0,
            5_000_000,
            123_000_000,
            123_456_000,
            1_000,
            123_456_789,
            1,
            999_999_999,
        ] {
            let t = at(1_764_790_000, nano);
            for format in FORMATS {
                assert_eq!(
                    text(&t, format),
                    t.to_rfc3339_opts(format, true),
                    "{nano} ns, {format:?}"
                );
            }
            assert_eq!(
                serde_json::to_string(&SerializedWith(t)).expect("serializes"),
                serde_json::to_string(&t).expect("serializes"),
                "{nano} ns"
            );
        }
    }

    #[test]
    fn years_beyond_four_digits_and_leap_seconds_are_left_to_chrono() {
        let far = at(300_000_000_000, 7);
        assert_eq!(
            text(&far, SecondsFormat::AutoSi),
            far.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
        let before = at(-70_000_000_000, 0);
        assert_eq!(
            text(&before, SecondsFormat::Nanos),
            before.to_rfc3339_opts(SecondsFormat::Nanos, true)
        );
        let leap = Utc
            .with_ymd_and_hms(2016, 12, 31, 23, 59, 59)
            .single()
            .and_then(|t| t.with_nanosecond(1_500_000_000))
            .expect("a leap second");
        for format in FORMATS {
            assert_eq!(text(&leap, format), leap.to_rfc3339_opts(format, true), "{format:?}");
        }
    }

    #[test]
    fn an_absent_time_serializes_as_null() {
        #[derive(serde::Serialize)]
        struct Maybe(#[serde(serialize_with = "serialize_option")] Option<DateTime<Utc>>);
        assert_eq!(serde_json::to_string(&Maybe(None)).expect("serializes"), "null");
        let t = at(0, 10);
        assert_eq!(
            serde_json::to_string(&Maybe(Some(t))).expect("serializes"),
            serde_json::to_string(&t).expect("serializes")
        );
    }

    #[derive(serde::Serialize)]
    struct SerializedWith(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    proptest! {
        #[test]
        fn any_time_reads_as_chrono_writes_it(secs in -62_135_596_800i64..253_402_300_799, nano in 0u32..1_000_000_000) {
            let t = at(secs, nano);
            for format in FORMATS {
                prop_assert_eq!(text(&t, format), t.to_rfc3339_opts(format, true));
            }
            prop_assert_eq!(
                serde_json::to_string(&SerializedWith(t)).expect("serializes"),
                serde_json::to_string(&t).expect("serializes")
            );
        }
    }
}
