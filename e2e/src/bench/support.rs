//! Shared pieces of the rollout benchmarks: child processes killed on drop, `/proc` readers, the
//! Prometheus text format (counters and histograms), percentiles, and simulator set-up over HTTP.
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice_sim::http::RequestRecord;

/// User agent of the benchmarks' own API requests, so the request log tells them from the controller's.
pub const BENCH_USER_AGENT: &str = "sluice-bench";

/// Verbs that change state on the API server.
pub const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process (the simulator or the controller) that is killed when dropped, so an error or a
/// panic in the benchmark never leaves it running. Its output is drained in the background: lines
/// containing one of the `watched` strings are kept, and the last lines of each stream for errors.
pub struct ChildProcess {
    name: String,
    child: tokio::process::Child,
    lines: Arc<Mutex<Lines>>,
}

#[derive(Default)]
struct Lines {
    watched: Vec<String>,
    tail: VecDeque<String>,
}

const TAIL_LINES: usize = 30;

impl ChildProcess {
    /// Spawns `program args…` with extra environment; lines containing any of `watched` are kept for
    /// [`ChildProcess::wait_for_line`].
    pub fn spawn(
        name: &str,
        program: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
        watched: &[&str],
    ) -> anyhow::Result<ChildProcess> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the {name} process ({})", program.display()))?;
        let lines = Arc::new(Mutex::new(Lines::default()));
        let watched: Arc<Vec<String>> = Arc::new(watched.iter().map(|s| s.to_string()).collect());
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(drain(BufReader::new(stdout), lines.clone(), watched.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(BufReader::new(stderr), lines.clone(), watched));
        }
        Ok(ChildProcess {
            name: name.to_string(),
            child,
            lines,
        })
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("the {} process has exited", self.name))
    }

    /// The first output line containing `needle` (which must be one of the watched strings); fails
    /// when the process exits first or after `timeout`, with the process's last output lines.
    pub async fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lock().watched.iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the {} process printed no line containing {needle:?} within {timeout:?}; last output:\n{}",
                    self.name,
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fails when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the {} process exited ({status}); last output:\n{}",
                self.name,
                self.tail()
            );
        }
        Ok(())
    }

    /// The last lines the process printed (stdout and stderr interleaved).
    pub fn tail(&self) -> String {
        self.lock().tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn drain<R: tokio::io::AsyncBufRead + Unpin>(reader: R, lines: Arc<Mutex<Lines>>, watched: Arc<Vec<String>>) {
    let mut reader = reader.lines();
    while let Ok(Some(line)) = reader.next_line().await {
        let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        if watched.iter().any(|w| line.contains(w.as_str())) {
            lines.watched.push(line.clone());
        }
        if lines.tail.len() >= TAIL_LINES {
            lines.tail.pop_front();
        }
        lines.tail.push_back(line);
    }
}

/// A temporary directory removed when dropped (tempfile is only a dev-dependency).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_status_bytes(status, "VmRSS:")
}

/// A `/proc/<pid>/status` field given in kB (`VmRSS:`, `RssAnon:`, `RssFile:`), in bytes.
pub fn parse_status_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident memory, and what backs it: anonymous (heap, stacks: what the process allocated) and
/// file-backed (its binary's code and read-only data that were touched, shared with the page cache),
/// read at one instant.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RssSplit {
    #[serde(skip)]
    pub total_bytes: u64,
    pub anon_bytes: u64,
    pub file_bytes: u64,
}

pub fn rss_split(pid: u32) -> anyhow::Result<RssSplit> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(RssSplit {
        total_bytes: parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))?,
        anon_bytes: parse_status_bytes(&text, "RssAnon:").with_context(|| format!("no RssAnon in {path}"))?,
        file_bytes: parse_status_bytes(&text, "RssFile:").with_context(|| format!("no RssFile in {path}"))?,
    })
}

/// utime + stime (clock ticks) of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&text).with_context(|| format!("unexpected format of {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on every Linux this runs on; asked once, in case).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format

/// One sample of the text exposition format: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses one sample line; comments, blank and malformed lines give None.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], vec![], &line[space..])
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `key="value",…}` → the pairs and what follows the closing brace.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, c) => {
                    value.push(if c == 'n' { '\n' } else { c });
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        labels.push((key, value));
        rest = &rest[end?..];
    }
}

/// The sum of every sample named `name` that carries all of `labels`; None when there is none.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for sample in text.lines().filter_map(parse_sample) {
        if sample.name == name && sample.has_labels(labels) {
            *found.get_or_insert(0.0) += sample.value;
        }
    }
    found
}

