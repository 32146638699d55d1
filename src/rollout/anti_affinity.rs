//! Argo's `antiAffinity`: the new version's pods avoid the nodes of the other version's pods (by its
//! pod-template-hash), so a node failure cannot take both down. Added to a new ReplicaSet's pod
//! template when it is created; the user's own affinity terms are kept.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::keys::POD_TEMPLATE_HASH_LABEL;
use crate::api::rollout::AntiAffinity;

/// The topology anti-affinity spreads over (as Argo: one node).
pub const TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Adds to `template` a podAntiAffinity term against pods of `other_hash`.
pub fn inject(template: &mut PodTemplateSpec, anti: &AntiAffinity, other_hash: &str) {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                POD_TEMPLATE_HASH_LABEL.to_string(),
                other_hash.to_string(),
            )])),
            ..LabelSelector::default()
        }),
        topology_key: TOPOLOGY_KEY.into(),
        ..PodAffinityTerm::default()
    };
    let spec = template.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let anti_affinity = affinity.pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
    if let Some(preferred) = &anti.preferred_during_scheduling_ignored_during_execution {
        anti_affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: preferred.weight,
                pod_affinity_term: term,
            });
    } else if anti.required_during_scheduling_ignored_during_execution.is_some() {
        anti_affinity
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{PreferredAntiAffinity, RequiredAntiAffinity};

    #[test]
    fn preferred_and_required_terms_name_the_other_hash_and_keep_the_users_terms() {
        let mut template = PodTemplateSpec::default();
        let preferred = AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity { weight: 40 }),
            ..AntiAffinity::default()
        };
        inject(&mut template, &preferred, "abc");
        let required = AntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
            ..AntiAffinity::default()
        };
        inject(&mut template, &required, "abc");
        let anti = template.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
        let weighted = &anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0];
        assert_eq!(weighted.weight, 40);
        let selector = weighted.pod_affinity_term.label_selector.clone().unwrap();
        assert_eq!(selector.match_labels.unwrap()[POD_TEMPLATE_HASH_LABEL], "abc");
        let required = anti.required_during_scheduling_ignored_during_execution.unwrap();
        assert_eq!(required[0].topology_key, TOPOLOGY_KEY);
    }
}
