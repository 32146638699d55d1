//! CustomResourceDefinition structural schemas (`openAPIV3Schema`): validation, defaulting and pruning,
//! reporting the field paths and messages a real API server gives for custom resources. Shared by the
//! API simulator (which serves custom resources) and `sluice lint` (which checks manifests offline).
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use regex::Regex;
use serde_json::{Map, Number, Value};

/// One invalid field, as reported in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCause {
    /// e.g. `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTypeInvalid`.
    pub reason: &'static str,
    /// Dotted path such as `spec.strategy.canary.steps[0].setWeight`.
    pub field: String,
    pub message: String,
}

/// How a schema's list merges: `x-kubernetes-list-type` (atomic when unset).
pub fn list_type_of(s: &Value) -> ListType {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => {
            let keys = s.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
            let keys = keys.map(|k| k.iter().filter_map(|k| k.as_str().map(str::to_string)).collect());
            ListType::Map(keys.unwrap_or_default())
        }
        _ => ListType::Atomic,
    }
}

/// How a list merges and what makes its items unique (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// Items are maps identified by these keys (merged item by item).
    Map(Vec<String>),
}

const PRESERVE_UNKNOWN: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
/// Fields every resource (the root, and embedded resources) has whether or not the schema says so.
const RESOURCE_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

// ---------------------------------------------------------------------------------------------
// Schema accessors

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn property<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.get("properties")?.get(key)
}

fn number(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn count(s: &Value, key: &str) -> Option<usize> {
    s.get(key).and_then(Value::as_u64).map(|n| n as usize)
}

/// What `additionalProperties` says about fields not in `properties`.
enum Additional<'a> {
    /// Not set: unknown fields are a pruning matter, not a validation error.
    Unset,
    /// `true`: anything goes, kept as is.
    Any,
    /// `false`: unknown fields are forbidden.
    Forbidden,
    /// Every other field is validated against this schema (a map).
    Schema(&'a Value),
}

fn additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        Some(Value::Bool(true)) => Additional::Any,
        Some(Value::Bool(false)) => Additional::Forbidden,
        Some(schema @ Value::Object(_)) => Additional::Schema(schema),
        _ => Additional::Unset,
    }
}

/// The schema a field of an object value is checked against: its property, else additionalProperties.
pub fn field_schema<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    property(s, key).or(match additional(s) {
        Additional::Schema(schema) => Some(schema),
        _ => None,
    })
}

/// The declared type, with int-or-string spelled as the API server does (`integer,string`).
fn declared_type(s: &Value) -> Option<&str> {
    if flag(s, INT_OR_STRING) {
        return Some("integer,string");
    }
    s.get("type").and_then(Value::as_str)
}

pub fn is_embedded(s: &Value) -> bool {
    flag(s, EMBEDDED)
}

// ---------------------------------------------------------------------------------------------
// Paths and the API server's rendering of values and errors

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Integers and floats print like Go's `%v` (the server decodes JSON into int64 / float64).
fn go_number(n: &Number) -> String {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) => go_float(f),
        _ => n.to_string(),
    }
}

