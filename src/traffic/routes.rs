//! Managed routes (setHeaderRoute / setMirrorRoute): the routes in force at a step, as every router
//! renders them. Which routes are in force is decided by the plan (`rollout::plan::routes`); the
//! routers only write them, each in its own object, and remove those no longer in force.
use crate::api::rollout::{HeaderRoutingMatch, RouteMatch, StringMatch};

/// One managed route in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedRoute {
    /// Requests carrying every header condition go to the canary.
    Header {
        name: String,
        matches: Vec<HeaderRoutingMatch>,
    },
    /// `percentage` of the requests matching any of `matches` are copied to the canary.
    Mirror {
        name: String,
        percentage: i32,
        matches: Vec<RouteMatch>,
    },
}

impl ManagedRoute {
    pub fn name(&self) -> &str {
        match self {
            ManagedRoute::Header { name, .. } | ManagedRoute::Mirror { name, .. } => name,
        }
    }
}

/// The one kind a StringMatch sets (validation guarantees exactly one; exact wins otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
}

impl<'a> MatchKind<'a> {
    pub fn of(value: &'a StringMatch) -> MatchKind<'a> {
        match (&value.exact, &value.prefix, &value.regex) {
            (Some(exact), _, _) => MatchKind::Exact(exact),
            (None, Some(prefix), _) => MatchKind::Prefix(prefix),
            (None, None, Some(regex)) => MatchKind::Regex(regex),
            (None, None, None) => MatchKind::Exact(""),
        }
    }

    /// As a regular expression, for routers without a prefix match; anchored so that it means the
    /// same whether the data plane matches the whole value or searches in it.
    pub fn as_regex(self) -> String {
        match self {
            MatchKind::Exact(text) => format!("^{}$", regex::escape(text)),
            MatchKind::Prefix(text) => format!("^{}.*", regex::escape(text)),
            MatchKind::Regex(pattern) => pattern.to_string(),
        }
    }
}

/// Names of the rules and routes Sluice writes for managed routes start with this, so Sluice (and
/// GitSync self-heal) can tell them from everyone else's without any other state.
pub const RULE_PREFIX: &str = "sluice-";

/// The name of the rule or route carrying managed route `name`.
pub fn rule_name(name: &str) -> String {
    format!("{RULE_PREFIX}{name}")
}

/// Whether a rule or route (JSON with a `name`) is one Sluice wrote for a managed route.
pub fn is_managed_rule(rule: &serde_json::Value) -> bool {
    rule.get("name")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|n| n.starts_with(RULE_PREFIX))
}

/// GitSync: `desired` (Git's list at `/spec/<key>`) gets the live managed rules back, placed before
/// the first entry `is_weighted` (as Sluice placed them), else first; Git's own entries of those
/// names are dropped (Sluice owns them).
pub(crate) fn preserve_managed_rules(
    desired: &mut serde_json::Value,
    live: &serde_json::Value,
    key: &str,
    is_weighted: &dyn Fn(&serde_json::Value) -> bool,
) {
    let pointer = format!("/spec/{key}");
    let managed: Vec<serde_json::Value> = live
        .pointer(&pointer)
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| is_managed_rule(r))
        .cloned()
        .collect();
    let Some(rules) = desired.pointer_mut(&pointer).and_then(serde_json::Value::as_array_mut) else {
        return;
    };
    rules.retain(|r| !is_managed_rule(r));
    let at = rules.iter().position(is_weighted).unwrap_or(0);
    rules.splice(at..at, managed);
}

