//! Names of what an Experiment creates, and the hash labelling its pods. Every name is bounded: a long
//! Experiment name (a Rollout's `<rollout>-<hash>-<revision>-<step>`) is truncated and given a short
//! hash suffix of the full name, so two long names that share a prefix still differ.
use serde_json::json;

use crate::api::experiment::{Experiment, ExperimentAnalysisTemplateRef, TemplateSpec};
use crate::rollout::hash::pod_template_hash;
use kube::ResourceExt;

/// Longest ReplicaSet and AnalysisRun name (DNS subdomain).
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest Service name and label value (DNS label).
pub const MAX_LABEL: usize = 63;

/// `name` when it fits in `max` bytes; else its first bytes (trailing `-`/`.` dropped) and
/// `-<hash of name>`. Names are ASCII once validated; a non-ASCII prefix is cut at a char boundary.
pub fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let suffix = pod_template_hash(&json!(name));
    let keep = max.saturating_sub(suffix.len() + 1);
    let mut end = keep.min(name.len());
    while end > 0 && !name.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = name[..end].trim_end_matches(['-', '.']);
    if prefix.is_empty() {
        suffix
    } else {
        format!("{prefix}-{suffix}")
    }
}

/// `<experiment>-<template>`.
pub fn replica_set_name(experiment: &str, template: &str) -> String {
    bounded(&format!("{experiment}-{template}"), MAX_SUBDOMAIN)
}

/// The template's Service: `service.name`, else its ReplicaSet's name as a DNS label.
pub fn service_name(experiment: &str, template: &TemplateSpec) -> Option<String> {
    let service = template.service.as_ref()?;
    Some(match service.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => bounded(&format!("{experiment}-{}", template.name), MAX_LABEL),
    })
}

/// `<experiment>-<analysis>`.
pub fn analysis_run_name(experiment: &str, analysis: &ExperimentAnalysisTemplateRef) -> String {
    bounded(&format!("{experiment}-{}", analysis.name), MAX_SUBDOMAIN)
}

/// The `sluice.dev/experiment` label value of the Experiment's objects.
pub fn experiment_label(experiment: &str) -> String {
    bounded(experiment, MAX_LABEL)
}

/// The hash of a template's pods: of the pod template and the Experiment's name, so an experiment's
/// baseline never shares a hash (nor Service endpoints) with the Rollout's stable ReplicaSet.
pub fn template_hash(experiment: &Experiment, template: &TemplateSpec) -> String {
    pod_template_hash(&json!({
        "experiment": experiment.name_any(),
        "template": template.template.to_value(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(replica_set_name("exp", "baseline"), "exp-baseline");
        assert_eq!(bounded("abc", 63), "abc");
    }

    #[test]
    fn long_names_differ_by_their_hash_suffix() {
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        assert_ne!(bounded(&a, 63), bounded(&b, 63));
        assert_eq!(bounded(&a, 63).len(), 63);
    }

    proptest! {
        #[test]
        fn bounded_names_fit_and_are_stable(name in "[a-z0-9.-]{0,400}", max in 11usize..300) {
            let first = bounded(&name, max);
            prop_assert!(first.len() <= max, "{} > {max}", first.len());
            prop_assert_eq!(first.clone(), bounded(&name, max));
            prop_assert!(!first.ends_with('-') || name.len() <= max);
        }

        #[test]
        fn any_unicode_is_bounded_without_panicking(name in "\\PC{0,200}", max in 0usize..80) {
            let named = bounded(&name, max);
            prop_assert!(named.len() <= max.max(10));
        }
    }
}