fn go_float(f: f64) -> String {
    // Go prints whole floats without a fraction (`100`, not `100.0`).
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// A bad value as `field.Error` prints it: strings quoted, numbers and booleans bare, the rest as JSON.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Number(n) => go_number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => quote("null"),
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// JSON type name of a value as the OpenAPI validator reports it (`must be of type integer: "string"`).
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn cause(reason: &'static str, field: &str, message: String) -> FieldCause {
    FieldCause {
        reason,
        field: field.to_string(),
        message,
    }
}

fn required(field: &str) -> FieldCause {
    cause("FieldValueRequired", field, "Required value".into())
}

/// `Invalid value: <v>: <detail>`, the server's generic failure.
fn invalid(field: &str, value: &str, detail: &str) -> FieldCause {
    cause("FieldValueInvalid", field, format!("Invalid value: {value}: {detail}"))
}

/// An OpenAPI value validation failure: the detail names the field `in body`.
fn out_of_bounds(field: &str, v: &Value, detail: &str) -> FieldCause {
    invalid(field, &render(v), &format!("{field} in body {detail}"))
}

fn type_invalid(field: &str, value: &str, expected: &str) -> FieldCause {
    let msg = format!(
        "Invalid value: {}: {field} in body must be of type {expected}: {}",
        quote(value),
        quote(value)
    );
    cause("FieldValueTypeInvalid", field, msg)
}

fn not_supported(field: &str, v: &Value, allowed: &[Value]) -> FieldCause {
    // Non-string enum values are shown as their JSON, quoted like the strings.
    let list: Vec<String> = allowed
        .iter()
        .map(|a| quote(&a.as_str().map(str::to_string).unwrap_or_else(|| a.to_string())))
        .collect();
    let msg = format!(
        "Unsupported value: {}: supported values: {}",
        render(v),
        list.join(", ")
    );
    cause("FieldValueNotSupported", field, msg)
}

fn too_long(field: &str, max: usize) -> FieldCause {
    let unit = if max == 1 { "byte" } else { "bytes" };
    cause(
        "FieldValueTooLong",
        field,
        format!("Too long: may not be more than {max} {unit}"),
    )
}

fn too_many(field: &str, actual: usize, max: usize) -> FieldCause {
    let unit = if max == 1 { "item" } else { "items" };
    cause(
        "FieldValueTooMany",
        field,
        format!("Too many: {actual}: must have at most {max} {unit}"),
    )
}

fn duplicate(field: &str, v: &Value) -> FieldCause {
    cause("FieldValueDuplicate", field, format!("Duplicate value: {}", render(v)))
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Every violation of `schema` by `obj`, with dotted field paths like
/// `spec.strategy.canary.steps[0].setWeight` and the server's reasons and messages. Root `metadata` is
/// not checked here: the server validates object metadata for every kind (see [`validate_object_name`]).
/// Unknown fields are not errors either: they are [`prune`]d before validation.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldCause> {
    errors_at(schema, obj, "")
}

fn validate_node(s: &Value, v: &Value, path: &str, out: &mut Vec<FieldCause>) {
    if v.is_null() {
        check_null(s, path, out);
        return;
    }
    if let Some(expected) = declared_type(s)
        && !type_accepts(expected, v)
    {
        // A value of the wrong type gets no further checks, as with the server's validator.
        out.push(type_invalid(path, type_name(v), expected));
        return;
    }
    check_enum(s, v, path, out);
    match v {
        Value::Number(n) => check_number(s, v, n, path, out),
        Value::String(text) => check_string(s, v, text, path, out),
        Value::Array(items) => check_array(s, items, path, out),
        Value::Object(map) => check_object(s, map, path, out),
        _ => {}
    }
    check_combinators(s, v, path, out);
}

fn check_null(s: &Value, path: &str, out: &mut Vec<FieldCause>) {
    if flag(s, "nullable") {
        return;
    }
    if let Some(expected) = declared_type(s) {
        out.push(type_invalid(path, "null", expected));
    }
}

/// Whole-valued floats (`1.0`) count as integers, and integers as numbers, like the server's validator.
fn is_integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn type_accepts(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => is_integral(v),
        "integer,string" => is_integral(v) || v.is_string(),
        _ => true,
    }
}

fn check_enum(s: &Value, v: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let Some(allowed) = s.get("enum").and_then(Value::as_array) else {
        return;
    };
    if !allowed.iter().any(|a| json_equal(a, v)) {
        out.push(not_supported(path, v, allowed));
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| json_equal(p, q)))
        }
        _ => a == b,
    }
}

fn check_number(s: &Value, v: &Value, n: &Number, path: &str, out: &mut Vec<FieldCause>) {
    let x = n.as_f64().unwrap_or(0.0);
    if let Some(max) = number(s, "maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        if (exclusive && x >= max) || x > max {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(out_of_bounds(path, v, &format!("should be {op} {}", go_float(max))));
        }
    }
    if let Some(min) = number(s, "minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        if (exclusive && x <= min) || x < min {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(out_of_bounds(path, v, &format!("should be {op} {}", go_float(min))));
        }
    }
    if let Some(factor) = number(s, "multipleOf")
        && factor > 0.0
        && (x / factor).fract() != 0.0
    {
        out.push(out_of_bounds(
            path,
            v,
            &format!("should be a multiple of {}", go_float(factor)),
        ));
    }
    check_integer_format(s, v, n, path, out);
}

