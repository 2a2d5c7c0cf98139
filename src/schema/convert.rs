//! Exact conversions from JSON text to the declared types of an explicit schema: decimals
//! (never through f64), ISO-8601 dates and timestamps, epoch seconds, base64.
//!
//! Each returns a short reason on failure; the caller adds column, row and type.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Parses a decimal literal (`-12.340`, `1.5e3`) into its unscaled value at `scale`, exactly.
///
/// # Errors
/// When the text is not a number, has non-zero digits beyond `scale`, or does not fit
/// `precision` digits.
pub fn decimal(text: &str, precision: u8, scale: i8) -> Result<i128, &'static str> {
    const NOT_A_NUMBER: &str = "is not a decimal number";
    const TOO_BIG: &str = "has more digits than the precision allows";
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (
            &text[..i],
            text[i + 1..].parse::<i32>().map_err(|_| NOT_A_NUMBER)?,
        ),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(NOT_A_NUMBER);
    }
    // value = digits × 10^(exponent − fraction length); unscaled = value × 10^scale.
    let shift = i64::from(exponent) - fraction.len() as i64 + i64::from(scale);
    let mut unscaled: i128 = 0;
    let mut dropped_non_zero = false;
    let keep = whole.len() + fraction.len();
    let keep = if shift < 0 {
        keep.saturating_sub(shift.unsigned_abs() as usize)
    } else {
        keep
    };
    for (i, b) in whole.bytes().chain(fraction.bytes()).enumerate() {
        let digit = i128::from(b - b'0');
        if i < keep {
            unscaled = unscaled
                .checked_mul(10)
                .and_then(|v| v.checked_add(digit))
                .ok_or(TOO_BIG)?;
        } else {
            dropped_non_zero |= digit != 0;
        }
    }
    if dropped_non_zero {
        return Err("has more decimal places than the scale allows");
    }
    if shift > 0 && unscaled != 0 {
        let factor = 10i128
            .checked_pow(u32::try_from(shift).map_err(|_| TOO_BIG)?)
            .ok_or(TOO_BIG)?;
        unscaled = unscaled.checked_mul(factor).ok_or(TOO_BIG)?;
    }
    if unscaled >= 10i128.pow(u32::from(precision)) {
        return Err(TOO_BIG);
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// `YYYY-MM-DD` to days since 1970-01-01.
///
/// # Errors
/// When the text is not such a date, or no such day exists.
pub fn date(text: &str) -> Result<i32, &'static str> {
    if let Some(days) = padded_date(text) {
        return Ok(days);
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| "is not an ISO-8601 date (YYYY-MM-DD)")?;
    Ok(date_days(date))
}

/// `YYYY-MM-DD` exactly (nearly every date) without a format string to interpret: a CSV
/// column of dates is read twice per value (inference, then building), where chrono's
/// `parse_from_str` was a quarter of a conversion's time.
pub fn padded_date(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(&b[..4])?, number(&b[5..7])?, number(&b[8..])?);
    NaiveDate::from_ymd_opt(year as i32, month, day).map(date_days)
}

fn date_days(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// An ISO-8601 date-time to microseconds since 1970-01-01T00:00:00Z. With an offset (`Z`,
/// `+02:00`) it is converted to UTC; without one it is taken as UTC. `T` or a space may
/// separate date and time, whose seconds may be left out (without an offset); a date alone
/// is midnight UTC.
///
/// # Errors
/// When the text is not such a timestamp, or has non-zero digits below the microsecond.
pub fn timestamp(text: &str) -> Result<i64, &'static str> {
    const NOT_A_TIMESTAMP: &str =
        "is not an ISO-8601 timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM])";
    let utc = if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        with_offset.naive_utc()
    } else if let Some(naive) = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    {
        naive
    } else if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0).ok_or(NOT_A_TIMESTAMP)?
    } else {
        return Err(NOT_A_TIMESTAMP);
    };
    let utc = utc.and_utc();
    if utc.timestamp_subsec_nanos() % 1000 != 0 {
        return Err("has digits below the microsecond");
    }
    Ok(utc.timestamp_micros())
}

