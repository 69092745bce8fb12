//! RFC 3339 timestamps (`observed_at`): the grammar the agent writes and every parser accepts.
//!
//! Accepted: `full-date "T" full-time` from RFC 3339 section 5.6, i.e. `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`,
//! where `T` and `Z` may be lower case (the RFC's note on case-insensitivity). The date must exist in the
//! proleptic Gregorian calendar (Feb 29 only in leap years), hour < 24, minute < 60, second <= 60 (a leap
//! second is accepted on any minute, as the RFC leaves validity to the leap-second table), offset hour < 24
//! and offset minute < 60. At most nine fraction digits (nanoseconds), because the kernel clock and every
//! consumer stop there. A space instead of `T`, missing seconds, or a bare offset such as `+0100` are rejected.
//!
//! The text is kept verbatim: a parsed event re-serializes to exactly the timestamp it was given.

use std::fmt;

/// A validated RFC 3339 timestamp, stored as its original text plus the decoded fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    text: String,
    parts: TimestampParts,
}

/// The decoded fields of a timestamp, as written (no time-zone normalisation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimestampParts {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0..=60; 60 is a leap second.
    pub second: u8,
    /// Fraction of the second in nanoseconds (`.5` is 500_000_000).
    pub nanos: u32,
    /// Offset from UTC in minutes; `Z` is 0.
    pub offset_minutes: i16,
}

/// Why a string is not an RFC 3339 timestamp; the `Display` text is the issue message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text does not follow the `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` shape.
    #[error("expected an RFC 3339 date-time such as 2024-05-01T12:00:00.123456789Z")]
    Shape,
    /// More than nine digits after the decimal point.
    #[error("fractional seconds have at most 9 digits (nanoseconds)")]
    FractionTooLong,
    /// Month 0 or above 12, or a day the month does not have.
    #[error("the date does not exist in the calendar")]
    Date,
    /// Hour above 23, minute above 59 or second above 60.
    #[error("the time of day is out of range")]
    Time,
    /// Offset hour above 23 or offset minute above 59.
    #[error("the UTC offset is out of range")]
    Offset,
}