/// `int32` / `int64` formats bound integer values. (The real validator does not range-check these; the
/// simulator does, so a controller writing an out-of-range value learns about it in tests.)
fn check_integer_format(s: &Value, v: &Value, n: &Number, path: &str, out: &mut Vec<FieldCause>) {
    let x = n.as_f64().unwrap_or_default();
    let fits = match s.get("format").and_then(Value::as_str) {
        Some("int32") => x >= i32::MIN as f64 && x <= i32::MAX as f64,
        // A u64 that is no i64 is out of range; floats compare approximately, which is fine at 2^63.
        Some("int64") => n.is_i64() || (!n.is_u64() && x.abs() < i64::MAX as f64),
        _ => true,
    };
    if !fits {
        let format = s["format"].as_str().unwrap_or_default();
        out.push(out_of_bounds(path, v, &format!("should be in the {format} range")));
    }
}

fn check_string(s: &Value, v: &Value, text: &str, path: &str, out: &mut Vec<FieldCause>) {
    // The validator counts characters, though the server's message says bytes.
    let chars = text.chars().count();
    if let Some(max) = count(s, "maxLength")
        && chars > max
    {
        out.push(too_long(path, max));
    }
    if let Some(min) = count(s, "minLength")
        && chars < min
    {
        out.push(out_of_bounds(path, v, &format!("should be at least {min} chars long")));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && !matches_pattern(pattern, text)
    {
        let msg = format!(
            "Invalid value: {}: {path} in body should match '{pattern}'",
            quote(text)
        );
        out.push(cause("FieldValueInvalid", path, msg));
    }
    if let Some(format) = s.get("format").and_then(Value::as_str)
        && !string_format_ok(format, text)
    {
        let msg = format!(
            "Invalid value: {}: {path} in body must be of type {format}: {}",
            quote(text),
            quote(text)
        );
        out.push(cause("FieldValueTypeInvalid", path, msg));
    }
}

/// Formats the simulator understands; any other format is accepted, as the server does for unknown ones.
/// Whether `text` matches a schema `pattern` (unanchored, as the API server's matcher). Patterns come
/// from installed CRDs, not from objects; compiled ones are cached. A pattern that does not compile is
/// a broken CRD, which the API server refuses at install time: here it accepts every value.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    static COMPILED: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let mut cache = COMPILED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let regex = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    regex.as_ref().is_none_or(|r| r.is_match(text))
}

fn string_format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        _ => true,
    }
}

fn check_array(s: &Value, items: &[Value], path: &str, out: &mut Vec<FieldCause>) {
    if let Some(max) = count(s, "maxItems")
        && items.len() > max
    {
        out.push(too_many(path, items.len(), max));
    }
    if let Some(min) = count(s, "minItems")
        && items.len() < min
    {
        let detail = format!("{path} in body should have at least {min} items");
        out.push(invalid(path, &items.len().to_string(), &detail));
    }
    check_list_uniqueness(s, items, path, out);
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate_node(item_schema, item, &index_path(path, i), out);
        }
    }
}

/// Sets must not repeat a value, and map lists must not repeat a key.
fn check_list_uniqueness(s: &Value, items: &[Value], path: &str, out: &mut Vec<FieldCause>) {
    let identity: Box<dyn Fn(&Value) -> Value> = match list_type_of(s) {
        ListType::Set => Box::new(Value::clone),
        ListType::Map(keys) => Box::new(move |item| map_key(item, &keys)),
        ListType::Atomic if flag(s, "uniqueItems") => Box::new(Value::clone),
        ListType::Atomic => return,
    };
    let ids: Vec<Value> = items.iter().map(identity).collect();
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].iter().any(|earlier| json_equal(earlier, id)) {
            out.push(duplicate(&index_path(path, i), id));
        }
    }
}

/// The key fields of a map-list item, as the object the server shows in duplicate errors.
fn map_key(item: &Value, keys: &[String]) -> Value {
    let fields: Map<String, Value> = keys
        .iter()
        .map(|k| (k.clone(), item.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    Value::Object(fields)
}

fn check_object(s: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<FieldCause>) {
    check_property_count(s, map, path, out);
    if let Some(names) = s.get("required").and_then(Value::as_array) {
        for name in names.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                out.push(required(&child_path(path, name)));
            }
        }
    }
    let resource = path.is_empty() || is_embedded(s);
    if is_embedded(s) {
        check_embedded_resource(map, path, out);
    }
    for (key, value) in map {
        // Resource metadata follows ObjectMeta rules, never the schema.
        if resource && key == "metadata" {
            continue;
        }
        let field = child_path(path, key);
        match (property(s, key), additional(s)) {
            (Some(prop), _) | (None, Additional::Schema(prop)) => validate_node(prop, value, &field, out),
            (None, Additional::Forbidden) if !(resource && RESOURCE_FIELDS.contains(&key.as_str())) => {
                let msg = format!("Forbidden: {field} in body is a forbidden property");
                out.push(cause("FieldValueForbidden", &field, msg));
            }
            _ => {}
        }
    }
}

