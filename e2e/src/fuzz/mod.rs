//! The API surface under hostile input: documents generated from the CRD schemas ([`schema`]) go through
//! what the controller does with a stored object — deserialize, validate, then the pure planning of its
//! kind — and nothing may panic. `sluice bench fuzz` runs many cases; the `api_fuzz` test a few thousand.
pub mod schema;

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use sluice::analysis::rules;
use sluice::analysis::template::{self, ArgumentSources};
use sluice::analysis::{MeasurementOutcome, ResultValue};
use sluice::api::analysis::{AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, Argument, Metric};
use sluice::api::rollout::{AbortReason, CanaryStep, Rollout};
use sluice::api::{AnalysisRun, AnalysisTemplate, GitSync};
use sluice::gitsync::health::Health;
use sluice::gitsync::plan::{self as gitsync_plan, RolloutState, SyncAttempt, SyncResult, SyncTrigger, Target};
use sluice::rollout::plan::{
    self, AnalysisKind, Observed, ObservedAnalysisRun, ObservedPod, ObservedReplicaSet, ObservedService,
    ObservedTraffic,
};
use sluice::rollout::validate;

/// The kinds whose stored objects the controller acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Rollout,
    AnalysisTemplate,
    AnalysisRun,
    GitSync,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Rollout, Kind::AnalysisTemplate, Kind::AnalysisRun, Kind::GitSync];

    /// The CRD's `spec.names.kind`.
    pub fn crd_kind(self) -> &'static str {
        match self {
            Kind::Rollout => "Rollout",
            Kind::AnalysisTemplate => "AnalysisTemplate",
            Kind::AnalysisRun => "AnalysisRun",
            Kind::GitSync => "GitSync",
        }
    }

    /// A valid object of the kind, as JSON: half the cases start from it, so that a hostile field is
    /// often the only thing wrong and the case gets past validation into planning.
    fn example(self) -> Value {
        let metric = Metric::prometheus("error-rate", "http://prometheus:9090", "sum(rate(errors[1m]))")
            .with_success("result[0] < 0.05")
            .with_schedule("1m", 3);
        let value = match self {
            Kind::Rollout => serde_json::to_value(Rollout::example(
                "web",
                10,
                vec![
                    CanaryStep::set_weight(20),
                    CanaryStep::pause_for("1m"),
                    CanaryStep::analysis("error-rate"),
                    CanaryStep::pause(),
                ],
            )),
            Kind::AnalysisTemplate => serde_json::to_value(AnalysisTemplate::example("error-rate", vec![metric])),
            Kind::AnalysisRun => serde_json::to_value(AnalysisRun::example("web-abc-s2-0", vec![metric])),
            Kind::GitSync => serde_json::to_value(GitSync::example("apps", "https://example.com/apps.git", "prod")),
        };
        value.expect("examples serialize")
    }
}

impl Kind {
    /// JSON pointers of fields a random value makes invalid nearly always (a selector that must match
    /// the template's labels), restored from the example in some cases.
    fn anchors(self) -> &'static [&'static str] {
        match self {
            Kind::Rollout => &["/spec/selector", "/spec/template"],
            Kind::AnalysisTemplate | Kind::AnalysisRun | Kind::GitSync => &[],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.crd_kind().to_lowercase())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.to_string() == text.trim().to_lowercase())
            .ok_or_else(|| format!("unknown kind {text:?} (rollout, analysistemplate, analysisrun, gitsync)"))
    }
}

/// One case: the stored object and the world it is planned in.
#[derive(Clone, Debug)]
pub struct Case {
    pub document: Value,
    pub now: DateTime<Utc>,
    /// What the providers answered, given to the metrics due in turn.
    pub results: Vec<Result<ResultValue, String>>,
    /// The head of a GitSync's ref; a Rollout argument's value for AnalysisTemplates.
    pub text: String,
}

/// How far a case got. Not getting far is fine (most hostile objects are invalid); panicking is not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub deserialized: bool,
    pub valid: bool,
    /// The kind's pure planning ran: `rollout::plan`, `rules::step`, or `gitsync::plan::decide`.
    pub planned: bool,
}