impl Timestamp {
    /// Validates `text` and keeps it verbatim.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let parts = parse_parts(text)?;
        Ok(Timestamp {
            text: text.to_owned(),
            parts,
        })
    }

    /// Builds from text that [`parse_parts`] already accepted with these `parts` (the fast paths validate
    /// borrowed text first and only allocate for the owned event).
    pub(crate) fn from_validated(text: &str, parts: TimestampParts) -> Self {
        debug_assert_eq!(parse_parts(text), Ok(parts));
        Timestamp {
            text: text.to_owned(),
            parts,
        }
    }

    /// The UTC timestamp of a wall-clock time, with all nine fraction digits (`2026-11-28T15:04:05.000000001Z`),
    /// as the agent writes `observed_at`. `None` before 1970 or after 9999-12-31, which RFC 3339's four-digit
    /// year cannot express.
    pub fn from_system_time(t: std::time::SystemTime) -> Option<Self> {
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        Self::from_unix(d.as_secs(), d.subsec_nanos())
    }

    /// The UTC timestamp `secs` seconds and `nanos` nanoseconds after the Unix epoch; see
    /// [`Self::from_system_time`].
    pub fn from_unix(secs: u64, nanos: u32) -> Option<Self> {
        if nanos >= 1_000_000_000 {
            return None;
        }
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        if year > 9999 {
            return None;
        }
        let parts = TimestampParts {
            year: year as u16,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            nanos,
            offset_minutes: 0,
        };
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            parts.year, parts.month, parts.day, parts.hour, parts.minute, parts.second, parts.nanos
        );
        Some(Timestamp { text, parts })
    }

    /// The text exactly as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn parts(&self) -> TimestampParts {
        self.parts
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimestampError> {
    let slice = b.get(at..at + n).ok_or(TimestampError::Shape)?;
    let mut v = 0u32;
    for &c in slice {
        if !c.is_ascii_digit() {
            return Err(TimestampError::Shape);
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, what: &[u8]) -> Result<(), TimestampError> {
    match b.get(at) {
        Some(c) if what.contains(c) => Ok(()),
        _ => Err(TimestampError::Shape),
    }
}

const fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

const fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Year, month, day of the `days`-th day after 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Validates the grammar and the ranges without allocating.
pub fn parse_parts(text: &str) -> Result<TimestampParts, TimestampError> {
    let b = text.as_bytes();
    // Fixed prefix: "YYYY-MM-DDTHH:MM:SS" is 19 bytes.
    let year = digits(b, 0, 4)?;
    expect(b, 4, b"-")?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b"-")?;
    let day = digits(b, 8, 2)?;
    expect(b, 10, b"Tt")?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b":")?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b":")?;
    let second = digits(b, 17, 2)?;
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return Err(TimestampError::Shape);
        }
        if n > 9 {
            return Err(TimestampError::FractionTooLong);
        }
        nanos = digits(b, start, n)? * 10u32.pow(9 - n as u32);
    }
    let offset_minutes = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0i16
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, at + 1, 2)?;
            expect(b, at + 3, b":")?;
            let om = digits(b, at + 4, 2)?;
            at += 6;
            if oh > 23 || om > 59 {
                return Err(TimestampError::Offset);
            }
            // Bounded by the check above: at most 23 * 60 + 59 = 1439.
            let total = (oh * 60 + om) as i16;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(TimestampError::Shape),
    };
    if at != b.len() {
        return Err(TimestampError::Shape);
    }
    if month == 0 || month > 12 || day == 0 || day > days_in_month(year, month) {
        return Err(TimestampError::Date);
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(TimestampError::Time);
    }
    // Every value below was bounded by the range checks above.
    Ok(TimestampParts {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        nanos,
        offset_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_rfc_forms() {
        for ok in [
            "2024-05-01T12:00:00Z",
            "2024-05-01t12:00:00z",
            "2024-05-01T12:00:00.1Z",
            "2024-05-01T12:00:00.123456789Z",
            "2024-05-01T12:00:00+02:00",
            "2024-05-01T12:00:00.5-23:59",
            "2024-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert!(parse_parts(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn decodes_fields() {
        let p = parse_parts("2024-05-01T12:34:56.789-01:30").unwrap();
        assert_eq!(
            p,
            TimestampParts {
                year: 2024,
                month: 5,
                day: 1,
                hour: 12,
                minute: 34,
                second: 56,
                nanos: 789_000_000,
                offset_minutes: -90,
            }
        );
        assert_eq!(
            Timestamp::parse("2024-05-01T00:00:00z").unwrap().as_str(),
            "2024-05-01T00:00:00z"
        );
    }

    #[test]
    fn formats_unix_times_as_utc_with_nanoseconds() {
        let t = |s, n| Timestamp::from_unix(s, n).map(|t| t.as_str().to_owned());
        assert_eq!(t(0, 0).as_deref(), Some("1970-01-01T00:00:00.000000000Z"));
        assert_eq!(
            t(951_782_400, 1).as_deref(),
            Some("2000-02-29T00:00:00.000000001Z")
        );
        assert_eq!(
            t(1_709_251_199, 999_999_999).as_deref(),
            Some("2024-02-29T23:59:59.999999999Z")
        );
        assert_eq!(
            t(1_764_342_245, 123_456_789).as_deref(),
            Some("2025-11-28T15:04:05.123456789Z")
        );
        assert_eq!(
            t(253_402_300_799, 0).as_deref(),
            Some("9999-12-31T23:59:59.000000000Z")
        );
        assert_eq!(t(253_402_300_800, 0), None);
        assert_eq!(t(0, 1_000_000_000), None);
        // Every day of four centuries round-trips through the parser with the same fields.
        for day in (0..146_097u64).step_by(7) {
            let ts = Timestamp::from_unix(day * 86_400 + 3_723, 5).unwrap();
            assert_eq!(parse_parts(ts.as_str()), Ok(ts.parts()), "{}", ts.as_str());
        }
        let now = Timestamp::from_system_time(std::time::SystemTime::now()).unwrap();
        assert!(parse_parts(now.as_str()).is_ok());
    }

    #[test]
    fn rejects_each_broken_part() {
        use TimestampError::*;
        for (bad, why) in [
            ("", Shape),
            ("2024-05-01", Shape),
            ("2024-05-01 12:00:00Z", Shape),
            ("2024-05-01T12:00Z", Shape),
            ("2024-05-01T12:00:00", Shape),
            ("2024-05-01T12:00:00+0200", Shape),
            ("2024-05-01T12:00:00.Z", Shape),
            ("2024-05-01T12:00:00Z ", Shape),
            ("+2024-05-01T12:00:00Z", Shape),
            ("2024-5-01T12:00:00Z", Shape),
            ("2024-05-01T12:00:00.1234567890Z", FractionTooLong),
            ("2023-02-29T00:00:00Z", Date),
            ("1900-02-29T00:00:00Z", Date),
            ("2024-04-31T00:00:00Z", Date),
            ("2024-13-01T00:00:00Z", Date),
            ("2024-00-01T00:00:00Z", Date),
            ("2024-01-00T00:00:00Z", Date),
            ("2024-01-01T24:00:00Z", Time),
            ("2024-01-01T23:60:00Z", Time),
            ("2024-01-01T23:59:61Z", Time),
            ("2024-01-01T00:00:00+24:00", Offset),
            ("2024-01-01T00:00:00-00:60", Offset),
            ("２024-01-01T00:00:00Z", Shape),
        ] {
            assert_eq!(parse_parts(bad), Err(why), "{bad}");
        }
    }
}
