//! Durations as users write them: Go syntax (`8760h`, `1h30m`, what cfssl takes) and also
//! whole days and years (`365d`, `1y`, `10y`), which cfssl refuses but people type.

use crate::error::{PkiError, Result};
use time::Duration;

/// Parses `8760h`, `90m`, `1h30m15s`, `500ms`, `365d`, `1y` (= 365 days), `2w`.
/// `what` names the field in the error (for example `ca-config.json: signing.default.expiry`).
pub fn parse_duration(text: &str, what: &str) -> Result<Duration> {
    let bad = |reason: &str| PkiError::bad_input(what, format!("invalid duration {text:?}: {reason} (examples: 8760h, 90d, 1y, 1h30m)"));
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_ns: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad("bad number"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_ns: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "w" => 7.0 * 86_400e9,
            "y" => 365.0 * 86_400e9,
            "" => return Err(bad("missing unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        let part = number * unit_ns;
        if !part.is_finite() || part > MAX_NS as f64 {
            return Err(bad("too large (at most 1000y)"));
        }
        total_ns = total_ns.checked_add(part as i128).filter(|t| *t <= MAX_NS).ok_or_else(|| bad("too large (at most 1000y)"))?;
    }
    if negative {
        total_ns = -total_ns;
    }
    // |total| <= 1000 years: fits i64 seconds, and adding it to any date a certificate can carry
    // (years 1950-9999) cannot overflow
    let seconds = i64::try_from(total_ns / 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(seconds, (total_ns % 1_000_000_000) as i32))
}

/// The largest duration [`parse_duration`] accepts: 1000 years.
const MAX_NS: i128 = 1000 * 365 * 86_400 * 1_000_000_000;

/// A certificate lifetime: a duration of at least one minute and at most 1000 years. A zero,
/// negative or sub-minute lifetime is an input error, not a certificate that is born expired.
pub fn parse_validity(text: &str, what: &str) -> Result<Duration> {
    let d = parse_duration(text, what)?;
    if d < Duration::minutes(1) {
        return Err(PkiError::bad_input(what, format!("invalid validity {text:?}: a certificate must be valid for at least 1m (examples: 8760h, 90d, 1y)")));
    }
    Ok(d)
}

/// Renders a duration the way people read expiry: `364d`, `9y`, `23h`, `45m`.
pub fn human(d: Duration) -> String {
    let secs = d.whole_seconds();
    if secs < 0 {
        return format!("-{}", human(-d));
    }
    let days = secs / 86_400;
    if days >= 365 * 2 {
        format!("{}y", days / 365)
    } else if days >= 1 {
        format!("{days}d")
    } else if secs >= 3600 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_and_human_units() {
        assert_eq!(parse_duration("8760h", "x").unwrap(), Duration::hours(8760));
        assert_eq!(parse_duration("1h30m", "x").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("365d", "x").unwrap(), Duration::days(365));
        assert_eq!(parse_duration("1y", "x").unwrap(), Duration::days(365));
        assert_eq!(parse_duration("1.5h", "x").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("0", "x").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_the_field_named() {
        let e = parse_duration("10 years", "signing.default.expiry").unwrap_err().to_string();
        assert!(e.contains("signing.default.expiry"), "{e}");
        assert!(parse_duration("h", "x").is_err());
        assert!(parse_duration("12", "x").is_err());
        assert!(parse_duration("", "x").is_err());
    }

    #[test]
    fn huge_and_tiny_values_are_errors_not_panics() {
        for huge in ["9000y", "99999y", "876000000h", "18446744073709551615s", "99999999999999999999999999999999999999999y", "1000y1ns"] {
            let e = parse_duration(huge, "--validity").unwrap_err().to_string();
            assert!(e.contains("too large"), "{huge}: {e}");
        }
        assert!(parse_duration("1000y", "x").is_ok());
        for tiny in ["1ns", "-1y", "0", "59s"] {
            let e = parse_validity(tiny, "--ca-validity").unwrap_err().to_string();
            assert!(e.contains("at least 1m") && e.contains("--ca-validity"), "{tiny}: {e}");
        }
        assert_eq!(parse_validity("1m", "x").unwrap(), Duration::minutes(1));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_duration(&s, "x");
            let _ = parse_validity(&s, "x");
        }
        #[test]
        fn never_panics_on_duration_shapes(s in "[-+]?([0-9]{0,30}(\\.[0-9]{0,5})?(ns|us|ms|s|m|h|d|w|y|µs|x)?){1,4}") {
            if let Ok(d) = parse_duration(&s, "x") {
                // whatever is accepted can be added to now without overflow
                let _ = time::OffsetDateTime::now_utc().checked_add(d).expect("in range");
            }
        }
    }

    #[test]
    fn human_rendering() {
        assert_eq!(human(Duration::days(3650)), "10y");
        assert_eq!(human(Duration::days(364)), "364d");
        assert_eq!(human(Duration::hours(5)), "5h");
    }
}
