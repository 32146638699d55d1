//! Builders for tests, demos and examples: small valid objects with the common knobs exposed as
//! chained `with_*` methods, instead of walls of YAML in every test.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::analysis::{
    AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument, ClusterAnalysisTemplate,
    ClusterAnalysisTemplateSpec, Metric, MetricProvider, PrometheusMetric,
};
use super::gitsync::{GitRef, GitSync, GitSyncSpec};
use super::rollout::{
    AnalysisTemplateRef, BlueGreenStrategy, CanaryStep, CanaryStrategy, PauseStep, Rollout, RolloutAnalysis,
    RolloutSpec, RolloutStatus, RolloutStrategy, SetCanaryScale, TrafficRouting,
};

/// Namespace the fixtures live in unless told otherwise.
pub const NAMESPACE: &str = "default";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(NAMESPACE.to_string()),
        generation: Some(1),
        ..ObjectMeta::default()
    }
}

impl Rollout {
    /// A canary Rollout of `replicas` pods labelled `app: NAME`, one container `app` running
    /// `example.com/NAME:1`.
    pub fn example(name: &str, replicas: i32, steps: Vec<CanaryStep>) -> Rollout {
        let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
        let spec = RolloutSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some(format!("example.com/{name}:1")),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            }
            .into(),
            strategy: RolloutStrategy {
                canary: Some(CanaryStrategy {
                    steps,
                    ..CanaryStrategy::default()
                }),
                blue_green: None,
            },
            ..RolloutSpec::default()
        };
        let mut rollout = Rollout::new(name, spec);
        rollout.metadata = meta(name);
        rollout
    }

    /// A blue-green Rollout like `example`: active Service `NAME-active`, preview Service `NAME-preview`.
    pub fn blue_green_example(name: &str, replicas: i32) -> Rollout {
        let mut rollout = Rollout::example(name, replicas, vec![]);
        rollout.spec.strategy = RolloutStrategy {
            canary: None,
            blue_green: Some(Box::new(BlueGreenStrategy {
                active_service: format!("{name}-active"),
                preview_service: Some(format!("{name}-preview")),
                ..BlueGreenStrategy::default()
            })),
        };
        rollout
    }

    /// Edits the blue-green strategy in place (creating it, without Services, when there is none).
    pub fn with_blue_green(mut self, edit: impl FnOnce(&mut BlueGreenStrategy)) -> Self {
        edit(self.spec.strategy.blue_green.get_or_insert_with(Box::default));
        self
    }

    /// The same Rollout in another namespace.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.to_string());
        self
    }

    /// Sets metadata.generation (what the API server bumps on spec changes).
    pub fn with_generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    /// Runs another image in the first container: a new pod template, hence a new canary.
    pub fn with_image(mut self, image: &str) -> Self {
        self.spec.template.update(|template| {
            if let Some(container) = template.spec.as_mut().and_then(|pod| pod.containers.first_mut()) {
                container.image = Some(image.to_string());
            }
        });
        self
    }

    /// Edits the canary strategy in place.
    pub fn with_canary(mut self, edit: impl FnOnce(&mut CanaryStrategy)) -> Self {
        edit(self.spec.strategy.canary.get_or_insert_with(CanaryStrategy::default));
        self
    }

    /// Names the canary and stable Services.
    pub fn with_services(self, canary: &str, stable: &str) -> Self {
        self.with_canary(|c| {
            c.canary_service = Some(canary.to_string());
            c.stable_service = Some(stable.to_string());
        })
    }

    /// Routes traffic with this router.
    pub fn with_traffic_routing(self, routing: TrafficRouting) -> Self {
        self.with_canary(|c| c.traffic_routing = Some(routing))
    }

    /// Runs this template as background analysis.
    pub fn with_background_analysis(self, template: &str) -> Self {
        self.with_canary(|c| c.analysis = Some(RolloutAnalysis::template(template)))
    }

    /// Sets spec.paused.
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.spec.paused = Some(paused);
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: RolloutStatus) -> Self {
        self.status = Some(status);
        self
    }
}

impl CanaryStep {
    /// `setWeight: weight`.
    pub fn set_weight(weight: i32) -> Self {
        CanaryStep {
            set_weight: Some(weight),
            ..CanaryStep::default()
        }
    }

    /// `pause: {}` — until promoted.
    pub fn pause() -> Self {
        CanaryStep {
            pause: Some(PauseStep::default()),
            ..CanaryStep::default()
        }
    }

