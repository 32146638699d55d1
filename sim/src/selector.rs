//! Label and field selectors: the `labelSelector` / `fieldSelector` query parameters and
//! `metav1.LabelSelector` objects, parsed, validated and matched with the API server's rules and errors.
// ApiError is only built on failure paths; boxing it would buy nothing.
#![allow(clippy::result_large_err)]
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::schema::validate_object_name;
use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
    /// Sorted and without duplicates (a set, as in the server).
    values: Vec<String>,
}

impl Requirement {
    /// Validates like the server's `labels.NewRequirement`, collecting every problem.
    fn new(key: &str, op: Operator, values: BTreeSet<String>) -> Result<Self, String> {
        let values: Vec<String> = values.into_iter().collect();
        let mut errors = Vec::new();
        if let Some(msg) = qualified_name_error(key) {
            errors.push(format!("key: Invalid value: {key:?}: {msg}"));
        }
        let count_error = match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(msg) = count_error {
            errors.push(format!("values: Invalid value: {}: {msg}", Value::from(values.clone())));
        }
        for (i, value) in values.iter().enumerate() {
            if matches!(op, Operator::GreaterThan | Operator::LessThan) && value.parse::<i64>().is_err() {
                errors.push(format!(
                    "values[{i}]: Invalid value: {value:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                ));
            }
            if let Some(msg) = label_value_error(value) {
                errors.push(format!("values[{i}]: Invalid value: {value:?}: {msg}"));
            }
        }
        match errors.len() {
            0 => Ok(Requirement {
                key: key.to_string(),
                op,
                values,
            }),
            1 => Err(errors.remove(0)),
            _ => Err(format!("[{}]", errors.join(", "))),
        }
    }

    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).map(label_text);
        let listed = |v: &String| self.values.contains(v);
        match self.op {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.as_ref().is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.as_ref().is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let have = value.and_then(|v| v.parse::<i64>().ok());
                let want = self.values.first().and_then(|v| v.parse::<i64>().ok());
                match (have, want) {
                    (Some(have), Some(want)) if self.op == Operator::GreaterThan => have > want,
                    (Some(have), Some(want)) => have < want,
                    _ => false,
                }
            }
        }
    }
}

