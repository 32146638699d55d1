//! `sluice demo`: the whole idea on one machine, no cluster. A simulated cluster with traffic, a real
//! Prometheus scraping it, and the Sluice controller: v1 deploys, v2 canaries through 20% → 50% → 100%
//! with analysis passing, v3 (40% errors) fails analysis at 20% and is aborted back to stable. Prints a
//! live timeline and succeeds only if the story happened as told.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::api::analysis::{AnalysisRun, ClusterAnalysisTemplate};
use crate::api::rollout::{Rollout, RolloutPhase};
use crate::sim::api::WriteOptions;
use crate::sim::{SimConfig, Simulator};

const SUCCESS_RATE_TEMPLATE: &str = include_str!("../analysis-templates/sim-success-rate.yaml");
/// Each act of the story must finish within this.
const ACT_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Leave everything running afterwards (until Ctrl-C) to explore with kubectl.
    pub keep: bool,
    /// Prometheus binary (default: `prometheus` on PATH).
    pub prometheus: Option<PathBuf>,
}

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints timeline lines relative to the start.
#[derive(Clone, Copy)]
struct Timeline(Instant);

impl Timeline {
    fn say(&self, line: impl AsRef<str>) {
        println!("[{:>6.1}s] {}", self.0.elapsed().as_secs_f64(), line.as_ref());
    }
}

pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let timeline = Timeline(Instant::now());
    let prometheus_binary = options
        .prometheus
        .clone()
        .unwrap_or_else(|| PathBuf::from("prometheus"));
    if Command::new(&prometheus_binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!(
            "the demo needs Prometheus ({} was not found). Install it with `apt-get install prometheus` (Debian/Ubuntu) \
             or `scripts/install-tools.sh`, or pass --prometheus PATH",
            prometheus_binary.display()
        );
    }
    let sim = Simulator::start(SimConfig {
        pod_ready_delay: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await?;
    let workdir = tempfile::Builder::new().prefix("sluice-demo-").tempdir()?;
    let kubeconfig = workdir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    timeline.say(format!(
        "simulated cluster at {} (kubeconfig {})",
        sim.url(),
        kubeconfig.display()
    ));
    install(&sim)?;
    let (prometheus, prometheus_address) = start_prometheus(&prometheus_binary, workdir.path(), &sim).await?;
    timeline.say(format!(
        "Prometheus at {prometheus_address}, scraping the simulated traffic every second"
    ));
    let client = sim.client()?;
    let config = crate::controller::ControllerConfig {
        namespace: None,
        metrics_addr: "127.0.0.1:0".parse()?,
        prometheus_address: Some(prometheus_address.clone()),
        analysis_address_allowlist: vec!["127.0.0.1/32".into()],
        gitsync: Default::default(),
    };
    let controller = crate::controller::start(client.clone(), config, Default::default()).await?;
    timeline.say(format!(
        "Sluice controller running (metrics at http://{}/metrics)",
        controller.metrics_addr
    ));

    let printer = tokio::spawn(print_timeline(client.clone(), prometheus_address.clone(), timeline));
    let story = tell_story(&client, timeline).await;
    printer.abort();
    match &story {
        Ok(()) => {
            timeline.say("the story happened as told: v2 promoted on evidence, v3 stopped at 20% and rolled back")
        }
        Err(e) => timeline.say(format!("the story did NOT happen as told: {e:#}")),
    }
    if options.keep {
        println!(
            "\nEverything keeps running. Explore with:\n  export KUBECONFIG={}\n  kubectl get ro,rs,pods,analysisruns\n  sluice get rollout web\nPrometheus: {prometheus_address}   Press Ctrl-C to stop.",
            kubeconfig.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    controller.stop(Duration::from_secs(5)).await;
    drop(prometheus);
    sim.shutdown().await;
    story
}

/// CRDs, the analysis template, and a Service receiving 50 requests per second.
fn install(sim: &Simulator) -> anyhow::Result<()> {
    let options = WriteOptions {
        field_manager: "sluice-demo".into(),
        ..Default::default()
    };
    sim.install_sluice_crds()?;
    let template: ClusterAnalysisTemplate =
        serde_saphyr::from_str(SUCCESS_RATE_TEMPLATE).context("bundled analysis template")?;
    let templates = sim
        .api
        .resource("sluice.dev", "clusteranalysistemplates")
        .context("CRDs installed")?;
    sim.api
        .create(&templates, "", serde_json::to_value(template)?, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let services = sim.api.resource("", "services").context("services are built in")?;
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"sim.sluice.dev/rps": "50"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    sim.api
        .create(&services, "default", service, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

async fn start_prometheus(
    binary: &PathBuf,
    dir: &std::path::Path,
    sim: &Simulator,
) -> anyhow::Result<(ChildGuard, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: sim\n  metrics_path: /sim/metrics\n  static_configs:\n  - targets: ['{}']\n",
        sim.addr
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config)?;
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let guard = ChildGuard(child);
    let address = format!("http://127.0.0.1:{port}");
    // Prometheus applies targets on a 5 s tick: wait for the first scrape, so analysis sees data.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if query(&address, "count(up == 1)").await.is_some() {
            return Ok((guard, address));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("Prometheus did not start scraping within 30 s")
}

/// One number from Prometheus, if the query returns any.
async fn query(address: &str, promql: &str) -> Option<f64> {
    let client = prometheus_http_query::Client::try_from(address).ok()?;
    let response = tokio::time::timeout(Duration::from_secs(3), client.query(promql).get())
        .await
        .ok()?
        .ok()?;
    match response.data() {
        prometheus_http_query::response::Data::Vector(v) => {
            v.first().map(|s| s.sample().value()).filter(|v| v.is_finite())
        }
        prometheus_http_query::response::Data::Scalar(s) => Some(s.value()).filter(|v| v.is_finite()),
        _ => None,
    }
}

fn rollout_v1() -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "shop/web:1"}]}},
            "strategy": {"canary": {"steps": [
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "sim-success-rate", "clusterScope": true}],
                              "args": [{"name": "service", "value": "web"}]}},
                {"setWeight": 50},
                {"pause": {"duration": "5s"}},
                {"setWeight": 100}]}}}})
}