fn check_property_count(s: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<FieldCause>) {
    if let Some(max) = count(s, "maxProperties")
        && map.len() > max
    {
        out.push(too_many(path, map.len(), max));
    }
    if let Some(min) = count(s, "minProperties")
        && map.len() < min
    {
        let detail = format!("{path} in body should have at least {min} properties");
        out.push(invalid(path, &map.len().to_string(), &detail));
    }
}

/// An embedded resource (a Pod template, say) needs an apiVersion and kind, and a valid name if named.
fn check_embedded_resource(map: &Map<String, Value>, path: &str, out: &mut Vec<FieldCause>) {
    for key in ["apiVersion", "kind"] {
        let field = child_path(path, key);
        match map.get(key) {
            None => out.push(cause(
                "FieldValueRequired",
                &field,
                "Required value: must not be empty".into(),
            )),
            Some(Value::String(s)) if s.is_empty() => out.push(invalid(&field, "\"\"", "must not be empty")),
            Some(Value::String(s)) if key == "apiVersion" && s.matches('/').count() > 1 => out.push(invalid(
                &field,
                &quote(s),
                &format!("unexpected GroupVersion string: {s}"),
            )),
            Some(Value::String(_)) => {}
            Some(other) => out.push(invalid(&field, &render(other), "must be a string")),
        }
    }
    if let Some(name) = map.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str)
        && let Some(msg) = validate_object_name(name)
    {
        out.push(invalid(&child_path(path, "metadata.name"), &quote(name), &msg));
    }
}

/// allOf / anyOf / oneOf / not, which structural schemas allow as pure value validations.
fn check_combinators(s: &Value, v: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let branches = |key: &str| -> Vec<Vec<FieldCause>> {
        let schemas = s
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        schemas.iter().map(|sub| errors_at(sub, v, path)).collect()
    };
    for errors in branches("allOf") {
        out.extend(errors);
    }
    let any_of = branches("anyOf");
    if !any_of.is_empty() && any_of.iter().all(|e| !e.is_empty()) {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} must validate at least one schema (anyOf)"),
        ));
        out.extend(fewest(any_of));
    }
    let one_of = branches("oneOf");
    let passing = one_of.iter().filter(|e| e.is_empty()).count();
    if !one_of.is_empty() && passing != 1 {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} must validate one and only one schema (oneOf)"),
        ));
        if passing == 0 {
            out.extend(fewest(one_of));
        }
    }
    if let Some(not) = s.get("not")
        && errors_at(not, v, path).is_empty()
    {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} must not validate the schema (not)"),
        ));
    }
}

/// The violations of a sub-schema alone, to decide whether a combinator branch passes.
fn errors_at(s: &Value, v: &Value, path: &str) -> Vec<FieldCause> {
    let mut out = Vec::new();
    validate_node(s, v, path, &mut out);
    out
}

/// The failing branch that came closest, whose errors explain the failure best.
fn fewest(branches: Vec<Vec<FieldCause>>) -> Vec<FieldCause> {
    branches.into_iter().min_by_key(Vec::len).unwrap_or_default()
}

