//! The chaos suite (issue 13, item 8): the real `sluice controller`, as deploy/'s ServiceAccount, runs
//! canaries, analyses and a GitSync while 10% of all writes fail (500/409/429), watches are dropped,
//! history is compacted and the process is SIGKILLed again and again. Every rollout must end in the
//! right state, and a sampler checks the invariants all along: never more pods than
//! `replicas + maxSurge`, nothing applied twice.
//!
//! Replay a run with `SLUICE_CHAOS_SEED=<seed>` (printed first): it seeds the kill schedule, the
//! watch drops and compactions, and the simulator's fault rolls. The controller's own timing is not
//! seeded, so a replay re-creates the same storm, not necessarily the same interleaving.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisRun, AnalysisTemplate};
use sluice::api::gitsync::GitSync;
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice_e2e::kit::local_repo::LocalRepo;
use sluice_e2e::kit::process::{ControllerProcess, set_faults};
use sluice_e2e::kit::{self, eventually};
use sluice_sim::SimConfig;

const NAMESPACE: &str = "default";
const HASH_LABEL: &str = "sluice.dev/pod-template-hash";
const ROLLOUT_LABEL: &str = "sluice.dev/rollout";
const ANALYSIS_LABEL: &str = "sluice.dev/analysis";
/// Settling after the storm, and the calm phases before it: generous, the invariants stay strict.
const SETTLE: Duration = Duration::from_secs(60);
const KILLS: usize = 8;

/// The real controller process; SIGKILLed on drop. Its log goes to a file that survives the test.
fn start_controller(kubeconfig: &Path, cache: &Path, log: &Path) -> ControllerProcess {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("controller log");
    ControllerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_sluice")), kubeconfig, cache, log.into())
}

/// A web metric server on 127.0.0.1: `/pass` answers 1, `/fail` answers 0. Three measurements 2 s
/// apart, so analyses are often in flight when the controller is killed.
async fn metric_server() -> String {
    let app = axum::Router::new()
        .route("/pass", axum::routing::get(|| async { r#"{"v": 1}"# }))
        .route("/fail", axum::routing::get(|| async { r#"{"v": 0}"# }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

fn template(name: &str, url: &str) -> AnalysisTemplate {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
        "spec": {"metrics": [{
            "name": "v", "count": 3, "interval": "2s", "successCondition": "result > 0.5",
            "provider": {"web": {"url": url, "jsonPath": "$.v"}},
        }]},
    }))
    .unwrap()
}

fn rollout_yaml(name: &str, replicas: i32, max_surge: Value, steps: Value, image: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}]}},
            "strategy": {"canary": {"maxSurge": max_surge, "maxUnavailable": 0, "steps": steps}},
        },
    })
}

/// The Rollouts the test drives itself, and what each must end as. The pauses keep the canaries
/// moving through most of the storm (~45 s), so kills land mid-step and mid-analysis.
struct Case {
    name: &'static str,
    replicas: i32,
    max_surge: Value,
    steps: Value,
    analysis_fails: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "steady",
            replicas: 4,
            max_surge: json!(1),
            steps: json!([{"setWeight": 25}, {"pause": {"duration": "10s"}}, {"setWeight": 50},
                          {"pause": {"duration": "10s"}}, {"setWeight": 75}, {"pause": {"duration": "10s"}}]),
            analysis_fails: false,
        },
        Case {
            name: "surging",
            replicas: 5,
            max_surge: json!("40%"),
            steps: json!([{"setWeight": 20}, {"pause": {"duration": "12s"}}, {"setWeight": 60},
                          {"pause": {"duration": "15s"}}]),
            analysis_fails: false,
        },
        Case {
            name: "judged",
            replicas: 4,
            max_surge: json!("25%"),
            steps: json!([{"setWeight": 25}, {"pause": {"duration": "10s"}},
                          {"analysis": {"templates": [{"templateName": "passes"}]}},
                          {"setWeight": 75}, {"pause": {"duration": "12s"}}]),
            analysis_fails: false,
        },
        Case {
            name: "doomed",
            replicas: 4,
            max_surge: json!(1),
            steps: json!([{"setWeight": 25}, {"pause": {"duration": "20s"}},
                          {"analysis": {"templates": [{"templateName": "fails"}]}},
                          {"setWeight": 75}]),
            analysis_fails: true,
        },
    ]
}

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{v: \"{value}\"}}\n")
}

