//! What an InvalidSpec condition and its Warning event say: each problem of a spec with the field path
//! it is at. Shared by every part that validates a user's spec (rollout, traffic routers, gitsync).
use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Dotted path such as `spec.strategy.canary.steps[2].setWeight`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems joined into one message, as shown in the InvalidSpec condition.
pub fn summary(errors: &[SpecError]) -> String {
    errors.iter().map(SpecError::to_string).collect::<Vec<_>>().join("; ")
}

/// The problems a validator has found so far, and the checks every spec kind shares.
#[derive(Default)]
pub struct Findings(pub Vec<SpecError>);

impl Findings {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// An optional integer field outside `range` (an unbounded end is `i32::MAX`).
    pub fn check_range(&mut self, field: &str, value: Option<i32>, range: RangeInclusive<i32>) {
        let Some(value) = value else { return };
        if range.contains(&value) {
            return;
        }
        let message = if *range.end() == i32::MAX {
            format!("must be at least {}, got {value}", range.start())
        } else {
            format!("must be between {} and {}, got {value}", range.start(), range.end())
        };
        self.add(field, message);
    }

    pub fn check_dns_label(&mut self, field: &str, name: &str) {
        if let Err(message) = dns_label(name) {
            self.add(field, message);
        }
    }

    /// A selector at `field` that is empty (it would select every pod of the namespace) or does not
    /// select the pod template's `labels` (at `labels_field`): its pods would never be counted.
    pub fn check_selector(
        &mut self,
        field: &str,
        selector: &LabelSelector,
        labels: &BTreeMap<String, String>,
        labels_field: &str,
    ) {
        let match_labels = selector.match_labels.clone().unwrap_or_default();
        let expressions = selector.match_expressions.clone().unwrap_or_default();
        if match_labels.is_empty() && expressions.is_empty() {
            self.add(field, "must not be empty: it would select every pod in the namespace");
            return;
        }
        for (key, value) in &match_labels {
            if labels.get(key) != Some(value) {
                self.add(
                    format!("{field}.matchLabels"),
                    format!("{key}={value} does not match {labels_field}"),
                );
            }
        }
        for (i, expression) in expressions.iter().enumerate() {
            let values = expression.values.clone().unwrap_or_default();
            let label = labels.get(&expression.key);
            let matches = match expression.operator.as_str() {
                "In" => label.is_some_and(|l| values.contains(l)),
                "NotIn" => label.is_none_or(|l| !values.contains(l)),
                "Exists" => label.is_some(),
                "DoesNotExist" => label.is_none(),
                other => {
                    self.add(
                        format!("{field}.matchExpressions[{i}].operator"),
                        format!("unknown operator {other:?}: use In, NotIn, Exists or DoesNotExist"),
                    );
                    continue;
                }
            };
            if !matches {
                self.add(
                    format!("{field}.matchExpressions[{i}]"),
                    format!("does not match {labels_field}"),
                );
            }
        }
    }
}

/// A Kubernetes DNS label (RFC 1123): 1–63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("must be at most 63 characters, got {}", name.len()));
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ends_ok = name.bytes().next().is_some_and(alnum) && name.bytes().last().is_some_and(alnum);
    if valid_chars && ends_ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)",
            crate::bounds::truncate(name, 80)
        ))
    }
}
