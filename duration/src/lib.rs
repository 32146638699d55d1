//! Durations as users write them in specs, annotations and flags: `500ms`, `30s`, `5m`, `1h`, `1h30m`,
//! or a bare number of seconds (`42`, `1.5`). The one grammar of the API (`sluice::api::duration`),
//! the CLI and the simulator's annotations.
//!
//! Any text is safe to parse: too long, negative, non-finite and out-of-range values are errors, never a
//! panic, and every accepted duration is at most [`MAX`] — small enough that adding it to any time a
//! cluster can hold stays far inside chrono's and the OS clock's range.
use std::time::Duration;

/// The longest duration any field or flag accepts: one year (365 days). A longer pause, interval or
/// timeout is a typo, not a plan.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The longest text parsed, in bytes; the CRDs declare it as `maxLength`. The longest sensible spelling
/// (`8759h59m59.999s`) is far below it.
pub const MAX_TEXT_LEN: usize = 64;

/// The grammar as an anchored regular expression, for `pattern` in the CRDs. It accepts exactly the
/// shapes [`parse`] does (surrounding ASCII whitespace; a `+` only on a bare whole number); it cannot say
/// "at most [`MAX`]", so the controller still checks the value and reports it as an invalid spec.
pub const PATTERN: &str = concat!(
    r"^[\t\n\f\r\x20]*(",
    r"\+[0-9]+",
    r"|([0-9]+(\.[0-9]*)?|\.[0-9]+)",
    r"|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|s|m|h))+",
    r")[\t\n\f\r\x20]*$",
);

/// Why a value is past [`MAX`]; public so callers and tests can tell this case apart.
pub const TOO_LONG: &str = "longer than the maximum of 8760h (365 days)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {why} (use e.g. 500ms, 30s, 5m, 1h)")]
pub struct InvalidDuration {
    pub text: String,
    pub why: &'static str,
}

