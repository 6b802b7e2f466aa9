//! Message filters beyond minijinja's builtins: `money` and `date`.

use std::fmt::Write;

use minijinja::{Error, ErrorKind, Value};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// `{{ 123456|money("EUR") }}` → `€1,234.56`. The value is an integer amount in minor units
/// (cents); zero-decimal currencies (JPY, KRW, …) take it as whole units. Unknown codes are
/// appended: `1,234.56 CHF`. The separators are fixed (`,` thousands, `.` decimals).
pub fn money(value: &Value, currency: &str) -> Result<String, Error> {
    let cents: i64 = if let Some(i) = value.as_i64() {
        i
    } else if let Ok(f) = f64::try_from(value.clone()) {
        if !f.is_finite() || f.abs() > 9.0e15 {
            return Err(invalid(format!("money: amount {value} out of range")));
        }
        f.round() as i64
    } else {
        return Err(invalid(format!(
            "money: expected an integer amount in minor units, got {}",
            value.kind()
        )));
    };
    let code = currency.trim();
    let is = |codes: &[&str]| codes.iter().any(|c| c.eq_ignore_ascii_case(code));
    let decimals = if is(&["JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX", "XAF", "XOF"]) {
        0
    } else if is(&["BHD", "KWD", "OMR", "JOD", "TND"]) {
        3
    } else {
        2
    };
    let symbol = [("USD", "$"), ("EUR", "€"), ("GBP", "£"), ("JPY", "¥"), ("INR", "₹"), ("KRW", "₩")]
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map(|&(_, sym)| sym);
    let abs = cents.unsigned_abs();
    let scale = 10u64.pow(decimals);
    // Built in one buffer: this filter runs for every price in every message.
    let mut out = String::with_capacity(32);
    if cents < 0 {
        out.push('-');
    }
    if let Some(sym) = symbol {
        out.push_str(sym);
    }
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut whole = abs / scale;
    loop {
        start -= 1;
        digits[start] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    for (i, &d) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(char::from(d));
    }
    if decimals > 0 {
        out.push('.');
        let frac = abs % scale;
        for p in (0..decimals).rev() {
            out.push(char::from(b'0' + (frac / 10u64.pow(p) % 10) as u8));
        }
    }
    if symbol.is_none() {
        out.push(' ');
        out.extend(code.chars().map(|c| c.to_ascii_uppercase()));
    }
    Ok(out)
}

/// Date/time fields parsed from an ISO-8601 string, as written (no time-zone conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn num(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
}

fn parse_iso(s: &str) -> Option<DateTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = num(s, 0..4)? as i32;
    let month = num(s, 5..7)?;
    let day = num(s, 8..10)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
            return None;
        }
        hour = num(s, 11..13)?;
        minute = num(s, 14..16)?;
        if b.len() >= 19 && b[16] == b':' {
            second = num(s, 17..19)?;
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
    }
    Some(DateTime { year, month, day, hour, minute, second })
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 0 = Sunday (Sakamoto's method).
fn weekday(y: i32, m: u32, d: u32) -> usize {
    const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if m < 3 { y - 1 } else { y };
    (y + y / 4 - y / 100 + y / 400 + T[m as usize - 1] + d as i32).rem_euclid(7) as usize
}

/// `{{ "2026-03-05T14:07:00Z"|date("%e %B %Y, %H:%M") }}` → `5 March 2026, 14:07`.
///
/// Tokens: `%Y` year, `%m` `%d` `%H` `%M` `%S` zero-padded, `%e` day without padding, `%B` `%b`
/// month name / abbreviation, `%A` `%a` weekday name / abbreviation, `%%`. The default pattern is
/// `%Y-%m-%d`. Fields are taken as written; offsets are ignored (render in the user's zone upstream).
pub fn date(value: &str, pattern: Option<&str>) -> Result<String, Error> {
    let dt = parse_iso(value).ok_or_else(|| invalid(format!("date: not an ISO-8601 date: {value:?}")))?;
    let pattern = pattern.unwrap_or("%Y-%m-%d");
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[dt.month as usize - 1];
        let wd = WEEKDAYS[weekday(dt.year, dt.month, dt.day)];
        // Writing to a String cannot fail.
        let _ = match chars.next() {
            Some('Y') => write!(out, "{:04}", dt.year),
            Some('m') => write!(out, "{:02}", dt.month),
            Some('d') => write!(out, "{:02}", dt.day),
            Some('e') => write!(out, "{}", dt.day),
            Some('H') => write!(out, "{:02}", dt.hour),
            Some('M') => write!(out, "{:02}", dt.minute),
            Some('S') => write!(out, "{:02}", dt.second),
            Some('B') => out.write_str(month),
            Some('b') => out.write_str(&month[..3]),
            Some('A') => out.write_str(wd),
            Some('a') => out.write_str(&wd[..3]),
            Some('%') => out.write_char('%'),
            Some(other) => return Err(invalid(format!("date: unknown pattern token %{other}"))),
            None => return Err(invalid("date: pattern ends with %".to_owned())),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats() {
        assert_eq!(money(&Value::from(123456), "EUR").unwrap(), "€1,234.56");
        assert_eq!(money(&Value::from(5), "usd").unwrap(), "$0.05");
        assert_eq!(money(&Value::from(-1999), "GBP").unwrap(), "-£19.99");
        assert_eq!(money(&Value::from(1500), "JPY").unwrap(), "¥1,500");
        assert_eq!(money(&Value::from(100000000), "CHF").unwrap(), "1,000,000.00 CHF");
        assert_eq!(money(&Value::from(1999.0), "EUR").unwrap(), "€19.99");
        assert_eq!(money(&Value::from(999), "EUR").unwrap(), "€9.99");
        assert_eq!(money(&Value::from(100000), "EUR").unwrap(), "€1,000.00");
        assert_eq!(money(&Value::from(0), "EUR").unwrap(), "€0.00");
        assert_eq!(money(&Value::from(1234567), "kwd").unwrap(), "1,234.567 KWD");
        assert_eq!(money(&Value::from(i64::MIN), "JPY").unwrap(), "-¥9,223,372,036,854,775,808");
        assert!(money(&Value::from("x"), "EUR").is_err());
    }

    #[test]
    fn date_formats() {
        let d = "2026-03-05T14:07:09Z";
        assert_eq!(date(d, None).unwrap(), "2026-03-05");
        assert_eq!(date(d, Some("%a %e %b %Y %H:%M:%S %%")).unwrap(), "Thu 5 Mar 2026 14:07:09 %");
        assert_eq!(date("2024-02-29", Some("%A, %B %d")).unwrap(), "Thursday, February 29");
        assert!(date("2023-02-29", None).is_err());
        assert!(date("yesterday", None).is_err());
        assert!(date(d, Some("%Q")).is_err());
    }
}
