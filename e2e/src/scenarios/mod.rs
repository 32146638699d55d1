//! `sluice e2e`: the end-to-end scenarios, written once against a kube client and a namespace, run
//! against a [`Target`]: the in-process simulator with a real Prometheus and controller (the default),
//! or a real cluster through KUBECONFIG. Each scenario gets a fresh namespace and a time limit, and
//! ends PASS, FAIL (with the reason) or SKIP (what the target lacks).
mod analysis;
mod blue_green;
mod context;
mod experiment;
mod experiment_step;
mod gitsync;
mod gitsync_order;
mod pod_metadata;
mod rollout;
mod stages;
pub mod target;
mod traffic;
mod workload_ref;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

pub use context::Ctx;
pub use target::{ClusterOptions, ClusterTarget, SimOptions, SimTarget, Target, Workload};

/// A scenario's reason for not running on a target ("needs a Gateway"). Not a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Skip(pub String);

type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// One named scenario.
pub struct Scenario {
    pub name: &'static str,
    /// What it checks, one line (shown by `--list`).
    pub checks: &'static str,
    run: for<'a> fn(&'a Ctx<'a>) -> ScenarioFuture<'a>,
}

/// Every scenario, in the order they run.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "canary-steps",
            checks: "setWeight 20 → timed pause → 50 → open pause held until promote → 80 → Healthy; replica counts at each step, old ReplicaSet scaled to 0",
            run: |ctx| Box::pin(rollout::canary_steps(ctx)),
        },
        Scenario {
            name: "abort-retry",
            checks: "abort at an open pause: all replicas back on stable, weight 0, Degraded; retry restarts at step 0; full promote completes",
            run: |ctx| Box::pin(rollout::abort_retry(ctx)),
        },
        Scenario {
            name: "analysis-pass",
            checks: "a healthy canary: the AnalysisRun queries Prometheus, succeeds, and the rollout completes",
            run: |ctx| Box::pin(analysis::pass(ctx)),
        },
        Scenario {
            name: "analysis-fail",
            checks: "a canary failing 40% of requests: the AnalysisRun fails, the rollout aborts to stable (weight 0, canary at 0 replicas)",
            run: |ctx| Box::pin(analysis::fail(ctx)),
        },
        Scenario {
            name: "gateway-api",
            checks: "HTTPRoute weights follow the steps (30/70), abort sets the canary to 0 at once, completion gives the new version 100%",
            run: |ctx| Box::pin(traffic::gateway_api(ctx)),
        },
        Scenario {
            name: "header-route",
            checks: "weight 0 + setHeaderRoute X-Canary=yes with 30% of requests carrying it: the canary serves 30% ± 8% of the non-mirrored requests; setMirrorRoute adds a RequestMirror 50% rule to the canary; promote --full removes the managed rules",
            run: |ctx| Box::pin(traffic::header_route(ctx)),
        },
        Scenario {
            name: "experiment-step",
            checks: "Argo's examples/rollout-experiment-step.yaml (no analyses, duration 10s): v2 → an Experiment owned by the Rollout and named in currentExperiment runs the canary template, ends Successful, and the rollout completes",
            run: |ctx| Box::pin(experiment_step::experiment_step(ctx)),
        },
        Scenario {
            name: "experiment-fail",
            checks: "an experiment step whose analysis of its canary pods ({{templates.canary.podTemplateHash}}) sees 40% errors: Experiment Failed, Rollout aborted (AnalysisFailed, weight 0), all replicas back on stable",
            run: |ctx| Box::pin(experiment_step::experiment_fail(ctx)),
        },
        Scenario {
            name: "baseline-vs-canary",
            checks: "Gateway API: an experiment step runs a baseline and a canary template with 10% of traffic each (canary 20%, stable 60%) and compares their success rates by {{templates.NAME.podTemplateHash}}: v2 as good passes and completes, the backends leave the route; v3 failing 40% fails the Experiment and aborts to stable",
            run: |ctx| Box::pin(experiment_step::baseline_vs_canary(ctx)),
        },
        Scenario {
            name: "canary-metadata",
            checks: "canaryMetadata/stableMetadata on the pods of each role, moved in place on promote; the canary ReplicaSet's anti-affinity avoids the stable pods",
            run: |ctx| Box::pin(pod_metadata::canary_metadata(ctx)),
        },
        Scenario {
            name: "workload-ref",
            checks: "Argo's rollout-template-ref.yaml Healthy with 5 available; a Deployment template change runs a canary; missing Deployment → InvalidSpec until created; scaleDown progressively/onsuccess scale the Deployment to 0, never leaves it",
            run: |ctx| Box::pin(workload_ref::workload_ref(ctx)),
        },
        Scenario {
            name: "blue-green-promote",
            checks: "Argo's examples/rollout-bluegreen.yaml: v1 Healthy, active on v1; new image → Paused, preview v2, active v1; promote → active v2, Healthy; v1 scaled to 0 after the delay",
            run: |ctx| Box::pin(blue_green::promote(ctx)),
        },
        Scenario {
            name: "blue-green-auto",
            checks: "blue-green with auto-promotion: no pause, active switches to v2 once available, activeMetadata moves to v2's running pods",
            run: |ctx| Box::pin(blue_green::auto_promotion(ctx)),
        },
        Scenario {
            name: "blue-green-pre-analysis-fail",
            checks: "a failing prePromotionAnalysis (40% errors on preview): Degraded, AnalysisFailed, active never left v1, v2 scaled to 0",
            run: |ctx| Box::pin(blue_green::pre_promotion_fails(ctx)),
        },
        Scenario {
            name: "blue-green-post-analysis-fail",
            checks: "a failing postPromotionAnalysis: active switches to v2, then back to v1; Degraded, v2 scaled to 0",
            run: |ctx| Box::pin(blue_green::post_promotion_fails(ctx)),
        },
        Scenario {
            name: "blue-green-abort",
            checks: "abort while paused before the switch: active and preview on v1, Degraded, v2 scaled to 0",
            run: |ctx| Box::pin(blue_green::abort(ctx)),
        },
        Scenario {
            name: "gitsync-rollback",
            checks: "GitSync applies v1 and v2 from Git; v3 (40% errors) fails analysis → blocked, revert commit pushed, v2 back and v3 not re-applied",
            run: |ctx| Box::pin(gitsync::rollback(ctx)),
        },
        Scenario {
            name: "gitsync-stages",
            checks: "dev (main) → staging → prod, soak 5s each: a healthy commit reaches each stage only after its upstream had it healthy ≥ 5 s; a commit failing analysis in dev is blocked there, staging and prod keep the previous one; hold stops a promotion until released; a forced promotion of a blocked revision is refused, of an older one applied without snapping back",
            run: |ctx| Box::pin(stages::promotion_chain(ctx)),
        },
        Scenario {
            name: "gitsync-depends-on",
            checks: "api dependsOn db: while db fails to render api applies nothing (DependencyNotReady naming db), applies once db is fixed; its Job in wave -1 completes before its Deployment in wave 1 is created; a dependsOn cycle stalls with DependencyCycle",
            run: |ctx| Box::pin(gitsync_order::depends_on(ctx)),
        },
        Scenario {
            name: "gitsync-app-of-apps",
            checks: "a root GitSync applies one GitSync per service; both apply and become Ready; the one removed from Git is pruned with what it applied; deleting the root deletes the other and what it applied",
            run: |ctx| Box::pin(gitsync_order::app_of_apps(ctx)),
        },
        Scenario {
            name: "experiment-duration",
            checks: "an Experiment with two templates (one with a Service) and duration 10s: Running once both are available (distinct pod hashes, the Service selecting its template's), Successful ≥ 10 s later, ReplicaSets at 0 and the Service deleted",
            run: |ctx| Box::pin(experiment::duration(ctx)),
        },
        Scenario {
            name: "experiment-analysis-fail",
            checks: "an Experiment whose canary (40% errors) fails its analysis ({{templates.canary.podTemplateHash}} as the argument) ends Failed at once; the other analysis is terminated and the ReplicaSets go to 0",
            run: |ctx| Box::pin(experiment::analysis_fail(ctx)),
        },
        Scenario {
            name: "experiment-terminate",
            checks: "an Experiment without duration runs until spec.terminate: true, then ends Successful and scales to 0",
            run: |ctx| Box::pin(experiment::terminate(ctx)),
        },
    ]
}

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: &'static str,
    pub namespace: String,
    pub verdict: Verdict,
    pub duration: Duration,
    /// What was not checked on this target, or other remarks.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenario names to run (empty: all).
    pub only: Vec<String>,
    /// Upper bound of one scenario, set-up and clean-up of its namespace excluded.
    pub scenario_timeout: Duration,
    /// Leave each scenario's namespace behind (to look at what happened).
    pub keep_namespaces: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            only: vec![],
            scenario_timeout: Duration::from_secs(240),
            keep_namespaces: false,
        }
    }
}

