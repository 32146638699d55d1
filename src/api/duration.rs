//! The duration grammar of every spec field and flag (`500ms`, `30s`, `5m`, `1h30m`, bare seconds),
//! kept in its own crate so the simulator parses its annotations the same way; and the schema every
//! duration field of the CRDs declares, so the API server turns away what can never parse.
use schemars::Schema;
use serde_json::json;
pub use sluice_duration::{InvalidDuration, MAX, MAX_TEXT_LEN, PATTERN, TOO_LONG, from_seconds, parse};

/// The most any `*Seconds` integer field may ask for: the same year as every duration.
pub const MAX_SECONDS: i32 = MAX.as_secs() as i32;

/// Schema of a duration string field: the grammar's shape and its length bound. Values past [`MAX`]
/// fit the pattern; the controller reports those as an invalid spec naming the field.
pub fn string_schema(schema: &mut Schema) {
    schema.insert("pattern".into(), json!(PATTERN));
    schema.insert("maxLength".into(), json!(MAX_TEXT_LEN));
}

/// Schema of a duration string field of a metric, which may instead hold `{{args.NAME}}` placeholders
/// (checked once the AnalysisRun substitutes them).
pub fn metric_string_schema(schema: &mut Schema) {
    schema.insert("pattern".into(), json!(format!("{PATTERN}|\\{{\\{{")));
    // Placeholders are substituted before parsing, so only the substituted text is bounded by the
    // parser; the template's own text gets room for a few of them.
    schema.insert("maxLength".into(), json!(4 * MAX_TEXT_LEN));
}

/// Schema of an int-or-string duration (a pause): the pattern and length for strings, `0..=MAX` whole
/// seconds for integers (the API server applies each to its own kind).
pub fn int_or_string_schema(schema: &mut Schema) {
    string_schema(schema);
    schema.insert("minimum".into(), json!(0));
    schema.insert("maximum".into(), json!(MAX_SECONDS));
}

/// Schema of maxSurge and maxUnavailable: a count or a percentage, never negative.
pub fn int_or_percent_schema(schema: &mut Schema) {
    schema.insert("pattern".into(), json!("^[0-9]+%?$"));
    schema.insert("maxLength".into(), json!(12));
    schema.insert("minimum".into(), json!(0));
}

/// `start + wait`, saturating: a deadline past the range of time stamps is never reached, where plain
/// `+` would panic on a hostile `start` (a status field) or `wait`.
pub fn deadline_after(
    start: chrono::DateTime<chrono::Utc>,
    wait: std::time::Duration,
) -> chrono::DateTime<chrono::Utc> {
    chrono::TimeDelta::from_std(wait)
        .ok()
        .and_then(|delta| start.checked_add_signed(delta))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