/// Object names must be DNS-1123 subdomains (every kind, custom or built-in). Returns the server's
/// message for an invalid name, to be reported as `metadata.name: Invalid value: "<name>": <message>`.
/// An empty name fails too; callers report a missing name as required before calling this.
pub fn validate_object_name(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let label_ok = |label: &str| {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        edge(label.chars().next())
            && edge(label.chars().last())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if name.split('.').all(label_ok) {
        return None;
    }
    Some(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must \
         start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// Defaulting

/// Applies `default`s: a field absent from an object that is present (or null where the schema does
/// not allow null) gets its default; then every field is walked, through array items and
/// additionalProperties, so defaults inside defaults apply too.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            fill_defaults(schema, map);
            for (key, value) in map.iter_mut() {
                if let Some(field) = field_schema(schema, key) {
                    apply_defaults(field, value);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items.iter_mut().for_each(|item| apply_defaults(item_schema, item));
            }
        }
        _ => {}
    }
}

fn fill_defaults(schema: &Value, map: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, prop) in props {
        let Some(default) = prop.get("default") else { continue };
        let missing = match map.get(key) {
            None => true,
            Some(Value::Null) => !flag(prop, "nullable"),
            Some(_) => false,
        };
        if missing {
            map.insert(key.clone(), default.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning

/// Structural pruning: removes every field the schema does not declare, except under
/// `x-kubernetes-preserve-unknown-fields: true` and the apiVersion/kind/metadata of the root and of
/// embedded resources. Returns the removed fields' dotted paths, sorted.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(Some(schema), obj, "", false, &mut removed);
    removed.sort();
    removed
}

/// `keep_unknown` carries preserve-unknown-fields from a list to its items (as the server does); an
/// object's declared fields are pruned by their own schemas regardless.
fn prune_node(s: Option<&Value>, x: &mut Value, path: &str, keep_unknown: bool, removed: &mut Vec<String>) {
    let Some(s) = s else {
        if !keep_unknown {
            prune_everything(x, path, removed);
        }
        return;
    };
    let keep = keep_unknown || flag(s, PRESERVE_UNKNOWN);
    match x {
        Value::Object(map) => prune_object(s, map, path, keep, removed),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_node(s.get("items"), item, &index_path(path, i), keep, removed);
            }
        }
        _ => {}
    }
}

fn prune_object(s: &Value, map: &mut Map<String, Value>, path: &str, keep: bool, removed: &mut Vec<String>) {
    let resource = path.is_empty() || is_embedded(s);
    let keep = keep || matches!(additional(s), Additional::Any);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if resource && RESOURCE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let field = child_path(path, &key);
        match field_schema(s, &key) {
            Some(field_s) => prune_node(Some(field_s), &mut map[&key], &field, false, removed),
            None if keep => {}
            None => {
                map.remove(&key);
                removed.push(field);
            }
        }
    }
}

