//! `spec.workloadRef`: the Rollout runs the pod template of a Deployment. The reconciler reads the
//! Deployment and [`resolve`]s it into the Rollout it plans with, so the plan and everything after it
//! see an ordinary Rollout; [`deployment_replicas`] decides how far the Deployment itself is scaled
//! down as the Rollout takes over (`scaleDown`). Both are pure.
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::rollout::{Rollout, RolloutPhase, RolloutStatus};
use crate::api::workload_ref::{DEPLOYMENT_API_VERSION, DEPLOYMENT_KIND, WorkloadRef, WorkloadScaleDown};
use crate::rollout::validate::SpecError;

/// Longest Kubernetes object name.
const MAX_NAME: usize = 253;

fn error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: format!("spec.workloadRef{field}"),
        message: message.into(),
    }
}

/// Problems with the reference itself: only an `apps/v1` Deployment with a DNS-subdomain name.
pub fn check_reference(reference: &WorkloadRef) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if reference.api_version != DEPLOYMENT_API_VERSION {
        errors.push(error(
            ".apiVersion",
            format!(
                "{:?} is not supported: only {DEPLOYMENT_API_VERSION} {DEPLOYMENT_KIND}",
                truncate(&reference.api_version)
            ),
        ));
    }
    if reference.kind != DEPLOYMENT_KIND {
        errors.push(error(
            ".kind",
            format!(
                "{:?} is not supported: only {DEPLOYMENT_API_VERSION} {DEPLOYMENT_KIND}",
                truncate(&reference.kind)
            ),
        ));
    }
    if !is_dns_subdomain(&reference.name) {
        errors.push(error(
            ".name",
            format!(
                "{:?} is not a valid Deployment name (lowercase letters, digits, '-' and '.', at most {MAX_NAME})",
                truncate(&reference.name)
            ),
        ));
    }
    errors
}

/// The problem of a spec as written that only exists before it is resolved: a template next to the
/// reference (which one would run?). The reference's own fields are checked by `validate`.
pub fn check_unresolved(rollout: &Rollout) -> Vec<SpecError> {
    if rollout.spec.workload_ref.is_none() || rollout.spec.template.is_empty() {
        return vec![];
    }
    vec![SpecError {
        field: "spec.template".into(),
        message: "must not be set together with spec.workloadRef: remove one".into(),
    }]
}

/// The Rollout to plan with: spec.template is the Deployment's pod template, and spec.selector the
/// Deployment's when the Rollout sets none (Argo allows either; a Rollout's own selector wins). A
/// Rollout without workloadRef comes back unchanged. Errors carry the field path, as InvalidSpec;
/// call it only with a valid reference ([`check_reference`]), which `validate` reports otherwise.
pub fn resolve(rollout: &Rollout, deployment: Option<&Deployment>) -> Result<Rollout, Vec<SpecError>> {
    let Some(reference) = &rollout.spec.workload_ref else {
        return Ok(rollout.clone());
    };
    let errors = check_unresolved(rollout);
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(deployment) = deployment else {
        return Err(vec![error(
            ".name",
            format!(
                "Deployment {:?} not found in namespace {:?}",
                reference.name,
                rollout.metadata.namespace.as_deref().unwrap_or_default()
            ),
        )]);
    };
    let Some(spec) = &deployment.spec else {
        return Err(vec![error(
            ".name",
            format!("Deployment {:?} has no spec", reference.name),
        )]);
    };
    let mut resolved = rollout.clone();
    resolved.spec.template = spec.template.clone().into();
    if resolved.spec.selector == LabelSelector::default() {
        resolved.spec.selector = spec.selector.clone();
    }
    Ok(resolved)
}

