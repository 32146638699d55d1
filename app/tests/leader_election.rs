//! Two `sluice controller --leader-elect` processes against the simulator: only the Lease holder
//! writes; killing it hands the rollout to the other, which continues it; SIGTERM releases the lease.
mod support;

use sluice_e2e::kit as common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, request_log};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};
use support::{LEASE_NAMESPACE, Replica, ReplicaCluster, is_write};

const LONG: Duration = Duration::from_secs(40);

/// A replica with a 4s lease, so hand-over after a kill is quick.
fn replica(kubeconfig: &std::path::Path, pod_name: &'static str) -> Replica {
    let lease = [
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-deadline",
        "3s",
        "--leader-elect-retry-period",
        "1s",
    ];
    Replica::spawn(kubeconfig, pod_name, &lease, Stdio::null())
}

async fn readyz(replica: &Replica) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{}/readyz", replica.port))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("sluice-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Writes other than to the Lease by a user agent containing `mark`.
fn controller_writes(log: &[Value], mark: &str) -> usize {
    log.iter()
        .filter(|r| is_write(r) && r["resource"] != "leases")
        .filter(|r| r["userAgent"].as_str().is_some_and(|ua| ua.contains(mark)))
        .count()
}

fn step_of(rollout: &Rollout) -> Option<i32> {
    rollout.status.as_ref().and_then(|s| s.current_step_index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_and_a_standby_takes_over() {
    let cluster = ReplicaCluster::start(&[]).await;
    let (sim, client, kubeconfig) = (&cluster.sim, &cluster.client, &cluster.kubeconfig);
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");

    let mut replicas = [replica(kubeconfig, "sluice-a"), replica(kubeconfig, "sluice-b")];
    let first_holder = eventually(LONG, "a leader", || holder(&leases)).await;
    let leader_index = replicas
        .iter()
        .position(|r| first_holder.starts_with(&format!("{}_", r.pod_name)))
        .expect("the holder is one of the replicas");
    let standby_index = 1 - leader_index;
    // Both replicas are ready: the leader once its caches synced, the standby as a standby.
    eventually(LONG, "leader ready", || async {
        (readyz(&replicas[leader_index]).await? == (200, "ok".to_string())).then_some(())
    })
    .await;
    let (status, body) = readyz(&replicas[standby_index]).await.expect("standby answers");
    assert_eq!((status, body.as_str()), (200, "ok: standby, not the leader"));

    // A rollout that stops at an open pause, so the hand-over happens mid-rollout.
    let steps = vec![
        CanaryStep::set_weight(50),
        CanaryStep::pause(),
        CanaryStep::set_weight(100),
    ];
    rollouts
        .create(&PostParams::default(), &Rollout::example("web", 2, steps))
        .await
        .unwrap();
    eventually(LONG, "v1 healthy", || async {
        let rollout = rollouts.get("web").await.ok()?;
        (rollout.status?.phase == Some(RolloutPhase::Healthy)).then_some(())
    })
    .await;
    let v1 = rollouts.get("web").await.unwrap().status.unwrap().stable_rs.unwrap();
    let image =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "example.com/web:2"}]}}}});
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(image))
        .await
        .unwrap();
    eventually(LONG, "paused at step 1", || async {
        let rollout = rollouts.get("web").await.ok()?;
        (step_of(&rollout) == Some(1) && rollout.status?.phase == Some(RolloutPhase::Paused)).then_some(())
    })
    .await;

    let log = request_log(sim).await;
    let leader_mark = replicas[leader_index].user_agent_mark();
    let standby_mark = replicas[standby_index].user_agent_mark();
    assert!(controller_writes(&log, &leader_mark) > 0, "the leader wrote");
    assert_eq!(controller_writes(&log, &standby_mark), 0, "the standby wrote nothing");

    // Kill the leader without a chance to release: the standby takes over once the lease expires.
    let killed_at = Instant::now();
    replicas[leader_index].child.kill().unwrap();
    replicas[leader_index].child.wait().unwrap();
    let new_holder = eventually(LONG, "a new leader", || async {
        holder(&leases).await.filter(|h| *h != first_holder)
    })
    .await;
    let took = killed_at.elapsed();
    assert!(new_holder.starts_with(&format!("{}_", replicas[standby_index].pod_name)));
    assert!(
        took < Duration::from_secs(10),
        "hand-over took {took:?} with a 4s lease"
    );

    // The new leader continues the rollout from its status: promote past the pause, it completes.
    let promote = json!({"status": {"promotedStep": 1}});
    rollouts
        .patch_status("web", &PatchParams::default(), &Patch::Merge(promote))
        .await
        .unwrap();
    eventually(LONG, "v2 healthy after the hand-over", || async {
        let status = rollouts.get("web").await.ok()?.status?;
        (status.phase == Some(RolloutPhase::Healthy) && status.stable_rs.as_deref() != Some(v1.as_str())).then_some(())
    })
    .await;
    assert!(
        controller_writes(&request_log(sim).await, &standby_mark) > 0,
        "the new leader wrote"
    );

    // SIGTERM: the leader stops within the grace and releases the lease (no holder left).
    let leader = &mut replicas[standby_index];
    let pid = leader.child.id().to_string();
    let signalled_at = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = loop {
        if let Some(status) = leader.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled_at.elapsed() < Duration::from_secs(10),
            "exited within 10s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a graceful shutdown exits 0: {status:?}");
    assert_eq!(holder(&leases).await, None, "the lease was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once() {
    let cluster = ReplicaCluster::start(&[]).await;
    let (client, kubeconfig) = (&cluster.client, &cluster.kubeconfig);
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);

    // Ctrl-C (SIGINT) stops a replica like SIGTERM does. A 30s lease: without the release, the standby would wait for it to expire.
    let start = |name: &'static str| {
        Replica::spawn(
            kubeconfig,
            name,
            &["--leader-elect-lease-duration", "30s"],
            Stdio::null(),
        )
    };
    let mut first = start("first");
    let first_holder = eventually(LONG, "first leader", || holder(&leases)).await;
    assert!(first_holder.starts_with("first_"));
    let _second = start("second");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = first.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    first.child.wait().unwrap();
    // Measured from the exit (the release is the last thing the process does), not from the signal:
    // on a loaded machine the shutdown itself can take seconds, and that is not what is under test.
    let released_at = Instant::now();
    eventually(Duration::from_secs(20), "the standby holds the lease", || async {
        holder(&leases).await.filter(|h| h.starts_with("second_"))
    })
    .await;
    // The standby looks every retry period (2s) and confirms for 1.5s; an expired-lease takeover
    // would need the full 30s.
    assert!(
        released_at.elapsed() < Duration::from_secs(15),
        "took over in {:?}, well before the 30s lease expired",
        released_at.elapsed()
    );
}

