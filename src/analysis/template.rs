//! From AnalysisTemplates and arguments to an AnalysisRun spec, and — at measurement time — from the
//! run's metric to the request a provider sends, Secrets filled in.
//!
//! Arguments resolve when the run is built: literal values, `podTemplateHashValue: Stable|Latest`, and
//! `fieldRef` paths into the Rollout. `secretKeyRef` arguments do not: their `{{args.NAME}}` placeholders
//! stay in the run's provider fields and are filled in only in memory, just before the request
//! ([`substitute_secrets`]), so Secret values never land in an AnalysisRun that anyone with read access to
//! the namespace can see. [`recorded_query`] gives the text to keep in the status, placeholders intact.
use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::analysis::{
    AnalysisRunSpec, AnalysisTemplateSpec, Argument, ArgumentValueFrom, DryRun, MeasurementRetention, Metric,
    PodTemplateHashValue, SecretKeyRef,
};

/// What `valueFrom` arguments other than Secrets are read from.
#[derive(Clone, Copy, Debug)]
pub struct ArgumentSources<'a> {
    /// The Rollout as JSON, for `fieldRef.fieldPath`.
    pub rollout: &'a Value,
    /// The stable ReplicaSet's pod template hash, for `podTemplateHashValue: Stable`.
    pub stable_hash: Option<&'a str>,
    /// The newest (canary) ReplicaSet's pod template hash, for `podTemplateHashValue: Latest`.
    pub latest_hash: Option<&'a str>,
}

/// Builds an AnalysisRun spec: the metrics of all `templates` (name, spec) in order, arguments resolved
/// and substituted.
///
/// - Template arguments merge by name; a later template may give a value an earlier one left out, two
///   different literal values are an error. `args` (from the Rollout) override them by name; ones no
///   template declares are ignored, as in Argo Rollouts.
/// - Every argument needs a value: a literal, or `valueFrom`. Secret arguments stay unresolved (see the
///   module doc) and may only be used in provider fields.
/// - `{{args.NAME}}` is replaced in every string of every metric (query, address, url, headers, body,
///   conditions, interval, count …); an undeclared name is an error naming the argument and the metric.
/// - Two metrics with the same name (across templates) are an error naming both templates.
/// - `lists` (the Rollout's `dryRun` / `measurementRetention`) and then each template's lists are
///   resolved into the metrics ([`apply_metric_lists`]): a metric's own field wins, then the Rollout's
///   entries, then the templates' (Argo applies a template's lists to every metric of the run).
pub fn build_run_spec(
    templates: &[(&str, &AnalysisTemplateSpec)],
    args: &[Argument],
    sources: &ArgumentSources<'_>,
    lists: MetricLists<'_>,
) -> Result<AnalysisRunSpec, String> {
    let mut declared: Vec<Argument> = Vec::new();
    for (template, spec) in templates {
        for arg in &spec.args {
            match declared.iter_mut().find(|d| d.name == arg.name) {
                None => declared.push(arg.clone()),
                Some(existing) => merge_argument(existing, arg)
                    .map_err(|e| format!("AnalysisTemplate {template:?}: argument {:?}: {e}", arg.name))?,
            }
        }
    }
    for arg in args {
        if let Some(existing) = declared.iter_mut().find(|d| d.name == arg.name) {
            *existing = arg.clone();
        }
    }

    let mut resolved = Vec::with_capacity(declared.len());
    let mut values = BTreeMap::new();
    for arg in declared {
        let value = resolve_argument(&arg, sources).map_err(|e| format!("argument {:?}: {e}", arg.name))?;
        match value {
            Resolved::Value(value) => {
                values.insert(arg.name.clone(), Substitution::Value(value.clone()));
                resolved.push(Argument {
                    name: arg.name,
                    value: Some(value),
                    value_from: None,
                });
            }
            Resolved::Secret(secret) => {
                values.insert(arg.name.clone(), Substitution::Secret);
                resolved.push(Argument {
                    name: arg.name,
                    value: None,
                    value_from: Some(ArgumentValueFrom {
                        secret_key_ref: Some(secret),
                        ..ArgumentValueFrom::default()
                    }),
                });
            }
        }
    }

    let mut metrics: Vec<Metric> = Vec::new();
    let mut origin: Vec<&str> = Vec::new();
    for (template, spec) in templates {
        for metric in &spec.metrics {
            if let Some(i) = metrics.iter().position(|m| m.name == metric.name) {
                return Err(format!(
                    "metric {:?} is defined by AnalysisTemplate {:?} and by {template:?}",
                    metric.name, origin[i]
                ));
            }
            metrics.push(substitute_metric(metric, &values)?);
            origin.push(template);
        }
    }
    apply_metric_lists(&mut metrics, lists, "analysis")?;
    for (template, spec) in templates {
        let lists = MetricLists {
            dry_run: &spec.dry_run,
            measurement_retention: &spec.measurement_retention,
        };
        apply_metric_lists(&mut metrics, lists, &format!("AnalysisTemplate {template:?}"))?;
    }
    Ok(AnalysisRunSpec {
        metrics,
        args: resolved,
        ..AnalysisRunSpec::default()
    })
}

