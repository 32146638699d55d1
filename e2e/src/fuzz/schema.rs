//! Proptest strategies for JSON values shaped by an OpenAPI v3 (structural, CRD) schema: mostly what the
//! schema describes, often at its edges, sometimes outside it — what a user, an old client or a hostile
//! one can put in an object the API server stores. Built once per schema; proptest shrinks what they make.
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::{Map, Number, Value};

/// Nesting below this many levels has only required properties and empty arrays and maps, so a recursive
/// or deep schema (the pod template) still makes small values.
const MAX_DEPTH: usize = 10;

/// How far generated values stray from the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every value has its schema type: integers within their format, enums inside, valid timestamps.
    /// Strings are still hostile. Most such objects deserialize, so the cases reach validation and plans.
    WellTyped,
    /// Also, now and then, a value of another type, an integer past its format or a float, an enum value
    /// outside the enum, a timestamp that does not parse: what serde must refuse without panicking.
    Hostile,
}

/// The strategy for values of `schema`.
pub fn value_strategy(schema: &Value, mode: Mode) -> BoxedStrategy<Value> {
    node(schema, 0, mode)
}

/// Strings that have broken parsers: durations out of range or malformed, numbers past every integer
/// type, percentages, argument placeholders, timestamps at chrono's ends, control and bidi characters.
const HOSTILE_STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "5m",
    "1h30m",
    "0s",
    "-1s",
    "+5",
    ".5s",
    "1.",
    "0.0000001ms",
    "100000000000000",
    "99999999999999999999s",
    "9223372036854775807s",
    "18446744073709551616ms",
    "2562047788015215h",
    "1e400s",
    "1e400",
    "NaN",
    "inf",
    "%",
    "50%",
    "100%",
    "101%",
    "-5%",
    "2147483647%",
    "2147483648%",
    "99999999999999999999%",
    "{{args.x}}",
    "{{args.}}",
    "{{",
    "}}",
    "{{args.a}}{{args.b}}",
    "{{ args.x }}",
    "é",
    "🦀",
    "\u{0}",
    "\u{202e}evil",
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "+262142-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "true",
    "null",
    "result[0] > 0.5",
    "result >",
    "len(result) == 0 || result[0] < 0.05",
    "default/x",
    "metadata.labels['app']",
    "spec.template.spec.containers[99999999999999].image",
];

/// Very long strings are made once: cloning is cheap next to building them per case.
static HUGE_STRINGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    vec![
        "9".repeat(400),
        "x".repeat(70_000),
        format!("{}s", "1".repeat(200)),
        "{{args.x}}".repeat(1000),
        "é".repeat(3000),
    ]
});

/// Strings at the edges of what the fields parse: see [`HOSTILE_STRINGS`], plus huge and random ones.
pub fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => proptest::sample::select(HOSTILE_STRINGS).prop_map(str::to_string),
        1 => proptest::sample::select(HUGE_STRINGS.clone()),
        3 => "\\PC{0,12}",
        2 => "[a-z0-9.-]{1,12}",
    ]
    .boxed()
}

fn hostile_i64() -> BoxedStrategy<i64> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            0,
            -1,
            1,
            2,
            100,
            101,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX,
            i64::MAX / 1000,
        ]),
        3 => -5i64..200,
        1 => any::<i64>(),
    ]
    .boxed()
}

fn int32(mode: Mode) -> BoxedStrategy<i64> {
    let in_range = hostile_i64().prop_filter("an int32", |n| i32::try_from(*n).is_ok());
    match mode {
        Mode::WellTyped => in_range.boxed(),
        // Out of int32: the API server refuses these, but a stored object may predate the schema.
        Mode::Hostile => prop_oneof![6 => in_range, 1 => hostile_i64()].boxed(),
    }
}

/// Numbers a JSON document can hold (no NaN or infinity): edges of f64, fractions, integers as floats.
fn hostile_number() -> BoxedStrategy<Value> {
    prop_oneof![
        proptest::sample::select(vec![
            0.5,
            -0.5,
            1.5,
            1e308,
            -1e308,
            f64::MIN_POSITIVE,
            1e19,
            2147483648.0
        ]),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ]
    .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number))
    .boxed()
}

