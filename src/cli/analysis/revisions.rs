//! `sluice analysis backtest --revisions --rollout NAME`: per past revision of a Rollout, what the
//! template would have said during that revision's canary, beside what actually happened.
//!
//! A revision is one of the Rollout's ReplicaSets (owned by it, identified by its pod-template hash).
//! Its canary window starts at its first AnalysisRun's start (else the ReplicaSet's creation) and ends at
//! its last AnalysisRun's end, else the next revision's creation, else now — at most a day. The template
//! (the one given, else the Rollout's background analysis, else its first step analysis) is built with the
//! arguments resolved as they were: `podTemplateHashValue: Latest` → that revision's hash, `Stable` → the
//! revision before it. The verdict is the run simulated from the window's start (see
//! [`crate::analysis::backtest`]); a run still going at the window's end counts as passed, as a run the
//! rollout terminates is.
//!
//! What happened: the worst phase of that hash's AnalysisRuns, else "aborted" when it is the Rollout's
//! current revision and the Rollout is aborted, else "no analysis".
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::Value;

use super::{BacktestArgs, ReportFormat, backtest_spec, bounded, load_template, run_spec};
use crate::analysis::backtest::{MIN_EVERY, Window, rfc3339};
use crate::analysis::template::ArgumentSources;
use crate::api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate,
};
use crate::api::keys::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_LABEL};
use crate::api::rollout::Rollout;
use crate::cli::{Error, Result, Target};

/// A canary window is at most this long.
const MAX_WINDOW: TimeDelta = TimeDelta::days(1);
/// At most this many past revisions are replayed (the newest).
const MAX_REVISIONS: usize = 20;

/// What actually happened to a revision.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Actual {
    /// Its analysis ended so.
    Analysis(AnalysisPhase),
    /// The rollout was aborted on it (no analysis verdict recorded).
    Aborted,
    /// No AnalysisRun is left for it.
    NoAnalysis,
}

impl Actual {
    /// Whether the revision was judged bad at the time.
    fn was_bad(&self) -> Option<bool> {
        match self {
            Actual::Analysis(AnalysisPhase::Successful) => Some(false),
            Actual::Analysis(AnalysisPhase::Pending | AnalysisPhase::Running) | Actual::NoAnalysis => None,
            Actual::Analysis(_) | Actual::Aborted => Some(true),
        }
    }
}

/// One past revision and its canary window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PastRevision {
    /// The revision number (annotation), else the hash.
    pub revision: String,
    pub hash: String,
    /// The hash of the revision before it (`podTemplateHashValue: Stable`).
    #[serde(skip)]
    pub previous_hash: Option<String>,
    #[serde(serialize_with = "time")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "time")]
    pub to: DateTime<Utc>,
    pub actual: Actual,
}

fn time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// A revision's replay: would the template have passed?
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Replay {
    #[serde(flatten)]
    pub revision: PastRevision,
    /// The simulated run's phase (Running: undecided at the window's end — passed).
    pub would: AnalysisPhase,
}

impl Replay {
    fn would_fail(&self) -> bool {
        matches!(
            self.would,
            AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
        )
    }
}