/// Parses one duration, at most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, InvalidDuration> {
    let fail = |why| InvalidDuration {
        // A hostile value may be huge: the error quotes only its start.
        text: text.chars().take(MAX_TEXT_LEN).collect(),
        why,
    };
    if text.len() > MAX_TEXT_LEN {
        return Err(fail("too long a text (at most 64 characters)"));
    }
    // ASCII only, as the CRD pattern's whitespace class: both sides accept the same texts.
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Err(fail("empty"));
    }
    if let Some(digits) = trimmed.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return seconds(digits, 1.0).map_err(fail);
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return seconds(trimmed, 1.0).map_err(fail);
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
        let part = seconds(number, seconds_per_unit).map_err(fail)?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX)
            .ok_or_else(|| fail(TOO_LONG))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A whole number of seconds from an integer field (e.g. a pause's `duration: 30`), at most [`MAX`].
pub fn from_seconds(seconds: i64) -> Result<Duration, InvalidDuration> {
    let fail = |why| InvalidDuration {
        text: seconds.to_string(),
        why,
    };
    let seconds = u64::try_from(seconds).map_err(|_| fail("negative"))?;
    Some(Duration::from_secs(seconds))
        .filter(|d| *d <= MAX)
        .ok_or_else(|| fail(TOO_LONG))
}

/// `number × seconds_per_unit` seconds, where `number` holds only digits and dots.
fn seconds(number: &str, seconds_per_unit: f64) -> Result<Duration, &'static str> {
    // Digits and dots never parse to a negative or NaN value; a huge one parses to infinity.
    let value: f64 = number.parse().map_err(|_| "bad number")?;
    let seconds = value * seconds_per_unit;
    if seconds.is_nan() || seconds > MAX.as_secs_f64() {
        return Err(TOO_LONG);
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| "bad number")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("42").unwrap(), Duration::from_secs(42));
        assert_eq!(parse("+42").unwrap(), Duration::from_secs(42));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(" 5m\n").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("8760h").unwrap(), MAX);
        assert_eq!(parse("31536000").unwrap(), MAX);
    }

    #[test]
    fn rejects_nonsense_with_the_reason() {
        assert_eq!(parse("").unwrap_err().why, "empty");
        assert_eq!(parse("  ").unwrap_err().why, "empty");
        assert_eq!(parse("5x").unwrap_err().why, "unknown unit");
        assert_eq!(parse("s").unwrap_err().why, "expected a number");
        assert_eq!(parse("-1s").unwrap_err().why, "expected a number");
        assert_eq!(parse("-5s").unwrap_err().why, "expected a number");
        assert_eq!(parse("1..5s").unwrap_err().why, "bad number");
        assert_eq!(parse("1e400s").unwrap_err().why, "unknown unit");
        assert_eq!(parse("1e400").unwrap_err().why, "unknown unit");
        assert_eq!(parse("0.0000000001ns").unwrap_err().why, "unknown unit");
        assert!(parse("10 minutes").is_err());
        assert!(parse("inf").is_err());
        assert!(parse("NaNs").is_err());
        assert!(parse("+1.5").is_err());
        // Non-ASCII whitespace is not trimmed: the CRD pattern would not accept it either.
        assert!(parse("\u{a0}5s").is_err());
    }

    /// The values of the bug report (issue 13) and their kin: all errors, none a panic.
    #[test]
    fn values_past_the_maximum_are_errors_not_panics() {
        for text in [
            "100000000000000",
            "99999999999999999999s",
            "2562047788015216h",
            "99999999999999999h",
            "8760h0.001s",
            "8761h",
            "31536001",
            "+99999999999999999999999",
            "4294967296h4294967296h",
            "5124095576030431h5124095576030431h",
        ] {
            assert_eq!(parse(text).unwrap_err().why, TOO_LONG, "{text}");
        }
        assert_eq!(parse(&"9".repeat(64)).unwrap_err().why, TOO_LONG);
        let huge = "9".repeat(400);
        let error = parse(&huge).unwrap_err();
        assert!(error.why.starts_with("too long a text"));
        assert_eq!(error.text.len(), MAX_TEXT_LEN, "the error quotes only the start");
        assert_eq!(parse(&"1s".repeat(32)).unwrap(), Duration::from_secs(32));
    }

    #[test]
    fn whole_seconds_from_integer_fields() {
        assert_eq!(from_seconds(30).unwrap(), Duration::from_secs(30));
        assert_eq!(from_seconds(0).unwrap(), Duration::ZERO);
        assert_eq!(from_seconds(31_536_000).unwrap(), MAX);
        assert_eq!(from_seconds(31_536_001).unwrap_err().why, TOO_LONG);
        assert_eq!(from_seconds(i64::from(i32::MAX)).unwrap_err().why, TOO_LONG);
        assert_eq!(from_seconds(i64::MAX).unwrap_err().why, TOO_LONG);
        assert_eq!(from_seconds(-1).unwrap_err().why, "negative");
        assert_eq!(from_seconds(i64::MIN).unwrap_err().why, "negative");
    }

    fn pattern() -> regex::Regex {
        regex::Regex::new(PATTERN).unwrap()
    }

    #[test]
    fn the_pattern_accepts_what_users_write_and_rejects_the_shapeless() {
        let pattern = pattern();
        for valid in [
            "500ms",
            "30s",
            "1h30m",
            "1.5",
            "42",
            "+42",
            ".5s",
            "1.s",
            " 5m ",
            "100000000000000",
        ] {
            assert!(pattern.is_match(valid), "{valid:?}");
        }
        for invalid in ["", "5x", "-5s", "1e400s", "1h 30m", "inf", "+1.5", "s", "5m-"] {
            assert!(!pattern.is_match(invalid), "{invalid:?}");
        }
    }

    /// Texts made of the grammar's own pieces, so the properties also see many valid durations.
    fn duration_like() -> impl Strategy<Value = String> {
        proptest::string::string_regex(r"[ +]?([0-9.]{0,22}(ms|s|m|h|x|e|-)?){0,4} ?").unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_parses_or_errs_within_the_maximum(text in any::<String>()) {
            if let Ok(duration) = parse(&text) {
                prop_assert!(duration <= MAX);
            }
        }

        #[test]
        fn grammar_shaped_text_parses_within_the_maximum_or_errs(text in duration_like()) {
            if let Ok(duration) = parse(&text) {
                prop_assert!(duration <= MAX);
            }
        }

        /// The CRD pattern is exactly the grammar's shape: what parses matches it, and what matches it
        /// fails to parse only for being past the maximum or too long a text.
        #[test]
        fn the_pattern_agrees_with_the_parser(text in duration_like()) {
            let matches = pattern().is_match(&text);
            match parse(&text) {
                Ok(_) => prop_assert!(matches, "{text:?} parses but the pattern rejects it"),
                Err(e) if matches => prop_assert!(
                    e.why == TOO_LONG || e.why.starts_with("too long a text"),
                    "{text:?} matches the pattern but fails with {e}"
                ),
                Err(_) => {}
            }
        }

        #[test]
        fn integers_past_the_maximum_are_errors(seconds in (MAX.as_secs() as i64 + 1)..=i64::MAX) {
            prop_assert_eq!(from_seconds(seconds).unwrap_err().why, TOO_LONG);
            prop_assert_eq!(parse(&seconds.to_string()).unwrap_err().why, TOO_LONG);
        }

        #[test]
        fn whole_seconds_within_the_maximum_round_trip(seconds in 0..=MAX.as_secs()) {
            prop_assert_eq!(parse(&format!("{seconds}s")).unwrap(), Duration::from_secs(seconds));
            prop_assert_eq!(from_seconds(seconds as i64).unwrap(), Duration::from_secs(seconds));
        }
    }
}