/// RFC 3339 timestamps anywhere chrono can represent (years before 0 and after 9999 included).
fn timestamp() -> BoxedStrategy<String> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    let anywhere = (min..=max).prop_map(|seconds| {
        DateTime::from_timestamp(seconds, 0).map_or_else(String::new, |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    });
    // Near 2026, where a schedule in seconds to hours is interesting.
    let recent = (1_700_000_000i64..1_900_000_000).prop_map(|seconds| {
        DateTime::from_timestamp(seconds, 0).map_or_else(String::new, |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    });
    prop_oneof![2 => recent, 1 => anywhere].boxed()
}

/// Any small JSON value, for `x-kubernetes-preserve-unknown-fields` and schemaless fields.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_i64().prop_map(Value::from),
        hostile_number(),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

fn node(schema: &Value, depth: usize, mode: Mode) -> BoxedStrategy<Value> {
    let shaped = shaped(schema, depth, mode);
    let shaped = if schema["nullable"] == true {
        prop_oneof![9 => shaped, 1 => Just(Value::Null)].boxed()
    } else {
        shaped
    };
    if mode == Mode::WellTyped {
        return shaped;
    }
    // Now and then a value of another type altogether: an old object, a client bypassing validation.
    prop_oneof![30 => shaped, 1 => any_json()].boxed()
}

fn shaped(schema: &Value, depth: usize, mode: Mode) -> BoxedStrategy<Value> {
    if schema["x-kubernetes-int-or-string"] == true {
        return prop_oneof![
            int32(mode).prop_map(Value::from),
            hostile_string().prop_map(Value::String),
        ]
        .boxed();
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(branches) = schema[combinator].as_array().filter(|b| !b.is_empty()) {
            return Union::new(branches.iter().map(|branch| node(branch, depth, mode))).boxed();
        }
    }
    match schema["type"].as_str() {
        Some("object") => object(schema, depth, mode),
        Some("array") => array(schema, depth, mode),
        Some("string") => string(schema, mode),
        Some("integer") if schema["format"] == "int32" => integer(schema, int32(mode), mode),
        Some("integer") => integer(schema, hostile_i64(), mode),
        Some("number") => prop_oneof![hostile_number(), hostile_i64().prop_map(Value::from)].boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
        _ => any_json(),
    }
}

fn integer(schema: &Value, values: BoxedStrategy<i64>, mode: Mode) -> BoxedStrategy<Value> {
    let bounds: Vec<i64> = ["minimum", "maximum"]
        .iter()
        .filter_map(|bound| schema[*bound].as_i64())
        .flat_map(|bound| [bound.saturating_sub(1), bound, bound.saturating_add(1)])
        .collect();
    let edges = if bounds.is_empty() {
        values.clone()
    } else {
        proptest::sample::select(bounds).boxed()
    };
    let typed = prop_oneof![3 => values, 1 => edges].prop_map(Value::from);
    match mode {
        Mode::WellTyped => typed.boxed(),
        // A float where an integer belongs.
        Mode::Hostile => prop_oneof![8 => typed, 1 => hostile_number()].boxed(),
    }
}

fn string(schema: &Value, mode: Mode) -> BoxedStrategy<Value> {
    if let Some(variants) = schema["enum"].as_array().filter(|v| !v.is_empty()) {
        if mode == Mode::WellTyped {
            return proptest::sample::select(variants.clone()).boxed();
        }
        return prop_oneof![
            8 => proptest::sample::select(variants.clone()),
            1 => hostile_string().prop_map(Value::String),
        ]
        .boxed();
    }
    let typical = match (schema["format"].as_str(), schema["pattern"].as_str()) {
        (Some("date-time"), _) if mode == Mode::WellTyped => return timestamp().prop_map(Value::String).boxed(),
        (Some("date-time"), _) => prop_oneof![timestamp(), hostile_string()].boxed(),
        (_, Some(pattern)) => matching(pattern).unwrap_or_else(hostile_string),
        _ => hostile_string(),
    };
    prop_oneof![3 => typical, 2 => hostile_string()]
        .prop_map(Value::String)
        .boxed()
}

/// Strings matching `pattern`, when proptest can generate from it (anchors are implied and removed).
fn matching(pattern: &str) -> Option<BoxedStrategy<String>> {
    let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
    proptest::string::string_regex(unanchored).ok().map(|s| s.boxed())
}

fn array(schema: &Value, depth: usize, mode: Mode) -> BoxedStrategy<Value> {
    let items = node(&schema["items"], depth + 1, mode);
    let most = if depth >= MAX_DEPTH {
        0
    } else if depth <= 3 {
        6
    } else {
        2
    };
    proptest::collection::vec(items, 0..=most)
        .prop_map(Value::Array)
        .boxed()
}

fn object(schema: &Value, depth: usize, mode: Mode) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // Deeper optional fields are rarer, so a pod template is a handful of fields, not all four hundred.
    let optional_probability = match depth {
        0..=2 => 0.5,
        3..=4 => 0.25,
        _ if depth < MAX_DEPTH => 0.08,
        _ => 0.0,
    };
    let properties = schema["properties"].as_object().cloned().unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
        .iter()
        .map(|(name, property)| {
            let probability = if required.contains(&name.as_str()) {
                0.95
            } else {
                optional_probability
            };
            if probability == 0.0 {
                return Just(None).boxed();
            }
            let name = name.clone();
            proptest::option::weighted(probability, node(property, depth + 1, mode))
                .prop_map(move |value| value.map(|value| (name.clone(), value)))
                .boxed()
        })
        .collect();
    // Map-valued objects (labels, annotations, headers): a few entries.
    let entries = match schema.get("additionalProperties") {
        Some(values @ Value::Object(_)) if depth < MAX_DEPTH => {
            proptest::collection::vec(("\\PC{0,10}", node(values, depth + 1, mode)), 0..4).boxed()
        }
        _ if schema["x-kubernetes-preserve-unknown-fields"] == true && depth < MAX_DEPTH => {
            proptest::collection::vec(("[a-zA-Z]{1,8}", any_json()), 0..4).boxed()
        }
        _ => Just(Vec::new()).boxed(),
    };
    // Fields the schema does not know: the API server prunes them, a stale client may not.
    let unknown = proptest::option::weighted(0.05, ("[a-zA-Z]{1,10}", any_json()));
    (fields, entries, unknown)
        .prop_map(|(fields, entries, unknown)| {
            let mut object: Map<String, Value> = entries.into_iter().collect();
            object.extend(fields.into_iter().flatten());
            object.extend(unknown);
            Value::Object(object)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use serde_json::json;

    use super::*;

    fn sample(schema: &Value, cases: usize) -> Vec<Value> {
        let strategy = value_strategy(schema, Mode::Hostile);
        let mut runner = TestRunner::deterministic();
        (0..cases)
            .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
            .collect()
    }

    #[test]
    fn objects_mostly_have_their_required_properties_and_sometimes_their_optional_ones() {
        let schema = json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "note": {"type": "string"}},
        });
        let values = sample(&schema, 500);
        let with = |key: &str| values.iter().filter(|v| v.get(key).is_some()).count();
        assert!(with("name") > 400, "name in {} of 500", with("name"));
        assert!((100..400).contains(&with("note")), "note in {} of 500", with("note"));
    }

    #[test]
    fn enums_are_mostly_inside_the_enum_and_sometimes_outside() {
        let schema = json!({"type": "string", "enum": ["plain", "helm"]});
        let values = sample(&schema, 500);
        let inside = values.iter().filter(|v| *v == "plain" || *v == "helm").count();
        assert!((300..500).contains(&inside), "{inside} of 500 inside the enum");
    }

    #[test]
    fn int_or_string_fields_get_both_integers_and_strings() {
        let schema = json!({"x-kubernetes-int-or-string": true});
        let values = sample(&schema, 200);
        assert!(values.iter().any(Value::is_i64));
        assert!(values.iter().any(Value::is_string));
    }

    #[test]
    fn int32_fields_reach_past_the_int32_range_now_and_then() {
        let values = sample(&json!({"type": "integer", "format": "int32"}), 2000);
        assert!(values.iter().any(|v| v.as_i64() == Some(i64::from(i32::MAX))));
        assert!(
            values
                .iter()
                .any(|v| v.as_i64().is_some_and(|n| i32::try_from(n).is_err()))
        );
    }

    #[test]
    fn duration_patterns_generate_matching_strings() {
        let pattern = r"^[\t\n\f\r\x20]*(\+[0-9]+|([0-9]+(\.[0-9]*)?|\.[0-9]+)|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|s|m|h))+)[\t\n\f\r\x20]*$";
        assert!(
            matching(pattern).is_some(),
            "proptest cannot generate from the CRD duration pattern"
        );
    }
}