/// A Prometheus histogram: cumulative buckets by upper bound, sum and count.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// The histogram `name` (without `_bucket`) with these labels from exposition text.
    pub fn parse(text: &str, name: &str, labels: &[(&str, &str)]) -> Histogram {
        let mut histogram = Histogram::default();
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        for sample in text.lines().filter_map(parse_sample) {
            if !sample.has_labels(labels) {
                continue;
            }
            if sample.name == bucket {
                let le = match sample.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                histogram.buckets.push((le, sample.value));
            } else if sample.name == sum {
                histogram.sum = sample.value;
            } else if sample.name == count {
                histogram.count = sample.value;
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    /// What was observed since `before` (same buckets).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map(|(_, n)| *n)
                    .unwrap_or(0.0);
                (*le, n - earlier)
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The mean observation (sum / count).
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Estimated `q` quantile, interpolating linearly inside the bucket as PromQL's
    /// `histogram_quantile` does; in the +Inf bucket it answers the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (le, cumulative) in &self.buckets {
            if *cumulative >= rank && *cumulative > below {
                if le.is_infinite() {
                    return Some(lower);
                }
                return Some(lower + (le - lower) * (rank - below) / (cumulative - below));
            }
            lower = *le;
            below = *cumulative;
        }
        Some(lower)
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of samples; None when empty.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50 / p95 / p99 / max of durations in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub samples: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Distribution {
    pub fn of(samples: &[f64]) -> Distribution {
        Distribution {
            samples: samples.len(),
            p50: percentile(samples, 50.0),
            p95: percentile(samples, 95.0),
            p99: percentile(samples, 99.0),
            max: percentile(samples, 100.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes set-up

/// A kube client for the simulator described by `config` (its admin credentials included) that
/// identifies itself as the benchmark.
pub fn bench_client(mut config: kube::Config) -> anyhow::Result<kube::Client> {
    config.default_namespace = "default".into();
    config.read_timeout = Some(Duration::from_secs(295));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(BENCH_USER_AGENT),
    ));
    Ok(kube::Client::try_from(config)?)
}

/// A simulator running as a child process (`sluice sim`), as the benchmarks that measure a controller
/// process use it: the controller's figures then do not include the simulator's.
pub struct SimulatorProcess {
    pub process: ChildProcess,
    /// Where it serves the Kubernetes API (and `/sim/requests`).
    pub url: String,
    /// The kubeconfig it wrote, with its admin token: what a spawned controller is given.
    pub kubeconfig: PathBuf,
    /// A bench client for it; Sluice's CRDs are installed.
    pub client: kube::Client,
}

/// The simulator's default request-log size (`sluice sim --request-log-capacity`).
pub const REQUEST_LOG_CAPACITY: usize = 100_000;

/// Spawns `exe sim` on a free port (pods Ready after 10 ms, `watch_history` events kept for watches,
/// the last `request_log` requests kept for `/sim/requests`), its kubeconfig written into `dir`, and
/// installs Sluice's CRDs once it serves.
pub async fn spawn_simulator(
    exe: &std::path::Path,
    dir: &std::path::Path,
    watch_history: usize,
    request_log: usize,
) -> anyhow::Result<SimulatorProcess> {
    let kubeconfig = dir.join("kubeconfig");
    let args: Vec<String> = [
        "sim",
        "--addr",
        "127.0.0.1:0",
        "--kubeconfig-out",
        &kubeconfig.display().to_string(),
        "--pod-ready-delay",
        "10ms",
        "--watch-history",
        &watch_history.to_string(),
        "--request-log-capacity",
        &request_log.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let serving = "serving the Kubernetes API on ";
    let mut process = ChildProcess::spawn("simulator", exe, &args, &[], &[serving])?;
    let line = process.wait_for_line(serving, Duration::from_secs(30)).await?;
    let url = line[line.find(serving).unwrap_or(0) + serving.len()..]
        .trim()
        .to_string();
    // The simulator wrote its kubeconfig (with the admin token) before it said it serves.
    let written = kube::config::Kubeconfig::read_from(&kubeconfig)
        .with_context(|| format!("reading the simulator's kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(written, &Default::default()).await?;
    let client = bench_client(config)?;
    install_crds(&client).await?;
    Ok(SimulatorProcess {
        process,
        url,
        kubeconfig,
        client,
    })
}

/// The configuration of a controller the benchmarks run in their own process (to bring rollouts to
/// Healthy, or to drive them): every namespace, metrics on a free loopback port, flag defaults otherwise.
pub fn setup_controller_config() -> sluice::controller::ControllerConfig {
    sluice::controller::ControllerConfig {
        namespace: None,
        metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        prometheus_address: None,
        analysis_address_allowlist: vec![],
        notifications_configmap: sluice::controller::DEFAULT_NOTIFICATIONS_CONFIGMAP.into(),
        gitsync: Default::default(),
    }
}

/// Installs Sluice's CRDs (the same as `crds/sluice.dev.yaml`) and waits until Rollouts are served.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in sluice::api::crds::all() {
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("installing the Sluice CRDs"),
        }
    }
    let rollouts: Api<Rollout> = Api::all(client.clone());
    wait_until(Duration::from_secs(30), "the Rollout CRD to be served", || async {
        rollouts.list(&ListParams::default().limit(1)).await.ok().map(|_| ())
    })
    .await
}

/// Polls `check` every 20 ms until it returns Some; fails after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `task(i)` for every i in 0..count with `concurrency` in flight; the first error fails all.
pub async fn for_each_concurrently<F, Fut>(count: usize, concurrency: usize, task: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut results = futures::stream::iter(0..count)
        .map(task)
        .buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// Creates a Rollout, retrying briefly while the API server is busy.
pub async fn create_rollout(api: &Api<Rollout>, rollout: &Rollout) -> anyhow::Result<()> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let mut attempt = 0;
    loop {
        match api.create(&PostParams::default(), rollout).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::debug!(rollout = %name, error = %e, "retrying create");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating Rollout {name}")),
        }
    }
}

/// Points the first container of a Rollout at another image: a new pod template, hence a canary.
pub async fn set_image(api: &Api<Rollout>, name: &str, image: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("changing the image of Rollout {name}"))?;
    Ok(())
}

/// Fully promoted: Healthy, the spec observed, and the current pod template is the stable one.
pub fn is_healthy(rollout: &Rollout) -> bool {
    let Some(status) = &rollout.status else {
        return false;
    };
    status.phase == Some(RolloutPhase::Healthy)
        && status.observed_generation == rollout.metadata.generation
        && status.current_pod_hash.is_some()
        && status.current_pod_hash == status.stable_rs
}

/// Waits until `count` Rollouts satisfy `done`, listing every `every`; fails after `timeout` saying
/// how many were done.
pub async fn wait_for_rollouts(
    api: &Api<Rollout>,
    count: usize,
    timeout: Duration,
    every: Duration,
    what: &str,
    done: impl Fn(&Rollout) -> bool,
) -> anyhow::Result<Vec<Rollout>> {
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                last = list.items.iter().filter(|r| done(r)).count();
                if last >= count {
                    return Ok(list.items);
                }
            }
            Err(e) => tracing::debug!(error = %e, "listing Rollouts"),
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {last} of {count} are");
        }
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator's request log

/// `GET /sim/requests`.
#[derive(Debug, Deserialize)]
pub struct RequestLog {
    pub requests: Vec<LoggedRequest>,
}

/// The fields of a request-log record the benchmarks count by.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    pub verb: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: String,
    /// The object's name (empty for a create, whose name is in the body the log does not keep).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub user_agent: String,
    #[serde(default)]
    pub code: u16,
}