fn synced_rollout(image: &str) -> String {
    let steps = json!([{"setWeight": 50}, {"pause": {"duration": "4s"}}]);
    serde_json::to_string(&rollout_yaml("synced", 2, json!(1), steps, image)).unwrap()
}

/// `replicas + maxSurge` from the spec, maxSurge as a percentage rounded up (as the controller does).
fn pod_bound(rollout: &Rollout) -> i64 {
    let replicas = i64::from(rollout.spec.replicas.unwrap_or(1));
    let surge = match rollout.spec.strategy.canary.as_ref().map(|c| c.max_surge_or_default()) {
        Some(IntOrString::Int(n)) => i64::from(n),
        Some(IntOrString::String(percent)) => {
            let percent: i64 = percent.trim_end_matches('%').parse().expect("maxSurge percent");
            (replicas * percent + 99) / 100
        }
        None => 0,
    };
    replicas + surge
}

fn labels_match(labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// What the sampler saw over the whole run.
#[derive(Default)]
struct Observations {
    samples: usize,
    /// Rollout → (most pods seen at once, the bound).
    max_pods: BTreeMap<String, (usize, i64)>,
    /// ReplicaSet uids seen per pod-template hash: more than one is a ReplicaSet created twice.
    replica_sets: BTreeMap<String, BTreeSet<String>>,
    /// AnalysisRun names seen per (rollout, hash, step): more than one is a step analysed twice.
    analysis_runs: BTreeMap<(String, String, String), BTreeSet<String>>,
    /// GitSync revisions recorded as applied (status.lastAppliedRevision), with the moment the
    /// sampler first saw each one recorded (taken after the read that saw it).
    recorded_at: BTreeMap<String, DateTime<Utc>>,
    violations: Vec<String>,
}

/// The controller's announcements that it applied a GitSync revision not yet recorded: the
/// `reason="Applied"` lines of its log, as (when, 8-character revision). Read from the log rather
/// than from Events: one recorder folds repeats of an Event into the first one's series, note and all.
fn applied_announcements(log: &Path) -> Vec<(DateTime<Utc>, String)> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines()
        .filter(|line| line.contains("gitsync=app reason=\"Applied\""))
        .filter_map(|line| {
            let when = DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()?;
            let revision = line.split("note=\"revision ").nth(1)?.get(..8)?;
            Some((when.with_timezone(&Utc), revision.to_string()))
        })
        .collect()
}