/// Epoch seconds (an integer or a decimal with up to 6 places) to microseconds.
///
/// # Errors
/// As [`decimal`], and when the instant is out of range.
pub fn epoch_seconds(text: &str) -> Result<i64, &'static str> {
    let micros =
        decimal(text, 38, 6).map_err(|_| "is not epoch seconds with at most 6 decimal places")?;
    i64::try_from(micros).map_err(|_| "is out of the timestamp range")
}

/// Standard base64 (with padding) to bytes.
///
/// # Errors
/// When the text is not valid base64.
pub fn binary(text: &str) -> Result<Vec<u8>, &'static str> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "is not base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal("0.1", 10, 2), Ok(10));
        assert_eq!(decimal("-12.340", 10, 2), Ok(-1234));
        assert_eq!(decimal("1.5e3", 10, 2), Ok(150_000));
        assert_eq!(decimal("25E-1", 10, 1), Ok(25));
        assert_eq!(decimal("42", 5, 0), Ok(42));
        assert_eq!(decimal("0", 38, 38), Ok(0));
        assert_eq!(decimal("0e999999", 10, 2), Ok(0));
        assert_eq!(
            decimal("12345678901234567890123456789012.345678", 38, 6),
            Ok(12_345_678_901_234_567_890_123_456_789_012_345_678)
        );
        assert_eq!(decimal("99999999.99", 10, 2), Ok(9_999_999_999));
        assert!(
            decimal("100000000.00", 10, 2)
                .unwrap_err()
                .contains("precision")
        );
        assert!(decimal("0.125", 10, 2).unwrap_err().contains("scale"));
        assert!(decimal("1e400", 38, 2).unwrap_err().contains("precision"));
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "0x10", "1_000"] {
            assert!(
                decimal(bad, 10, 2).unwrap_err().contains("not a decimal"),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(date("1970-01-01"), Ok(0));
        assert_eq!(date("2026-11-27"), Ok(20_784));
        assert_eq!(date("1969-12-31"), Ok(-1));
        assert!(date("2026-02-30").is_err() && date("27/11/2026").is_err());
        assert_eq!(padded_date("2024-02-29"), Some(19_782));
        assert_eq!(padded_date("2024-1-05"), None);
        assert_eq!(date("2024-1-5"), date("2024-01-05"));

        let noon = 1_764_244_800_000_000; // 2025-11-27T12:00:00Z
        assert_eq!(timestamp("2025-11-27T12:00:00Z"), Ok(noon));
        assert_eq!(timestamp("2025-11-27T14:00:00+02:00"), Ok(noon));
        assert_eq!(timestamp("2025-11-27 12:00:00"), Ok(noon));
        assert_eq!(timestamp("2025-11-27T12:00"), Ok(noon));
        assert_eq!(timestamp("2025-11-27T12:00:00.000001"), Ok(noon + 1));
        assert_eq!(timestamp("2025-11-27"), Ok(noon - 12 * 3_600_000_000));
        assert!(
            timestamp("2025-11-27T12:00:00.0000001Z")
                .unwrap_err()
                .contains("microsecond")
        );
        assert!(timestamp("yesterday").is_err());

        assert_eq!(epoch_seconds("1764244800"), Ok(noon));
        assert_eq!(epoch_seconds("1764244800.5"), Ok(noon + 500_000));
        assert_eq!(epoch_seconds("-1"), Ok(-1_000_000));
        assert!(epoch_seconds("1.0000001").is_err());
    }

    #[test]
    fn base64_binary() {
        assert_eq!(binary("aGk="), Ok(b"hi".to_vec()));
        assert!(binary("not base64!").is_err());
    }
}