fn merge_argument(existing: &mut Argument, other: &Argument) -> Result<(), String> {
    match (&existing.value, &other.value) {
        (Some(a), Some(b)) if a != b => return Err(format!("conflicting values {a:?} and {b:?}")),
        (None, Some(_)) => existing.value = other.value.clone(),
        _ => {}
    }
    if existing.value_from.is_none() {
        existing.value_from = other.value_from.clone();
    }
    Ok(())
}

enum Resolved {
    Value(String),
    Secret(SecretKeyRef),
}

fn resolve_argument(arg: &Argument, sources: &ArgumentSources<'_>) -> Result<Resolved, String> {
    if let Some(value) = &arg.value {
        return Ok(Resolved::Value(value.clone()));
    }
    let Some(from) = &arg.value_from else {
        return Err("no value (set value or valueFrom)".to_string());
    };
    match (&from.pod_template_hash_value, &from.field_ref, &from.secret_key_ref) {
        (Some(which), None, None) => {
            let hash = match which {
                PodTemplateHashValue::Stable => sources.stable_hash,
                PodTemplateHashValue::Latest => sources.latest_hash,
            };
            hash.map(|h| Resolved::Value(h.to_string()))
                .ok_or_else(|| format!("podTemplateHashValue {which:?}: no such ReplicaSet yet"))
        }
        (None, Some(field), None) => field_value(sources.rollout, &field.field_path).map(Resolved::Value),
        (None, None, Some(secret)) => Ok(Resolved::Secret(secret.clone())),
        _ => Err("set exactly one of valueFrom.podTemplateHashValue, fieldRef, secretKeyRef".to_string()),
    }
}

/// Reads `path` (`metadata.name`, `metadata.labels['app']`, `spec.template.spec.containers[0].image`)
/// from `object`. Strings are taken as they are, other scalars as JSON text, objects and lists as JSON.
pub fn field_value(object: &Value, path: &str) -> Result<String, String> {
    let mut current = object;
    for segment in parse_field_path(path)? {
        let next = match &segment {
            Segment::Key(key) => current.get(key.as_str()),
            Segment::Index(index) => current.get(*index),
        };
        current = next.ok_or_else(|| format!("fieldRef {path:?}: the Rollout has no such field"))?;
    }
    Ok(match current {
        Value::String(text) => text.clone(),
        Value::Null => return Err(format!("fieldRef {path:?}: the field is null")),
        other => other.to_string(),
    })
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn parse_field_path(path: &str) -> Result<Vec<Segment>, String> {
    let invalid = |why: &str| format!("fieldRef {path:?}: {why}");
    let mut segments = Vec::new();
    let mut rest = path.trim();
    if rest.is_empty() {
        return Err(invalid("empty path"));
    }
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']').ok_or_else(|| invalid("unclosed ["))?;
            let key = &inner[..close];
            let unquoted = key
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')));
            segments.push(match unquoted {
                Some(key) => Segment::Key(key.to_string()),
                None => Segment::Index(key.trim().parse().map_err(|_| invalid("expected ['key'] or [index]"))?),
            });
            rest = &inner[close + 1..];
        } else {
            let rest_after_dot = if segments.is_empty() {
                rest
            } else {
                rest.strip_prefix('.').ok_or_else(|| invalid("expected . or ["))?
            };
            let end = rest_after_dot.find(['.', '[']).unwrap_or(rest_after_dot.len());
            if end == 0 {
                return Err(invalid("empty field name"));
            }
            segments.push(Segment::Key(rest_after_dot[..end].to_string()));
            rest = &rest_after_dot[end..];
        }
    }
    Ok(segments)
}

