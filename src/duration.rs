//! Durations as users write them in specs and flags: `500ms`, `30s`, `5m`, `1h`, `1h30m`, or a bare
//! number of seconds. Shared by the CLI, the simulator's annotations and the CRDs.
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
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("missing unit"))?;
        if digits == 0 {
            return Err(fail("expected a number"));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| fail("bad number"))?;
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
        total += Duration::from_secs_f64(number * seconds_per_unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("42").unwrap(), Duration::from_secs(42));
    }

    #[test]
    fn rejects_nonsense_with_the_reason() {
        assert_eq!(parse("").unwrap_err().why, "empty");
        assert_eq!(parse("5x").unwrap_err().why, "unknown unit");
        assert_eq!(parse("s").unwrap_err().why, "expected a number");
        assert!(parse("10 minutes").is_err());
    }
}