/// The `openAPIV3Schema` of the kind's CRD, generated from the types as `crds/sluice.dev.yaml` is.
pub fn crd_schema(kind: Kind) -> Value {
    sluice::api::crds::schema(kind.crd_kind()).expect("every fuzzed kind has a CRD")
}

/// Whole objects of `kind`: spec and status from the CRD schema, laid over a valid example half the time.
pub fn document_strategy(kind: Kind) -> BoxedStrategy<Value> {
    let schema = crd_schema(kind);
    // Half the cases are well-typed and mostly deserialize; the other half test serde's refusals.
    let typed = |mode| {
        (
            schema::value_strategy(&schema["properties"]["spec"], mode),
            schema::value_strategy(&schema["properties"]["status"], mode),
        )
    };
    let spec_and_status = prop_oneof![typed(schema::Mode::WellTyped), typed(schema::Mode::Hostile)];
    let metadata = (
        prop_oneof![4 => "[a-z][a-z0-9-]{0,20}", 1 => schema::hostile_string()],
        proptest::option::of(prop_oneof![Just(1i64), Just(0), Just(-1), Just(i64::MAX), any::<i64>()]),
        proptest::option::of(schema::hostile_string()),
    )
        .prop_map(|(name, generation, git_revision)| {
            let mut metadata = json!({"name": name, "namespace": "default", "uid": "0000-fuzz"});
            if let Some(generation) = generation {
                metadata["generation"] = generation.into();
            }
            if let Some(revision) = git_revision {
                metadata["annotations"] = json!({ sluice::api::keys::GIT_REVISION_ANNOTATION: revision });
            }
            metadata
        });
    let example = kind.example();
    let base = prop_oneof![Just(Base::None), Just(Base::Example), Just(Base::Mutated)];
    let picks = proptest::collection::vec(any::<proptest::sample::Index>(), 1..=3);
    (metadata, spec_and_status, any::<bool>(), base, picks)
        .prop_map(move |(metadata, (spec, status), with_status, base, picks)| {
            let mut generated = json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": kind.crd_kind(),
                "metadata": metadata,
                "spec": spec,
            });
            if with_status {
                generated["status"] = status;
            }
            let mut document = example.clone();
            match base {
                Base::None => return generated,
                Base::Example => merge(&mut document, generated),
                Base::Mutated => {
                    let mut paths = Vec::new();
                    object_paths(&generated, &mut vec![], &mut paths);
                    paths.retain(|path| path.len() > 1 && path[0] != "metadata");
                    let mut sparse = json!({});
                    for pick in picks.iter().filter(|_| !paths.is_empty()) {
                        let path = &paths[pick.index(paths.len())];
                        let value = path.iter().fold(&generated, |value, key| &value[key.as_str()]);
                        let nested = path
                            .iter()
                            .rev()
                            .fold(value.clone(), |value, key| json!({ key: value }));
                        merge(&mut sparse, nested);
                    }
                    merge(&mut document, sparse);
                    for pointer in kind.anchors() {
                        if let (Some(kept), Some(slot)) = (example.pointer(pointer), document.pointer_mut(pointer)) {
                            *slot = kept.clone();
                        }
                    }
                }
            }
            document
        })
        .boxed()
}

/// The key paths of every value inside `value`'s nested objects (arrays are not entered).
fn object_paths(value: &Value, prefix: &mut Vec<String>, paths: &mut Vec<Vec<String>>) {
    let Value::Object(object) = value else { return };
    for (key, inner) in object {
        prefix.push(key.clone());
        paths.push(prefix.clone());
        object_paths(inner, prefix, paths);
        prefix.pop();
    }
}

/// What a generated document is laid over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    /// Nothing: the document is all generated.
    None,
    /// The kind's valid example.
    Example,
    /// The example with one to three of the generated fields (at any depth) put in, and the fields
    /// that must agree with each other kept ([`Kind::anchors`]): a whole random spec is almost never
    /// valid, so these are the cases that exercise plans beyond InvalidSpec.
    Mutated,
}