/// What a placeholder becomes when the run is built.
enum Substitution {
    Value(String),
    /// Filled in at measurement time; the placeholder stays.
    Secret,
}

fn substitute_metric(metric: &Metric, values: &BTreeMap<String, Substitution>) -> Result<Metric, String> {
    let fail = |e: String| format!("metric {:?}: {e}", metric.name);
    let mut json = serde_json::to_value(metric).map_err(|e| fail(e.to_string()))?;
    substitute_strings(&mut json, &mut |text, in_provider| {
        replace_placeholders(text, |name| match values.get(name) {
            Some(Substitution::Value(value)) => Ok(Some(value.clone())),
            Some(Substitution::Secret) if in_provider => Ok(None),
            Some(Substitution::Secret) => Err(format!(
                "argument {name:?} comes from a Secret and may only be used in the provider"
            )),
            None => Err(format!("argument {name:?} is not declared")),
        })
    })
    .map_err(fail)?;
    let mut metric: Metric = serde_json::from_value(json).map_err(|e| fail(format!("after substitution: {e}")))?;
    // `count: "{{args.count}}"`, `failureLimit: "{{args.limit}}"` are numbers from now on.
    metric.normalize_numbers();
    Ok(metric)
}

/// Calls `replace` on every string in `json` (keys excluded), telling it whether the string is inside the
/// metric's `provider`.
fn substitute_strings(
    json: &mut Value,
    replace: &mut dyn FnMut(&str, bool) -> Result<String, String>,
) -> Result<(), String> {
    fn walk(
        json: &mut Value,
        in_provider: bool,
        replace: &mut dyn FnMut(&str, bool) -> Result<String, String>,
    ) -> Result<(), String> {
        match json {
            Value::String(text) => *text = replace(text, in_provider)?,
            Value::Array(items) => {
                for item in items {
                    walk(item, in_provider, replace)?;
                }
            }
            Value::Object(fields) => {
                for value in fields.values_mut() {
                    walk(value, in_provider, replace)?;
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }
    let Value::Object(fields) = json else {
        return walk(json, false, replace);
    };
    for (key, value) in fields {
        walk(value, key == "provider", replace)?;
    }
    Ok(())
}

/// Replaces each `{{args.NAME}}` (spaces inside the braces allowed) with `lookup(NAME)`; `Ok(None)`
/// keeps the placeholder. Other `{{…}}` text is left alone (PromQL and URLs rarely contain it, and when
/// they do it is not ours).
fn replace_placeholders(
    text: &str,
    mut lookup: impl FnMut(&str) -> Result<Option<String>, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}").map(|c| open + c) else {
            break;
        };
        let placeholder = &rest[open..close + 2];
        out.push_str(&rest[..open]);
        match rest[open + 2..close].trim().strip_prefix("args.") {
            Some(name) => match lookup(name.trim())? {
                Some(value) => out.push_str(&value),
                None => out.push_str(placeholder),
            },
            None => out.push_str(placeholder),
        }
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Longest `metricName` pattern accepted in a `dryRun` or `measurementRetention` list (a metric name is
/// at most a DNS subdomain; a pattern has no reason to be longer).
pub const MAX_METRIC_NAME_PATTERN: usize = 253;

/// Entries accepted in one `dryRun` or `measurementRetention` list.
pub const MAX_METRIC_LIST_ENTRIES: usize = 64;

/// Compiled-program budget of one pattern: the `regex` crate matches in linear time, this caps the
/// memory a hostile pattern (`(a{100}){100}`) may make it build.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// Whether list entry `pattern` selects metric `name`, as Argo does: the pattern is a regular
/// expression matched anywhere in the name (`.*` selects all; `error` also selects `error-rate`).
pub fn metric_name_matches(pattern: &str, name: &str) -> Result<bool, String> {
    Ok(metric_name_pattern(pattern)?.is_match(name))
}

/// `pattern` compiled, bounded in length, nesting and program size.
pub fn metric_name_pattern(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.is_empty() {
        return Err("metricName is empty".to_string());
    }
    if pattern.len() > MAX_METRIC_NAME_PATTERN {
        return Err(format!(
            "metricName is {} bytes long; at most {MAX_METRIC_NAME_PATTERN}",
            pattern.len()
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(32)
        .build()
        .map_err(|e| {
            let why = e.to_string();
            format!(
                "metricName {:?} is not a valid regular expression: {}",
                crate::bounds::truncate(pattern, 64),
                crate::bounds::truncate(why.lines().last().unwrap_or_default(), 200)
            )
        })
}

/// The `dryRun` and `measurementRetention` lists of a Rollout's analysis or of a template, resolved into
/// each metric's own `dryRun` / `measurementRetention` when the run is built.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricLists<'a> {
    /// `dryRun` entries.
    pub dry_run: &'a [DryRun],
    /// `measurementRetention` entries.
    pub measurement_retention: &'a [MeasurementRetention],
}

/// Applies `lists` (named `origin` in errors) to `metrics`. Precedence: a metric's own field is never
/// overwritten — so lists applied earlier win over later ones — and within a list the first matching
/// retention entry wins. An entry matching no metric is an error, as in Argo (a typo would otherwise
/// silently leave a metric deciding the run).
pub fn apply_metric_lists(metrics: &mut [Metric], lists: MetricLists<'_>, origin: &str) -> Result<(), String> {
    let total = lists.dry_run.len() + lists.measurement_retention.len();
    if total > MAX_METRIC_LIST_ENTRIES {
        return Err(format!(
            "{origin}: {total} dryRun/measurementRetention entries; at most {MAX_METRIC_LIST_ENTRIES}"
        ));
    }
    let mut dry_run = vec![false; metrics.len()];
    for (i, entry) in lists.dry_run.iter().enumerate() {
        let pattern = metric_name_pattern(&entry.metric_name).map_err(|e| format!("{origin}: dryRun[{i}]: {e}"))?;
        let mut matched = false;
        for (flag, metric) in dry_run.iter_mut().zip(metrics.iter()) {
            if pattern.is_match(&metric.name) {
                *flag = true;
                matched = true;
            }
        }
        if !matched {
            return Err(format!(
                "{origin}: dryRun[{i}]: metricName {:?} matches no metric",
                crate::bounds::truncate(&entry.metric_name, 64)
            ));
        }
    }
    let mut retention: Vec<Option<i32>> = vec![None; metrics.len()];
    for (i, entry) in lists.measurement_retention.iter().enumerate() {
        let at = format!("{origin}: measurementRetention[{i}]");
        if !(0..=super::rules::MAX_MEASUREMENT_RETENTION).contains(&entry.limit) {
            return Err(format!(
                "{at}: limit must be between 0 and {}, got {}",
                super::rules::MAX_MEASUREMENT_RETENTION,
                entry.limit
            ));
        }
        let pattern = metric_name_pattern(&entry.metric_name).map_err(|e| format!("{at}: {e}"))?;
        let mut matched = false;
        for (limit, metric) in retention.iter_mut().zip(metrics.iter()) {
            if pattern.is_match(&metric.name) {
                limit.get_or_insert(entry.limit);
                matched = true;
            }
        }
        if !matched {
            return Err(format!(
                "{at}: metricName {:?} matches no metric",
                crate::bounds::truncate(&entry.metric_name, 64)
            ));
        }
    }
    for ((metric, dry), limit) in metrics.iter_mut().zip(dry_run).zip(retention) {
        if dry && metric.dry_run.is_none() {
            metric.dry_run = Some(true);
        }
        if metric.measurement_retention.is_none() {
            metric.measurement_retention = limit;
        }
    }
    Ok(())
}

/// The Secret-backed arguments of a run: (argument name, Secret key). The controller reads these
/// Secrets (in the run's namespace) before measuring and passes the values to [`substitute_secrets`].
pub fn secret_arguments(spec: &AnalysisRunSpec) -> Vec<(&str, &SecretKeyRef)> {
    spec.args
        .iter()
        .filter_map(|arg| {
            let secret = arg.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((arg.name.as_str(), secret))
        })
        .collect()
}

/// The metric with its Secret placeholders filled in from `secrets` (argument name → value), for the
/// provider request only — never store the result. A placeholder without a value is an error naming the
/// argument (and not the value).
pub fn substitute_secrets(metric: &Metric, secrets: &BTreeMap<String, String>) -> Result<Metric, String> {
    let mut json = serde_json::to_value(&metric.provider).map_err(|e| e.to_string())?;
    substitute_strings(&mut json, &mut |text, _| {
        replace_placeholders(text, |name| match secrets.get(name) {
            Some(value) => Ok(Some(value.clone())),
            None => Err(format!(
                "metric {:?}: argument {name:?} has no value (is its Secret readable?)",
                metric.name
            )),
        })
    })?;
    Ok(Metric {
        provider: serde_json::from_value(json).map_err(|e| e.to_string())?,
        ..metric.clone()
    })
}

/// What to record as `Measurement.query`: the PromQL query or the web URL of the run's metric, with
/// Secret placeholders as they are.
pub fn recorded_query(metric: &Metric) -> Option<String> {
    let provider = &metric.provider;
    provider
        .prometheus
        .as_ref()
        .map(|p| p.query.clone())
        .or_else(|| provider.web.as_ref().map(|w| w.url.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::{FieldRef, Header, MetricProvider, WebMetric};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    fn rollout() -> Value {
        json!({"metadata": {"name": "checkout", "namespace": "shop",
                "labels": {"app": "checkout", "app.kubernetes.io/part-of": "shop"}},
               "spec": {"replicas": 5, "paused": false,
                "template": {"spec": {"containers": [{"name": "web", "image": "checkout:v2"}]}}}})
    }

    fn sources(rollout: &Value) -> ArgumentSources<'_> {
        ArgumentSources {
            rollout,
            stable_hash: Some("aaa111"),
            latest_hash: Some("bbb222"),
        }
    }

    fn from(value_from: ArgumentValueFrom) -> Argument {
        Argument {
            name: "x".into(),
            value: None,
            value_from: Some(value_from),
        }
    }

    fn named(name: &str, arg: Argument) -> Argument {
        Argument {
            name: name.into(),
            ..arg
        }
    }

    fn template(args: Vec<Argument>, metrics: Vec<Metric>) -> AnalysisTemplateSpec {
        AnalysisTemplateSpec {
            args,
            metrics,
            ..Default::default()
        }
    }

    #[test]
    fn field_paths() {
        let rollout = rollout();
        let cases = [
            ("metadata.name", Ok("checkout")),
            ("metadata.labels['app']", Ok("checkout")),
            ("metadata.labels[\"app.kubernetes.io/part-of\"]", Ok("shop")),
            ("spec.replicas", Ok("5")),
            ("spec.paused", Ok("false")),
            ("spec.template.spec.containers[0].image", Ok("checkout:v2")),
            ("metadata.labels['missing']", Err("no such field")),
            ("spec.template.spec.containers[1].image", Err("no such field")),
            ("metadata..name", Err("empty field name")),
            ("metadata.labels['app'", Err("unclosed")),
            ("", Err("empty path")),
        ];
        for (path, expected) in cases {
            match (field_value(&rollout, path), expected) {
                (Ok(value), Ok(expected)) => assert_eq!(value, expected, "{path}"),
                (Err(error), Err(expected)) => assert!(error.contains(expected), "{path}: {error}"),
                (got, expected) => panic!("{path}: got {got:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            field_value(&rollout, "metadata.labels").unwrap(),
            r#"{"app":"checkout","app.kubernetes.io/part-of":"shop"}"#
        );
    }

    #[test]
    fn arguments_resolve_from_every_source() {
        let rollout = rollout();
        let args = vec![
            Argument::literal("service", "checkout-canary"),
            named(
                "stable",
                from(ArgumentValueFrom {
                    pod_template_hash_value: Some(PodTemplateHashValue::Stable),
                    ..Default::default()
                }),
            ),
            named(
                "latest",
                from(ArgumentValueFrom {
                    pod_template_hash_value: Some(PodTemplateHashValue::Latest),
                    ..Default::default()
                }),
            ),
            named(
                "app",
                from(ArgumentValueFrom {
                    field_ref: Some(FieldRef {
                        field_path: "metadata.labels['app']".into(),
                    }),
                    ..Default::default()
                }),
            ),
            named(
                "token",
                from(ArgumentValueFrom {
                    secret_key_ref: Some(SecretKeyRef {
                        name: "prom".into(),
                        key: "token".into(),
                    }),
                    ..Default::default()
                }),
            ),
        ];
        let metric = Metric {
            provider: MetricProvider {
                prometheus: None,
                web: Some(WebMetric {
                    url: "http://{{args.service}}/check?hash={{ args.latest }}&vs={{args.stable}}".into(),
                    headers: vec![Header {
                        key: "Authorization".into(),
                        value: "Bearer {{args.token}}".into(),
                    }],
                    body: Some("{\"app\": \"{{args.app}}\", \"raw\": \"{{not.ours}}\"}".into()),
                    ..WebMetric::default()
                }),
                ..MetricProvider::default()
            },
            ..Metric::prometheus("smoke", "", "")
        }
        .with_success("result[0] >= {{args.threshold}}");
        // The template declares every argument; the Rollout gives the values.
        let mut declared: Vec<Argument> = ["service", "stable", "latest", "app", "token"]
            .into_iter()
            .map(|name| Argument {
                name: name.into(),
                value: None,
                value_from: None,
            })
            .collect();
        declared.push(Argument::literal("threshold", "0.95"));
        let spec = template(declared, vec![metric]);
        let run = build_run_spec(&[("smoke", &spec)], &args, &sources(&rollout), MetricLists::default()).unwrap();
        let web = run.metrics[0].provider.web.as_ref().unwrap();
        assert_eq!(web.url, "http://checkout-canary/check?hash=bbb222&vs=aaa111");
        assert_eq!(
            web.headers[0].value, "Bearer {{args.token}}",
            "secrets stay placeholders"
        );
        assert_eq!(
            web.body.as_deref(),
            Some("{\"app\": \"checkout\", \"raw\": \"{{not.ours}}\"}")
        );
        assert_eq!(run.metrics[0].success_condition.as_deref(), Some("result[0] >= 0.95"));
        let recorded: Vec<_> = run.args.iter().map(|a| (a.name.as_str(), a.value.as_deref())).collect();
        assert_eq!(
            recorded,
            vec![
                ("service", Some("checkout-canary")),
                ("stable", Some("aaa111")),
                ("latest", Some("bbb222")),
                ("app", Some("checkout")),
                ("token", None),
                ("threshold", Some("0.95")),
            ]
        );
        assert_eq!(
            secret_arguments(&run),
            vec![(
                "token",
                &SecretKeyRef {
                    name: "prom".into(),
                    key: "token".into()
                }
            )]
        );
    }

    #[test]
    fn rollout_args_override_template_args_and_secrets_resolve_late() {
        let rollout = rollout();
        let metric = Metric::prometheus(
            "rate",
            "http://prometheus:9090",
            "rate{svc=\"{{args.service}}\",token=\"{{args.token}}\"}",
        );
        let metric = Metric {
            provider: MetricProvider {
                prometheus: metric.provider.prometheus.map(|mut p| {
                    p.headers = vec![Header {
                        key: "X-Token".into(),
                        value: "{{args.token}}".into(),
                    }];
                    p
                }),
                web: None,
                ..MetricProvider::default()
            },
            count: Some(IntOrString::String("{{args.count}}".into())),
            interval: Some("{{args.interval}}".into()),
            // Argo's limits are int-or-string so a Rollout's args can set them.
            failure_limit: Some(IntOrString::String("{{args.count}}".into())),
            consecutive_error_limit: Some(IntOrString::String(" 2 ".into())),
            ..metric
        };
        let token = named(
            "token",
            from(ArgumentValueFrom {
                secret_key_ref: Some(SecretKeyRef {
                    name: "prom".into(),
                    key: "token".into(),
                }),
                ..Default::default()
            }),
        );
        let spec = template(
            vec![
                Argument::literal("service", "default-service"),
                Argument {
                    name: "count".into(),
                    value: None,
                    value_from: None,
                },
                Argument::literal("interval", "1m"),
                token,
            ],
            vec![metric],
        );
        let args = [
            Argument::literal("service", "checkout"),
            Argument::literal("count", "3"),
            Argument::literal("unused", "x"),
        ];
        let run = build_run_spec(&[("rate", &spec)], &args, &sources(&rollout), MetricLists::default()).unwrap();
        let metric = &run.metrics[0];
        assert_eq!(metric.count, Some(IntOrString::Int(3)));
        assert_eq!(metric.failure_limit, Some(IntOrString::Int(3)));
        assert_eq!(metric.failure_limit_or_default(), 3);
        assert_eq!(metric.consecutive_error_limit_or_default(), 2);
        assert_eq!(metric.interval.as_deref(), Some("1m"));
        let query = &metric.provider.prometheus.as_ref().unwrap().query;
        assert_eq!(query, "rate{svc=\"checkout\",token=\"{{args.token}}\"}");
        assert_eq!(recorded_query(metric).as_deref(), Some(query.as_str()));
        let secrets = secret_arguments(&run);
        assert_eq!(
            secrets,
            vec![(
                "token",
                &SecretKeyRef {
                    name: "prom".into(),
                    key: "token".into()
                }
            )]
        );
        let token = run.args.iter().find(|a| a.name == "token").unwrap();
        assert_eq!(token.value, None);

        let values = BTreeMap::from([("token".to_string(), "s3cret".to_string())]);
        let measured = substitute_secrets(metric, &values).unwrap();
        let prometheus = measured.provider.prometheus.unwrap();
        assert_eq!(prometheus.headers[0].value, "s3cret");
        assert_eq!(prometheus.query, "rate{svc=\"checkout\",token=\"s3cret\"}");
        let error = substitute_secrets(metric, &BTreeMap::new()).unwrap_err();
        assert!(
            error.contains("argument \"token\"") && error.contains("\"rate\""),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_argument_and_the_metric() {
        let rollout = rollout();
        let run = |templates: &[(&str, &AnalysisTemplateSpec)], args: &[Argument]| {
            build_run_spec(templates, args, &sources(&rollout), MetricLists::default()).unwrap_err()
        };
        let uses = |name: &str, query: &str| Metric::prometheus(name, "http://p:9090", query);
        let undeclared = template(vec![], vec![uses("rate", "up{svc=\"{{args.service}}\"}")]);
        assert_eq!(
            run(&[("t", &undeclared)], &[]),
            "metric \"rate\": argument \"service\" is not declared"
        );

        let no_value = template(
            vec![Argument {
                name: "service".into(),
                value: None,
                value_from: None,
            }],
            vec![],
        );
        assert_eq!(
            run(&[("t", &no_value)], &[]),
            "argument \"service\": no value (set value or valueFrom)"
        );

        let a = template(vec![], vec![uses("rate", "up")]);
        let b = template(vec![], vec![uses("rate", "down")]);
        assert_eq!(
            run(&[("a", &a), ("b", &b)], &[]),
            "metric \"rate\" is defined by AnalysisTemplate \"a\" and by \"b\""
        );

        let conflict_a = template(vec![Argument::literal("x", "1")], vec![]);
        let conflict_b = template(vec![Argument::literal("x", "2")], vec![]);
        assert!(run(&[("a", &conflict_a), ("b", &conflict_b)], &[]).contains("conflicting values"));

        let secret = named(
            "token",
            from(ArgumentValueFrom {
                secret_key_ref: Some(SecretKeyRef::default()),
                ..Default::default()
            }),
        );
        let in_condition = template(
            vec![secret],
            vec![uses("rate", "up").with_success("result > {{args.token}}")],
        );
        assert!(run(&[("t", &in_condition)], &[]).contains("may only be used in the provider"));

        let no_hash = ArgumentSources {
            latest_hash: None,
            ..sources(&rollout)
        };
        let latest = named(
            "hash",
            from(ArgumentValueFrom {
                pod_template_hash_value: Some(PodTemplateHashValue::Latest),
                ..Default::default()
            }),
        );
        let error = build_run_spec(
            &[("t", &template(vec![latest], vec![]))],
            &[],
            &no_hash,
            MetricLists::default(),
        )
        .unwrap_err();
        assert!(
            error.contains("argument \"hash\"") && error.contains("Latest"),
            "{error}"
        );

        let both = named(
            "x",
            from(ArgumentValueFrom {
                pod_template_hash_value: Some(PodTemplateHashValue::Stable),
                field_ref: Some(FieldRef::default()),
                ..Default::default()
            }),
        );
        assert!(run(&[("t", &template(vec![both], vec![]))], &[]).contains("exactly one"));
    }

    #[test]
    fn templates_merge_in_order_with_shared_arguments() {
        let rollout = rollout();
        let a = template(
            vec![Argument {
                name: "svc".into(),
                value: None,
                value_from: None,
            }],
            vec![Metric::prometheus("a", "http://p", "a{s=\"{{args.svc}}\"}")],
        );
        let b = template(
            vec![Argument::literal("svc", "web")],
            vec![Metric::prometheus("b", "http://p", "b{s=\"{{args.svc}}\"}")],
        );
        let run = build_run_spec(&[("a", &a), ("b", &b)], &[], &sources(&rollout), MetricLists::default()).unwrap();
        let queries: Vec<_> = run.metrics.iter().map(|m| recorded_query(m).unwrap()).collect();
        assert_eq!(queries, vec!["a{s=\"web\"}", "b{s=\"web\"}"]);
    }
}