/// The scenarios `only` names, in run order; an unknown name is an error that lists the known ones.
pub fn select(only: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let all = scenarios();
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|s| s.name == n.as_str())) {
        let known: Vec<_> = all.iter().map(|s| s.name).collect();
        anyhow::bail!("unknown scenario {unknown:?}; known: {}", known.join(", "));
    }
    Ok(all
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
        .collect())
}

/// Runs the selected scenarios one after another, printing a line as each ends.
pub async fn run(target: &dyn Target, options: &RunOptions) -> anyhow::Result<Vec<Outcome>> {
    let selected = select(&options.only)?;
    println!("target: {}", target.describe());
    let mut outcomes = vec![];
    for scenario in selected {
        let outcome = run_one(target, &scenario, options).await;
        print_outcome(&outcome);
        outcomes.push(outcome);
    }
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    println!(
        "{} passed, {} failed, {} skipped",
        count(|v| *v == Verdict::Pass),
        count(|v| matches!(v, Verdict::Fail(_))),
        count(|v| matches!(v, Verdict::Skip(_)))
    );
    Ok(outcomes)
}

/// Runs one scenario in a fresh namespace within `options.scenario_timeout`.
pub async fn run_one(target: &dyn Target, scenario: &Scenario, options: &RunOptions) -> Outcome {
    let started = Instant::now();
    let namespace = format!("e2e-{}-{:04x}", scenario.name, fastrand::u16(..));
    let client = target.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Ctx::new(target, client, namespace.clone());
    let result = async {
        let object = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"sluice.dev/e2e": scenario.name}}});
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(object)?)
            .await
            .with_context(|| format!("creating namespace {namespace}"))?;
        match tokio::time::timeout(options.scenario_timeout, (scenario.run)(&ctx)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "scenario timed out after {:?}; last step: {}",
                options.scenario_timeout,
                ctx.last_step()
            )),
        }
    }
    .await;
    let verdict = match result {
        Ok(()) => Verdict::Pass,
        Err(e) => match e.downcast_ref::<Skip>() {
            Some(skip) => Verdict::Skip(skip.0.clone()),
            None => Verdict::Fail(format!("{e:#}")),
        },
    };
    let mut notes = ctx.take_notes();
    if !options.keep_namespaces
        && let Err(e) = namespaces.delete(&namespace, &DeleteParams::background()).await
        && !matches!(&e, kube::Error::Api(r) if r.code == 404)
    {
        notes.push(format!("deleting namespace {namespace}: {e}"));
    }
    Outcome {
        scenario: scenario.name,
        namespace,
        verdict,
        duration: started.elapsed(),
        notes,
    }
}

fn print_outcome(outcome: &Outcome) {
    let (word, reason) = match &outcome.verdict {
        Verdict::Pass => ("PASS", String::new()),
        Verdict::Fail(reason) => ("FAIL", format!("  {reason}")),
        Verdict::Skip(reason) => ("SKIP", format!("  {reason}")),
    };
    println!(
        "{word}  {:<18} {:>6.1}s  ({}){reason}",
        outcome.scenario,
        outcome.duration.as_secs_f64(),
        outcome.namespace
    );
    for note in &outcome.notes {
        println!("      note: {note}");
    }
}

/// Prints the scenarios and what each checks.
pub fn list() {
    for scenario in scenarios() {
        println!("{:<18} {}", scenario.name, scenario.checks);
    }
}
