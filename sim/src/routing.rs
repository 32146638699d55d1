//! Request matching and mirroring of the simulator's data plane: which rule of a routing object a
//! request takes (by the headers it carries), and which copies of it are mirrored where.
//!
//! Simulated requests have no path: rules that match on paths are all reachable by plain traffic and
//! share it evenly (as varied real paths would). Header conditions are what tells rules apart: a
//! request carrying headers takes the rule whose header conditions it satisfies — the most conditions
//! wins (Gateway API precedence), else the first such rule (Istio's order) — and a request without
//! them never takes a rule that requires them.
use std::collections::BTreeMap;

use serde_json::Value;

use crate::gateway::BackendRef;

/// Source annotation: headers a share of its requests carry, `Name: value` pairs separated by `;`.
pub const REQUEST_HEADERS_ANNOTATION: &str = "sim.sluice.dev/request-headers";
/// Source annotation: the share (0–1) of its requests carrying those headers (default 1).
pub const REQUEST_HEADERS_FRACTION_ANNOTATION: &str = "sim.sluice.dev/request-headers-fraction";
/// At most this many headers per source, and this long a header value or regex: the annotation is
/// user input, and a route's regex is compiled with a size cap.
const MAX_HEADERS: usize = 16;
const MAX_TEXT: usize = 256;
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// The headers of a request, names lowercased.
pub type Headers = BTreeMap<String, String>;

/// Parses `X-Canary: yes; X-Tenant: internal` (names lowercased). Malformed entries are skipped.
pub fn parse_headers(text: &str) -> Headers {
    text.split([';', '\n'])
        .filter_map(|pair| {
            let (name, value) = pair.split_once(':')?;
            let name = name.trim().to_ascii_lowercase();
            let valid = !name.is_empty() && name.len() <= MAX_TEXT && value.len() <= MAX_TEXT;
            valid.then(|| (name, value.trim().to_string()))
        })
        .take(MAX_HEADERS)
        .collect()
}

/// How a header value is compared.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    Prefix(String),
    /// Matched anywhere unless anchored; None: the pattern did not compile, matching nothing.
    Regex(String, Option<regex::Regex>),
}

impl PartialEq for ValueMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ValueMatch::Exact(a), ValueMatch::Exact(b)) | (ValueMatch::Prefix(a), ValueMatch::Prefix(b)) => a == b,
            (ValueMatch::Regex(a, _), ValueMatch::Regex(b, _)) => a == b,
            _ => false,
        }
    }
}

impl ValueMatch {
    /// A regex, anchored when `full` (Gateway API and NGINX match the whole value; Istio's RE2 too).
    pub fn regex(pattern: &str, full: bool) -> Self {
        let anchored = if full {
            format!("^(?:{pattern})$")
        } else {
            pattern.to_string()
        };
        let compiled = (pattern.len() <= MAX_TEXT)
            .then(|| {
                regex::RegexBuilder::new(&anchored)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .ok()
            })
            .flatten();
        ValueMatch::Regex(pattern.to_string(), compiled)
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(expected) => value == expected,
            ValueMatch::Prefix(prefix) => value.starts_with(prefix.as_str()),
            ValueMatch::Regex(_, compiled) => compiled.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

/// One header condition.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    /// Lowercased.
    pub name: String,
    pub value: ValueMatch,
}

/// A copy of each request (or `percent` of them) sent to `backend`, its answer discarded.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub backend: BackendRef,
    pub percent: f64,
}

/// One rule of a routing object.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub backends: Vec<BackendRef>,
    /// Alternatives (any may match), each a set of header conditions that must all hold. An
    /// alternative with no conditions matches every request.
    pub matches: Vec<Vec<HeaderMatch>>,
    pub mirrors: Vec<Mirror>,
}

impl Rule {
    /// A rule every request may take.
    pub fn plain(backends: Vec<BackendRef>) -> Self {
        Rule {
            backends,
            matches: Vec::new(),
            mirrors: Vec::new(),
        }
    }

    /// Taken by plain traffic: no alternatives, or one without header conditions.
    pub fn is_plain(&self) -> bool {
        self.matches.is_empty() || self.matches.iter().any(Vec::is_empty)
    }

    /// The most header conditions of an alternative that `headers` satisfy (None: none does, or
    /// only alternatives without conditions do).
    fn header_specificity(&self, headers: &Headers) -> Option<usize> {
        self.matches
            .iter()
            .filter(|alternative| !alternative.is_empty())
            .filter(|alternative| {
                alternative
                    .iter()
                    .all(|m| headers.get(&m.name).is_some_and(|v| m.value.matches(v)))
            })
            .map(Vec::len)
            .max()
    }
}

/// How rules of equal header specificity are chosen between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// Gateway API: the most header conditions wins, ties by rule order.
    MostSpecific,
    /// Istio: the first rule in order that matches.
    FirstMatch,
}