    /// `pause: {duration: …}`, e.g. `"30s"`.
    pub fn pause_for(duration: &str) -> Self {
        CanaryStep {
            pause: Some(PauseStep {
                duration: Some(IntOrString::String(duration.to_string())),
            }),
            ..CanaryStep::default()
        }
    }

    /// `analysis: {templates: [{templateName: …}]}`.
    pub fn analysis(template: &str) -> Self {
        CanaryStep {
            analysis: Some(RolloutAnalysis::template(template)),
            ..CanaryStep::default()
        }
    }

    /// `setCanaryScale: {replicas: …}`.
    pub fn set_canary_replicas(replicas: i32) -> Self {
        CanaryStep {
            set_canary_scale: Some(SetCanaryScale {
                replicas: Some(replicas),
                ..SetCanaryScale::default()
            }),
            ..CanaryStep::default()
        }
    }
}

impl RolloutAnalysis {
    /// Analysis from one namespaced template, without arguments.
    pub fn template(name: &str) -> Self {
        RolloutAnalysis {
            templates: vec![AnalysisTemplateRef {
                template_name: name.to_string(),
                ..AnalysisTemplateRef::default()
            }],
            ..RolloutAnalysis::default()
        }
    }

    /// Adds a literal argument.
    pub fn with_arg(mut self, name: &str, value: &str) -> Self {
        self.args.push(Argument::literal(name, value));
        self
    }
}

impl Argument {
    /// `{name, value}`.
    pub fn literal(name: &str, value: &str) -> Self {
        Argument {
            name: name.to_string(),
            value: Some(value.to_string()),
            value_from: None,
        }
    }
}

impl Metric {
    /// A Prometheus metric measured once, without conditions.
    pub fn prometheus(name: &str, address: &str, query: &str) -> Self {
        Metric {
            name: name.to_string(),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    address: address.to_string(),
                    query: query.to_string(),
                    ..PrometheusMetric::default()
                }),
                ..MetricProvider::default()
            },
            ..Metric::default()
        }
    }

    /// Sets successCondition.
    pub fn with_success(mut self, condition: &str) -> Self {
        self.success_condition = Some(condition.to_string());
        self
    }

    /// Sets failureCondition.
    pub fn with_failure(mut self, condition: &str) -> Self {
        self.failure_condition = Some(condition.to_string());
        self
    }

    /// Measures `count` times, `interval` apart.
    pub fn with_schedule(mut self, interval: &str, count: i32) -> Self {
        self.interval = Some(interval.to_string());
        self.count = Some(IntOrString::Int(count));
        self
    }

    /// Sets failureLimit.
    pub fn with_failure_limit(mut self, limit: i32) -> Self {
        self.failure_limit = Some(IntOrString::Int(limit));
        self
    }
}

impl AnalysisTemplate {
    /// A template with these metrics.
    pub fn example(name: &str, metrics: Vec<Metric>) -> Self {
        let mut template = AnalysisTemplate::new(
            name,
            AnalysisTemplateSpec {
                args: vec![],
                metrics,
                ..Default::default()
            },
        );
        template.metadata = meta(name);
        template
    }
}

impl ClusterAnalysisTemplate {
    /// A cluster-scoped template with these metrics.
    pub fn example(name: &str, metrics: Vec<Metric>) -> Self {
        let spec = ClusterAnalysisTemplateSpec {
            template: AnalysisTemplateSpec {
                args: vec![],
                metrics,
                ..Default::default()
            },
        };
        let mut template = ClusterAnalysisTemplate::new(name, spec);
        template.metadata.generation = Some(1);
        template
    }
}

impl AnalysisRun {
    /// A run of these metrics, not started.
    pub fn example(name: &str, metrics: Vec<Metric>) -> Self {
        let mut run = AnalysisRun::new(
            name,
            AnalysisRunSpec {
                metrics,
                ..AnalysisRunSpec::default()
            },
        );
        run.metadata = meta(name);
        run
    }
}

impl GitSync {
    /// Syncs `path` of the repository's `main` branch.
    pub fn example(name: &str, repo_url: &str, path: &str) -> Self {
        let spec = GitSyncSpec {
            repo_url: repo_url.to_string(),
            git_ref: Some(GitRef {
                branch: Some("main".into()),
                ..GitRef::default()
            }),
            path: Some(path.to_string()),
            ..GitSyncSpec::default()
        };
        let mut sync = GitSync::new(name, spec);
        sync.metadata = meta(name);
        sync
    }
}
