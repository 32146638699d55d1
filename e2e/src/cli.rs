//! The developer commands of the `sluice` executable (with its default feature `dev-tools`): `sim`,
//! `demo`, `bench` and `e2e`. Flags are parsed and handed to the library; no logic lives here.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::bench;
use crate::scenarios::{self, ClusterOptions, ClusterTarget, RunOptions, SimOptions, SimTarget, Verdict};

#[derive(Subcommand)]
pub enum Command {
    /// Serve a simulated Kubernetes API (workloads and traffic included) on loopback.
    Sim(sluice_sim::cli::SimArgs),
    /// Measure performance; prints a JSON report.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The whole GitOps loop on a simulated cluster, no cluster needed: commits to a local Git repository,
    /// a GitSync applying them, canaries gated by Prometheus, a failed one blocked and rolled back.
    Demo(crate::demo::DemoOptions),
    /// Run the end-to-end scenarios: on the simulator by default, on the cluster in KUBECONFIG when set.
    E2e(E2eArgs),
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Rollout planning: the cost of one plan() call mid-canary.
    Plan(bench::plan::PlanBenchOptions),
    /// Simulator: writes per second, watch fan-out, memory per stored object.
    Sim(bench::sim::SimBenchOptions),
    /// `sluice controller` (a separate process) with N Healthy rollouts: time to /readyz, RSS, idle CPU.
    Rollouts(bench::rollouts::RolloutsBenchOptions),
    /// N rollouts through five setWeight steps at once: API writes per step, reconcile p50/p99, total time.
    Steps(bench::steps::StepsBenchOptions),
    /// Failed analysis → canary weight 0: latency over several rollouts, and controller cost per measurement.
    Abort(bench::abort::AbortBenchOptions),
    /// N Healthy two-step canaries change template at once (`sluice controller` a separate process):
    /// wave duration, peak and settled RSS against RSS after a restart, writes per rollout and step.
    Wave(bench::wave::WaveBenchOptions),
    /// Hostile objects generated from the CRD schemas through deserialize → validate → plan: zero panics.
    Fuzz(bench::fuzz::FuzzBenchOptions),
}

#[derive(Args)]
pub struct E2eArgs {
    /// Run only this scenario (repeatable; default: all).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and what each checks.
    #[arg(long)]
    list: bool,
    /// Use the simulator even when KUBECONFIG is set.
    #[arg(long)]
    sim: bool,
    #[command(flatten)]
    cluster: ClusterOptions,
    /// Upper bound of one scenario, in seconds.
    #[arg(long = "timeout-seconds", value_name = "SECONDS", default_value = "240", value_parser = parse_seconds)]
    scenario_timeout: Duration,
    /// Leave each scenario's namespace behind.
    #[arg(long)]
    keep_namespaces: bool,
    /// Simulator: the Prometheus binary (default: SLUICE_PROMETHEUS, else `prometheus` on PATH).
    #[arg(long)]
    prometheus: Option<PathBuf>,
}

impl Command {
    /// The e2e runner's report and the demo's timeline are their output: the in-process controller
    /// logs only errors (e2e) or warnings (demo) unless RUST_LOG says otherwise.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::E2e(_) => "error",
            Command::Demo(_) => "warn",
            Command::Sim(_) | Command::Bench(_) => "info",
        }
    }
}

/// Runs one developer command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sim(args) => sluice_sim::cli::serve(args, sluice::app::shutdown_signal()).await,
        // Benchmarks start child processes that their guards kill on drop: on Ctrl-C or SIGTERM,
        // drop the benchmark instead of exiting past the guards.
        // Fuzzing is CPU-bound and starts no processes: it runs outside the select below, so no signal
        // handler is installed and Ctrl-C ends it at once (the select could not preempt it).
        Command::Bench(BenchCommand::Fuzz(options)) => fuzz(&options),
        Command::Bench(command) => tokio::select! {
            result = run_bench(command) => result,
            _ = sluice::app::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
        },
        Command::Demo(options) if options.stages => crate::demo::stages::run(options).await.map(|_| ()),
        Command::Demo(options) => crate::demo::run(options).await.map(|_| ()),
        Command::E2e(args) => run_e2e(args).await,
    }
}

async fn run_bench(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Plan(options) => print_report(&bench::plan::run(options.calls)),
        BenchCommand::Sim(options) => print_report(&bench::sim::run(options).await?),
        BenchCommand::Rollouts(options) => print_report(&bench::rollouts::run(options).await?),
        BenchCommand::Steps(options) => print_report(&bench::steps::run(options).await?),
        BenchCommand::Abort(options) => print_report(&bench::abort::run(options).await?),
        BenchCommand::Wave(options) => print_report(&bench::wave::run(options).await?),
        BenchCommand::Fuzz(options) => fuzz(&options)?,
    }
    Ok(())
}

fn fuzz(options: &bench::fuzz::FuzzBenchOptions) -> anyhow::Result<()> {
    let report = bench::fuzz::run(options);
    if options.json {
        print_report(&report);
    } else {
        bench::fuzz::print_table(&report);
    }
    if report.panics > 0 {
        anyhow::bail!("{} case(s) panicked", report.panics);
    }
    Ok(())
}

fn print_report(report: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(report).expect("reports serialize"));
}

async fn run_e2e(args: E2eArgs) -> anyhow::Result<()> {
    if args.list {
        scenarios::list();
        return Ok(());
    }
    let options = RunOptions {
        only: args.scenarios,
        scenario_timeout: args.scenario_timeout,
        keep_namespaces: args.keep_namespaces,
    };
    scenarios::select(&options.only)?;
    let outcomes = if args.sim || args.cluster.kubeconfig.is_none() {
        let target = SimTarget::start(SimOptions {
            prometheus: args.prometheus,
        })
        .await?;
        let outcomes = scenarios::run(&target, &options).await;
        target.stop().await;
        outcomes?
    } else {
        let target = ClusterTarget::connect(args.cluster).await?;
        let outcomes = scenarios::run(&target, &options).await;
        target.stop().await;
        outcomes?
    };
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Fail(_)))
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

/// A whole number of seconds, as the `--timeout-seconds` flags take it.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{text:?} is not a whole number of seconds: {e}"))
}