/// The rule a request carrying `headers` takes by its headers, or None when it takes the plain split.
pub fn header_rule(rules: &[Rule], headers: &Headers, precedence: Precedence) -> Option<usize> {
    if headers.is_empty() {
        return None;
    }
    let matching = rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| rule.header_specificity(headers).map(|n| (i, n)));
    match precedence {
        Precedence::FirstMatch => matching.map(|(i, _)| i).next(),
        // max_by_key keeps the last of equals: reverse the index so the first wins.
        Precedence::MostSpecific => matching
            .max_by_key(|(i, n)| (*n, std::cmp::Reverse(*i)))
            .map(|(i, _)| i),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// Gateway API: an HTTPRoute match's header conditions (`type` Exact by default, or
/// RegularExpression).
pub fn gateway_header_matches(route_match: &Value) -> Vec<HeaderMatch> {
    let headers = route_match.get("headers").and_then(Value::as_array);
    headers
        .into_iter()
        .flatten()
        .filter_map(|h| {
            let name = text(h, "name")?.to_ascii_lowercase();
            let value = text(h, "value").unwrap_or_default();
            let value = match text(h, "type") {
                Some("RegularExpression") => ValueMatch::regex(value, true),
                _ => ValueMatch::Exact(value.to_string()),
            };
            Some(HeaderMatch { name, value })
        })
        .collect()
}

/// Gateway API: the RequestMirror filters of a rule. The share is `percent`, or `fraction`
/// (numerator/denominator, denominator default 100), else every request.
pub fn gateway_mirrors(rule: &Value, route_namespace: &str) -> Vec<Mirror> {
    let filters = rule.get("filters").and_then(Value::as_array);
    filters
        .into_iter()
        .flatten()
        .filter(|f| text(f, "type") == Some("RequestMirror"))
        .filter_map(|f| {
            let mirror = f.get("requestMirror")?;
            let backend = mirror.get("backendRef")?;
            let namespace = text(backend, "namespace").unwrap_or(route_namespace);
            let mut target = BackendRef::service(namespace, text(backend, "name").unwrap_or_default());
            target.is_service = text(backend, "group").unwrap_or_default().is_empty()
                && text(backend, "kind").unwrap_or("Service") == "Service";
            let percent = match (mirror.get("percent"), mirror.get("fraction")) {
                (Some(p), _) => p.as_f64().unwrap_or(100.0),
                (None, Some(fraction)) => {
                    let numerator = fraction.get("numerator").and_then(Value::as_f64).unwrap_or(0.0);
                    let denominator = fraction.get("denominator").and_then(Value::as_f64).unwrap_or(100.0);
                    if denominator > 0.0 {
                        100.0 * numerator / denominator
                    } else {
                        0.0
                    }
                }
                (None, None) => 100.0,
            };
            Some(Mirror {
                backend: target,
                percent: percent.clamp(0.0, 100.0),
            })
        })
        .collect()
}

/// Istio: an HTTPMatchRequest's header conditions (`exact`, `prefix` or `regex`; RE2 matches the
/// whole value).
pub fn istio_header_matches(route_match: &Value) -> Vec<HeaderMatch> {
    let headers = route_match.get("headers").and_then(Value::as_object);
    headers
        .into_iter()
        .flatten()
        .filter_map(|(name, condition)| {
            let value = match (
                text(condition, "exact"),
                text(condition, "prefix"),
                text(condition, "regex"),
            ) {
                (Some(exact), _, _) => ValueMatch::Exact(exact.to_string()),
                (_, Some(prefix), _) => ValueMatch::Prefix(prefix.to_string()),
                (_, _, Some(regex)) => ValueMatch::regex(regex, true),
                _ => return None,
            };
            Some(HeaderMatch {
                name: name.to_ascii_lowercase(),
                value,
            })
        })
        .collect()
}

/// NGINX: the header a canary Ingress routes by (`canary-by-header`, with `-value` or `-pattern`),
/// under the annotation prefix its `canary` annotation uses. Without value or pattern, NGINX sends
/// `always` to the canary (and `never` to the stable, which the plain split then ignores).
pub fn nginx_canary_header(annotations: &serde_json::Map<String, Value>, prefix: &str) -> Option<HeaderMatch> {
    let get = |key: &str| annotations.get(&format!("{prefix}{key}")).and_then(Value::as_str);
    let name = get("canary-by-header")?.trim().to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let value = match (get("canary-by-header-value"), get("canary-by-header-pattern")) {
        (Some(value), _) => ValueMatch::Exact(value.to_string()),
        (None, Some(pattern)) => ValueMatch::regex(pattern, true),
        (None, None) => ValueMatch::Exact("always".into()),
    };
    Some(HeaderMatch { name, value })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn backend(name: &str) -> BackendRef {
        BackendRef::service("ns", name)
    }

    fn exact(name: &str, value: &str) -> HeaderMatch {
        HeaderMatch {
            name: name.into(),
            value: ValueMatch::Exact(value.into()),
        }
    }

    #[test]
    fn headers_parse_from_the_annotation_lowercased_and_bounded() {
        let headers = parse_headers("X-Canary: yes; X-Tenant:internal;broken;: empty-name");
        assert_eq!(
            headers,
            [("x-canary", "yes"), ("x-tenant", "internal")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into()
        );
        let many: String = (0..100).map(|i| format!("h{i}: v;")).collect();
        assert_eq!(parse_headers(&many).len(), MAX_HEADERS);
        assert!(parse_headers(&format!("x: {}", "v".repeat(10_000))).is_empty());
    }

    #[test]
    fn a_request_takes_the_most_specific_header_rule_else_the_plain_split() {
        let rules = vec![
            Rule::plain(vec![backend("stable")]),
            Rule {
                matches: vec![vec![exact("x-canary", "yes")]],
                ..Rule::plain(vec![backend("canary")])
            },
            Rule {
                matches: vec![vec![exact("x-canary", "yes"), exact("x-tenant", "internal")]],
                ..Rule::plain(vec![backend("internal")])
            },
        ];
        let headers = |text: &str| parse_headers(text);
        let most = Precedence::MostSpecific;
        assert_eq!(header_rule(&rules, &headers(""), most), None);
        assert_eq!(header_rule(&rules, &headers("x-canary: no"), most), None);
        assert_eq!(header_rule(&rules, &headers("X-Canary: yes"), most), Some(1));
        assert_eq!(
            header_rule(&rules, &headers("x-canary: yes; x-tenant: internal"), most),
            Some(2)
        );
        assert_eq!(
            header_rule(
                &rules,
                &headers("x-canary: yes; x-tenant: internal"),
                Precedence::FirstMatch
            ),
            Some(1)
        );
        assert!(rules[0].is_plain() && !rules[1].is_plain());
    }

    #[test]
    fn value_matches_exact_prefix_and_anchored_bounded_regex() {
        assert!(ValueMatch::Prefix("ye".into()).matches("yes"));
        assert!(ValueMatch::regex("y.s", true).matches("yes"));
        assert!(!ValueMatch::regex("y.s", true).matches("eyesore"));
        assert!(ValueMatch::regex("y.s", false).matches("eyesore"));
        // A pattern that does not compile (or is too large) matches nothing rather than failing.
        assert!(!ValueMatch::regex("(", true).matches("("));
        assert!(!ValueMatch::regex(&"a".repeat(10_000), true).matches(&"a".repeat(10_000)));
        assert!(!ValueMatch::regex("(a{1000}){1000}", true).matches("a"));
    }

    #[test]
    fn routers_header_conditions_and_mirrors_are_read() {
        let gateway = json!({"headers": [{"name": "X-Canary", "value": "yes"},
                                         {"name": "x-id", "type": "RegularExpression", "value": "[0-9]+"}]});
        let matches = gateway_header_matches(&gateway);
        assert_eq!(matches.len(), 2);
        assert_eq!(matches[0], exact("x-canary", "yes"));
        assert!(matches[1].value.matches("123") && !matches[1].value.matches("12a"));

        let rule = json!({"filters": [
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web-canary", "port": 80}, "percent": 30}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web-shadow", "namespace": "other"},
                                                        "fraction": {"numerator": 1, "denominator": 4}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "all"}}},
            {"type": "RequestHeaderModifier"}]});
        let mirrors = gateway_mirrors(&rule, "shop");
        let summary: Vec<(String, String, f64)> = mirrors
            .iter()
            .map(|m| (m.backend.namespace.clone(), m.backend.name.clone(), m.percent))
            .collect();
        assert_eq!(
            summary,
            [
                ("shop".to_string(), "web-canary".to_string(), 30.0),
                ("other".into(), "web-shadow".into(), 25.0),
                ("shop".into(), "all".into(), 100.0)
            ]
        );

        let istio =
            json!({"headers": {"X-Canary": {"exact": "yes"}, "x-tier": {"prefix": "gold"}, "x-id": {"regex": "a+"}}});
        let matches = istio_header_matches(&istio);
        assert_eq!(matches.len(), 3);

        let annotations = json!({"nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                                 "nginx.ingress.kubernetes.io/canary-by-header-value": "yes"});
        let header = nginx_canary_header(annotations.as_object().unwrap(), "nginx.ingress.kubernetes.io/").unwrap();
        assert_eq!(header, exact("x-canary", "yes"));
        let always = json!({"p/canary-by-header": "X-Canary"});
        assert_eq!(
            nginx_canary_header(always.as_object().unwrap(), "p/"),
            Some(exact("x-canary", "always"))
        );
    }
}