/// The replicas the referenced Deployment should be scaled to now, or None to leave it as it is.
/// Never scales it up: its capacity belongs to whoever wrote it (Git, a person), and Sluice only takes
/// pods away as its own replace them.
/// - `never`: None.
/// - `onsuccess`: 0 once the Rollout is Healthy with every desired pod available.
/// - `progressively`: desired − the Rollout's available pods (at least 0, at most the Deployment's
///   current replicas); 0 once Healthy with every pod available.
pub fn deployment_replicas(
    mode: WorkloadScaleDown,
    status: &RolloutStatus,
    desired: i32,
    deployment_replicas: i32,
) -> Option<i32> {
    let available = status.available_replicas.unwrap_or(0).max(0);
    let fully_available = status.phase == Some(RolloutPhase::Healthy) && available >= desired;
    let target = match mode {
        WorkloadScaleDown::Never => return None,
        WorkloadScaleDown::OnSuccess if fully_available => 0,
        WorkloadScaleDown::OnSuccess => return None,
        WorkloadScaleDown::Progressively if fully_available => 0,
        WorkloadScaleDown::Progressively => desired.checked_sub(available).unwrap_or(0).max(0),
    };
    let target = target.min(deployment_replicas.max(0));
    (target != deployment_replicas).then_some(target)
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A user's value quoted in a message, cut so a hostile one cannot blow up a condition.
fn truncate(value: &str) -> &str {
    match value.char_indices().nth(64) {
        Some((at, _)) => &value[..at],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::CanaryStep;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use proptest::prelude::*;

    fn reference(scale_down: Option<WorkloadScaleDown>) -> WorkloadRef {
        WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            scale_down,
        }
    }

    fn referencing() -> Rollout {
        let mut rollout = Rollout::example("web", 5, vec![CanaryStep::set_weight(20)]);
        rollout.spec.template = Default::default();
        rollout.spec.selector = LabelSelector::default();
        rollout.spec.workload_ref = Some(reference(None));
        rollout
    }

    fn deployment(image: &str) -> Deployment {
        let labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(0),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn resolving_takes_the_template_and_selector_of_the_deployment() {
        let rollout = referencing();
        let resolved = resolve(&rollout, Some(&deployment("web:1"))).unwrap();
        assert_eq!(
            resolved.spec.template,
            deployment("web:1").spec.unwrap().template.into()
        );
        assert_eq!(resolved.spec.selector, deployment("web:1").spec.unwrap().selector);
        assert!(crate::rollout::validate::validate(&resolved).is_empty());
        // A new image in the Deployment is a new revision of the Rollout.
        let newer = resolve(&rollout, Some(&deployment("web:2"))).unwrap();
        assert_ne!(
            crate::rollout::plan::current_hash(&resolved),
            crate::rollout::plan::current_hash(&newer)
        );
    }

    #[test]
    fn a_rollouts_own_selector_wins_and_must_match_the_deployments_template() {
        let mut rollout = referencing();
        rollout.spec.selector = LabelSelector {
            match_labels: Some([("app".to_string(), "other".to_string())].into()),
            ..Default::default()
        };
        let resolved = resolve(&rollout, Some(&deployment("web:1"))).unwrap();
        let errors = crate::rollout::validate::validate(&resolved);
        assert_eq!(errors[0].field, "spec.selector.matchLabels", "{errors:?}");
    }

    #[test]
    fn a_missing_deployment_or_a_template_next_to_the_reference_is_invalid() {
        let rollout = referencing();
        let missing = resolve(&rollout, None).unwrap_err();
        assert_eq!(missing[0].field, "spec.workloadRef.name");
        assert!(missing[0].message.contains("not found"), "{missing:?}");
        let mut both = Rollout::example("web", 5, vec![]);
        both.spec.workload_ref = Some(reference(None));
        let errors = resolve(&both, Some(&deployment("web:1"))).unwrap_err();
        assert_eq!(errors[0].field, "spec.template");
        // Unresolved, the spec is not reported for the template it has yet to get.
        assert!(crate::rollout::validate::validate(&rollout).is_empty());
    }

    #[test]
    fn only_apps_v1_deployments_with_valid_names_are_accepted() {
        let mut bad = reference(None);
        bad.api_version = "apps/v1beta1".into();
        bad.kind = "StatefulSet".into();
        bad.name = "Not_Valid".into();
        let fields: Vec<String> = check_reference(&bad).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.workloadRef.apiVersion",
                "spec.workloadRef.kind",
                "spec.workloadRef.name"
            ]
        );
        assert!(check_reference(&reference(None)).is_empty());
        let long = WorkloadRef {
            name: "a".repeat(254),
            ..reference(None)
        };
        assert_eq!(check_reference(&long).len(), 1);
        assert!(check_reference(&long)[0].message.len() < 200);
    }

    fn status(phase: RolloutPhase, available: i32) -> RolloutStatus {
        RolloutStatus {
            phase: Some(phase),
            available_replicas: Some(available),
            ..Default::default()
        }
    }

    #[test]
    fn scale_down_modes() {
        use WorkloadScaleDown::*;
        let progressing = status(RolloutPhase::Progressing, 2);
        let healthy = status(RolloutPhase::Healthy, 5);
        assert_eq!(deployment_replicas(Never, &healthy, 5, 5), None);
        assert_eq!(deployment_replicas(OnSuccess, &progressing, 5, 5), None);
        assert_eq!(deployment_replicas(OnSuccess, &healthy, 5, 5), Some(0));
        assert_eq!(deployment_replicas(OnSuccess, &healthy, 5, 0), None);
        assert_eq!(deployment_replicas(Progressively, &progressing, 5, 5), Some(3));
        assert_eq!(deployment_replicas(Progressively, &progressing, 5, 3), None);
        assert_eq!(deployment_replicas(Progressively, &healthy, 5, 3), Some(0));
        // Healthy but short of pods (a pod died): onsuccess waits.
        assert_eq!(
            deployment_replicas(OnSuccess, &status(RolloutPhase::Healthy, 4), 5, 5),
            None
        );
        // Never scaled up, whatever the Rollout lost.
        assert_eq!(
            deployment_replicas(Progressively, &status(RolloutPhase::Degraded, 0), 5, 1),
            None
        );
    }

    proptest! {
        #[test]
        fn progressively_never_scales_up_nor_below_zero_nor_past_what_the_rollout_lacks(
            desired in any::<i32>(),
            available in any::<i32>(),
            current in 0..=i32::MAX,
            healthy in any::<bool>(),
        ) {
            let phase = if healthy { RolloutPhase::Healthy } else { RolloutPhase::Progressing };
            let status = status(phase, available);
            if let Some(target) = deployment_replicas(WorkloadScaleDown::Progressively, &status, desired, current) {
                prop_assert!(target >= 0);
                prop_assert!(target < current);
                let lacking = i64::from(desired) - i64::from(available.max(0));
                prop_assert!(i64::from(target) <= lacking.max(0));
            }
            if let Some(target) = deployment_replicas(WorkloadScaleDown::OnSuccess, &status, desired, current) {
                prop_assert_eq!(target, 0);
                prop_assert!(healthy && available.max(0) >= desired && current > 0);
            }
            prop_assert_eq!(deployment_replicas(WorkloadScaleDown::Never, &status, desired, current), None);
        }
    }
}
