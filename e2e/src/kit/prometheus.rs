//! The one launcher of a real Prometheus (Debian package) on loopback, for the demo, the e2e simulator
//! target and the tests: a free port, scraping its targets every second, killed when dropped.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use sluice_sim::Simulator;

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub address: String,
    /// Its config and storage when the launcher chose the folder.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one scrape job reads: `address` is `HOST:PORT`.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub job: String,
    pub address: String,
    pub metrics_path: String,
}

impl ScrapeTarget {
    /// The simulator's traffic metrics (`/sim/metrics`), job `sim`.
    pub fn simulator(sim: &Simulator) -> Self {
        ScrapeTarget {
            job: "sim".into(),
            address: sim.addr.to_string(),
            metrics_path: "/sim/metrics".into(),
        }
    }
}

/// The binary the tests run: `SLUICE_PROMETHEUS`, else `prometheus` on PATH.
pub fn default_binary() -> PathBuf {
    std::env::var_os("SLUICE_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

/// Fails with how to install Prometheus when `binary` does not run; `needed_by` says who asks.
pub fn check_installed(binary: &Path, needed_by: &str) -> anyhow::Result<()> {
    let runs = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !runs {
        bail!(
            "{needed_by} needs Prometheus ({} was not found). Install it with `apt-get install prometheus` (Debian/Ubuntu) \
             or `scripts/install-tools.sh`, or pass --prometheus PATH",
            binary.display()
        );
    }
    Ok(())
}

/// Starts Prometheus with its config and data under `dir` (a new temporary folder when None) and waits
/// until it is ready and has scraped every target once: Prometheus applies targets on a 5 s tick, and
/// analysis started before the first scrape would see no data.
pub async fn launch(binary: &Path, dir: Option<&Path>, targets: &[ScrapeTarget]) -> anyhow::Result<Prometheus> {
    let owned_dir = match dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("a folder for Prometheus")?),
    };
    let dir = dir.unwrap_or_else(|| owned_dir.as_ref().expect("created above").path());
    let mut config = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
    for target in targets {
        config.push_str(&format!(
            "- job_name: {}\n  metrics_path: {}\n  scrape_interval: 1s\n  static_configs:\n  - targets: ['{}']\n",
            target.job, target.metrics_path, target.address
        ));
    }
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (install Prometheus with scripts/install-tools.sh or pass --prometheus PATH)",
                binary.display()
            )
        })?;
    let prometheus = Prometheus {
        child,
        address: format!("http://127.0.0.1:{port}"),
        _dir: owned_dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted = targets.len() as f64;
    loop {
        let ready = if targets.is_empty() {
            is_ready(&prometheus.address).await
        } else {
            query(&prometheus.address, "count(up == 1)")
                .await
                .is_some_and(|up| up >= wanted)
        };
        if ready {
            return Ok(prometheus);
        }
        if Instant::now() >= deadline {
            bail!(
                "Prometheus was not ready and scraping its {} target(s) within 30 s",
                targets.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts Prometheus scraping the simulator, with its data under `dir` (the demo and the e2e target).
pub async fn start(binary: &Path, dir: &Path, sim: &Simulator) -> anyhow::Result<Prometheus> {
    launch(binary, Some(dir), &[ScrapeTarget::simulator(sim)]).await
}

impl Prometheus {
    /// For tests: the default binary in a temporary folder; `targets` are `(job, "HOST:PORT", path)`.
    /// Panics when Prometheus cannot start (install it with scripts/install-tools.sh).
    pub async fn start(targets: &[(&str, String, &str)]) -> Prometheus {
        let targets: Vec<ScrapeTarget> = targets
            .iter()
            .map(|(job, address, path)| ScrapeTarget {
                job: job.to_string(),
                address: address.clone(),
                metrics_path: path.to_string(),
            })
            .collect();
        launch(&default_binary(), None, &targets)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The value of an instant query returning one finite sample (None when empty).
    pub async fn scalar(&self, promql: &str) -> Option<f64> {
        query(&self.address, promql).await
    }
}

async fn is_ready(address: &str) -> bool {
    let ready = reqwest::Client::new()
        .get(format!("{address}/-/ready"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    ready.is_ok_and(|r| r.status().is_success())
}

/// One number from Prometheus, if the query returns any.
pub async fn query(address: &str, promql: &str) -> Option<f64> {
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