async fn tell_story(client: &kube::Client, timeline: Timeline) -> anyhow::Result<()> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    timeline.say("v1: deploying shop/web:1 (5 replicas)");
    rollouts
        .create(&PostParams::default(), &serde_json::from_value(rollout_v1())?)
        .await?;
    let v1 = wait_for(&rollouts, "v1 healthy", |s| s.phase == Some(RolloutPhase::Healthy)).await?;
    let v1_hash = v1
        .status
        .and_then(|s| s.stable_rs)
        .context("v1 has a stable ReplicaSet")?;

    timeline.say("v2: shop/web:2 (healthy) → canary 20% → analysis → 50% → pause 5s → 100%");
    set_version(&rollouts, "2", "0").await?;
    let v2 = wait_for(&rollouts, "v2 promoted", |s| {
        s.phase == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref().is_some_and(|h| h != v1_hash)
    })
    .await?;
    let v2_hash = v2.status.and_then(|s| s.stable_rs).context("v2 is stable")?;

    timeline.say("v3: shop/web:3 answers 40% of requests with 500 → canary 20% → analysis");
    set_version(&rollouts, "3", "0.4").await?;
    let v3 = wait_for(&rollouts, "v3 aborted", |s| s.phase == Some(RolloutPhase::Degraded)).await?;
    let status = v3.status.context("v3 has status")?;
    if status.stable_rs.as_deref() != Some(v2_hash.as_str()) || status.canary_weight != Some(0) || !status.is_aborted()
    {
        bail!("v3 should be aborted with all traffic on v2: {status:?}");
    }
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + ACT_TIMEOUT;
    loop {
        let stable = replica_sets
            .get(&format!("web-{v2_hash}"))
            .await?
            .status
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let canary = match &status.current_pod_hash {
            Some(hash) => replica_sets
                .get(&format!("web-{hash}"))
                .await?
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(0),
            None => 0,
        };
        if stable == 5 && canary == 0 {
            timeline.say("v3 rolled back: 5 of 5 v2 pods serve all traffic, v3 scaled to 0");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("after the abort v2 has {stable} available pods and v3 still {canary}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn set_version(rollouts: &Api<Rollout>, version: &str, error_rate: &str) -> anyhow::Result<()> {
    let patch = json!({"spec": {"template": {
        "metadata": {"annotations": {"sim.sluice.dev/error-rate": error_rate}},
        "spec": {"containers": [{"name": "web", "image": format!("shop/web:{version}")}]}}}});
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

async fn wait_for(
    rollouts: &Api<Rollout>,
    what: &str,
    done: impl Fn(&crate::api::rollout::RolloutStatus) -> bool,
) -> anyhow::Result<Rollout> {
    let deadline = Instant::now() + ACT_TIMEOUT;
    loop {
        let rollout = rollouts.get("web").await?;
        if rollout.status.as_ref().is_some_and(&done) {
            return Ok(rollout);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out waiting for {what}; status: {:?}",
                rollout.status.map(|s| (s.phase, s.message))
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints a line whenever the rollout's step, weights, phase or analysis verdict changes, with the
/// success rate Prometheus measures for the canary and stable pods at that moment.
async fn print_timeline(client: kube::Client, prometheus: String, timeline: Timeline) {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    let runs: Api<AnalysisRun> = Api::namespaced(client, "default");
    let mut last = String::new();
    let mut changes = watcher(rollouts, watcher::Config::default()).applied_objects().boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut latest: Option<Rollout> = None;
    loop {
        tokio::select! {
            Some(Ok(rollout)) = changes.next() => latest = Some(rollout),
            _ = tick.tick() => {}
        }
        let Some(rollout) = &latest else { continue };
        let Some(status) = &rollout.status else { continue };
        let steps = rollout.spec.canary().steps.len();
        // 1-based, as in events: "step 2/5" is the second step (all done shows 5/5).
        let step = (status.current_step_index.unwrap_or(0) + 1).min(steps as i32);
        let weight = status.canary_weight.unwrap_or(0);
        let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let analysis = match status.canary.as_ref().and_then(|c| c.current_step_analysis_run.clone()) {
            Some(run) => match runs
                .get(&run.name)
                .await
                .ok()
                .and_then(|r| r.status)
                .and_then(|s| s.phase)
            {
                Some(phase) => format!(" · analysis {phase:?}"),
                None => " · analysis Pending".into(),
            },
            None => String::new(),
        };
        let key = format!("{phase} step {step}/{steps} weight {weight}{analysis}");
        if key == last {
            continue;
        }
        last = key;
        let rate = |hash: Option<&String>| {
            let prometheus = prometheus.clone();
            let hash = hash.cloned();
            async move {
                let hash = hash?;
                let selector = format!(r#"service="web",pod_template_hash="{hash}""#);
                let promql = format!(
                    r#"sum(rate(sim_http_requests_total{{{selector},code!~"5.."}}[10s])) / sum(rate(sim_http_requests_total{{{selector}}}[10s]))"#
                );
                query(&prometheus, &promql).await
            }
        };
        let canary_hash = status
            .current_pod_hash
            .as_ref()
            .filter(|h| Some(*h) != status.stable_rs.as_ref());
        let stable_rate = rate(status.stable_rs.as_ref()).await;
        let canary_rate = rate(canary_hash).await;
        let show = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{:.1}%", r * 100.0));
        timeline.say(format!(
            "{phase:<11} step {step}/{steps} · weights canary {weight}% / stable {}% · success stable {} canary {}{analysis}{}",
            100 - weight,
            show(stable_rate),
            if canary_hash.is_some() { show(canary_rate) } else { "—".into() },
            status.message.as_ref().filter(|m| phase == "Degraded" && !m.is_empty()).map(|m| format!(" · {m}")).unwrap_or_default(),
        ));
    }
}
