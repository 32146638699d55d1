//! The Experiment a Rollout's experiment step creates (Argo's shape): one template per step template,
//! from the stable ReplicaSet's or the Rollout's current pod template, and the Rollout-level argument
//! sources (podTemplateHashValue, fieldRef) resolved into literals, since the Experiment controller
//! knows no Rollout. Pure: the stable template is read by the caller.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::{Resource, ResourceExt};

use crate::api::analysis::AnalysisPhase;
use crate::api::analysis::{Argument, PodTemplateHashValue};
use crate::api::experiment::{
    Experiment, ExperimentAnalysisTemplateRef, ExperimentSpec, ReplicaSetSpecRef, RolloutExperimentStep,
    TemplateService, TemplateSpec,
};
use crate::api::keys::{EXPERIMENT_STEP_LABEL, POD_TEMPLATE_HASH_LABEL, ROLLOUT_LABEL};
use crate::api::rollout::Rollout;
use crate::rollout::plan::{ObservedExperiment, current_hash};
use crate::rollout::pod_metadata;
use crate::traffic::ExperimentBackend;

/// What an Experiment is built from besides the step.
pub struct ExperimentSource<'a> {
    pub name: &'a str,
    pub step: i32,
    /// The revision in flight (the canary's hash).
    pub hash: &'a str,
    pub stable_hash: &'a str,
    /// The stable ReplicaSet's pod template, without the labels and metadata Sluice added to it.
    pub stable_template: PodTemplateSpec,
}

/// The stable ReplicaSet's template as the Rollout wrote it: without the hash label and the ephemeral
/// role metadata recorded on the ReplicaSet (the Experiment's pods carry their own hash).
pub fn stable_template(mut template: PodTemplateSpec, annotations: &BTreeMap<String, String>) -> PodTemplateSpec {
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    if let Some(carried) = pod_metadata::recorded(annotations) {
        pod_metadata::strip_from_template(&mut template, &carried);
    }
    template
}