/// Lays `over` onto `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Any instant chrono represents; mostly near the present, where schedules are interesting.
fn instant() -> BoxedStrategy<DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![
        3 => (1_700_000_000i64..1_900_000_000, 0u32..1_000_000_000),
        1 => (min..=max, 0u32..1_000_000_000),
        1 => proptest::sample::select(vec![(min, 0), (max, 999_999_999), (0, 0)]),
    ]
    .prop_map(|(seconds, nanos)| DateTime::from_timestamp(seconds, nanos).unwrap_or_default())
    .boxed()
}

fn measured_value() -> BoxedStrategy<Result<ResultValue, String>> {
    let number = prop_oneof![
        proptest::sample::select(vec![
            0.0,
            0.01,
            0.5,
            1.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX
        ]),
        any::<f64>(),
    ];
    prop_oneof![
        number.clone().prop_map(|n| Ok(ResultValue::Scalar(n))),
        proptest::collection::vec(number, 0..4).prop_map(|v| Ok(ResultValue::Vector(v))),
        any::<bool>().prop_map(|b| Ok(ResultValue::Bool(b))),
        schema::hostile_string().prop_map(|s| Ok(ResultValue::Text(s))),
        schema::hostile_string().prop_map(Err),
    ]
    .boxed()
}

/// Whole cases of `kind`.
pub fn case_strategy(kind: Kind) -> BoxedStrategy<Case> {
    (
        document_strategy(kind),
        instant(),
        proptest::collection::vec(measured_value(), 1..4),
        prop_oneof![3 => "[0-9a-f]{40}", 1 => schema::hostile_string()],
    )
        .prop_map(|(document, now, results, text)| Case {
            document,
            now,
            results,
            text,
        })
        .boxed()
}

/// Runs `case` through what the controller does with an object of `kind`. Panics are the failures.
pub fn exercise(kind: Kind, case: &Case) -> Outcome {
    match kind {
        Kind::Rollout => rollout(case),
        Kind::AnalysisTemplate => analysis_template(case),
        Kind::AnalysisRun => analysis_run(case),
        Kind::GitSync => gitsync(case),
    }
}

fn replica_set(hash: &str, revision: i64, replicas: i32, now: DateTime<Utc>) -> ObservedReplicaSet {
    ObservedReplicaSet {
        name: format!("web-{hash}"),
        hash: hash.to_string(),
        revision,
        spec_replicas: replicas,
        pods: replicas,
        ready: replicas,
        available: replicas,
        git_revision: Some("0123456789abcdef".into()),
        created_at: Some(now),
        deleting: false,
        scale_down_at: Some(now),
        pod_metadata: None,
    }
}

fn rollout(case: &Case) -> Outcome {
    let Ok(rollout) = serde_json::from_value::<Rollout>(case.document.clone()) else {
        return Outcome::default();
    };
    let valid = validate::validate(&rollout).is_empty();
    let canary_strategy = rollout.spec.strategy.canary.clone().unwrap_or_default();
    for step in &canary_strategy.steps {
        plan::describe_step(step);
    }
    let status = rollout.status.clone().unwrap_or_default();
    let canary_hash = plan::current_hash(&rollout);
    let stable_hash = status.stable_rs.clone().unwrap_or_else(|| "stable0000".into());
    let replicas = rollout.spec.replicas.unwrap_or(1);
    // A world with nothing yet, and one mid-canary: stable at full size, the canary at half, an
    // analysis run for the current step, both Services pointing at stable, the router at its weight.
    let mid_canary = [
        replica_set(&stable_hash, 1, replicas, case.now),
        replica_set(&canary_hash, 2, replicas / 2, case.now),
    ];
    let pods = [ObservedPod {
        name: "web-pod".into(),
        hash: canary_hash.clone(),
        created_at: case.now,
        ready: true,
    }];
    let runs = [ObservedAnalysisRun {
        name: format!("web-{canary_hash}-run"),
        hash: canary_hash.clone(),
        kind: AnalysisKind::Step(status.current_step_index.unwrap_or(0)),
        phase: AnalysisPhase::Failed,
        message: Some(case.text.clone()),
        terminated: false,
        created_at: Some(case.now),
    }];
    let services = [&canary_strategy.canary_service, &canary_strategy.stable_service]
        .into_iter()
        .flatten()
        .map(|name| ObservedService {
            name: name.clone(),
            selector_hash: Some(stable_hash.clone()),
        })
        .collect::<Vec<_>>();
    let traffic = canary_strategy.traffic_routing.as_ref().map(|_| ObservedTraffic {
        canary_weight: status.canary_weight,
        ready: true,
    });
    let worlds: [(&[ObservedReplicaSet], &[ObservedPod], &[ObservedAnalysisRun]); 2] =
        [(&[], &[], &[]), (&mid_canary, &pods, &runs)];
    for (replica_sets, pods, analysis_runs) in worlds {
        let observed = Observed {
            rollout: &rollout,
            replica_sets,
            pods,
            analysis_runs,
            experiments: &[],
            reference_errors: vec![],
            traffic,
            services: services.clone(),
            now: case.now,
        };
        let first = plan::plan(&observed);
        // The next reconcile sees the status the first one wrote.
        let replanned = Rollout {
            status: Some(first.status),
            ..rollout.clone()
        };
        plan::plan(&Observed {
            rollout: &replanned,
            ..observed
        });
    }
    Outcome {
        deserialized: true,
        valid,
        planned: true,
    }
}

