//! `sluice sim`: the simulator's flags and serving it on its own.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::Authorization;
use crate::faults::FaultRule;
use crate::{SimConfig, Simulator};

/// `sluice sim`: the flags of a simulator served on its own.
#[derive(Args)]
pub struct SimArgs {
    /// Address to serve on; port 0 picks a free port. Loopback only.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Write a kubeconfig pointing at the simulator here.
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
    /// How long a new pod takes to become Ready (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub pod_ready_delay: Duration,
    /// Interval between watch bookmarks.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub bookmark_interval: Duration,
    /// Changes kept for resuming watches; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 20_000)]
    pub watch_history: usize,
    /// Requests kept for `GET /sim/requests` (the oldest go first).
    #[arg(long, default_value_t = 100_000)]
    pub request_log_capacity: usize,
    /// Fraction of matching requests answered 500 Internal Server Error.
    #[arg(long, default_value_t = 0.0)]
    pub fault_internal_error_rate: f64,
    /// Fraction of matching requests answered 429 Too Many Requests.
    #[arg(long, default_value_t = 0.0)]
    pub fault_too_many_requests_rate: f64,
    /// Fraction of matching requests answered 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    pub fault_conflict_rate: f64,
    /// Extra latency added to matching requests, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub fault_latency_ms: u64,
    /// Verbs the faults apply to (comma-separated; empty: all).
    #[arg(long, value_delimiter = ',')]
    pub fault_verbs: Vec<String>,
    /// Resources the faults apply to, as plural or plural.group (comma-separated; empty: all).
    #[arg(long, value_delimiter = ',')]
    pub fault_resources: Vec<String>,
    /// End every open watch this often (clients must resume), e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    pub drop_watches_every: Option<Duration>,
    /// Compact the watch history this often (resuming clients get 410 and relist), e.g. 60s.
    #[arg(long, value_parser = parse_duration)]
    pub compact_every: Option<Duration>,
    /// How requests are authorized: `rbac` from the stored Roles and bindings, or `always-allow`.
    /// Requests are authenticated either way (the kubeconfig written carries the admin token).
    #[arg(long, value_enum, default_value_t = Authorization::Rbac)]
    pub authorization: Authorization,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn config(&self) -> SimConfig {
        let any_fault = self.fault_internal_error_rate > 0.0
            || self.fault_too_many_requests_rate > 0.0
            || self.fault_conflict_rate > 0.0
            || self.fault_latency_ms > 0;
        let faults = if any_fault {
            vec![FaultRule {
                verbs: self.fault_verbs.clone(),
                resources: self.fault_resources.clone(),
                internal_error_rate: self.fault_internal_error_rate,
                too_many_requests_rate: self.fault_too_many_requests_rate,
                conflict_rate: self.fault_conflict_rate,
                extra_latency_ms: self.fault_latency_ms,
            }]
        } else {
            vec![]
        };
        SimConfig {
            addr: self.addr,
            pod_ready_delay: self.pod_ready_delay,
            bookmark_interval: self.bookmark_interval,
            watch_history: self.watch_history,
            request_log_capacity: self.request_log_capacity,
            faults,
            authorization: self.authorization,
            ..SimConfig::default()
        }
    }
}

/// Serves the simulator until `shutdown` resolves, ending open watches and compacting the watch
/// history as the chaos flags ask.
pub async fn serve(args: SimArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let sim = Simulator::start(args.config()).await?;
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path)
            .map_err(|e| anyhow::anyhow!("writing kubeconfig {}: {e}", path.display()))?;
        println!("kubeconfig: {}", path.display());
    }
    println!("serving the Kubernetes API on {}", sim.url());
    let http = sim.http.clone();
    let chaos = tokio::spawn(async move {
        let mut drops = args.drop_watches_every.map(tokio::time::interval);
        let mut compactions = args.compact_every.map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = tick(&mut drops) => http.drop_watches.send_modify(|n| *n += 1),
                _ = tick(&mut compactions) => {
                    http.api.store.compact();
                    http.drop_watches.send_modify(|n| *n += 1);
                }
            }
        }
    });
    shutdown.await;
    chaos.abort();
    sim.shutdown().await;
    Ok(())
}

/// Waits for the next tick of an optional interval (forever when there is none).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_duration::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn authorization_is_rbac_unless_always_allow_is_asked_for() {
        let default = Command::try_parse_from(["sim"]).unwrap();
        assert_eq!(default.sim.config().authorization, Authorization::Rbac);
        let open = Command::try_parse_from(["sim", "--authorization", "always-allow"]).unwrap();
        assert_eq!(open.sim.config().authorization, Authorization::AlwaysAllow);
        let rbac = Command::try_parse_from(["sim", "--authorization=rbac"]).unwrap();
        assert_eq!(rbac.sim.config().authorization, Authorization::Rbac);
        assert!(Command::try_parse_from(["sim", "--authorization", "none"]).is_err());
    }
}