/// The Experiment for `step`, owned by the Rollout; an unresolvable argument is an error naming it.
pub fn build(
    rollout: &Rollout,
    source: ExperimentSource<'_>,
    step: &RolloutExperimentStep,
) -> Result<Experiment, String> {
    let templates = step
        .templates
        .iter()
        .map(|t| {
            let mut template = match t.spec_ref {
                ReplicaSetSpecRef::Stable => source.stable_template.clone(),
                ReplicaSetSpecRef::Canary => rollout.spec.template.spec(),
            };
            if let Some(metadata) = &t.metadata {
                pod_metadata::apply_to_template(&mut template, metadata);
            }
            // A template given traffic needs a Service to route to.
            let service = t
                .service
                .clone()
                .or_else(|| t.weight.map(|_| TemplateService::default()));
            TemplateSpec {
                name: t.name.clone(),
                replicas: t.replicas,
                min_ready_seconds: rollout.spec.min_ready_seconds,
                selector: t.selector.clone().unwrap_or_else(|| rollout.spec.selector.clone()),
                template: template.into(),
                service,
            }
        })
        .collect();
    let rollout_json = serde_json::to_value(rollout).map_err(|e| e.to_string())?;
    let analyses = step
        .analyses
        .iter()
        .map(|analysis| {
            let args = analysis
                .args
                .iter()
                .map(|arg| resolve(arg, &rollout_json, &source))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| format!("analysis {:?}: {e}", analysis.name))?;
            Ok(ExperimentAnalysisTemplateRef {
                args,
                ..analysis.clone()
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut experiment = Experiment::new(
        source.name,
        ExperimentSpec {
            templates,
            duration: step.duration.clone(),
            analyses,
            dry_run: step.dry_run.clone(),
            ..ExperimentSpec::default()
        },
    );
    experiment.metadata.namespace = rollout.namespace();
    experiment.metadata.labels = Some(BTreeMap::from([
        (ROLLOUT_LABEL.to_string(), rollout.name_any()),
        (POD_TEMPLATE_HASH_LABEL.to_string(), source.hash.to_string()),
        (EXPERIMENT_STEP_LABEL.to_string(), source.step.to_string()),
    ]));
    experiment.metadata.owner_references = rollout.controller_owner_ref(&()).map(|o| vec![o]);
    Ok(experiment)
}

/// The weighted templates of the experiment step the Rollout is at, while its Experiment is Running
/// (Argo's weighted experiment step): each template's Service with its weight. Empty otherwise — not
/// at such a step, aborted, the Experiment not yet Running or already ended — so the router takes
/// the backends away again when the step ends.
pub fn running_backends(rollout: &Rollout, experiments: &[ObservedExperiment]) -> Vec<ExperimentBackend> {
    let Some(status) = rollout.status.as_ref() else {
        return vec![];
    };
    let hash = current_hash(rollout);
    if status.is_aborted() || status.stable_rs.as_deref() == Some(hash.as_str()) {
        return vec![];
    }
    let steps = rollout.spec.canary().steps;
    let index = status.current_step_index_or_default();
    let Some(step) = usize::try_from(index)
        .ok()
        .and_then(|i| steps.get(i))
        .and_then(|s| s.experiment.as_ref())
    else {
        return vec![];
    };
    let followed = status.canary.as_ref().and_then(|c| c.current_experiment.as_deref());
    let Some(experiment) = experiments.iter().find(|e| {
        Some(e.name.as_str()) == followed
            && e.hash == hash
            && e.step == index
            && e.phase == AnalysisPhase::Running
            && !e.terminated
    }) else {
        return vec![];
    };
    step.templates
        .iter()
        .filter_map(|t| {
            let weight = t.weight.filter(|w| *w > 0)?;
            let (_, service) = experiment.template_services.iter().find(|(name, _)| *name == t.name)?;
            Some(ExperimentBackend {
                service: service.clone(),
                weight,
            })
        })
        .collect()
}

/// An argument with its Rollout-level source read: podTemplateHashValue and fieldRef become values;
/// secretKeyRef stays (read by the Experiment controller in the same namespace).
fn resolve(arg: &Argument, rollout: &serde_json::Value, source: &ExperimentSource<'_>) -> Result<Argument, String> {
    let Some(from) = arg.value_from.as_ref().filter(|_| arg.value.is_none()) else {
        return Ok(arg.clone());
    };
    let value = if let Some(which) = from.pod_template_hash_value {
        match which {
            PodTemplateHashValue::Stable => source.stable_hash.to_string(),
            PodTemplateHashValue::Latest => source.hash.to_string(),
        }
    } else if let Some(field) = &from.field_ref {
        crate::analysis::template::field_value(rollout, &field.field_path)
            .map_err(|e| format!("argument {:?}: {e}", arg.name))?
    } else {
        return Ok(arg.clone());
    };
    Ok(Argument {
        name: arg.name.clone(),
        value: Some(value),
        value_from: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::{ArgumentValueFrom, FieldRef, SecretKeyRef};
    use crate::api::experiment::RolloutExperimentTemplate;
    use crate::api::pod_metadata::PodMetadata;

    fn rollout() -> Rollout {
        let mut rollout = Rollout::example("web", 3, vec![]).with_image("web:v2");
        rollout.metadata.uid = Some("uid-1".into());
        rollout.metadata.namespace = Some("shop".into());
        rollout
    }

    fn template(name: &str, spec_ref: ReplicaSetSpecRef, weight: Option<i32>) -> RolloutExperimentTemplate {
        RolloutExperimentTemplate {
            name: name.into(),
            spec_ref,
            replicas: Some(2),
            metadata: Some(PodMetadata {
                labels: BTreeMap::from([("role".to_string(), name.to_string())]),
                ..Default::default()
            }),
            selector: None,
            weight,
            service: None,
        }
    }

    fn arg(name: &str, from: ArgumentValueFrom) -> Argument {
        Argument {
            name: name.into(),
            value: None,
            value_from: Some(from),
        }
    }

    #[test]
    fn templates_come_from_stable_and_canary_and_arguments_become_literals() {
        let rollout = rollout();
        let stable = Rollout::example("web", 3, vec![])
            .with_image("web:v1")
            .spec
            .template
            .spec();
        let mut stable_rs_template = stable.clone();
        stable_rs_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "old".into());
        let step = RolloutExperimentStep {
            templates: vec![
                template("baseline", ReplicaSetSpecRef::Stable, None),
                template("canary", ReplicaSetSpecRef::Canary, Some(10)),
            ],
            duration: Some("10s".into()),
            analyses: vec![ExperimentAnalysisTemplateRef {
                name: "compare".into(),
                template_name: "compare".into(),
                args: vec![
                    arg(
                        "stable",
                        ArgumentValueFrom {
                            pod_template_hash_value: Some(PodTemplateHashValue::Stable),
                            ..Default::default()
                        },
                    ),
                    arg(
                        "latest",
                        ArgumentValueFrom {
                            pod_template_hash_value: Some(PodTemplateHashValue::Latest),
                            ..Default::default()
                        },
                    ),
                    arg(
                        "name",
                        ArgumentValueFrom {
                            field_ref: Some(FieldRef {
                                field_path: "metadata.name".into(),
                            }),
                            ..Default::default()
                        },
                    ),
                    arg(
                        "token",
                        ArgumentValueFrom {
                            secret_key_ref: Some(SecretKeyRef {
                                name: "s".into(),
                                key: "k".into(),
                            }),
                            ..Default::default()
                        },
                    ),
                    Argument {
                        name: "baseline-hash".into(),
                        value: Some("{{templates.baseline.podTemplateHash}}".into()),
                        value_from: None,
                    },
                ],
                ..Default::default()
            }],
            dry_run: vec![],
        };
        let source = ExperimentSource {
            name: "web-abc-2-1",
            step: 1,
            hash: "abc",
            stable_hash: "old",
            stable_template: stable_template(stable_rs_template, &BTreeMap::new()),
        };
        let experiment = build(&rollout, source, &step).unwrap();
        assert_eq!(experiment.metadata.namespace.as_deref(), Some("shop"));
        let labels = experiment.metadata.labels.clone().unwrap();
        assert_eq!(labels[ROLLOUT_LABEL], "web");
        assert_eq!(labels[POD_TEMPLATE_HASH_LABEL], "abc");
        assert_eq!(labels[EXPERIMENT_STEP_LABEL], "1");
        let owner = &experiment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Rollout", Some(true)));
        let spec = &experiment.spec;
        assert_eq!(spec.duration.as_deref(), Some("10s"));
        let image = |t: &TemplateSpec| t.template.spec().spec.unwrap().containers[0].image.clone().unwrap();
        assert_eq!(image(&spec.templates[0]), "web:v1");
        assert_eq!(image(&spec.templates[1]), "web:v2");
        let baseline_labels = spec.templates[0].template.spec().metadata.unwrap().labels.unwrap();
        assert!(
            !baseline_labels.contains_key(POD_TEMPLATE_HASH_LABEL),
            "stable's hash is not reused"
        );
        assert_eq!(baseline_labels["role"], "baseline");
        assert_eq!(spec.templates[0].selector, rollout.spec.selector);
        assert_eq!(spec.templates[0].service, None);
        assert_eq!(
            spec.templates[1].service,
            Some(TemplateService::default()),
            "weight → Service"
        );
        assert_eq!(spec.templates[1].replicas, Some(2));
        let args = &spec.analyses[0].args;
        let value = |i: usize| args[i].value.as_deref();
        assert_eq!((value(0), value(1), value(2)), (Some("old"), Some("abc"), Some("web")));
        assert!(
            args[3].value_from.as_ref().unwrap().secret_key_ref.is_some(),
            "secret stays"
        );
        assert_eq!(
            value(4),
            Some("{{templates.baseline.podTemplateHash}}"),
            "left for the controller"
        );
    }

    #[test]
    fn only_a_running_experiment_at_its_step_routes_to_its_weighted_templates() {
        use crate::api::rollout::{CanaryStatus, CanaryStep, RolloutStatus};
        let step = CanaryStep {
            experiment: Some(RolloutExperimentStep {
                templates: vec![
                    template("baseline", ReplicaSetSpecRef::Stable, Some(10)),
                    template("canary", ReplicaSetSpecRef::Canary, Some(10)),
                    template("extra", ReplicaSetSpecRef::Canary, None),
                ],
                ..Default::default()
            }),
            ..CanaryStep::default()
        };
        let mut rollout = Rollout::example("web", 3, vec![CanaryStep::set_weight(20), step]);
        let hash = current_hash(&rollout);
        rollout.status = Some(RolloutStatus {
            stable_rs: Some("old".into()),
            current_pod_hash: Some(hash.clone()),
            current_step_index: Some(1),
            canary: Some(CanaryStatus {
                current_experiment: Some("web-x".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let experiment = |phase| ObservedExperiment {
            name: "web-x".into(),
            hash: hash.clone(),
            step: 1,
            phase,
            message: None,
            terminated: false,
            created_at: None,
            template_services: vec![
                ("baseline".into(), "web-x-baseline".into()),
                ("canary".into(), "web-x-canary".into()),
                ("extra".into(), "web-x-extra".into()),
            ],
        };
        let backends = running_backends(&rollout, &[experiment(AnalysisPhase::Running)]);
        assert_eq!(
            backends,
            vec![
                ExperimentBackend {
                    service: "web-x-baseline".into(),
                    weight: 10
                },
                ExperimentBackend {
                    service: "web-x-canary".into(),
                    weight: 10
                },
            ]
        );
        for phase in [AnalysisPhase::Pending, AnalysisPhase::Successful, AnalysisPhase::Failed] {
            assert!(running_backends(&rollout, &[experiment(phase)]).is_empty(), "{phase:?}");
        }
        let mut terminated = experiment(AnalysisPhase::Running);
        terminated.terminated = true;
        assert!(running_backends(&rollout, &[terminated]).is_empty());
        let mut aborted = rollout.clone();
        aborted.status.as_mut().unwrap().abort = Some(true);
        assert!(running_backends(&aborted, &[experiment(AnalysisPhase::Running)]).is_empty());
        let mut moved_on = rollout.clone();
        moved_on.status.as_mut().unwrap().current_step_index = Some(2);
        assert!(running_backends(&moved_on, &[experiment(AnalysisPhase::Running)]).is_empty());
    }

    #[test]
    fn an_unknown_field_ref_names_the_analysis_and_argument() {
        let step = RolloutExperimentStep {
            templates: vec![template("canary", ReplicaSetSpecRef::Canary, None)],
            analyses: vec![ExperimentAnalysisTemplateRef {
                name: "a".into(),
                template_name: "t".into(),
                args: vec![arg(
                    "x",
                    ArgumentValueFrom {
                        field_ref: Some(FieldRef {
                            field_path: "metadata.labels['nope']".into(),
                        }),
                        ..Default::default()
                    },
                )],
                ..Default::default()
            }],
            ..Default::default()
        };
        let source = ExperimentSource {
            name: "e",
            step: 0,
            hash: "h",
            stable_hash: "s",
            stable_template: PodTemplateSpec::default(),
        };
        let error = build(&rollout(), source, &step).unwrap_err();
        assert!(error.contains("\"a\"") && error.contains("\"x\""), "{error}");
    }
}
