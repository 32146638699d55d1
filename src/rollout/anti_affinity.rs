//! `antiAffinity` (Argo's shape, for canary and blue-green alike): the new ReplicaSet's pods avoid the
//! nodes running the pods of another revision (the stable, or active, one), so a bad node does not
//! take both versions down and the two versions are compared on different hardware. Added to the
//! new ReplicaSet's pod template only; the Rollout's template, and so its hash, is unchanged.
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::pod_metadata::AntiAffinity;
use crate::rollout::validate::SpecError;

/// Spreads over nodes (what "another node" means).
pub const TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Problems with `antiAffinity` at `field`: exactly one kind, a weight of 1..100.
pub fn check(field: &str, anti_affinity: &AntiAffinity) -> Vec<SpecError> {
    let preferred = &anti_affinity.preferred_during_scheduling_ignored_during_execution;
    let required = &anti_affinity.required_during_scheduling_ignored_during_execution;
    let mut errors = Vec::new();
    if preferred.is_some() == required.is_some() {
        errors.push(SpecError {
            field: field.into(),
            message: "set exactly one of preferredDuringSchedulingIgnoredDuringExecution and \
                      requiredDuringSchedulingIgnoredDuringExecution"
                .into(),
        });
    }
    if let Some(preferred) = preferred
        && !(1..=100).contains(&preferred.weight)
    {
        errors.push(SpecError {
            field: format!("{field}.preferredDuringSchedulingIgnoredDuringExecution.weight"),
            message: format!("must be between 1 and 100, got {}", preferred.weight),
        });
    }
    errors
}

/// Adds to `template` a pod anti-affinity against the pods of revision `avoid_hash`, next to any
/// affinity the template has.
pub fn inject(template: &mut PodTemplateSpec, anti_affinity: &AntiAffinity, avoid_hash: &str) {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: POD_TEMPLATE_HASH_LABEL.into(),
                operator: "In".into(),
                values: Some(vec![avoid_hash.into()]),
            }]),
            match_labels: None,
        }),
        topology_key: TOPOLOGY_KEY.into(),
        ..Default::default()
    };
    let spec = template.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let pod_anti_affinity = affinity.pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
    if let Some(preferred) = &anti_affinity.preferred_during_scheduling_ignored_during_execution {
        pod_anti_affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight: preferred.weight.clamp(1, 100),
            });
    } else if anti_affinity
        .required_during_scheduling_ignored_during_execution
        .is_some()
    {
        pod_anti_affinity
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod_metadata::{PreferredAntiAffinity, RequiredAntiAffinity};

    #[test]
    fn preferred_and_required_terms_select_the_other_revisions_pods() {
        let preferred = AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity { weight: 40 }),
            ..Default::default()
        };
        let mut template = PodTemplateSpec::default();
        inject(&mut template, &preferred, "stable1");
        let anti = template.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
        let terms = anti.preferred_during_scheduling_ignored_during_execution.unwrap();
        assert_eq!(terms[0].weight, 40);
        let term = &terms[0].pod_affinity_term;
        assert_eq!(term.topology_key, TOPOLOGY_KEY);
        let requirement = &term
            .label_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (requirement.key.as_str(), requirement.values.as_deref()),
            (POD_TEMPLATE_HASH_LABEL, Some(&["stable1".to_string()][..]))
        );
        let required = AntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
            ..Default::default()
        };
        let mut template = PodTemplateSpec::default();
        inject(&mut template, &required, "stable1");
        let anti = template.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
        assert_eq!(
            anti.required_during_scheduling_ignored_during_execution.unwrap().len(),
            1
        );
    }

    #[test]
    fn exactly_one_kind_and_a_weight_in_range() {
        assert_eq!(check("a", &AntiAffinity::default())[0].field, "a");
        let both = AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity { weight: 0 }),
            required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
        };
        let fields: Vec<String> = check("a", &both).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["a", "a.preferredDuringSchedulingIgnoredDuringExecution.weight"]
        );
    }
}