/// Below a place with no schema at all, every object field goes.
fn prune_everything(x: &mut Value, path: &str, removed: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            removed.extend(map.keys().map(|k| child_path(path, k)));
            map.clear();
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_everything(item, &index_path(path, i), removed);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A Rollout-like schema exercising most keywords.
    fn rollout_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["strategy"],
                    "properties": {
                        "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
                        "mode": {"type": "string", "enum": ["Canary", "BlueGreen"]},
                        "name": {"type": "string", "minLength": 3, "maxLength": 5},
                        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1},
                        "paused": {"type": "boolean"},
                        "startAt": {"type": "string", "format": "date-time"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "note": {"type": "string", "nullable": true},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "maxItems": 3,
                                 "items": {"type": "string"}},
                        "labels": {"type": "object", "maxProperties": 2,
                                   "additionalProperties": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                        "strategy": strategy_schema(),
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        })
    }

    fn strategy_schema() -> Value {
        let step = json!({"type": "object", "properties": {
            "setWeight": {"type": "integer", "minimum": 0, "maximum": 100},
            "pause": {"type": "object", "properties": {"duration": {"type": "string", "default": "1m"}}}
        }});
        let analysis = json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}}
        }});
        json!({"type": "object", "properties": {"canary": {"type": "object", "properties": {
            "maxSurge": {"x-kubernetes-int-or-string": true, "default": "25%"},
            "steps": {"type": "array", "minItems": 1, "items": step},
            "analyses": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                         "items": analysis}
        }}}})
    }

    fn with_spec(spec: Value) -> Value {
        json!({"apiVersion": "sluice.dev/v1", "kind": "Rollout", "metadata": {"name": "r"}, "spec": spec})
    }

    fn causes(schema: &Value, obj: &Value) -> Vec<(&'static str, String, String)> {
        validate(schema, obj)
            .into_iter()
            .map(|c| (c.reason, c.field, c.message))
            .collect()
    }

    /// (name, spec, expected (reason, field, message) causes)
    type Case<'a> = (&'a str, Value, Vec<(&'a str, &'a str, &'a str)>);

    #[test]
    fn validation_reports_paths_reasons_and_messages() {
        let bad_name = format!(
            "Invalid value: \"Bad_Name\": {}",
            validate_object_name("Bad_Name").unwrap()
        );
        let cases: Vec<Case> = vec![
            (
                "valid",
                json!({"strategy": {"canary": {"steps": [{"setWeight": 20}]}}, "replicas": 3.0}),
                vec![],
            ),
            (
                "required",
                json!({}),
                vec![("FieldValueRequired", "spec.strategy", "Required value")],
            ),
            (
                "type",
                json!({"strategy": {}, "replicas": "three"}),
                vec![(
                    "FieldValueTypeInvalid",
                    "spec.replicas",
                    "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                )],
            ),
            (
                "fraction is not an integer",
                json!({"strategy": {}, "replicas": 1.5}),
                vec![(
                    "FieldValueTypeInvalid",
                    "spec.replicas",
                    "Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
                )],
            ),
            (
                "null not nullable",
                json!({"strategy": null, "note": null}),
                vec![(
                    "FieldValueTypeInvalid",
                    "spec.strategy",
                    "Invalid value: \"null\": spec.strategy in body must be of type object: \"null\"",
                )],
            ),
            (
                "enum",
                json!({"strategy": {}, "mode": "Rolling"}),
                vec![(
                    "FieldValueNotSupported",
                    "spec.mode",
                    "Unsupported value: \"Rolling\": supported values: \"Canary\", \"BlueGreen\"",
                )],
            ),
            (
                "maximum in nested array",
                json!({"strategy": {"canary": {"steps": [{"setWeight": 10}, {"setWeight": 150}]}}}),
                vec![(
                    "FieldValueInvalid",
                    "spec.strategy.canary.steps[1].setWeight",
                    "Invalid value: 150: spec.strategy.canary.steps[1].setWeight in body should be less than or equal \
                     to 100",
                )],
            ),
            (
                "minimum",
                json!({"strategy": {}, "replicas": -1}),
                vec![(
                    "FieldValueInvalid",
                    "spec.replicas",
                    "Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
                )],
            ),
            (
                "exclusive minimum",
                json!({"strategy": {}, "ratio": 0}),
                vec![(
                    "FieldValueInvalid",
                    "spec.ratio",
                    "Invalid value: 0: spec.ratio in body should be greater than 0",
                )],
            ),
            (
                "int32 range",
                json!({"strategy": {}, "replicas": 3_000_000_000u64}),
                vec![(
                    "FieldValueInvalid",
                    "spec.replicas",
                    "Invalid value: 3000000000: spec.replicas in body should be in the int32 range",
                )],
            ),
            (
                "string lengths",
                json!({"strategy": {}, "name": "ab"}),
                vec![(
                    "FieldValueInvalid",
                    "spec.name",
                    "Invalid value: \"ab\": spec.name in body should be at least 3 chars long",
                )],
            ),
            (
                "max length",
                json!({"strategy": {}, "name": "abcdef"}),
                vec![(
                    "FieldValueTooLong",
                    "spec.name",
                    "Too long: may not be more than 5 bytes",
                )],
            ),
            (
                "date-time",
                json!({"strategy": {}, "startAt": "yesterday"}),
                vec![(
                    "FieldValueTypeInvalid",
                    "spec.startAt",
                    "Invalid value: \"yesterday\": spec.startAt in body must be of type date-time: \"yesterday\"",
                )],
            ),
            (
                "date-time ok",
                json!({"strategy": {}, "startAt": "2024-01-02T03:04:05Z"}),
                vec![],
            ),
            ("int-or-string ok", json!({"strategy": {}, "port": "http"}), vec![]),
            (
                "int-or-string",
                json!({"strategy": {}, "port": true}),
                vec![(
                    "FieldValueTypeInvalid",
                    "spec.port",
                    "Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                )],
            ),
            (
                "set duplicates and max items",
                json!({"strategy": {}, "tags": ["a", "b", "a", "c"]}),
                vec![
                    (
                        "FieldValueTooMany",
                        "spec.tags",
                        "Too many: 4: must have at most 3 items",
                    ),
                    ("FieldValueDuplicate", "spec.tags[2]", "Duplicate value: \"a\""),
                ],
            ),
            (
                "map list duplicate keys",
                json!({"strategy": {"canary": {"analyses": [{"name": "x"}, {"name": "x", "args": []}]}}}),
                vec![(
                    "FieldValueDuplicate",
                    "spec.strategy.canary.analyses[1]",
                    "Duplicate value: {\"name\":\"x\"}",
                )],
            ),
            (
                "min items",
                json!({"strategy": {"canary": {"steps": []}}}),
                vec![(
                    "FieldValueInvalid",
                    "spec.strategy.canary.steps",
                    "Invalid value: 0: spec.strategy.canary.steps in body should have at least 1 items",
                )],
            ),
            (
                "additionalProperties schema and maxProperties",
                json!({"strategy": {}, "labels": {"a": "x", "b": 2, "c": "z"}}),
                vec![
                    (
                        "FieldValueTooMany",
                        "spec.labels",
                        "Too many: 3: must have at most 2 items",
                    ),
                    (
                        "FieldValueTypeInvalid",
                        "spec.labels.b",
                        "Invalid value: \"integer\": spec.labels.b in body must be of type string: \"integer\"",
                    ),
                ],
            ),
            (
                "preserved fields are free",
                json!({"strategy": {}, "extra": {"any": [1, {"x": null}]}}),
                vec![],
            ),
            (
                "embedded resource",
                json!({"strategy": {}, "template": {"kind": "", "metadata": {"name": "Bad_Name"}}}),
                vec![
                    (
                        "FieldValueRequired",
                        "spec.template.apiVersion",
                        "Required value: must not be empty",
                    ),
                    (
                        "FieldValueInvalid",
                        "spec.template.kind",
                        "Invalid value: \"\": must not be empty",
                    ),
                    ("FieldValueInvalid", "spec.template.metadata.name", &bad_name),
                ],
            ),
        ];
        let schema = rollout_schema();
        for (name, spec, expected) in cases {
            let expected: Vec<_> = expected
                .into_iter()
                .map(|(r, f, m)| (r, f.to_string(), m.to_string()))
                .collect();
            assert_eq!(causes(&schema, &with_spec(spec)), expected, "case {name}");
        }
    }

    #[test]
    fn root_metadata_is_not_checked_by_the_schema() {
        let schema = json!({"type": "object", "properties": {"metadata": {"type": "object",
            "properties": {"name": {"type": "integer"}}}}});
        assert!(validate(&schema, &json!({"metadata": {"name": "x"}})).is_empty());
    }

    #[test]
    fn combinators_are_value_validations() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]},
            "b": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
            "c": {"type": "string", "not": {"enum": ["forbidden"]}},
            "d": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 5}]},
        }});
        assert!(validate(&schema, &json!({"a": 11, "b": 20, "c": "ok", "d": 3})).is_empty());
        let fields: Vec<(String, String)> = validate(&schema, &json!({"a": 5, "b": 5, "c": "forbidden", "d": 9}))
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect();
        assert_eq!(
            fields,
            vec![
                (
                    "a".into(),
                    "Invalid value: \"\": a must validate at least one schema (anyOf)".into()
                ),
                (
                    "a".into(),
                    "Invalid value: 5: a in body should be greater than or equal to 10".into()
                ),
                (
                    "b".into(),
                    "Invalid value: \"\": b must validate one and only one schema (oneOf)".into()
                ),
                (
                    "c".into(),
                    "Invalid value: \"\": c must not validate the schema (not)".into()
                ),
                (
                    "d".into(),
                    "Invalid value: 9: d in body should be less than or equal to 5".into()
                ),
            ]
        );
    }

    #[test]
    fn patterns_are_checked_unanchored_as_written() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "wait": {"type": "string", "pattern": "^[0-9]+(s|m)$"},
            "word": {"type": "string", "pattern": "ab"},
            "broken": {"type": "string", "pattern": "("}}}}});
        let ok = json!({"spec": {"wait": "30s", "word": "xaby", "broken": "any"}});
        assert!(causes(&schema, &ok).is_empty());
        let bad = json!({"spec": {"wait": "30 s", "word": "ba"}});
        assert_eq!(
            causes(&schema, &bad),
            vec![
                (
                    "FieldValueInvalid",
                    "spec.wait".to_string(),
                    r#"Invalid value: "30 s": spec.wait in body should match '^[0-9]+(s|m)$'"#.to_string()
                ),
                (
                    "FieldValueInvalid",
                    "spec.word".to_string(),
                    r#"Invalid value: "ba": spec.word in body should match 'ab'"#.to_string()
                ),
            ]
        );
    }

    #[test]
    fn additional_properties_false_forbids_unknown_fields() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string"}}, "additionalProperties": false}}});
        let got = validate(&schema, &json!({"spec": {"a": "x", "b": 1}}));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].reason, got[0].field.as_str()),
            ("FieldValueForbidden", "spec.b")
        );
    }

    #[test]
    fn object_names_are_dns_subdomains() {
        for ok in ["a", "my-app", "app.v1", "0abc", &"a".repeat(253)] {
            assert_eq!(validate_object_name(ok), None, "{ok}");
        }
        for bad in ["", "My-App", "-a", "a-", "a..b", "a_b", ".a", "a."] {
            assert!(
                validate_object_name(bad)
                    .unwrap()
                    .starts_with("a lowercase RFC 1123 subdomain"),
                "{bad}"
            );
        }
        assert_eq!(
            validate_object_name(&"a".repeat(254)).unwrap(),
            "must be no more than 253 characters"
        );
    }

    #[test]
    fn defaults_fill_absent_fields_of_present_objects_in_nested_arrays() {
        let schema = rollout_schema();
        let mut obj = with_spec(json!({"strategy": {"canary": {"steps": [{"setWeight": 5}, {"pause": {}}]}}}));
        apply_defaults(&schema, &mut obj);
        assert_eq!(
            obj["spec"],
            json!({"strategy": {"canary": {"steps": [{"setWeight": 5}, {"pause": {"duration": "1m"}}],
                   "maxSurge": "25%"}}, "replicas": 1})
        );
        // Absent objects are not created, present values are kept.
        let mut obj = with_spec(json!({"replicas": 4}));
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj["spec"], json!({"replicas": 4}));
    }

    #[test]
    fn defaults_replace_null_unless_nullable_and_reach_additional_properties() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "default": "x"},
            "b": {"type": "string", "nullable": true, "default": "y"},
            "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "n": {"type": "integer", "default": 7}}}}
        }});
        let mut obj = json!({"a": null, "b": null, "m": {"k1": {}, "k2": {"n": 1}}});
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj, json!({"a": "x", "b": null, "m": {"k1": {"n": 7}, "k2": {"n": 1}}}));
    }

    #[test]
    fn defaults_inside_defaults_apply() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
            "properties": {"x": {"type": "integer", "default": 3}}}}});
        let mut obj = json!({});
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj, json!({"spec": {"x": 3}}));
    }

    #[test]
    fn pruning_removes_unknown_fields_and_reports_them() {
        let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
            (
                "nothing unknown",
                json!({"replicas": 1}),
                json!({"replicas": 1}),
                vec![],
            ),
            (
                "unknown nested and in arrays",
                json!({"bogus": 1, "strategy": {"canary": {"steps": [{"setWeight": 1, "x": 2}, {"y": {}}]}}}),
                json!({"strategy": {"canary": {"steps": [{"setWeight": 1}, {}]}}}),
                vec![
                    "spec.bogus",
                    "spec.strategy.canary.steps[0].x",
                    "spec.strategy.canary.steps[1].y",
                ],
            ),
            (
                "preserve-unknown-fields keeps everything",
                json!({"extra": {"a": {"b": [1, {"c": 2}]}}}),
                json!({"extra": {"a": {"b": [1, {"c": 2}]}}}),
                vec![],
            ),
            (
                "additionalProperties schema keeps keys",
                json!({"labels": {"a": "b"}}),
                json!({"labels": {"a": "b"}}),
                vec![],
            ),
            (
                "embedded resource keeps apiVersion kind metadata",
                json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "spec": {}}}),
                json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "spec": {}}}),
                vec![],
            ),
        ];
        let schema = rollout_schema();
        for (name, spec, want, removed) in cases {
            let mut obj = with_spec(spec);
            assert_eq!(prune(&schema, &mut obj), removed, "case {name}");
            assert_eq!(obj, with_spec(want), "case {name}");
        }
    }

    #[test]
    fn pruning_keeps_root_resource_fields_even_when_undeclared() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let mut obj = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"x": 1},
                             "status": {}});
        assert_eq!(prune(&schema, &mut obj), vec!["spec.x", "status"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {}})
        );
    }

    #[test]
    fn pruning_under_preserve_still_prunes_declared_fields() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}}}});
        let mut obj = json!({"spec": {"free": {"z": 1}, "known": {"a": "x", "b": "y"}}});
        assert_eq!(prune(&schema, &mut obj), vec!["spec.known.b"]);
        assert_eq!(obj, json!({"spec": {"free": {"z": 1}, "known": {"a": "x"}}}));
    }
}
