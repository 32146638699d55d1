//! Durations as users write them in specs, annotations and flags: `500ms`, `30s`, `5m`, `1h`, `1h30m`,
//! or a bare number of seconds (`42`, `1.5`). The one grammar of the API (`sluice::api::duration`),
//! the CLI and the simulator's annotations.
//!
//! Any text is safe to parse: negative, non-finite and out-of-range values are errors, never a panic.
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {why} (use e.g. 500ms, 30s, 5m, 1h)")]
pub struct InvalidDuration {
    pub text: String,
    pub why: &'static str,
}

pub fn parse(text: &str) -> Result<Duration, InvalidDuration> {
    let fail = |why| InvalidDuration {
        text: text.to_string(),
        why,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail("empty"));
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return seconds(trimmed, 1.0).ok_or_else(|| fail("bad number"));
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("missing unit"))?;
        if digits == 0 {
            return Err(fail("expected a number"));
        }
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(fail("unknown unit")),
        };
        let part = seconds(number, seconds_per_unit).ok_or_else(|| fail("bad number"))?;
        total = total.checked_add(part).ok_or_else(|| fail("too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `number × seconds_per_unit` seconds; None for what is not a finite, non-negative, representable value.
fn seconds(number: &str, seconds_per_unit: f64) -> Option<Duration> {
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * seconds_per_unit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("42").unwrap(), Duration::from_secs(42));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_nonsense_with_the_reason() {
        assert_eq!(parse("").unwrap_err().why, "empty");
        assert_eq!(parse("5x").unwrap_err().why, "unknown unit");
        assert_eq!(parse("s").unwrap_err().why, "expected a number");
        assert_eq!(parse("-1s").unwrap_err().why, "expected a number");
        assert_eq!(parse("1..5s").unwrap_err().why, "bad number");
        assert!(parse("10 minutes").is_err());
        assert!(parse("inf").is_err());
        assert!(parse("NaNs").is_err());
    }

    #[test]
    fn out_of_range_values_are_errors_not_panics() {
        assert_eq!(parse("99999999999999999999s").unwrap_err().why, "bad number");
        assert_eq!(parse("99999999999999999h").unwrap_err().why, "bad number");
        assert_eq!(parse("1e400").unwrap_err().why, "unknown unit");
        assert!(parse(&"9".repeat(400)).is_err());
        assert_eq!(
            parse("100000000000000").unwrap(),
            Duration::from_secs(100_000_000_000_000)
        );
    }
}