/// The revisions of a Rollout from its ReplicaSets and AnalysisRuns (pure), oldest first.
pub fn past_revisions(
    rollout: &Rollout,
    replica_sets: &[ReplicaSet],
    runs: &[AnalysisRun],
    now: DateTime<Utc>,
) -> Vec<PastRevision> {
    let mut sets: Vec<(i64, DateTime<Utc>, String, String)> = replica_sets
        .iter()
        .filter_map(|rs| {
            let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
            let created = crate::cli::view::to_chrono(&rs.creation_timestamp()?)?;
            let revision = rs.annotations().get(REVISION_ANNOTATION).cloned();
            let order = revision.as_deref().and_then(|r| r.parse().ok()).unwrap_or(i64::MAX);
            Some((order, created, revision.unwrap_or_else(|| hash.clone()), hash))
        })
        .collect();
    sets.sort_by_key(|s| (s.0, s.1));
    let aborted = rollout.status.as_ref().is_some_and(|s| s.abort == Some(true));
    let current = rollout.status.as_ref().and_then(|s| s.current_pod_hash.clone());
    let mut out = Vec::new();
    for (i, (_, created, revision, hash)) in sets.iter().enumerate() {
        let own: Vec<&AnalysisRun> = runs
            .iter()
            .filter(|r| r.labels().get(POD_TEMPLATE_HASH_LABEL) == Some(hash))
            .collect();
        if own.is_empty() && i == 0 {
            // The first revision went out without a canary.
            continue;
        }
        let started = own
            .iter()
            .filter_map(|r| r.status.as_ref().and_then(|s| s.started_at))
            .min()
            .unwrap_or(*created);
        let ended = own
            .iter()
            .filter_map(|r| {
                let status = r.status.as_ref()?;
                status
                    .metric_results
                    .iter()
                    .flat_map(|m| m.measurements.iter())
                    .filter_map(|m| m.finished_at)
                    .max()
            })
            .max();
        let next = sets.get(i + 1).map(|s| s.1);
        let to = ended.or(next).unwrap_or(now).min(started + MAX_WINDOW).max(started);
        let worst = own
            .iter()
            .filter_map(|r| r.status.as_ref().and_then(|s| s.phase))
            .max_by_key(|p| match p {
                AnalysisPhase::Failed => 4,
                AnalysisPhase::Error => 3,
                AnalysisPhase::Inconclusive => 2,
                AnalysisPhase::Successful => 1,
                AnalysisPhase::Pending | AnalysisPhase::Running => 0,
            });
        let actual = match worst {
            Some(phase) if phase.is_completed() => Actual::Analysis(phase),
            _ if aborted && current.as_ref() == Some(hash) => Actual::Aborted,
            Some(phase) => Actual::Analysis(phase),
            None => Actual::NoAnalysis,
        };
        out.push(PastRevision {
            revision: revision.clone(),
            hash: hash.clone(),
            previous_hash: i.checked_sub(1).map(|j| sets[j].3.clone()),
            from: started,
            to,
            actual,
        });
    }
    let skip = out.len().saturating_sub(MAX_REVISIONS);
    out.drain(..skip);
    out
}