/// Label values are strings; anything else is compared by its JSON text.
fn label_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// The canonical form the server prints (`app=web,tier in (a,b),!legacy`).
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.op {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={values}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={values}", self.key),
            Operator::NotEquals => write!(f, "{}!={values}", self.key),
            Operator::GreaterThan => write!(f, "{}>{values}", self.key),
            Operator::LessThan => write!(f, "{}<{values}", self.key),
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Name rules (apimachinery's IsQualifiedName / IsValidLabelValue)

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
     with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
     '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', \
     regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the shape of label names and values.
fn is_label_token(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Label keys: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => {
            return Some(format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')"
            ));
        }
    };
    let mut errors = Vec::new();
    match prefix {
        Some("") => errors.push("prefix part must be non-empty".to_string()),
        Some(p) => {
            if let Some(msg) = validate_object_name(p) {
                errors.push(format!("prefix part {msg}"));
            }
        }
        None => {}
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".into());
    }
    if !is_label_token(name) {
        errors.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn label_value_error(value: &str) -> Option<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters");
    }
    if !value.is_empty() && !is_label_token(value) {
        errors.push(LABEL_VALUE_MSG);
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

// ---------------------------------------------------------------------------------------------
// Label selector query strings: a lexer and parser mirroring apimachinery's, for its error messages

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Any run of non-special characters; `in` / `notin` are keywords only where an operator is expected.
    Ident(String),
    Bang,
    NotEquals,
    DoubleEquals,
    Equals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::Bang => "!",
            Token::NotEquals => "!=",
            Token::DoubleEquals => "==",
            Token::Equals => "=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = input.trim_start();
    while let Some(c) = rest.chars().next() {
        let (token, len) = if is_special(c) {
            special_token(rest)
        } else {
            let len = rest
                .find(|c: char| c.is_whitespace() || is_special(c))
                .unwrap_or(rest.len());
            (Token::Ident(rest[..len].to_string()), len)
        };
        tokens.push(token);
        rest = rest[len..].trim_start();
    }
    tokens.push(Token::End);
    tokens
}

/// The longest operator at the start of `s` (which starts with a special character).
fn special_token(s: &str) -> (Token, usize) {
    if s.starts_with("!=") {
        return (Token::NotEquals, 2);
    }
    if s.starts_with("==") {
        return (Token::DoubleEquals, 2);
    }
    let token = match s.as_bytes()[0] {
        b'!' => Token::Bang,
        b'=' => Token::Equals,
        b'>' => Token::Greater,
        b'<' => Token::Less,
        b'(' => Token::Open,
        b')' => Token::Close,
        _ => Token::Comma,
    };
    (token, 1)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.pos += 1;
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Ident(_) | Token::Bang => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    match self.next() {
                        Token::End => return Ok(requirements),
                        Token::Comma if matches!(self.peek(), Token::Ident(_) | Token::Bang) => {}
                        Token::Comma => {
                            return Err(format!(
                                "found '{}', expected: identifier after ','",
                                self.peek().literal()
                            ));
                        }
                        other => return Err(format!("found '{}', expected: ',' or 'end of string'", other.literal())),
                    }
                }
                Token::End => return Ok(requirements),
                other => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, existence) = self.key_and_existence()?;
        if let Some(op) = existence {
            return Requirement::new(&key, op, BTreeSet::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    /// The key, and the operator when the key stands alone (`a`, `!a`).
    fn key_and_existence(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut token = self.next();
        let negated = token == Token::Bang;
        if negated {
            token = self.next();
        }
        let Token::Ident(key) = token else {
            return Err(format!("found '{}', expected: identifier", token.literal()));
        };
        if let Some(msg) = qualified_name_error(&key) {
            return Err(format!("key: Invalid value: {key:?}: {msg}"));
        }
        let alone = matches!(self.peek(), Token::End | Token::Comma);
        let op = match (negated, alone) {
            (true, _) => Some(Operator::DoesNotExist),
            (false, true) => Some(Operator::Exists),
            (false, false) => None,
        };
        Ok((key, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        match self.next() {
            Token::Equals => Ok(Operator::Equals),
            Token::DoubleEquals => Ok(Operator::DoubleEquals),
            Token::NotEquals => Ok(Operator::NotEquals),
            Token::Greater => Ok(Operator::GreaterThan),
            Token::Less => Ok(Operator::LessThan),
            Token::Ident(word) if word == "in" => Ok(Operator::In),
            Token::Ident(word) if word == "notin" => Ok(Operator::NotIn),
            other => Err(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                other.literal()
            )),
        }
    }

    /// `(a,b)`; empty items count as the empty value, as in the server (`(a,)`).
    fn value_set(&mut self) -> Result<BTreeSet<String>, String> {
        let open = self.next();
        if open != Token::Open {
            return Err(format!("found '{}', expected: '('", open.literal()));
        }
        let mut values = BTreeSet::new();
        if self.peek() == &Token::Close {
            self.next();
            return Ok(values);
        }
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Ident(v) if expect_value => {
                    values.insert(v);
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    expect_value = true;
                }
                Token::Close => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    return Ok(values);
                }
                other if expect_value => {
                    return Err(format!("found '{}', expected: ',', or identifier", other.literal()));
                }
                other => return Err(format!("found '{}', expected: ',' or ')'", other.literal())),
            }
        }
    }

    /// The one value after `=`, `!=`, `>`, `<`; empty when the term ends there (`a=`).
    fn exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.next() {
            Token::Ident(v) => Ok(BTreeSet::from([v])),
            other => Err(format!("found '{}', expected: identifier", other.literal())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LabelSelector

/// A label selector: every requirement must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A null `metav1.LabelSelector` selects nothing (an empty one selects everything).
    nothing: bool,
}

impl LabelSelector {
    /// Query-string form: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`,
    /// comma-separated; empty selects everything. Bad syntax or names → 400 naming the problem.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut parser = Parser { tokens: lex(s), pos: 0 };
        let requirements = parser.parse().map_err(ApiError::bad_request)?;
        Ok(Self::from_requirements(requirements))
    }

    /// A `metav1.LabelSelector` (`{matchLabels, matchExpressions: [{key, operator, values}]}`). Null
    /// selects nothing, `{}` everything; an invalid one → 400 with the reason.
    pub fn from_json(v: &Value) -> ApiResult<Self> {
        if v.is_null() {
            return Ok(Self::nothing());
        }
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request("label selector must be an object"))?;
        let mut requirements = Vec::new();
        let match_labels = match obj.get("matchLabels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err(ApiError::bad_request("matchLabels: must be an object")),
        };
        for (key, value) in match_labels.into_iter().flatten() {
            let value = value
                .as_str()
                .ok_or_else(|| ApiError::bad_request(format!("matchLabels.{key}: must be a string")))?;
            let r = Requirement::new(key, Operator::Equals, BTreeSet::from([value.to_string()]));
            requirements.push(r.map_err(ApiError::bad_request)?);
        }
        let expressions = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(_) => return Err(ApiError::bad_request("matchExpressions: must be a list")),
        };
        for expr in expressions {
            requirements.push(expression(expr)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    pub fn everything() -> Self {
        Self::default()
    }

    pub fn nothing() -> Self {
        LabelSelector {
            requirements: vec![],
            nothing: true,
        }
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// `labels` as found in `metadata.labels`.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        // Sorted by key like the server, so the printed form is canonical.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }
}

/// One `matchExpressions` item.
fn expression(expr: &Value) -> ApiResult<Requirement> {
    let text = |field: &str| expr.get(field).and_then(Value::as_str).unwrap_or_default();
    let op = match text("operator") {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(ApiError::bad_request(format!(
                "{other:?} is not a valid label selector operator"
            )));
        }
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("matchExpressions.values: must be a list of strings"))?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "matchExpressions.values: must be a list of strings",
            ));
        }
    };
    Requirement::new(text("key"), op, values).map_err(ApiError::bad_request)
}

