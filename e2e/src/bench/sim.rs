//! `sluice bench sim`: API writes per second and watch fan-out on the simulator, and its memory per
//! stored object. Writes go over loopback HTTP, as a controller's would.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use sluice_sim::{SimConfig, Simulator};

#[derive(Debug, Clone, clap::Args)]
pub struct SimBenchOptions {
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    #[arg(long, default_value_t = 10)]
    pub watchers: usize,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Rollouts stored (each with a ReplicaSet and its Ready pod) before the same number of updated
    /// Rollouts is server-side applied over HTTP, as `kubectl apply --server-side` sends them; 0 skips.
    #[arg(long, default_value_t = 2_000)]
    pub rollouts: usize,
}

#[derive(Debug, Serialize)]
pub struct SimBenchReport {
    pub objects: usize,
    pub watchers: usize,
    pub concurrency: usize,
    pub create_seconds: f64,
    pub creates_per_second: f64,
    pub update_seconds: f64,
    pub updates_per_second: f64,
    /// Time from the first write until every watcher has seen every event.
    pub fanout_seconds: f64,
    pub events_delivered: u64,
    pub average_object_json_bytes: f64,
    pub rss_growth_bytes: u64,
    /// RSS growth per object minus the object's own JSON (the store's overhead, history included).
    pub overhead_bytes_per_object: f64,
    /// The apply figure: `rollouts` Rollouts (plus their ReplicaSets and pods) stored, then as many
    /// updated Rollouts server-side applied over HTTP with `concurrency` in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyReport>,
}

#[derive(Debug, Serialize)]
pub struct ApplyReport {
    pub rollouts: usize,
    /// Objects stored when the applies started (Rollouts, ReplicaSets, pods, CRDs, RBAC).
    pub objects_stored: usize,
    pub apply_seconds: f64,
    pub applies_per_second: f64,
}

fn config_map(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("bench-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "data": {"payload": "x".repeat(200), "index": i.to_string()},
    })
}