/// "This template would have caught revisions 3, 5 and would have wrongly failed 4." (plus misses).
pub fn sentence(replays: &[Replay]) -> String {
    let list = |filter: &dyn Fn(&Replay) -> bool| {
        let names: Vec<&str> = replays
            .iter()
            .filter(|r| filter(r))
            .map(|r| r.revision.revision.as_str())
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let caught = list(&|r| r.would_fail() && r.revision.actual.was_bad() == Some(true));
    let wrong = list(&|r| r.would_fail() && r.revision.actual.was_bad() == Some(false));
    let missed = list(&|r| !r.would_fail() && r.revision.actual.was_bad() == Some(true));
    format!(
        "This template would have caught revisions {caught}; would have wrongly failed {wrong}; would have missed {missed}."
    )
}

/// The template --revisions replays: the one given, else the Rollout's background analysis, else its
/// first step analysis (several templates are merged as the controller merges them).
pub(crate) async fn rollout_templates(
    target: &Target,
    rollout: &Rollout,
) -> Result<(String, AnalysisTemplateSpec, Vec<crate::api::analysis::Argument>)> {
    let canary = rollout.spec.canary();
    let analysis = canary
        .analysis
        .clone()
        .or_else(|| canary.steps.iter().find_map(|s| s.analysis.clone()))
        .ok_or_else(|| Error::Invalid("the rollout references no analysis template; give one".to_string()))?;
    let mut merged = AnalysisTemplateSpec::default();
    let mut names = Vec::new();
    for reference in &analysis.templates {
        let what = format!("reading template {:?}", reference.template_name);
        let spec = if reference.cluster_scope == Some(true) {
            let api: Api<ClusterAnalysisTemplate> = Api::all(target.client.clone());
            bounded(&what, target.timeout, api.get_opt(&reference.template_name))
                .await?
                .map(|t| t.spec.template)
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(target.client.clone(), &target.namespace);
            bounded(&what, target.timeout, api.get_opt(&reference.template_name))
                .await?
                .map(|t| t.spec)
        }
        .ok_or_else(|| Error::Invalid(format!("template {:?} not found", reference.template_name)))?;
        for arg in spec.args {
            if !merged.args.iter().any(|a| a.name == arg.name) {
                merged.args.push(arg);
            }
        }
        merged.metrics.extend(spec.metrics);
        names.push(reference.template_name.clone());
    }
    Ok((names.join("+"), merged, analysis.args))
}

/// The dashboard's backtest: the Rollout's templates (arguments resolved against its current stable and
/// canary hashes) over the last `span`, at most `instants` instants, against `prometheus_address`.
pub async fn backtest_rollout(
    target: &Target,
    name: &str,
    prometheus_address: &str,
    span: TimeDelta,
    instants: usize,
) -> Result<crate::analysis::backtest::Report> {
    let rollouts: Api<Rollout> = Api::namespaced(target.client.clone(), &target.namespace);
    let rollout = bounded("reading the rollout", target.timeout, rollouts.get_opt(name))
        .await?
        .ok_or_else(|| Error::RolloutNotFound {
            name: name.to_string(),
            namespace: target.namespace.clone(),
        })?;
    let (template_name, mut spec, rollout_args) = rollout_templates(target, &rollout).await?;
    for arg in rollout_args {
        if let Some(declared) = spec.args.iter_mut().find(|a| a.name == arg.name) {
            *declared = arg;
        }
    }
    let status = rollout.status.clone().unwrap_or_default();
    let rollout_json = serde_json::to_value(&rollout).unwrap_or(Value::Null);
    let sources = ArgumentSources {
        rollout: &rollout_json,
        stable_hash: status.stable_rs.as_deref(),
        latest_hash: status.current_pod_hash.as_deref(),
    };
    let run = super::build_spec(&template_name, &spec, &[], Some(prometheus_address), &sources)?;
    let to = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
    let from = to - span;
    let window = Window {
        from,
        to,
        every: Window::every_for(from, to, instants),
    };
    backtest_spec(&run, &window).await
}

/// Runs `--revisions`: replays and prints.
pub async fn run(args: BacktestArgs) -> Result<()> {
    let replays = replay(&args).await?;
    print(&replays, args.output)
}

/// The replays of `--revisions --rollout NAME`, oldest revision first.
pub async fn replay(args: &BacktestArgs) -> Result<Vec<Replay>> {
    let name = args.rollout.clone().unwrap_or_default();
    let target = Target::connect(&args.template.cluster).await?;
    let rollouts: Api<Rollout> = Api::namespaced(target.client.clone(), &target.namespace);
    let rollout = bounded("reading the rollout", target.timeout, rollouts.get_opt(&name))
        .await?
        .ok_or_else(|| Error::RolloutNotFound {
            name: name.clone(),
            namespace: target.namespace.clone(),
        })?;
    let owned = |refs: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
        refs.is_some_and(|refs| refs.iter().any(|o| o.kind == "Rollout" && o.name == name))
    };
    let sets: Api<ReplicaSet> = Api::namespaced(target.client.clone(), &target.namespace);
    let sets: Vec<ReplicaSet> = bounded("listing ReplicaSets", target.timeout, sets.list(&ListParams::default()))
        .await?
        .items
        .into_iter()
        .filter(|rs| owned(rs.metadata.owner_references.as_ref()))
        .collect();
    let runs: Api<AnalysisRun> = Api::namespaced(target.client.clone(), &target.namespace);
    let selector = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}"));
    let runs = bounded("listing AnalysisRuns", target.timeout, runs.list(&selector))
        .await?
        .items;
    let revisions = past_revisions(&rollout, &sets, &runs, Utc::now());
    if revisions.is_empty() {
        return Err(Error::Invalid(format!("rollout {name:?} has no past canary to replay")));
    }
    let (template_name, spec, rollout_args) = if args.template.file.is_some() || args.template.template.is_some() {
        let (n, s) = load_template(&args.template).await?;
        (n, s, vec![])
    } else {
        rollout_templates(&target, &rollout).await?
    };
    let rollout_json = serde_json::to_value(&rollout).unwrap_or(Value::Null);
    let mut replays = Vec::new();
    for revision in revisions {
        let sources = ArgumentSources {
            rollout: &rollout_json,
            stable_hash: revision.previous_hash.as_deref(),
            latest_hash: Some(&revision.hash),
        };
        // The Rollout's own argument values first, then --arg.
        let mut with_rollout_args = spec.clone();
        for arg in &rollout_args {
            if let Some(declared) = with_rollout_args.args.iter_mut().find(|a| a.name == arg.name) {
                *declared = arg.clone();
            }
        }
        let run = run_spec(&template_name, &with_rollout_args, &args.template, &sources)?;
        let window = Window {
            from: revision.from,
            to: revision.to,
            every: args.every.max(MIN_EVERY),
        };
        let report = backtest_spec(&run, &window).await?;
        let would = report.evaluations.first().map_or(AnalysisPhase::Pending, |e| e.phase);
        replays.push(Replay { revision, would });
    }
    Ok(replays)
}