impl From<&RequestRecord> for LoggedRequest {
    fn from(record: &RequestRecord) -> Self {
        LoggedRequest {
            verb: record.verb.clone(),
            resource: record.resource.clone(),
            subresource: record.subresource.clone(),
            name: record.name.clone(),
            user_agent: record.user_agent.clone(),
            code: record.code,
        }
    }
}

/// What the benchmarks count a write as: `verb resource[/subresource]`, with ` (CODE)` added for
/// answers other than 2xx (a create answered 409 is still a write the controller attempted).
pub fn write_kind(request: &LoggedRequest) -> String {
    let mut kind = format!("{} {}", request.verb, request.resource);
    if !request.subresource.is_empty() {
        kind.push('/');
        kind.push_str(&request.subresource);
    }
    if !(200..300).contains(&request.code) {
        kind.push_str(&format!(" ({})", request.code));
    }
    kind
}

/// Write requests that pass `keep`, counted by [`write_kind`].
pub fn writes_by_kind(requests: &[LoggedRequest], keep: impl Fn(&LoggedRequest) -> bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in requests
        .iter()
        .filter(|r| WRITE_VERBS.contains(&r.verb.as_str()) && keep(r))
    {
        *counts.entry(write_kind(request)).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_cpu_ticks_from_proc_texts() {
        let status = "Name:\tsluice\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let split = "VmRSS:\t  300 kB\nRssAnon:\t  100 kB\nRssFile:\t  200 kB\n";
        assert_eq!(parse_status_bytes(split, "RssAnon:"), Some(100 * 1024));
        assert_eq!(parse_status_bytes(split, "RssFile:"), Some(200 * 1024));
        // The command name holds a space and a parenthesis; utime 250, stime 50.
        let stat = "4242 (sluice (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 2000000 3000";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_rss_and_cpu() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
    }

    #[test]
    fn parses_samples_and_sums_matching_ones() {
        let text = "# HELP sluice_reconcile Reconciles run.\n# TYPE sluice_reconcile counter\n\
            sluice_reconcile_total{controller=\"rollout\"} 12\n\
            sluice_reconcile_total{controller=\"analysisrun\"} 3\n\
            up 1\n\
            odd{name=\"a,\\\"b\\\"\"} 2.5\n";
        assert_eq!(
            metric_value(text, "sluice_reconcile_total", &[("controller", "rollout")]),
            Some(12.0)
        );
        assert_eq!(metric_value(text, "sluice_reconcile_total", &[]), Some(15.0));
        assert_eq!(metric_value(text, "up", &[]), Some(1.0));
        assert_eq!(metric_value(text, "missing", &[]), None);
        let odd = parse_sample("odd{name=\"a,\\\"b\\\"\"} 2.5").unwrap();
        assert_eq!(odd.labels, vec![("name".to_string(), "a,\"b\"".to_string())]);
    }

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        let text = "d_sum{c=\"r\"} 1.0\nd_count{c=\"r\"} 100\n\
            d_bucket{c=\"r\",le=\"0.001\"} 50\n\
            d_bucket{c=\"r\",le=\"0.002\"} 90\n\
            d_bucket{c=\"r\",le=\"0.004\"} 100\n\
            d_bucket{c=\"r\",le=\"+Inf\"} 100\n\
            d_bucket{c=\"other\",le=\"+Inf\"} 7\n";
        let h = Histogram::parse(text, "d", &[("c", "r")]);
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 4);
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((h.quantile(0.7).unwrap() - 0.0015).abs() < 1e-12);
        assert!((h.quantile(0.99).unwrap() - 0.0038).abs() < 1e-12);
        assert!((h.mean().unwrap() - 0.01).abs() < 1e-12);
        let before = Histogram::parse(&text.replace("} 50", "} 40"), "d", &[("c", "r")]);
        let delta = h.since(&before);
        assert_eq!(delta.buckets[0], (0.001, 10.0));
        // Everything in +Inf: the highest finite bound.
        let inf = Histogram {
            buckets: vec![(1.0, 0.0), (f64::INFINITY, 5.0)],
            sum: 50.0,
            count: 5.0,
        };
        assert_eq!(inf.quantile(0.5), Some(1.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(10.0));
        assert_eq!(percentile(&samples, 95.0), Some(19.0));
        assert_eq!(percentile(&samples, 100.0), Some(20.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
    }

    #[test]
    fn counts_writes_by_kind() {
        let record = |verb: &str, resource: &str, subresource: &str, agent: &str| LoggedRequest {
            verb: verb.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: String::new(),
            user_agent: agent.into(),
            code: if verb == "create" { 409 } else { 200 },
        };
        let log = vec![
            record("patch", "rollouts", "status", ""),
            record("patch", "rollouts", "status", ""),
            record("create", "replicasets", "", ""),
            record("list", "replicasets", "", ""),
            record("patch", "rollouts", "", BENCH_USER_AGENT),
        ];
        let counts = writes_by_kind(&log, |r| r.user_agent != BENCH_USER_AGENT);
        assert_eq!(counts.get("patch rollouts/status"), Some(&2));
        assert_eq!(counts.get("create replicasets (409)"), Some(&1));
        assert_eq!(counts.len(), 2);
        let parsed: RequestLog = serde_json::from_str(
            r#"{"requests":[{"verb":"create","group":"","resource":"pods","subresource":"","namespace":"d","name":"p","userAgent":"kubectl/1.35","code":201}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.requests[0].user_agent, "kubectl/1.35");
    }
}