/// The canonical query-string form (`status.selector` of the scale subresource, table Selector columns).
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self.requirements.iter().map(Requirement::to_string).collect();
        f.write_str(&terms.join(","))
    }
}

// ---------------------------------------------------------------------------------------------
// FieldSelector

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    /// Dotted path into the object (`metadata.name`, `status.phase`).
    field: String,
    value: String,
    negated: bool,
}

/// A field selector: every `field=value` / `field!=value` term must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// `metadata.name=x`, `metadata.name==x`, `metadata.namespace!=y`, comma-separated (values may escape
    /// `\,` `\=` `\\`); any dotted field path is allowed. Bad syntax → 400.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut terms = Vec::new();
        for part in split_unescaped_commas(s).into_iter().filter(|p| !p.is_empty()) {
            let cannot = || ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'"));
            let (field, negated, raw) = split_term(part).ok_or_else(cannot)?;
            if field.is_empty() {
                return Err(cannot());
            }
            let value = unescape(raw).map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
            terms.push(FieldTerm {
                field: field.to_string(),
                value,
                negated,
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (field_text(obj, &t.field) == t.value) != t.negated)
    }

    /// The name pinned by `metadata.name=x` (kubectl's watch on one object), so the store can skip a scan.
    pub fn pinned_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == "metadata.name" && !t.negated)
            .map(|t| t.value.as_str())
    }
}

