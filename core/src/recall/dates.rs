//! UTC dates as text, both ways: a time in ms since the epoch shown as `YYYY-MM-DD HH:MM`, and what a
//! caller may write for "since" or "at" (ms since the epoch, `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS][Z]`,
//! all UTC) read back into ms. No time zones beyond UTC, no calendar library.

/// `ms` since the epoch as `YYYY-MM-DD HH:MM` (UTC).
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rest / 3600, rest % 3600 / 60)
}

/// Reads a point in time: an integer is ms since the epoch; `YYYY-MM-DD` is that day's start (UTC);
/// `YYYY-MM-DDTHH:MM`, with optional `:SS` and a trailing `Z`, is that moment (UTC). `None` otherwise.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').unwrap_or(time))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (number(parts.next()?, 4)?, number(parts.next()?, 2)?, number(parts.next()?, 2)?);
    if parts.next().is_some() || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let (h, min) = (number(parts.next()?, 2)?, number(parts.next()?, 2)?);
        let s = parts.next().map_or(Some(0), |s| number(s, 2))?;
        if parts.next().is_some() || h > 23 || min > 59 || s > 59 {
            return None;
        }
        secs += h * 3600 + min * 60 + s;
    }
    Some(secs * 1000)
}

/// Exactly `digits` ASCII digits as a number.
fn number(text: &str, digits: usize) -> Option<i64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: the inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_as_written() {
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_time("2024-02-29T12:30"), Some(1_709_164_800_000 + 45_000_000));
        assert_eq!(parse_time("2024-02-29T12:30:15Z"), Some(1_709_164_800_000 + 45_015_000));
        assert_eq!(format_utc(1_709_164_800_000 + 45_015_000), "2024-02-29 12:30");
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        for day in [-800_000, -1, 0, 59, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "yesterday", "2023-02-29", "2024-13-01", "2024-1-01", "2024-01-01T25:00", "-5", "2024-01-01+02"]
        {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
}
