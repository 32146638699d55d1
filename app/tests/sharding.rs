//! Two `sluice controller --leader-elect --shard-count 2` processes against the simulator, as deploy/'s
//! ServiceAccount: they split 200 Rollouts in 10 namespaces by shard; after `kill -9` of one, the other
//! takes its shard within the lease duration and every Rollout completes a new canary; and the request
//! log shows no namespace ever written by both replicas in overlapping time windows.
mod support;

use sluice_e2e::kit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{eventually, request_log};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};
use sluice::controller::shard::shard_of;
use support::{Replica, ReplicaCluster, is_write};

const SHARDS: u16 = 2;
const NAMESPACES_PER_SHARD: usize = 5;
const ROLLOUTS_PER_NAMESPACE: usize = 20;
const LONG: Duration = Duration::from_secs(60);
/// 200 Rollouts through a canary on a shared, loaded machine (debug build; 2 cores shared with other
/// builds made the simulator take minutes).
const WAVE: Duration = Duration::from_secs(600);

/// A replica with an 8s lease: a dead replica's shard moves quickly, and a loaded machine's slow
/// answers (seconds, while 200 Rollouts start) do not make the replicas drop their shards. Its log
/// goes to `$SHARDING_TEST_LOG_DIR/<pod name>.log` when that is set.
fn replica(kubeconfig: &std::path::Path, pod_name: &'static str) -> Replica {
    let stderr = match std::env::var_os("SHARDING_TEST_LOG_DIR") {
        Some(dir) => {
            Stdio::from(std::fs::File::create(std::path::Path::new(&dir).join(format!("{pod_name}.log"))).unwrap())
        }
        None => Stdio::null(),
    };
    let shards = SHARDS.to_string();
    let args = [
        "--shard-count",
        &shards,
        "--leader-elect-lease-duration",
        "8s",
        "--leader-elect-renew-deadline",
        "6s",
        "--leader-elect-retry-period",
        "1s",
        "--kube-qps",
        "0",
    ];
    Replica::spawn(kubeconfig, pod_name, &args, stderr)
}

/// `sluice_shards_held` and the shards `sluice_shard_held{shard}` reports held.
async fn shards_held(replica: &Replica) -> Option<(i64, BTreeSet<u16>)> {
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", replica.port))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut count = None;
    let mut held = BTreeSet::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("sluice_shards_held ") {
            count = value.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("sluice_shard_held{shard=\"") {
            let (shard, value) = rest.split_once("\"} ")?;
            if value.trim() == "1" {
                held.insert(shard.parse().ok()?);
            }
        }
    }
    Some((count?, held))
}

/// Five namespaces per shard, so that the split between two replicas is even by construction.
fn namespaces() -> Vec<String> {
    let mut per_shard: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let name = format!("team-{i}");
        let bucket = per_shard.entry(shard_of(&name, SHARDS)).or_default();
        if bucket.len() < NAMESPACES_PER_SHARD {
            bucket.push(name);
        }
        if per_shard.len() == usize::from(SHARDS) && per_shard.values().all(|b| b.len() == NAMESPACES_PER_SHARD) {
            break;
        }
    }
    per_shard.into_values().flatten().collect()
}

/// Which replica made a request, by the identity in its user agent.
fn writer(request: &Value, replicas: &[Replica]) -> Option<usize> {
    let user_agent = request["userAgent"].as_str()?;
    replicas.iter().position(|r| user_agent.contains(&r.user_agent_mark()))
}

