//! Test builders for Experiments.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

use crate::api::experiment::{Experiment, ExperimentAnalysisTemplateRef, ExperimentSpec, TemplateSpec};

/// Experiment `name` in namespace `default` with one template per name (label `app: <name>`, one
/// container with port 8080) and no analyses.
pub fn experiment(name: &str, templates: &[&str]) -> Experiment {
    let templates = templates
        .iter()
        .map(|t| TemplateSpec {
            name: t.to_string(),
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), t.to_string())])),
                ..Default::default()
            },
            template: serde_json::from_value(json!({
                "metadata": {"labels": {"app": t}},
                "spec": {"containers": [{"name": "app", "image": format!("{t}:1"), "ports": [{"containerPort": 8080}]}]},
            }))
            .unwrap(),
            ..Default::default()
        })
        .collect();
    let mut experiment = Experiment::new(
        name,
        ExperimentSpec {
            templates,
            ..Default::default()
        },
    );
    experiment.metadata.namespace = Some("default".into());
    experiment.metadata.uid = Some(format!("uid-{name}"));
    experiment
}

/// Analysis `name` running AnalysisTemplate `template`.
pub fn analysis(name: &str, template: &str) -> ExperimentAnalysisTemplateRef {
    ExperimentAnalysisTemplateRef {
        name: name.into(),
        template_name: template.into(),
        ..Default::default()
    }
}