fn analysis_template(case: &Case) -> Outcome {
    let Ok(template) = serde_json::from_value::<AnalysisTemplate>(case.document.clone()) else {
        return Outcome::default();
    };
    let sources = ArgumentSources {
        rollout: &case.document,
        stable_hash: Some("stable0000"),
        latest_hash: None,
    };
    // The Rollout gives the first declared argument a value of its own, as `args:` on a step does.
    let args: Vec<Argument> = template
        .spec
        .args
        .first()
        .map(|arg| Argument::literal(&arg.name, &case.text))
        .into_iter()
        .collect();
    let built = template::build_run_spec(&[("fuzzed", &template.spec)], &args, &sources, Default::default());
    // Generated `dryRun` / `measurementRetention` patterns rarely select a metric (an error, as in Argo):
    // once they have been through the build, plan without them so the rest is still exercised.
    let built = built.or_else(|_| {
        let mut spec = template.spec.clone();
        spec.dry_run.clear();
        spec.measurement_retention.clear();
        template::build_run_spec(&[("fuzzed", &spec)], &args, &sources, Default::default())
    });
    let Ok(spec) = built else {
        return Outcome {
            deserialized: true,
            ..Outcome::default()
        };
    };
    let valid = rules::validate(&spec).is_ok();
    analysis_steps(&spec, None, case);
    Outcome {
        deserialized: true,
        valid,
        planned: true,
    }
}

fn analysis_run(case: &Case) -> Outcome {
    let Ok(run) = serde_json::from_value::<AnalysisRun>(case.document.clone()) else {
        return Outcome::default();
    };
    let valid = rules::validate(&run.spec).is_ok();
    analysis_steps(&run.spec, run.status.as_ref(), case);
    Outcome {
        deserialized: true,
        valid,
        planned: true,
    }
}

/// Two turns of the analysis loop as the controller takes them — learn what is due, record what the
/// providers answered — then one more at the requeue time; and the in-memory Secret substitution.
fn analysis_steps(spec: &AnalysisRunSpec, status: Option<&AnalysisRunStatus>, case: &Case) {
    let secrets = template::secret_arguments(spec)
        .into_iter()
        .map(|(name, _)| (name.to_string(), case.text.clone()))
        .collect();
    for metric in &spec.metrics {
        let _ = template::substitute_secrets(metric, &secrets);
        template::recorded_query(metric);
    }
    let due = rules::step(spec, status, case.now, vec![]);
    let outcomes = due
        .measure
        .iter()
        .zip(case.results.iter().cycle())
        .map(|(name, value)| {
            let metric = spec.metrics.iter().find(|m| m.name == *name);
            let outcome = MeasurementOutcome {
                started_at: case.now,
                finished_at: case.now,
                query: metric.and_then(template::recorded_query),
                value: value.clone(),
            };
            (name.clone(), outcome)
        })
        .collect();
    let recorded = rules::step(spec, Some(&due.status), case.now, outcomes);
    let later = recorded
        .requeue_after
        .and_then(|wait| TimeDelta::from_std(wait).ok())
        .and_then(|wait| case.now.checked_add_signed(wait))
        .unwrap_or(case.now);
    rules::step(spec, Some(&recorded.status), later, vec![]);
}