fn print(replays: &[Replay], format: ReportFormat) -> Result<()> {
    let summary = sentence(replays);
    match format {
        ReportFormat::Json => {
            let json = serde_json::json!({"revisions": replays, "summary": summary});
            println!(
                "{}",
                serde_json::to_string_pretty(&json).map_err(|e| Error::Output(e.to_string()))?
            );
        }
        ReportFormat::Text => {
            println!("REVISION  HASH        WINDOW                                       WOULD         ACTUAL");
            for r in replays {
                let would = if r.would_fail() {
                    format!("{:?}", r.would)
                } else {
                    "Passed".to_string()
                };
                let actual = match &r.revision.actual {
                    Actual::Analysis(phase) => format!("analysis {phase:?}"),
                    Actual::Aborted => "aborted".to_string(),
                    Actual::NoAnalysis => "no analysis".to_string(),
                };
                println!(
                    "{:<9} {:<11} {} → {}  {:<13} {actual}",
                    r.revision.revision,
                    r.revision.hash,
                    rfc3339(r.revision.from),
                    rfc3339(r.revision.to),
                    would
                );
            }
            println!("{summary}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::{AnalysisRunSpec, AnalysisRunStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn replica_set(hash: &str, revision: &str, created: i64) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.labels = Some([(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string())].into());
        rs.metadata.annotations = Some([(REVISION_ANNOTATION.to_string(), revision.to_string())].into());
        rs.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        rs
    }

    fn run(hash: &str, started: i64, phase: AnalysisPhase) -> AnalysisRun {
        let mut run = AnalysisRun::new("r", AnalysisRunSpec::default());
        run.metadata.labels = Some([(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string())].into());
        run.status = Some(AnalysisRunStatus {
            phase: Some(phase),
            started_at: Some(at(started)),
            ..AnalysisRunStatus::default()
        });
        run
    }

    #[test]
    fn windows_and_outcomes_of_past_revisions() {
        let rollout = Rollout::new("web", Default::default());
        let sets = [
            replica_set("c", "3", 300),
            replica_set("a", "1", 100),
            replica_set("b", "2", 200),
        ];
        let runs = [
            run("b", 210, AnalysisPhase::Successful),
            run("c", 305, AnalysisPhase::Failed),
        ];
        let revisions = past_revisions(&rollout, &sets, &runs, at(1_000));
        assert_eq!(revisions.len(), 2, "the first revision had no canary");
        assert_eq!(
            (revisions[0].hash.as_str(), revisions[0].from, revisions[0].to),
            ("b", at(210), at(300))
        );
        assert_eq!(revisions[0].previous_hash.as_deref(), Some("a"));
        assert_eq!(revisions[0].actual, Actual::Analysis(AnalysisPhase::Successful));
        assert_eq!((revisions[1].from, revisions[1].to), (at(305), at(1_000)));
        assert_eq!(revisions[1].actual, Actual::Analysis(AnalysisPhase::Failed));

        let replays: Vec<Replay> = revisions
            .into_iter()
            .map(|revision| Replay {
                would: AnalysisPhase::Failed,
                revision,
            })
            .collect();
        assert_eq!(
            sentence(&replays),
            "This template would have caught revisions 3; would have wrongly failed 2; would have missed none."
        );
    }
}
