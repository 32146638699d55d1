//! A real Prometheus for the simulator (`sluice demo`, `sluice e2e`): started on a free port, scraping
//! the simulator's traffic metrics every second. (tests/common has its own launcher for the tests.)
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::sim::Simulator;

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub address: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Starts Prometheus with its data under `dir` and waits for its first scrape of the simulator.
pub async fn start(binary: &Path, dir: &Path, sim: &Simulator) -> anyhow::Result<Prometheus> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: sim\n  metrics_path: /sim/metrics\n  static_configs:\n  - targets: ['{}']\n",
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
        .with_context(|| {
            format!(
                "starting {} (install Prometheus with scripts/install-tools.sh or pass --prometheus PATH)",
                binary.display()
            )
        })?;
    let prometheus = Prometheus {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    // Prometheus applies targets on a 5 s tick: wait for the first scrape, so analysis sees data.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if query(&prometheus.address, "count(up == 1)").await.is_some() {
            return Ok(prometheus);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("Prometheus did not scrape the simulator within 30 s")
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