fn gitsync(case: &Case) -> Outcome {
    let Ok(sync) = serde_json::from_value::<GitSync>(case.document.clone()) else {
        return Outcome::default();
    };
    let timings = gitsync_plan::timings(&sync.spec);
    let mut status = sync.status.clone().unwrap_or_default();
    let generation = sync.metadata.generation;
    // One Rollout failed on evidence at the head, one is healthy: blocks, pins and reverts are in play.
    let rollouts = [
        RolloutState {
            name: "default/web".into(),
            aborted: true,
            abort_reason: Some(AbortReason::AnalysisFailed),
            message: Some(case.text.clone()),
            canary_revision: Some(case.text.clone()),
            healthy: false,
            mid_rollout: true,
        },
        RolloutState {
            name: "default/api".into(),
            aborted: false,
            abort_reason: None,
            message: None,
            canary_revision: status.last_applied_revision.clone(),
            healthy: true,
            mid_rollout: false,
        },
    ];
    let decision = gitsync_plan::decide(&gitsync_plan::Observed {
        spec: &sync.spec,
        status: &status,
        head: Some(&case.text),
        rollouts: &rollouts,
        now: case.now,
    });
    let attempt = SyncAttempt {
        due: true,
        fetched: true,
    };
    gitsync_plan::must_apply(&decision, attempt, &sync.spec, &status, generation);
    let health = Health::Progressing(case.text.clone());
    if let Ok(timings) = &timings {
        let trigger = SyncTrigger {
            generation,
            requested_at: Some(&case.text),
            webhook_requested: false,
            since_last_sync: Some(timings.timeout),
            interval: timings.interval,
        };
        gitsync_plan::sync_due(&trigger, &status);
        gitsync_plan::requeue_after(timings.interval, Some(timings.timeout), Some(&health), true);
    }
    // What the reconcile writes afterwards.
    for blocked in decision.block.clone() {
        gitsync_plan::record_blocked(&mut status, blocked);
    }
    let result = match &decision.target {
        target @ Target::Apply { .. } => {
            gitsync_plan::record_applied(&mut status, target, case.text.clone(), case.now);
            SyncResult::Synced
        }
        Target::Hold(reason) => {
            gitsync_plan::record_failure(&mut status, Some(&case.text), reason, case.now);
            SyncResult::Held(reason.clone())
        }
    };
    gitsync_plan::conclude_health(&mut status, &health, &rollouts, case.now);
    gitsync_plan::set_conditions(&mut status, generation, &result, Some(&health), case.now);
    gitsync_plan::previous_result(&status);
    let _ = gitsync_plan::cleanup_targets(&sync.spec, &status);
    Outcome {
        deserialized: true,
        valid: timings.is_ok(),
        planned: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_valid_and_planned() {
        let case = |kind: Kind| Case {
            document: kind.example(),
            now: DateTime::from_timestamp(1_800_000_000, 0).expect("a time"),
            results: vec![Ok(ResultValue::Scalar(0.01))],
            text: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        for kind in Kind::ALL {
            let expected = Outcome {
                deserialized: true,
                valid: true,
                planned: true,
            };
            assert_eq!(exercise(kind, &case(kind)), expected, "{kind}");
        }
    }

    #[test]
    fn kinds_parse_from_their_flag_names() {
        assert_eq!("analysistemplate".parse::<Kind>(), Ok(Kind::AnalysisTemplate));
        assert_eq!(" GitSync".parse::<Kind>(), Ok(Kind::GitSync));
        assert!("deployment".parse::<Kind>().is_err());
    }
}
