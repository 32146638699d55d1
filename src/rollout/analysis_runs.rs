//! AnalysisRuns for Rollouts: reads the AnalysisTemplates / ClusterAnalysisTemplates a Rollout names
//! and builds the run (metrics merged, arguments resolved) with the labels and owner the Rollout
//! controller follows. Missing templates are reported as spec errors with the field path.
use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::Api;
use kube::{Client, Resource, ResourceExt};

use crate::analysis::template::{self, ArgumentSources, MetricLists};
use crate::api::analysis::{AnalysisRun, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate};
use crate::api::rollout::{Rollout, RolloutAnalysis};
use crate::rollout::hash::POD_TEMPLATE_HASH_LABEL;
use crate::rollout::plan::AnalysisKind;
use crate::rollout::reconcile::{
    ANALYSIS_LABEL, AnalysisRequest, AnalysisRunFactory, POST_PROMOTION, PRE_PROMOTION, ROLLOUT_LABEL,
};
use crate::rollout::validate::SpecError;

/// Reads templates through the API server (each call bounded by a timeout).
pub struct TemplateAnalysisRunFactory {
    client: Client,
    timeout: Duration,
}

impl TemplateAnalysisRunFactory {
    pub fn new(client: Client) -> Self {
        TemplateAnalysisRunFactory {
            client,
            timeout: Duration::from_secs(15),
        }
    }

    /// The template spec, `Ok(None)` when it does not exist (also read by the Experiment controller).
    pub async fn template(
        &self,
        namespace: &str,
        name: &str,
        cluster: bool,
    ) -> Result<Option<AnalysisTemplateSpec>, String> {
        let fetch = async {
            if cluster {
                let api: Api<ClusterAnalysisTemplate> = Api::all(self.client.clone());
                api.get_opt(name).await.map(|t| t.map(|t| t.spec.template))
            } else {
                let api: Api<AnalysisTemplate> = Api::namespaced(self.client.clone(), namespace);
                api.get_opt(name).await.map(|t| t.map(|t| t.spec))
            }
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(result) => result.map_err(|e| format!("reading {} {name:?}: {e}", kind(cluster))),
            Err(_) => Err(format!(
                "reading {} {name:?}: no answer within {:?}",
                kind(cluster),
                self.timeout
            )),
        }
    }
}

pub fn kind(cluster: bool) -> &'static str {
    if cluster {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

/// Every analysis a Rollout declares, with the field path of its `templates` list.
fn analyses(rollout: &Rollout) -> Vec<(String, RolloutAnalysis)> {
    let canary = rollout.spec.canary();
    let mut found: Vec<(String, RolloutAnalysis)> = canary
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            step.analysis
                .clone()
                .map(|a| (format!("spec.strategy.canary.steps[{i}].analysis"), a))
        })
        .collect();
    if let Some(background) = canary.analysis {
        found.push(("spec.strategy.canary.analysis".into(), background));
    }
    if let Some(blue_green) = rollout.spec.blue_green() {
        for (field, analysis) in [
            ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
            ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
        ] {
            if let Some(analysis) = analysis {
                found.push((format!("spec.strategy.blueGreen.{field}"), analysis.clone()));
            }
        }
    }
    found
}

#[async_trait::async_trait]
impl AnalysisRunFactory for TemplateAnalysisRunFactory {
    async fn build(&self, rollout: &Rollout, request: &AnalysisRequest) -> Result<AnalysisRun, String> {
        let namespace = rollout.namespace().unwrap_or_default();
        let mut templates = Vec::new();
        for reference in &request.analysis.templates {
            let cluster = reference.is_cluster_scope();
            let spec = self
                .template(&namespace, reference.name(), cluster)
                .await?
                .ok_or_else(|| format!("{} {:?} not found", kind(cluster), reference.name()))?;
            templates.push((reference.name().to_string(), spec));
        }
        let named: Vec<(&str, &AnalysisTemplateSpec)> = templates.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let rollout_json = serde_json::to_value(rollout).map_err(|e| e.to_string())?;
        let sources = ArgumentSources {
            rollout: &rollout_json,
            stable_hash: request.stable_hash.as_deref(),
            latest_hash: Some(request.hash.as_str()),
        };
        let lists = MetricLists {
            dry_run: &request.analysis.dry_run,
            measurement_retention: &request.analysis.measurement_retention,
        };
        let spec = template::build_run_spec(&named, &request.analysis.args, &sources, lists)?;
        let which = match request.kind {
            AnalysisKind::Step(i) => format!("step-{i}"),
            AnalysisKind::Background => "background".into(),
            AnalysisKind::PrePromotion => PRE_PROMOTION.into(),
            AnalysisKind::PostPromotion => POST_PROMOTION.into(),
        };
        let labels = BTreeMap::from([
            (ROLLOUT_LABEL.to_string(), rollout.name_any()),
            (POD_TEMPLATE_HASH_LABEL.to_string(), request.hash.clone()),
            (ANALYSIS_LABEL.to_string(), which),
        ]);
        let mut run = AnalysisRun::new(&request.name, spec);
        run.metadata.namespace = Some(namespace);
        run.metadata.labels = Some(labels);
        run.metadata.owner_references = rollout.controller_owner_ref(&()).map(|o| vec![o]);
        Ok(run)
    }

    async fn check_references(&self, rollout: &Rollout) -> Vec<SpecError> {
        let namespace = rollout.namespace().unwrap_or_default();
        let mut errors = Vec::new();
        for (field, analysis) in analyses(rollout) {
            for (i, reference) in analysis.templates.iter().enumerate() {
                let cluster = reference.is_cluster_scope();
                let field = format!("{field}.templates[{i}].templateName");
                match self.template(&namespace, reference.name(), cluster).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let scope = if cluster {
                            String::new()
                        } else {
                            format!(" in namespace {namespace:?}")
                        };
                        errors.push(SpecError {
                            field,
                            message: format!("{} {:?} not found{scope}", kind(cluster), reference.name()),
                        });
                    }
                    // Unreachable API: not the user's fault; the reconcile retries when it builds the run.
                    Err(e) => tracing::debug!(error = %e, "could not check analysis template"),
                }
            }
        }
        errors
    }
}
