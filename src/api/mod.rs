//! The Sluice API (`sluice.dev/v1alpha1`): Rollout, AnalysisTemplate, ClusterAnalysisTemplate,
//! AnalysisRun, Experiment and GitSync, their conditions, the generated CRDs and the duration grammar.
pub mod analysis;
pub mod conditions;
pub mod crds;
pub mod duration;
pub mod experiment;
/// Builders of example resources for tests; compiled only for the crate's tests and with the feature
/// `test-fixtures` (which the e2e kit turns on), never into the controller.
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
pub mod gitsync;
pub mod keys;
pub mod pod_metadata;
pub mod pod_template;
pub mod rollout;
pub mod spec_error;
pub mod workload_ref;

pub use analysis::{
    AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate,
    ClusterAnalysisTemplateSpec,
};
pub use conditions::{Condition, ConditionStatus};
pub use experiment::{Experiment, ExperimentSpec, ExperimentStatus};
pub use gitsync::{GitSync, GitSyncSpec, GitSyncStatus};
pub use pod_template::PodTemplate;
pub use rollout::{Rollout, RolloutSpec, RolloutStatus};

/// The API group of every Sluice resource.
pub const GROUP: &str = "sluice.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Schema of the `chrono::DateTime<Utc>` fields (schemars' chrono support is not enabled): an RFC3339
/// timestamp, as Kubernetes' `metav1.Time` is described.
pub(crate) struct Timestamp;

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}