/// One look at the simulator (reads only: the faults hit writes). Lists are not one snapshot, so a
/// pod count is taken from one list of pods and compared with the bound of the spec listed before.
async fn sample(client: &Client, seen: &Mutex<Observations>) -> anyhow::Result<()> {
    let params = ListParams::default();
    let rollouts = Api::<Rollout>::namespaced(client.clone(), NAMESPACE)
        .list(&params)
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE).list(&params).await?;
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), NAMESPACE)
        .list(&params)
        .await?;
    let runs = Api::<AnalysisRun>::namespaced(client.clone(), NAMESPACE)
        .list(&params)
        .await?;
    let gitsync = Api::<GitSync>::namespaced(client.clone(), NAMESPACE)
        .get_opt("app")
        .await?;
    let mut guard = seen.lock().unwrap();
    let seen = &mut *guard;
    seen.samples += 1;
    for rollout in &rollouts {
        let selector = rollout.spec.selector.match_labels.clone().unwrap_or_default();
        // Terminating pods no longer count: the API has accepted their deletion.
        let pods = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| labels_match(p.labels(), &selector))
            .count();
        let bound = pod_bound(rollout);
        let entry = seen.max_pods.entry(rollout.name_any()).or_insert((0, bound));
        entry.0 = entry.0.max(pods);
        if pods as i64 > bound {
            let message = format!(
                "rollout {}: {pods} pods > replicas + maxSurge = {bound}",
                rollout.name_any()
            );
            seen.violations.push(message);
        }
    }
    for rs in &replica_sets {
        if let (Some(hash), Some(uid)) = (rs.labels().get(HASH_LABEL), rs.uid()) {
            let owner = rs
                .owner_references()
                .first()
                .map(|o| o.name.clone())
                .unwrap_or_default();
            let key = format!("{owner}/{hash}");
            let uids = seen.replica_sets.entry(key.clone()).or_default();
            if uids.insert(uid) && uids.len() > 1 {
                seen.violations
                    .push(format!("ReplicaSet {key} created twice: {uids:?}"));
            }
        }
    }
    for run in &runs {
        let label = |key: &str| run.labels().get(key).cloned().unwrap_or_default();
        let key = (label(ROLLOUT_LABEL), label(HASH_LABEL), label(ANALYSIS_LABEL));
        let names = seen.analysis_runs.entry(key.clone()).or_default();
        if names.insert(run.name_any()) && names.len() > 1 {
            seen.violations.push(format!("{key:?} analysed twice: {names:?}"));
        }
    }
    if let Some(revision) = gitsync.and_then(|g| g.status?.last_applied_revision) {
        seen.recorded_at.entry(revision).or_insert_with(Utc::now);
    }
    Ok(())
}

fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