/// At most this many managed routes, match entries per step, and headers per mirror match.
pub const MAX_ROUTES: usize = 16;
/// Longest route name (a DNS-1123 label: it names an HTTPRoute rule or a VirtualService route).
pub const MAX_NAME: usize = 63;
/// Longest header name, and longest value or pattern of a match.
pub const MAX_HEADER_NAME: usize = 256;
pub const MAX_VALUE: usize = 1024;
/// Compiled-size cap of a regex (linear-time engine; the cap bounds memory).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Problems with managedRoutes and the setHeaderRoute / setMirrorRoute steps of a canary, each at its
/// field path: bounded sizes, names known, exactly one of exact/prefix/regex, regexes that compile
/// within the size cap, and what the configured router can do.
pub fn check_steps(canary: &crate::api::rollout::CanaryStrategy) -> Vec<crate::api::spec_error::SpecError> {
    use crate::api::spec_error::SpecError;
    const CANARY: &str = "spec.strategy.canary";
    let mut found = Vec::new();
    let mut add = |field: String, message: String| found.push(SpecError { field, message });
    let routing = canary.traffic_routing.as_ref();
    let managed = routing.map(|r| r.managed_routes.as_slice()).unwrap_or_default();
    let field = format!("{CANARY}.trafficRouting.managedRoutes");
    if managed.len() > MAX_ROUTES {
        add(
            field.clone(),
            format!("at most {MAX_ROUTES} routes, got {}", managed.len()),
        );
    }
    for (i, route) in managed.iter().enumerate().take(MAX_ROUTES) {
        if let Err(message) = check_name(&route.name) {
            add(format!("{field}[{i}].name"), message);
        } else if managed[..i].iter().any(|m| m.name == route.name) {
            add(
                format!("{field}[{i}].name"),
                format!("{:?} is listed twice", route.name),
            );
        }
    }
    let router = routing.and_then(|r| {
        [
            ("gatewayAPI", r.gateway_api.is_some()),
            ("smi", r.smi.is_some()),
            ("istio", r.istio.is_some()),
            ("nginx", r.nginx.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        .map(|(name, _)| name)
    });
    if router == Some("smi") && !managed.is_empty() {
        add(field.clone(), "smi cannot set header or mirror routes".into());
    }
    if router == Some("nginx") && managed.len() > 1 {
        add(
            field.clone(),
            "nginx carries one header route (canary-by-header): list at most one".into(),
        );
    }
    if let Some(nginx) = routing.and_then(|r| r.nginx.as_ref())
        && !managed.is_empty()
        && nginx
            .additional_ingress_annotations
            .keys()
            .any(|k| k.starts_with("canary-by-header"))
    {
        add(
            format!("{CANARY}.trafficRouting.nginx.additionalIngressAnnotations"),
            "canary-by-header annotations and managedRoutes both set the header route: use one".into(),
        );
    }
    let known = |name: &str| managed.iter().any(|m| m.name == name);
    for (i, step) in canary.steps.iter().enumerate() {
        let step_field = format!("{CANARY}.steps[{i}]");
        if let Some(header) = &step.set_header_route {
            let at = format!("{step_field}.setHeaderRoute");
            check_step_name(&header.name, known(&header.name), &at, &mut add);
            match router {
                None => add(at.clone(), "needs trafficRouting".into()),
                Some("smi") => add(at.clone(), "smi cannot route by header".into()),
                _ => {}
            }
            if header.matches.len() > MAX_ROUTES {
                add(
                    format!("{at}.match"),
                    format!("at most {MAX_ROUTES} entries, got {}", header.matches.len()),
                );
            }
            if router == Some("nginx") && header.matches.len() > 1 {
                add(
                    format!("{at}.match"),
                    "nginx matches one header (canary-by-header)".into(),
                );
            }
            for (j, m) in header.matches.iter().enumerate().take(MAX_ROUTES) {
                let entry = format!("{at}.match[{j}]");
                if let Err(message) = check_header_name(&m.header_name) {
                    add(format!("{entry}.headerName"), message);
                }
                check_string_match(&m.header_value, &format!("{entry}.headerValue"), &mut add);
            }
        }
        if let Some(mirror) = &step.set_mirror_route {
            let at = format!("{step_field}.setMirrorRoute");
            check_step_name(&mirror.name, known(&mirror.name), &at, &mut add);
            match router {
                None => add(at.clone(), "needs trafficRouting".into()),
                Some(name @ ("smi" | "nginx")) => add(at.clone(), format!("{name} cannot mirror")),
                _ => {}
            }
            if let Some(percentage) = mirror.percentage
                && !(0..=100).contains(&percentage)
            {
                add(
                    format!("{at}.percentage"),
                    format!("must be between 0 and 100, got {percentage}"),
                );
            }
            if mirror.matches.len() > MAX_ROUTES {
                add(
                    format!("{at}.match"),
                    format!("at most {MAX_ROUTES} entries, got {}", mirror.matches.len()),
                );
            }
            for (j, m) in mirror.matches.iter().enumerate().take(MAX_ROUTES) {
                let entry = format!("{at}.match[{j}]");
                if m.method.is_none() && m.path.is_none() && m.headers.is_empty() {
                    add(entry.clone(), "set method, path or headers".into());
                }
                if let Some(method) = &m.method {
                    check_string_match(method, &format!("{entry}.method"), &mut add);
                    if router == Some("gatewayAPI") && method.exact.is_none() {
                        add(
                            format!("{entry}.method"),
                            "gatewayAPI matches a method exactly: use exact".into(),
                        );
                    }
                }
                if let Some(path) = &m.path {
                    check_string_match(path, &format!("{entry}.path"), &mut add);
                }
                if m.headers.len() > MAX_ROUTES {
                    add(
                        format!("{entry}.headers"),
                        format!("at most {MAX_ROUTES} headers, got {}", m.headers.len()),
                    );
                }
                for (name, value) in m.headers.iter().take(MAX_ROUTES) {
                    let header_field = format!("{entry}.headers[{}]", crate::bounds::truncate(name, 64));
                    if let Err(message) = check_header_name(name) {
                        add(header_field.clone(), message);
                    }
                    check_string_match(value, &header_field, &mut add);
                }
            }
        }
    }
    found
}

fn check_step_name(name: &str, known: bool, at: &str, add: &mut impl FnMut(String, String)) {
    if !known {
        let shown = crate::bounds::truncate(name, MAX_NAME);
        add(
            format!("{at}.name"),
            format!("{shown:?} is not listed in trafficRouting.managedRoutes"),
        );
    }
}

/// A DNS-1123 label: it becomes an HTTPRoute rule name or a VirtualService route name.
fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > MAX_NAME || !valid_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "must be 1–{MAX_NAME} lowercase letters, digits or '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// An HTTP header name: an RFC 9110 token.
fn check_header_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(token) {
        return Err(format!(
            "must be an HTTP header name (1–{MAX_HEADER_NAME} token characters)"
        ));
    }
    Ok(())
}

fn check_string_match(value: &StringMatch, field: &str, add: &mut impl FnMut(String, String)) {
    let set: Vec<(&str, &String)> = [
        ("exact", &value.exact),
        ("prefix", &value.prefix),
        ("regex", &value.regex),
    ]
    .into_iter()
    .filter_map(|(kind, v)| v.as_ref().map(|v| (kind, v)))
    .collect();
    let [(kind, text)] = set[..] else {
        add(
            field.to_string(),
            format!("set exactly one of exact, prefix, regex; found {}", set.len()),
        );
        return;
    };
    if text.len() > MAX_VALUE {
        add(
            format!("{field}.{kind}"),
            format!("at most {MAX_VALUE} bytes, got {}", text.len()),
        );
        return;
    }
    if text.chars().any(char::is_control) {
        add(format!("{field}.{kind}"), "must not contain control characters".into());
    }
    if kind == "regex"
        && let Err(e) = compile(text)
    {
        let message = crate::bounds::truncate(&e.to_string(), 512).into_owned();
        add(format!("{field}.regex"), format!("does not compile: {message}"));
    }
}

/// A pattern compiled as the routers' data planes would hold it, within [`REGEX_SIZE_LIMIT`].
fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{
        CanaryStep, GatewayApiTrafficRouting, HeaderRoutingMatch, ManagedRoute as Named, NginxTrafficRouting, Rollout,
        SetHeaderRoute, SetMirrorRoute, SmiTrafficRouting, TrafficRouting,
    };

    fn routing(edit: impl FnOnce(&mut TrafficRouting)) -> TrafficRouting {
        let mut routing = TrafficRouting {
            gateway_api: Some(GatewayApiTrafficRouting {
                http_route: Some("web".into()),
                ..Default::default()
            }),
            managed_routes: vec![Named { name: "header".into() }],
            ..Default::default()
        };
        edit(&mut routing);
        routing
    }

    fn header(name: &str, header_name: &str, value: StringMatch) -> CanaryStep {
        CanaryStep {
            set_header_route: Some(SetHeaderRoute {
                name: name.into(),
                matches: vec![HeaderRoutingMatch {
                    header_name: header_name.into(),
                    header_value: value,
                }],
            }),
            ..Default::default()
        }
    }

    fn exact(v: &str) -> StringMatch {
        StringMatch {
            exact: Some(v.into()),
            ..Default::default()
        }
    }

    fn errors(routing: TrafficRouting, steps: Vec<CanaryStep>) -> Vec<(String, String)> {
        let rollout = Rollout::example("web", 3, steps)
            .with_services("web-canary", "web-stable")
            .with_traffic_routing(routing);
        crate::rollout::validate::validate(&rollout)
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn a_good_header_and_mirror_route_is_valid() {
        let mirror = CanaryStep {
            set_mirror_route: Some(SetMirrorRoute {
                name: "mirror".into(),
                percentage: Some(50),
                matches: vec![RouteMatch {
                    method: Some(exact("GET")),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        let both = routing(|r| r.managed_routes.push(Named { name: "mirror".into() }));
        assert_eq!(
            errors(both, vec![header("header", "X-Canary", exact("yes")), mirror]),
            vec![]
        );
    }

    #[test]
    fn each_problem_names_its_field() {
        let step = "spec.strategy.canary.steps[0].setHeaderRoute";
        let cases: Vec<(TrafficRouting, CanaryStep, &str, String)> = vec![
            (
                routing(|_| {}),
                header("nope", "X-Canary", exact("yes")),
                "not listed",
                format!("{step}.name"),
            ),
            (
                routing(|_| {}),
                header("header", "X Canary", exact("yes")),
                "HTTP header name",
                format!("{step}.match[0].headerName"),
            ),
            (
                routing(|_| {}),
                header("header", "X-Canary", StringMatch::default()),
                "exactly one",
                format!("{step}.match[0].headerValue"),
            ),
            (
                routing(|_| {}),
                header(
                    "header",
                    "X-Canary",
                    StringMatch {
                        regex: Some("(".into()),
                        ..Default::default()
                    },
                ),
                "does not compile",
                format!("{step}.match[0].headerValue.regex"),
            ),
            (
                routing(|_| {}),
                header(
                    "header",
                    "X-Canary",
                    StringMatch {
                        regex: Some("a{1000}{1000}".into()),
                        ..Default::default()
                    },
                ),
                "does not compile",
                format!("{step}.match[0].headerValue.regex"),
            ),
            (
                routing(|_| {}),
                header("header", "X-Canary", exact(&"y".repeat(MAX_VALUE + 1))),
                "at most",
                format!("{step}.match[0].headerValue.exact"),
            ),
            (
                routing(|r| r.managed_routes[0].name = "Header_1".into()),
                CanaryStep::pause(),
                "lowercase",
                "spec.strategy.canary.trafficRouting.managedRoutes[0].name".into(),
            ),
            (
                routing(|r| r.managed_routes.push(Named { name: "header".into() })),
                CanaryStep::pause(),
                "twice",
                "spec.strategy.canary.trafficRouting.managedRoutes[1].name".into(),
            ),
            (
                routing(|r| {
                    r.gateway_api = None;
                    r.smi = Some(SmiTrafficRouting::default());
                }),
                header("header", "X-Canary", exact("yes")),
                "smi cannot route by header",
                step.to_string(),
            ),
        ];
        for (routing, step, message, field) in cases {
            let found = errors(routing, vec![step]);
            assert!(
                found.iter().any(|(f, m)| *f == field && m.contains(message)),
                "{field}: {message} not in {found:?}"
            );
        }
    }

    #[test]
    fn nginx_cannot_mirror_and_percentages_are_bounded() {
        let mirror = |percentage| CanaryStep {
            set_mirror_route: Some(SetMirrorRoute {
                name: "header".into(),
                percentage: Some(percentage),
                matches: vec![RouteMatch {
                    path: Some(StringMatch {
                        prefix: Some("/".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        let nginx = routing(|r| {
            r.gateway_api = None;
            r.nginx = Some(NginxTrafficRouting {
                stable_ingress: "web".into(),
                ..Default::default()
            });
        });
        let found = errors(nginx, vec![mirror(50)]);
        assert!(
            found
                .iter()
                .any(|(f, m)| f == "spec.strategy.canary.steps[0].setMirrorRoute" && m == "nginx cannot mirror")
        );
        let found = errors(routing(|_| {}), vec![mirror(101)]);
        assert!(
            found
                .iter()
                .any(|(f, _)| f == "spec.strategy.canary.steps[0].setMirrorRoute.percentage")
        );
    }

    #[test]
    fn regexes_for_routers_without_prefix_matches_are_anchored_and_escaped() {
        assert_eq!(MatchKind::of(&exact("a.b")).as_regex(), "^a\\.b$");
        let prefix = StringMatch {
            prefix: Some("v1.".into()),
            ..Default::default()
        };
        assert_eq!(MatchKind::of(&prefix).as_regex(), "^v1\\..*");
    }
}