/// Another holder in the Lease (here: written by hand, as after a partition) makes the leader stop its
/// controllers and exit non-zero within the retry period, logging why — in JSON with --log-format json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_the_lease_exits_non_zero() {
    let cluster = ReplicaCluster::start(&[]).await;
    let (client, kubeconfig) = (&cluster.client, &cluster.kubeconfig);
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("controller.log");
    let mut leader = Replica::spawn(
        kubeconfig,
        "victim",
        &["--log-format", "json", "--leader-elect-retry-period", "1s"],
        std::fs::File::create(&log_path).unwrap().into(),
    );
    eventually(LONG, "leader", || async {
        holder(&leases).await.filter(|h| h.starts_with("victim_"))
    })
    .await;
    // Leading (confirmed, controllers started, caches synced), not just holding.
    eventually(LONG, "leader ready", || async {
        (readyz(&leader).await?.1 == "ok").then_some(())
    })
    .await;

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let steal = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now, "leaseDurationSeconds": 30},
    });
    leases
        .patch(
            "sluice-controller",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(steal),
        )
        .await
        .unwrap();
    let stolen_at = Instant::now();
    let status = loop {
        if let Some(status) = leader.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stolen_at.elapsed() < Duration::from_secs(5),
            "the leader exits after losing the lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "losing the lease exits non-zero");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "became leader; starting the controllers"),
        "{log}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["error"].as_str().unwrap().contains("lost leadership")
            && last["error"].as_str().unwrap().contains("intruder"),
        "{last}"
    );
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("intruder"),
        "the loser did not touch the new holder's lease"
    );
}
