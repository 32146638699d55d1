//! `sluice bench plan`: the cost of one `rollout::plan` call on a Rollout in the middle of a canary
//! (the common case: steps, three ReplicaSets, a background analysis run).
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use sluice::api::analysis::AnalysisPhase;
use sluice::api::rollout::{CanaryStep, Rollout, RolloutStatus};
use sluice::rollout::plan::{self, AnalysisKind, Observed, ObservedAnalysisRun, ObservedReplicaSet};

#[derive(Debug, Serialize)]
pub struct PlanBenchReport {
    pub calls: u64,
    pub total_seconds: f64,
    pub nanoseconds_per_call: f64,
    pub calls_per_second: f64,
}

fn replica_set(name: &str, hash: &str, revision: i64, replicas: i32) -> ObservedReplicaSet {
    ObservedReplicaSet {
        name: name.into(),
        hash: hash.into(),
        revision,
        spec_replicas: replicas,
        pods: replicas,
        ready: replicas,
        available: replicas,
        git_revision: Some("0123456789abcdef".into()),
        created_at: None,
        deleting: false,
        scale_down_at: None,
        pod_metadata: None,
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanBenchOptions {
    #[arg(long, default_value_t = 200_000)]
    pub calls: u64,
}

pub fn run(calls: u64) -> PlanBenchReport {
    let steps = vec![
        CanaryStep::set_weight(20),
        CanaryStep::pause_for("1m"),
        CanaryStep::set_weight(50),
        CanaryStep::analysis("success-rate"),
        CanaryStep::set_weight(80),
        CanaryStep::pause(),
    ];
    let mut rollout = Rollout::example("web", 10, steps).with_generation(3);
    // Plan once from scratch to get the current hash, then pose as mid-rollout at step 3.
    let template = rollout.spec.template.to_value();
    let hash = sluice::rollout::hash::pod_template_hash(&template);
    rollout.status = Some(RolloutStatus {
        stable_rs: Some("stable0000".into()),
        current_pod_hash: Some(hash.clone()),
        current_step_index: Some(3),
        step_started_at: Some(Utc::now()),
        ..Default::default()
    });
    let replica_sets = vec![
        replica_set("web-stable0000", "stable0000", 4, 5),
        replica_set(&format!("web-{hash}"), &hash, 5, 5),
        replica_set("web-older00000", "older00000", 3, 0),
    ];
    let runs = vec![ObservedAnalysisRun {
        name: format!("web-{hash}-s3-0"),
        hash: hash.clone(),
        kind: AnalysisKind::Step(3),
        phase: AnalysisPhase::Running,
        message: None,
        terminated: false,
        created_at: None,
    }];
    let now = Utc::now();
    let observed = Observed {
        rollout: &rollout,
        replica_sets: &replica_sets,
        pods: &[],
        analysis_runs: &runs,
        experiments: &[],
        reference_errors: vec![],
        traffic: None,
        services: vec![],
        now,
    };
    // Warm up caches and the allocator.
    for _ in 0..1000 {
        std::hint::black_box(plan::plan(std::hint::black_box(&observed)));
    }
    let started = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(plan::plan(std::hint::black_box(&observed)));
    }
    let total = started.elapsed().as_secs_f64();
    PlanBenchReport {
        calls,
        total_seconds: total,
        nanoseconds_per_call: total * 1e9 / calls as f64,
        calls_per_second: calls as f64 / total,
    }
}