/// Splits on commas not escaped by a backslash.
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `(field, negated, raw value)` at the first operator, trying `!=`, `==`, `=` at each position.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    (0..term.len()).filter(|i| term.is_char_boundary(*i)).find_map(|i| {
        let rest = &term[i..];
        let field = term[..i].trim();
        [("!=", true), ("==", false), ("=", false)]
            .into_iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, negated)| (field, negated, &rest[op.len()..]))
    })
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("invalid escape sequence: \\".into()),
            },
            ',' | '=' => return Err(format!("unescaped character in value: {c}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The value at a dotted path as selector text: strings as is, other scalars as JSON, missing as "".
fn field_text(obj: &Value, path: &str) -> String {
    match path.split('.').try_fold(obj, |v, key| v.get(key)) {
        None | Some(Value::Null) => String::new(),
        Some(v) => label_text(v),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_query_strings_match() {
        let cases: Vec<(&str, Value, bool)> = vec![
            ("", json!({}), true),
            ("app=web", json!({"app": "web"}), true),
            ("app==web", json!({"app": "web"}), true),
            ("app=web", json!({"app": "db"}), false),
            ("app=web", json!({}), false),
            ("app!=web", json!({}), true),
            ("app!=web", json!({"app": "web"}), false),
            ("app in (web, db)", json!({"app": "db"}), true),
            ("app in (web,db)", json!({"app": "x"}), false),
            ("app notin (web)", json!({"app": "db"}), true),
            ("app notin (web)", json!({}), true),
            ("app notin (web)", json!({"app": "web"}), false),
            ("app", json!({"app": ""}), true),
            ("app", json!({}), false),
            ("!app", json!({}), true),
            ("!app", json!({"app": "x"}), false),
            ("app=web,tier", json!({"app": "web", "tier": "fe"}), true),
            ("app=web, !tier", json!({"app": "web", "tier": "fe"}), false),
            ("rev>2", json!({"rev": "3"}), true),
            ("rev<2", json!({"rev": "3"}), false),
            ("rev>2", json!({"rev": "x"}), false),
            ("app=", json!({"app": ""}), true),
            ("app in (a,)", json!({"app": ""}), true),
            ("in=x", json!({"in": "x"}), true),
            ("example.com/team=a", json!({"example.com/team": "a"}), true),
        ];
        for (selector, labels_json, want) in cases {
            let s = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(s.matches(&labels(labels_json)), want, "{selector}");
        }
    }

    #[test]
    fn label_selector_syntax_errors_are_bad_requests() {
        let cases: Vec<(&str, &str)> = vec![
            ("app in", "unable to parse requirement: found '', expected: '('"),
            (
                "app in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            ("app in ()", "for 'in', 'notin' operators, values set can't be empty"),
            ("app=web,", "found '', expected: identifier after ','"),
            (
                "app web",
                "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("=web", "found '=', expected: !, identifier, or 'end of string'"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            (
                "app=(x)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            ("Bad Key=x", "found 'Key', expected: in, notin"),
            (
                "-app=x",
                "key: Invalid value: \"-app\": name part must consist of alphanumeric characters",
            ),
            (
                "app=-x",
                "values[0]: Invalid value: \"-x\": a valid label must be an empty string",
            ),
            ("rev>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
            ("a/b/c=x", "a qualified name must consist of"),
            ("Example.com/a=x", "prefix part a lowercase RFC 1123 subdomain"),
        ];
        for (selector, want) in cases {
            let err = LabelSelector::parse(selector).expect_err(selector);
            assert_eq!((err.code, err.reason), (400, "BadRequest"), "{selector}");
            assert!(err.message.contains(want), "{selector}: {}", err.message);
        }
    }

    #[test]
    fn label_selectors_from_json() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ]
        }))
        .unwrap();
        assert!(s.matches(&labels(json!({"app": "web", "tier": "be"}))));
        assert!(!s.matches(&labels(json!({"app": "web", "tier": "be", "legacy": "y"}))));
        assert!(!s.matches(&labels(json!({"app": "web"}))));
        assert_eq!(s.to_string(), "app=web,!legacy,tier in (be,fe)");

        assert!(LabelSelector::from_json(&json!({})).unwrap().is_empty());
        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!nothing.is_empty() && !nothing.matches(&Map::new()));
    }

    #[test]
    fn invalid_json_label_selectors_are_bad_requests() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "\"Equals\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist",
            ),
            (json!({"matchLabels": {"app": 1}}), "matchLabels.app: must be a string"),
            (json!({"matchLabels": {"a b": "x"}}), "key: Invalid value: \"a b\""),
            (json!({"matchLabels": []}), "matchLabels: must be an object"),
        ];
        for (selector, want) in cases {
            let err = LabelSelector::from_json(&selector).expect_err(want);
            assert_eq!(err.code, 400);
            assert!(err.message.contains(want), "{want}: {}", err.message);
        }
    }

    #[test]
    fn label_selectors_print_canonically() {
        let cases = [
            ("b=2,a in (y, x),!c", "a in (x,y),b=2,!c"),
            ("x notin (b,a,a)", "x notin (a,b)"),
            ("a==1,b!=2,c>3,d", "a==1,b!=2,c>3,d"),
        ];
        for (input, want) in cases {
            assert_eq!(LabelSelector::parse(input).unwrap().to_string(), want);
        }
    }

    #[test]
    fn field_selectors_match_dotted_paths() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "prod"}, "spec": {"replicas": 3},
                         "status": {"phase": "Running"}});
        let cases = [
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.namespace!=prod", false),
            ("metadata.namespace!=dev,status.phase=Running", true),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("spec.replicas=3", true),
        ];
        for (selector, want) in cases {
            assert_eq!(
                FieldSelector::parse(selector).unwrap().matches(&pod),
                want,
                "{selector}"
            );
        }
    }

    #[test]
    fn field_selector_escapes_and_errors() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert!(s.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
        let cases = [
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            ("=x", "can't understand '=x'"),
            (r"a=b\x", "invalid field selector: invalid escape sequence: \\x"),
            ("a=b=c", "invalid field selector: unescaped character in value: ="),
        ];
        for (selector, want) in cases {
            let err = FieldSelector::parse(selector).expect_err(selector);
            assert_eq!(err.code, 400);
            assert!(err.message.contains(want), "{selector}: {}", err.message);
        }
    }

    #[test]
    fn pinned_name_only_for_name_equality() {
        let pinned = |s: &str| FieldSelector::parse(s).unwrap().pinned_name().map(str::to_string);
        assert_eq!(pinned("metadata.name=web"), Some("web".into()));
        assert_eq!(pinned("metadata.namespace=x,metadata.name==web"), Some("web".into()));
        assert_eq!(pinned("metadata.name!=web"), None);
        assert_eq!(pinned("status.phase=Running"), None);
    }
}