pub async fn run(options: SimBenchOptions) -> anyhow::Result<SimBenchReport> {
    // History holds every change of the run, so the memory figure includes it.
    let config = SimConfig {
        watch_history: options.objects * 2 + 16,
        request_log_capacity: 0,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await?;
    let base = format!("{}/api/v1/namespaces/default/configmaps", sim.url());
    let mut credentials = reqwest::header::HeaderMap::new();
    credentials.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", sim.admin_token()))?,
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .default_headers(credentials)
        .build()?;
    let expected_events = (options.objects * 2) as u64;

    let delivered = Arc::new(AtomicU64::new(0));
    let mut watchers = Vec::new();
    for _ in 0..options.watchers {
        let response = http
            .get(format!(
                "{base}?watch=true&resourceVersion={}",
                sim.api.store.current_resource_version()
            ))
            .send()
            .await?;
        let delivered = delivered.clone();
        watchers.push(tokio::spawn(async move {
            let mut seen = 0u64;
            let mut buffered = Vec::new();
            let mut body = response.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                buffered.extend_from_slice(&chunk);
                while let Some(pos) = buffered.iter().position(|b| *b == b'\n') {
                    buffered.drain(..=pos);
                    seen += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if seen == expected_events {
                        return Instant::now();
                    }
                }
            }
            Instant::now()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    write_all(&http, options.concurrency, options.objects, |i| {
        (reqwest::Method::POST, base.clone(), config_map(i))
    })
    .await?;
    let create_seconds = started.elapsed().as_secs_f64();
    let update_started = Instant::now();
    write_all(&http, options.concurrency, options.objects, |i| {
        let patch = json!({"data": {"index": format!("{i}-updated")}});
        (reqwest::Method::PATCH, format!("{base}/bench-{i:05}"), patch)
    })
    .await?;
    let update_seconds = update_started.elapsed().as_secs_f64();

    let mut last_seen = started;
    for watcher in watchers {
        let finished = tokio::time::timeout(Duration::from_secs(120), watcher)
            .await
            .context("watchers did not see every event")??;
        last_seen = last_seen.max(finished);
    }
    sim.shutdown().await;
    let (growth, average_json) = memory_per_object(options.objects).await?;
    let apply = match options.rollouts {
        0 => None,
        n => Some(apply_rollouts(n, options.concurrency).await?),
    };
    Ok(SimBenchReport {
        objects: options.objects,
        watchers: options.watchers,
        concurrency: options.concurrency,
        create_seconds,
        creates_per_second: options.objects as f64 / create_seconds,
        update_seconds,
        updates_per_second: options.objects as f64 / update_seconds,
        fanout_seconds: (last_seen - started).as_secs_f64(),
        events_delivered: delivered.load(Ordering::Relaxed),
        average_object_json_bytes: average_json,
        rss_growth_bytes: growth,
        overhead_bytes_per_object: growth as f64 / options.objects as f64 - average_json,
        apply,
    })
}

/// A Rollout of the benchmark, as JSON; `image` tells the original from the update.
fn rollout_json(i: usize, image: u32) -> anyhow::Result<serde_json::Value> {
    use sluice::api::rollout::{CanaryStep, Rollout};
    let name = format!("bench-{i:05}");
    let rollout = Rollout::example(&name, 1, vec![CanaryStep::set_weight(50), CanaryStep::pause_for("10s")]);
    let mut value = serde_json::to_value(&rollout)?;
    value["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("example.com/{name}:{image}"));
    value["apiVersion"] = json!("sluice.dev/v1alpha1");
    value["kind"] = json!("Rollout");
    Ok(value)
}

/// Stores `count` Rollouts, each with a ReplicaSet whose pod the simulator brings to Ready (what a
/// set-up controller leaves behind), then server-side applies `count` updated Rollouts over HTTP.
async fn apply_rollouts(count: usize, concurrency: usize) -> anyhow::Result<ApplyReport> {
    let sim = Simulator::start(SimConfig {
        request_log_capacity: 0,
        pod_ready_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await?;
    let crds = sluice::api::crds::all()
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    sim.install_crds(crds)?;
    let rollouts_rt = sim
        .api
        .resource("sluice.dev", "rollouts")
        .context("Rollouts are served")?;
    let replicasets_rt = sim
        .api
        .resource("apps", "replicasets")
        .context("ReplicaSets are built in")?;
    let options = sluice_sim::api::WriteOptions {
        field_manager: "bench".into(),
        ..Default::default()
    };
    for i in 0..count {
        let created = sim.api.create(&rollouts_rt, "default", rollout_json(i, 1)?, &options)?;
        let uid = created.object["metadata"]["uid"].clone();
        let name = format!("bench-{i:05}");
        let labels = json!({"app": name, "sluice.dev/pod-template-hash": "h1"});
        let replicaset = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-h1"), "labels": labels,
                "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": name,
                    "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": format!("example.com/{name}:1")}]}}},
        });
        sim.api.create(&replicasets_rt, "default", replicaset, &options)?;
    }
    let ready_by = Instant::now() + Duration::from_secs(600);
    while ready_pods(&sim) < count {
        anyhow::ensure!(Instant::now() < ready_by, "the simulator's pods did not turn Ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let objects_stored = sim.api.store.object_count();
    let mut credentials = reqwest::header::HeaderMap::new();
    credentials.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", sim.admin_token()))?,
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .default_headers(credentials)
        .build()?;
    let base = format!("{}/apis/sluice.dev/v1alpha1/namespaces/default/rollouts", sim.url());
    let bodies = (0..count)
        .map(|i| rollout_json(i, 2))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    write_all(&http, concurrency, count, |i| {
        let url = format!("{base}/bench-{i:05}?fieldManager=kubectl&force=true");
        (reqwest::Method::PATCH, url, bodies[i].clone())
    })
    .await?;
    let apply_seconds = started.elapsed().as_secs_f64();
    sim.shutdown().await;
    Ok(ApplyReport {
        rollouts: count,
        objects_stored,
        apply_seconds,
        applies_per_second: count as f64 / apply_seconds,
    })
}

fn ready_pods(sim: &Simulator) -> usize {
    let pods = sluice_sim::registry::GroupResource {
        group: String::new(),
        plural: "pods".into(),
    };
    let txn = sim.api.store.lock();
    txn.range(&pods, Some("default"), None)
        .filter(|p| {
            let pod = p.value();
            pod.pointer("/status/conditions")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

/// RSS growth and average JSON size when `objects` objects are created in a fresh simulator, in
/// process (no HTTP buffers in the figure); history is on, as in normal operation.
async fn memory_per_object(objects: usize) -> anyhow::Result<(u64, f64)> {
    let sim = Simulator::start(SimConfig {
        request_log_capacity: 0,
        ..SimConfig::default()
    })
    .await?;
    let rt = sim.api.resource("", "configmaps").context("configmaps are built in")?;
    let options = sluice_sim::api::WriteOptions {
        field_manager: "bench".into(),
        ..Default::default()
    };
    // Warm up allocator arenas so the measurement sees steady-state growth.
    for i in 0..100 {
        sim.api.create(&rt, "default", config_map(objects + i), &options)?;
    }
    let rss_before = super::resident_bytes().unwrap_or(0);
    for i in 0..objects {
        sim.api.create(&rt, "default", config_map(i), &options)?;
    }
    let rss_after = super::resident_bytes().unwrap_or(0);
    let json_bytes: usize = {
        let txn = sim.api.store.lock();
        let resource = sluice_sim::registry::GroupResource {
            group: String::new(),
            plural: "configmaps".into(),
        };
        txn.range(&resource, Some("default"), None).map(|o| o.json.len()).sum()
    };
    sim.shutdown().await;
    Ok((
        rss_after.saturating_sub(rss_before),
        json_bytes as f64 / (objects + 100) as f64,
    ))
}

/// Sends `count` writes with `concurrency` in flight; any non-success answer fails the run.
async fn write_all<F>(http: &reqwest::Client, concurrency: usize, count: usize, request: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> (reqwest::Method, String, serde_json::Value),
{
    let results = futures::stream::iter(0..count)
        .map(|i| {
            let (method, url, body) = request(i);
            let content_type = if method == reqwest::Method::PATCH && url.contains("fieldManager=") {
                "application/apply-patch+yaml"
            } else if method == reqwest::Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            let send = http
                .request(method, url)
                .header("content-type", content_type)
                .body(body.to_string())
                .send();
            async move {
                let response = send.await?;
                if !response.status().is_success() {
                    anyhow::bail!(
                        "write {i} answered {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
}