async fn all_healthy(rollouts: &Api<Rollout>, not_stable: &BTreeMap<String, String>) -> Option<usize> {
    let list = rollouts.list(&ListParams::default()).await.ok()?;
    let done = list
        .items
        .iter()
        .filter(|rollout| {
            let Some(status) = &rollout.status else { return false };
            let key = format!(
                "{}/{}",
                rollout.metadata.namespace.as_deref().unwrap_or(""),
                rollout.metadata.name.as_deref().unwrap_or("")
            );
            status.phase == Some(RolloutPhase::Healthy)
                && status.stable_rs.is_some()
                && status.stable_rs.as_ref() != not_stable.get(&key)
                && status.current_pod_hash == status.stable_rs
        })
        .count();
    eprintln!("{done} of {} done", list.items.len());
    (done == list.items.len() && done == 2 * NAMESPACES_PER_SHARD * ROLLOUTS_PER_NAMESPACE).then_some(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_shards_and_one_finishes_every_canary_after_the_other_dies() {
    let namespaces = namespaces();
    let cluster = ReplicaCluster::start(&namespaces).await;
    let (sim, client) = (&cluster.sim, &cluster.client);

    let mut replicas = [
        replica(&cluster.kubeconfig, "sluice-a"),
        replica(&cluster.kubeconfig, "sluice-b"),
    ];
    // Fair share: one shard each, before any Rollout exists (so every namespace has one writer
    // until the kill).
    let split = eventually(LONG, "one shard each", || async {
        let a = shards_held(&replicas[0]).await?;
        let b = shards_held(&replicas[1]).await?;
        (a.0 == 1 && b.0 == 1 && a.1.len() == 1 && b.1.len() == 1 && a.1 != b.1).then_some((a.1, b.1))
    })
    .await;
    eprintln!("shards held: a {:?}, b {:?}", split.0, split.1);

    let rollouts: Api<Rollout> = Api::all(client.clone());
    let steps = vec![
        CanaryStep::set_weight(50),
        CanaryStep::pause_for("2s"),
        CanaryStep::set_weight(100),
    ];
    let created_at = Instant::now();
    for namespace in &namespaces {
        let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
        for i in 0..ROLLOUTS_PER_NAMESPACE {
            let mut rollout = Rollout::example(&format!("r-{i}"), 1, steps.clone());
            rollout.metadata.namespace = Some(namespace.clone());
            api.create(&PostParams::default(), &rollout).await.unwrap();
        }
    }
    eprintln!("created 200 rollouts in {:?}", created_at.elapsed());
    let none = BTreeMap::new();
    eventually(WAVE, "200 rollouts healthy", || all_healthy(&rollouts, &none)).await;
    eprintln!("200 rollouts healthy {:?} after creation", created_at.elapsed());

    // The split: Rollouts whose status each replica wrote.
    let log = request_log(sim).await;
    let mut per_replica: [BTreeSet<(String, String)>; 2] = Default::default();
    for request in log.iter().filter(|r| is_write(r) && r["resource"] == "rollouts") {
        if let Some(index) = writer(request, &replicas) {
            per_replica[index].insert((
                request["namespace"].as_str().unwrap_or("").to_string(),
                request["name"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    eprintln!(
        "rollouts written: a {}, b {}",
        per_replica[0].len(),
        per_replica[1].len()
    );
    assert!(
        per_replica.iter().all(|set| set.len() > 40),
        "each replica holds more than 40 of the 200: {} and {}",
        per_replica[0].len(),
        per_replica[1].len()
    );
    assert!(
        per_replica[0].is_disjoint(&per_replica[1]),
        "no Rollout written by both"
    );

    // A new canary for every Rollout; a replica dies in the middle of it.
    let stable: BTreeMap<String, String> = rollouts
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r.metadata.namespace.as_deref().unwrap_or(""),
                    r.metadata.name.as_deref().unwrap_or("")
                ),
                r.status.as_ref().and_then(|s| s.stable_rs.clone()).unwrap_or_default(),
            )
        })
        .collect();
    // The dying replica's namespaces last, and the kill right after: their last canaries are still
    // running when it dies.
    let mut patch_order = namespaces.clone();
    patch_order.sort_by_key(|namespace| split.0.contains(&shard_of(namespace, SHARDS)));
    for namespace in &patch_order {
        let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
        for i in 0..ROLLOUTS_PER_NAMESPACE {
            let name = format!("r-{i}");
            let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("example.com/{name}:2")}]}}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(image))
                .await
                .unwrap();
        }
    }
    let killed_at = Instant::now();
    replicas[0].child.kill().unwrap();
    replicas[0].child.wait().unwrap();
    eventually(LONG, "the survivor holds both shards", || async {
        let (count, held) = shards_held(&replicas[1]).await?;
        (count == i64::from(SHARDS) && held.len() == usize::from(SHARDS)).then_some(())
    })
    .await;
    let took = killed_at.elapsed();
    eprintln!("the dead replica's shard moved in {took:?}");
    // 8s lease + 1s look + 1.5s confirmation; the rest is margin for a loaded machine.
    assert!(
        took < Duration::from_secs(20),
        "shard hand-over took {took:?} with an 8s lease"
    );
    eventually(WAVE, "200 new canaries complete", || all_healthy(&rollouts, &stable)).await;
    eprintln!("200 canaries complete {:?} after the kill", killed_at.elapsed());

    // No namespace (Rollouts, ReplicaSets, Events, AnalysisRuns in it) ever written by both replicas
    // in overlapping windows: in time order, each namespace's writers form at most two runs, and the
    // second one, if any, is the survivor's after the kill.
    let log = request_log(sim).await;
    let test_namespaces: BTreeSet<&str> = namespaces.iter().map(String::as_str).collect();
    let mut writes: BTreeMap<&str, Vec<(u64, usize)>> = BTreeMap::new();
    for (order, request) in log.iter().enumerate().filter(|(_, r)| is_write(r)) {
        let Some(namespace) = request["namespace"].as_str().filter(|ns| test_namespaces.contains(ns)) else {
            continue;
        };
        if let Some(index) = writer(request, &replicas) {
            let at = request["atMs"].as_u64().expect("the request log has atMs");
            writes
                .entry(namespace)
                .or_default()
                .push((at * 1_000_000 + order as u64, index));
        }
    }
    assert_eq!(writes.len(), namespaces.len(), "every namespace was written");
    for (namespace, mut list) in writes {
        list.sort();
        let mut runs: Vec<usize> = list.iter().map(|(_, index)| *index).collect();
        runs.dedup();
        assert!(
            runs == [0] || runs == [1] || runs == [0, 1],
            "namespace {namespace}: writers in time order {runs:?} (0 = killed, 1 = survivor)"
        );
        if *namespace == patch_order[patch_order.len() - 1] {
            assert_eq!(
                runs,
                [0, 1],
                "namespace {namespace}: the survivor finished what the dead replica began"
            );
        }
    }
    // Every call was granted by deploy/'s RBAC (the simulator enforced it).
    let refused = common::denied_to_controller(&sim.url()).await;
    assert!(
        refused.is_empty(),
        "calls the simulator refused the controller: {refused:#?}"
    );
}