fn seed() -> u64 {
    match std::env::var("SLUICE_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("SLUICE_CHAOS_SEED is a u64"),
        Err(_) => fastrand::u64(..),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_analyses_and_a_gitsync_survive_faults_watch_loss_and_repeated_sigkills() {
    let seed = seed();
    eprintln!("chaos seed: {seed} (replay with SLUICE_CHAOS_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();

    let sim = kit::start_sim_with(SimConfig {
        pod_ready_delay: Duration::from_millis(200),
        fault_seed: Some(seed),
        request_log_capacity: 2_000_000,
        ..SimConfig::default()
    })
    .await;
    kit::install_crds(&sim);
    kit::onboard_tenant(&sim, NAMESPACE).unwrap();
    let client = sim.client().unwrap();
    let workdir = std::env::temp_dir().join(format!("sluice-chaos-{seed}"));
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir).unwrap();
    let kubeconfig = workdir.join("kubeconfig");
    std::fs::write(&kubeconfig, kit::controller_kubeconfig(&sim).await.unwrap()).unwrap();
    let cache = workdir.join("git");
    let log = workdir.join("controller.log");
    eprintln!("controller log: {}", log.display());

    // Given: four canaries and a GitSync, all healthy on their first revision.
    let metrics = metric_server().await;
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), NAMESPACE);
    for (name, path) in [("passes", "pass"), ("fails", "fail")] {
        let url = format!("{metrics}/{path}");
        templates
            .create(&PostParams::default(), &template(name, &url))
            .await
            .unwrap();
    }
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NAMESPACE);
    for case in cases() {
        let rollout = rollout_yaml(
            case.name,
            case.replicas,
            case.max_surge.clone(),
            case.steps.clone(),
            "app:1",
        );
        rollouts
            .create(&PostParams::default(), &serde_json::from_value(rollout).unwrap())
            .await
            .unwrap();
    }
    let git = tempfile::tempdir().unwrap();
    let repo = LocalRepo::create(git.path()).unwrap();
    repo.write("app/a.yaml", &config_map("a", "1")).unwrap();
    repo.write("app/b.yaml", &config_map("b", "1")).unwrap();
    repo.write("app/rollout.yaml", &synced_rollout("synced:1")).unwrap();
    let first_revision = repo.commit("a, b and the synced rollout").unwrap();
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), NAMESPACE);
    let gitsync = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync", "metadata": {"name": "app"},
        "spec": {"repoURL": repo.url(), "ref": {"branch": "main"}, "path": "app", "interval": "1s",
                 "serviceAccountName": "deployer"},
    }))
    .unwrap();
    gitsyncs.create(&PostParams::default(), &gitsync).await.unwrap();

    let observations = Arc::new(Mutex::new(Observations::default()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (client, observations, sampling) = (client.clone(), observations.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut failed_samples = 0usize;
            while sampling.load(Ordering::Relaxed) {
                if sample(&client, &observations).await.is_err() {
                    failed_samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            failed_samples
        })
    };

    let mut controller = start_controller(&kubeconfig, &cache, &log);
    let healthy_on = |name: &'static str| {
        let rollouts = rollouts.clone();
        async move {
            let rollout = rollouts.get(name).await.ok()?;
            let status = rollout.status.clone()?;
            (phase(&rollout) == Some(RolloutPhase::Healthy)
                && status.observed_generation == rollout.metadata.generation
                && status.stable_rs.is_some()
                && status.stable_rs == status.current_pod_hash)
                .then_some(status.stable_rs?)
        }
    };
    let mut first_hashes = BTreeMap::new();
    for case in cases() {
        let hash = eventually(SETTLE, &format!("{} healthy on app:1", case.name), || {
            healthy_on(case.name)
        })
        .await;
        first_hashes.insert(case.name, hash);
    }
    let gitsync_at = |revision: String| {
        let gitsyncs = gitsyncs.clone();
        async move {
            let status = gitsyncs.get("app").await.ok()?.status?;
            (status.last_applied_revision.as_deref() == Some(revision.as_str())).then_some(())
        }
    };
    eventually(SETTLE, "the first revision applied", || {
        gitsync_at(first_revision.clone())
    })
    .await;
    eventually(SETTLE, "synced healthy on synced:1", || healthy_on("synced")).await;

    // When: every Rollout moves to a new image, Git moves twice (the last time while the controller
    // is dead), and the storm blows: 10% of writes fail, watches drop, history is compacted, and the
    // controller is SIGKILLed and restarted every few seconds.
    for case in cases() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
        rollouts
            .patch(case.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    let storm_started = Instant::now();
    set_faults(
        &sim,
        json!([{"verbs": ["create", "update", "patch", "delete"],
                "internalErrorRate": 0.04, "conflictRate": 0.03, "tooManyRequestsRate": 0.03}]),
    )
    .await;
    let disruptions = {
        let sim_url = sim.url();
        let http = sim.http_client();
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut drops, mut compactions) = (0usize, 0usize);
            while sampling.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.u64(1500..3500))).await;
                let compact = rng.bool();
                let path = if compact { "compact" } else { "drop-watches" };
                let sent = http.post(format!("{sim_url}/sim/faults/{path}")).send().await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    if compact { compactions += 1 } else { drops += 1 }
                }
            }
            (drops, compactions)
        })
    };

    let mut second_revision = None;
    let mut last_revision = None;
    for kill in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(3000..6000))).await;
        controller.kill();
        if kill == 2 {
            // Git moves while the controller runs: b changes, a leaves, c arrives, synced moves on.
            repo.remove("app/a.yaml").unwrap();
            repo.write("app/b.yaml", &config_map("b", "2")).unwrap();
            repo.write("app/c.yaml", &config_map("c", "2")).unwrap();
            repo.write("app/rollout.yaml", &synced_rollout("synced:2")).unwrap();
            second_revision = Some(repo.commit("b changed, c instead of a, synced:2").unwrap());
        }
        if kill == KILLS / 2 {
            // ... and while it is dead: b leaves, d arrives.
            repo.remove("app/b.yaml").unwrap();
            repo.write("app/d.yaml", &config_map("d", "3")).unwrap();
            last_revision = Some(repo.commit("d instead of b").unwrap());
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(100..1500))).await;
        controller = start_controller(&kubeconfig, &cache, &log);
    }
    let storm = storm_started.elapsed();
    set_faults(&sim, json!([])).await;
    let (second_revision, last_revision) = (second_revision.unwrap(), last_revision.unwrap());

    // Then: everything settles where it should.
    let settle_started = Instant::now();
    for case in cases().into_iter().filter(|c| !c.analysis_fails) {
        let hash = eventually(SETTLE, &format!("{} healthy on app:2", case.name), || {
            healthy_on(case.name)
        })
        .await;
        assert_ne!(Some(&hash), first_hashes.get(case.name), "{} promoted app:2", case.name);
    }
    let doomed = eventually(SETTLE, "doomed aborted, all traffic and pods on stable", || async {
        let rollout = rollouts.get("doomed").await.ok()?;
        let status = rollout.status.clone()?;
        let canary_pods = Api::<ReplicaSet>::namespaced(client.clone(), NAMESPACE)
            .list(&ListParams::default().labels("app=doomed"))
            .await
            .ok()?
            .items
            .iter()
            .filter(|rs| rs.labels().get(HASH_LABEL) != status.stable_rs.as_ref())
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum::<i32>();
        (phase(&rollout) == Some(RolloutPhase::Degraded)
            && status.abort == Some(true)
            && status.canary_weight.unwrap_or(0) == 0
            && canary_pods == 0)
            .then_some(rollout)
    })
    .await;
    let doomed_status = doomed.status.as_ref().unwrap();
    assert_eq!(
        doomed_status.stable_rs.as_ref(),
        first_hashes.get("doomed"),
        "the failed analysis left stable on app:1: {doomed_status:#?}"
    );
    assert!(
        doomed_status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("analysis"),
        "aborted by the analysis: {doomed_status:#?}"
    );
    eventually(SETTLE, "the last revision applied", || {
        gitsync_at(last_revision.clone())
    })
    .await;
    eventually(SETTLE, "synced healthy on synced:2", || healthy_on("synced")).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let config_map_names = || async {
        let list = config_maps.list(&ListParams::default()).await.ok()?;
        let names: BTreeSet<String> = list.iter().map(|c| c.name_any()).filter(|n| n.len() == 1).collect();
        (names == BTreeSet::from(["c".to_string(), "d".to_string()])).then_some(names)
    };
    eventually(SETTLE, "exactly c and d left (a and b pruned)", config_map_names).await;
    let c = config_maps.get("c").await.unwrap();
    assert_eq!(c.data.unwrap().get("v").map(String::as_str), Some("2"));
    let inventory: BTreeSet<String> = gitsyncs
        .get("app")
        .await
        .unwrap()
        .status
        .and_then(|s| s.inventory)
        .map(|i| i.entries.into_iter().map(|e| e.id).collect())
        .unwrap_or_default();
    assert_eq!(inventory.len(), 3, "c, d and the synced Rollout: {inventory:?}");
    for name in ["_c_", "_d_", "_synced_"] {
        assert!(inventory.iter().any(|id| id.contains(name)), "{name} in {inventory:?}");
    }
    let settle = settle_started.elapsed();
    // A few more samples of the settled state, then stop sampling.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampling.store(false, Ordering::Relaxed);
    let failed_samples = sampler.await.unwrap();
    let (drops, compactions) = disruptions.await.unwrap();
    drop(controller);

    // The request log: what was injected, and whether every successful create made one object.
    let requests = sim.http.requests.snapshot();
    let mut injected_by_code: BTreeMap<u16, usize> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.injected) {
        *injected_by_code.entry(request.code).or_default() += 1;
    }
    let created = |resource: &str, code: u16| {
        requests
            .iter()
            .filter(|r| r.verb == "create" && r.resource == resource && !r.dry_run && !r.injected && r.code == code)
            .count()
    };
    let observations = std::mem::take(&mut *observations.lock().unwrap());

    eprintln!("--- chaos figures (seed {seed}) ---");
    eprintln!(
        "wall time {:.1}s; storm {:.1}s; settled {:.1}s after the faults stopped",
        started.elapsed().as_secs_f64(),
        storm.as_secs_f64(),
        settle.as_secs_f64()
    );
    eprintln!("SIGKILLs {KILLS}; watch drops {drops}; compactions {compactions}");
    let writes = requests
        .iter()
        .filter(|r| ["create", "update", "patch", "delete"].contains(&r.verb.as_str()))
        .count();
    eprintln!(
        "requests {}; writes {writes}; injected faults by code {injected_by_code:?}",
        requests.len()
    );
    eprintln!(
        "ReplicaSet creates: {} created, {} answered AlreadyExists (duplicates the API refused)",
        created("replicasets", 201),
        created("replicasets", 409)
    );
    eprintln!(
        "AnalysisRun creates: {} created, {} answered AlreadyExists",
        created("analysisruns", 201),
        created("analysisruns", 409)
    );
    eprintln!("samples {} ({} failed reads)", observations.samples, failed_samples);
    for (rollout, (max, bound)) in &observations.max_pods {
        eprintln!("  {rollout}: at most {max} pods, bound {bound}");
    }
    eprintln!(
        "revisions {first_revision:.8} → {second_revision:.8} → {last_revision:.8} (the last committed while the controller was dead); recorded as applied: {:?}",
        observations.recorded_at.keys().map(|r| &r[..8]).collect::<Vec<_>>()
    );
    // "Nothing applied twice" for the GitSync: once the status records a revision as applied
    // (lastAppliedRevision), the controller must not announce applying it again. It announces
    // `Applied` exactly when it applies a revision the status it read does not record (re-applying
    // the recorded one to correct drift is `DriftCorrected`, and nothing drifts here), and it logs
    // the announcement before the status write that records it. So an announcement logged after
    // the sampler saw the revision recorded is an apply of a recorded revision. An apply whose
    // record was lost to a kill or a failed status write is not recorded and may be repeated.
    let announcements = applied_announcements(&log);
    let applied_again: Vec<_> = announcements
        .iter()
        .filter(|(when, revision)| {
            observations
                .recorded_at
                .iter()
                .any(|(recorded, at)| recorded.starts_with(revision.as_str()) && when > at)
        })
        .collect();
    eprintln!(
        "Applied announcements {}: {:?}",
        announcements.len(),
        announcements.iter().map(|(_, r)| r).collect::<Vec<_>>()
    );

    assert!(
        observations.samples > 100,
        "the sampler ran all along: {}",
        observations.samples
    );
    assert!(
        requests.len() < 2_000_000,
        "the request log kept every request (else the create counts below are partial)"
    );
    assert!(
        injected_by_code.keys().copied().collect::<Vec<_>>() == vec![409, 429, 500],
        "all three kinds of fault were injected: {injected_by_code:?}"
    );
    assert!(observations.violations.is_empty(), "{:#?}", observations.violations);
    let replica_set_objects: usize = observations.replica_sets.values().map(BTreeSet::len).sum();
    assert_eq!(
        created("replicasets", 201),
        replica_set_objects,
        "every successful ReplicaSet create is one object the sampler saw: {:?}",
        observations.replica_sets
    );
    let run_objects: usize = observations.analysis_runs.values().map(BTreeSet::len).sum();
    assert_eq!(
        created("analysisruns", 201),
        run_objects,
        "every successful AnalysisRun create is one run the sampler saw: {:?}",
        observations.analysis_runs
    );
    assert!(
        applied_again.is_empty(),
        "recorded revisions applied again: {applied_again:?}"
    );
    // The second revision may be skipped (Git moved on before it was applied); the last may not.
    assert!(observations.recorded_at.contains_key(&last_revision));
    sim.shutdown().await;
}
