//! When a certificate stops being valid: its `notAfter`, read from the DER of an X.509
//! certificate (RFC 5280: `Certificate` → `tbsCertificate` → `validity`), so that the service
//! can refuse an expired certificate at start, warn before one expires, and show the date in
//! `/metrics` for an alert. Only the few elements before `validity` are walked.

use chrono::{DateTime, NaiveDate, Utc};

/// The certificate's `notBefore` and `notAfter`, or `None` when the DER is not a certificate
/// this reader understands.
pub fn validity(der: &[u8]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (mut tbs, _) = element(certificate, SEQUENCE)?;
    // version [0] EXPLICIT, present from v2 on.
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs, VERSION)?.1;
    }
    let (_, rest) = element(tbs, INTEGER)?; // serialNumber
    let (_, rest) = element(rest, SEQUENCE)?; // signature AlgorithmIdentifier
    let (_, rest) = element(rest, SEQUENCE)?; // issuer Name
    let (validity, _) = element(rest, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The content of the element at the start of `der`, which must carry `tag`, and what follows it.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let bytes = usize::from(first & 0x7F);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let length = rest[..bytes].iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[bytes..])
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// A `Time` (UTCTime `YYMMDDHHMMSSZ`, years 1950–2049, or GeneralizedTime `YYYYMMDDHHMMSSZ`).
fn time(der: &[u8]) -> Option<(DateTime<Utc>, &[u8])> {
    let (text, year, rest) = match *der.first()? {
        UTC_TIME => {
            let (text, rest) = element(der, UTC_TIME)?;
            let yy = digits(text.get(..2)?)?;
            (text.get(2..)?, if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        GENERALIZED_TIME => {
            let (text, rest) = element(der, GENERALIZED_TIME)?;
            (text.get(4..)?, digits(text.get(..4)?)?, rest)
        }
        _ => return None,
    };
    if text.len() != 11 || text[10] != b'Z' {
        return None;
    }
    let field = |at: usize| digits(&text[at..at + 2]);
    let at =
        NaiveDate::from_ymd_opt(year as i32, field(0)?, field(2)?)?.and_hms_opt(field(4)?, field(6)?, field(8)?)?;
    Some((at.and_utc(), rest))
}

fn digits(text: &[u8]) -> Option<u32> {
    text.iter()
        .try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate valid from `from` until `until` (dates as rcgen makes them).
    fn certificate(from: (i32, u8, u8), until: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        params.self_signed(&key).expect("certificate").der().to_vec()
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a date")
            .and_utc()
    }

    #[test]
    fn not_before_and_not_after_are_read_in_both_time_forms() {
        // UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280, 4.1.2.5).
        let der = certificate((2026, 1, 2), (2027, 3, 4));
        assert_eq!(validity(&der), Some((day(2026, 1, 2), day(2027, 3, 4))));
        let der = certificate((1999, 12, 31), (2051, 6, 7));
        assert_eq!(validity(&der), Some((day(1999, 12, 31), day(2051, 6, 7))));
    }

    #[test]
    fn what_is_not_a_certificate_has_no_dates() {
        let der = certificate((2026, 1, 2), (2027, 3, 4));
        assert_eq!(validity(&der[..40]), None, "cut short");
        assert_eq!(validity(b"not DER at all"), None);
        assert_eq!(validity(&[]), None);
    }
}
