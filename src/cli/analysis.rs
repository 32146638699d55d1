//! `sluice analysis backtest` and `sluice analysis run`: try an analysis template against Prometheus
//! before a rollout depends on it ([`crate::analysis::backtest`] does the work).
//!
//! The template comes from a file (AnalysisTemplate or ClusterAnalysisTemplate YAML/JSON) or from the
//! cluster (`--template NAME [--cluster-scope]`); `--arg NAME=VALUE` gives argument values (they win over
//! the template's). `--prometheus-address URL` replaces every Prometheus metric's address — typically a
//! `kubectl port-forward` of the in-cluster Prometheus. Providers keep their own timeouts, never follow
//! redirects and read bounded answers, as in the controller.
//!
//! Exit codes of `analysis run`: 0 Successful, 2 Failed, 3 Inconclusive, 4 Error (a measurement
//! could not be taken or judged); 1 when the command itself could not run (bad template, flags,
//! cluster). `analysis backtest` exits 0 whenever it produced a report.
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use kube::api::Api;
use serde_json::Value;

use super::{ClusterArgs, Error, Result, Target, parse_duration};
use crate::analysis::allowlist::Allowlist;
use crate::analysis::backtest::{self, PrometheusSource, Report, Source, Window, rfc3339};
use crate::analysis::providers::SecretValues;
use crate::analysis::reconcile::judge_within_budget;
use crate::analysis::template::{self, ArgumentSources, MetricLists};
use crate::analysis::{MeasurementOutcome, rules};
use crate::api::analysis::{
    AnalysisPhase, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument, ClusterAnalysisTemplate,
};

pub mod revisions;

/// `sluice analysis …`.
#[derive(Subcommand, Debug)]
pub enum AnalysisCommand {
    /// What a template would have said at past instants: each metric's value and phase, and the run's
    /// phase had it started there, from Prometheus history. With --revisions --rollout NAME: per past
    /// revision of a rollout, would it have passed or failed, beside what happened.
    Backtest(BacktestArgs),
    /// Measure every metric of a template once, now, and print the verdict (exit 0 Successful,
    /// 2 Failed, 3 Inconclusive, 4 Error).
    Run(RunArgs),
}

/// Which template, with which arguments, against which Prometheus.
#[derive(Args, Debug, Clone)]
pub struct TemplateArgs {
    /// An AnalysisTemplate or ClusterAnalysisTemplate file (YAML or JSON; `-` reads stdin).
    #[arg(value_name = "TEMPLATE_FILE")]
    pub file: Option<PathBuf>,
    /// The AnalysisTemplate of this name in the cluster (in -n's namespace) instead of a file.
    #[arg(long, conflicts_with = "file")]
    pub template: Option<String>,
    /// With --template: a ClusterAnalysisTemplate.
    #[arg(long, requires = "template")]
    pub cluster_scope: bool,
    /// An argument value, NAME=VALUE (repeat for several); wins over the template's.
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = parse_arg)]
    pub args: Vec<(String, String)>,
    /// Query this Prometheus instead of each metric's address (e.g. http://localhost:9090 through
    /// `kubectl port-forward`).
    #[arg(long)]
    pub prometheus_address: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Text for people, JSON for tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    #[default]
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub template: TemplateArgs,
    /// First instant: RFC 3339 (2026-12-07T05:00:00Z), `now`, or relative (-2h, -90m).
    #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
    pub from: String,
    /// Last instant (same forms as --from).
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub to: String,
    /// Time between instants (at least 1s; at most 10,000 instants).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub every: Duration,
    /// Report per past revision of --rollout instead of a timeline.
    #[arg(long, requires = "rollout")]
    pub revisions: bool,
    /// The Rollout whose revisions --revisions replays; its analysis templates are used unless a
    /// template is given.
    #[arg(long)]
    pub rollout: Option<String>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub template: TemplateArgs,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

/// `NAME=VALUE`.
fn parse_arg(text: &str) -> std::result::Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE"))?;
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{text:?}: the name must be 1 to 253 characters"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Runs one `sluice analysis` command.
pub async fn run(command: AnalysisCommand) -> Result<()> {
    match command {
        AnalysisCommand::Backtest(args) if args.revisions => revisions::run(args).await,
        AnalysisCommand::Backtest(args) => {
            let now = Utc::now();
            let window = Window {
                from: backtest::parse_time(&args.from, now).map_err(|e| Error::Invalid(format!("--from: {e}")))?,
                to: backtest::parse_time(&args.to, now).map_err(|e| Error::Invalid(format!("--to: {e}")))?,
                every: args.every,
            };
            window.instants().map_err(Error::Invalid)?;
            let (name, spec) = load_template(&args.template).await?;
            let spec = run_spec(&name, &spec, &args.template, &no_sources())?;
            let report = backtest_spec(&spec, &window).await?;
            print_report(&report, args.output)
        }
        AnalysisCommand::Run(args) => {
            let (name, spec) = load_template(&args.template).await?;
            let spec = run_spec(&name, &spec, &args.template, &no_sources())?;
            run_once(&spec, args.output).await
        }
    }
}

/// Argument sources outside a rollout: none (podTemplateHashValue and fieldRef need --arg).
pub fn no_sources() -> ArgumentSources<'static> {
    static NULL: Value = Value::Null;
    ArgumentSources {
        rollout: &NULL,
        stable_hash: None,
        latest_hash: None,
    }
}

/// Backtests a run spec against the providers it names (only Prometheus can be asked about the past).
pub async fn backtest_spec(spec: &AnalysisRunSpec, window: &Window) -> Result<Report> {
    backtest::check_backtestable(spec).map_err(Error::Invalid)?;
    let source = PrometheusSource {
        spec: spec.clone(),
        secrets: SecretValues::new(),
        allowlist: Allowlist::default(),
    };
    backtest::backtest(spec, window, &source).await.map_err(Error::Invalid)
}

fn print_report(report: &Report, format: ReportFormat) -> Result<()> {
    match format {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| Error::Output(e.to_string()))?
        ),
        ReportFormat::Text => print!("{}", backtest::render_text(report)),
    }
    Ok(())
}

/// The template to use: the file's, or the cluster's. Returns its name and spec.
pub async fn load_template(args: &TemplateArgs) -> Result<(String, AnalysisTemplateSpec)> {
    if args.cluster_scope && args.template.is_none() {
        return Err(Error::Invalid("--cluster-scope goes with --template NAME".to_string()));
    }
    if let Some(name) = &args.template {
        let target = Target::connect(&args.cluster).await?;
        let what = format!("reading the template {name:?}");
        let found = if args.cluster_scope {
            let api: Api<ClusterAnalysisTemplate> = Api::all(target.client.clone());
            bounded(&what, target.timeout, api.get_opt(name))
                .await?
                .map(|t| t.spec.template)
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(target.client.clone(), &target.namespace);
            bounded(&what, target.timeout, api.get_opt(name)).await?.map(|t| t.spec)
        };
        let kind = if args.cluster_scope {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        };
        return found
            .map(|spec| (name.clone(), spec))
            .ok_or_else(|| Error::Invalid(format!("{kind} {name:?} not found")));
    }
    let Some(file) = &args.file else {
        return Err(Error::Invalid("give a TEMPLATE_FILE or --template NAME".to_string()));
    };
    template_from_file(file)
}

async fn bounded<T>(
    what: &str,
    timeout: Duration,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Error::Api {
            what: what.to_string(),
            message: error.to_string(),
            code: None,
        }),
        Err(_) => Err(Error::Timeout {
            what: what.to_string(),
            after: timeout,
        }),
    }
}

/// The one AnalysisTemplate or ClusterAnalysisTemplate of a file.
fn template_from_file(file: &std::path::Path) -> Result<(String, AnalysisTemplateSpec)> {
    let documents = super::manifests::read_documents(file).map_err(|e| Error::Invalid(format!("{e:#}")))?;
    let templates: Vec<&Value> = documents
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("AnalysisTemplate" | "ClusterAnalysisTemplate")))
        .collect();
    let [document] = templates[..] else {
        return Err(Error::Invalid(format!(
            "{}: expected one AnalysisTemplate or ClusterAnalysisTemplate, found {}",
            file.display(),
            templates.len()
        )));
    };
    let name = document["metadata"]["name"].as_str().unwrap_or("template").to_string();
    let spec: AnalysisTemplateSpec = serde_json::from_value(document["spec"].clone())
        .map_err(|e| Error::Invalid(format!("{}: spec: {e}", file.display())))?;
    Ok((name, spec))
}

/// The run spec a template and the flags make (see [`build_spec`]).
pub fn run_spec(
    name: &str,
    spec: &AnalysisTemplateSpec,
    args: &TemplateArgs,
    sources: &ArgumentSources<'_>,
) -> Result<AnalysisRunSpec> {
    build_spec(name, spec, &args.args, args.prometheus_address.as_deref(), sources)
}

/// The run spec of a template: `args` values win, one the template does not declare is refused (a typo
/// would otherwise go unnoticed), `prometheus_address` replaces every Prometheus metric's address.
pub fn build_spec(
    name: &str,
    spec: &AnalysisTemplateSpec,
    args: &[(String, String)],
    prometheus_address: Option<&str>,
    sources: &ArgumentSources<'_>,
) -> Result<AnalysisRunSpec> {
    let mut arguments = Vec::with_capacity(args.len());
    for (arg, value) in args {
        if !spec.args.iter().any(|a| &a.name == arg) {
            return Err(Error::Invalid(format!(
                "--arg {arg}: the template declares no argument {arg:?}"
            )));
        }
        arguments.push(Argument {
            name: arg.clone(),
            value: Some(value.clone()),
            value_from: None,
        });
    }
    let lists = MetricLists {
        dry_run: &[],
        measurement_retention: &[],
    };
    let mut run = template::build_run_spec(&[(name, spec)], &arguments, sources, lists)
        .map_err(|e| Error::Invalid(format!("template {name:?}: {e}")))?;
    if let Some(address) = prometheus_address {
        for metric in &mut run.metrics {
            if let Some(prometheus) = metric.provider.prometheus.as_mut() {
                prometheus.address = address.to_string();
            }
        }
    }
    rules::validate(&run).map_err(|e| Error::Invalid(format!("template {name:?}: {e}")))?;
    for metric in &run.metrics {
        if let Some(prometheus) = &metric.provider.prometheus {
            if prometheus.query.len() > MAX_QUERY_BYTES {
                return Err(Error::Invalid(format!(
                    "metric {:?}: the query is {} bytes; at most {MAX_QUERY_BYTES} are sent",
                    metric.name,
                    prometheus.query.len()
                )));
            }
            let url = reqwest::Url::parse(&prometheus.address).ok();
            if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https")) || prometheus.address.len() > 2048 {
                return Err(Error::Invalid(format!(
                    "metric {:?}: the Prometheus address must be an http(s) URL (set --prometheus-address)",
                    metric.name
                )));
            }
        }
    }
    Ok(run)
}

/// A query longer than this is refused before anything is sent: it travels in the URL, and a query
/// that long is a mistake (or an attack on the server), not an analysis.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// `analysis run`: each metric measured once, now; the verdict is the worst measurement (Failed, then
/// Error, then Inconclusive). Job metrics are not run from the CLI (they would create a Job in the
/// cluster); they are named and skipped.
async fn run_once(spec: &AnalysisRunSpec, format: ReportFormat) -> Result<()> {
    let source = PrometheusSource {
        spec: spec.clone(),
        secrets: SecretValues::new(),
        allowlist: Allowlist::default(),
    };
    let now = Utc::now();
    let mut metrics = Vec::new();
    for metric in &spec.metrics {
        if metric.provider.job.is_some() {
            eprintln!(
                "metric {:?}: job metrics are not run from the CLI (they create a Kubernetes Job); skipped",
                metric.name
            );
            continue;
        }
        let value = source.query(metric, now).await;
        let outcome = MeasurementOutcome {
            started_at: now,
            finished_at: Utc::now(),
            query: None,
            value,
        };
        let measurement = judge_within_budget(metric, outcome).await;
        metrics.push((metric.name.clone(), measurement));
    }
    if metrics.is_empty() {
        return Err(Error::Invalid("the template has no metric the CLI can run".to_string()));
    }
    let verdict = worst(metrics.iter().map(|(_, m)| m.phase));
    match format {
        ReportFormat::Json => {
            let json = serde_json::json!({
                "time": rfc3339(now),
                "phase": verdict,
                "metrics": metrics.iter().map(|(name, m)| serde_json::json!({
                    "name": name, "phase": m.phase, "value": m.value, "message": m.message,
                })).collect::<Vec<_>>(),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).map_err(|e| Error::Output(e.to_string()))?
            );
        }
        ReportFormat::Text => {
            for (name, m) in &metrics {
                let why = m.message.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
                println!(
                    "{name}: {:?} value={}{why}",
                    m.phase,
                    m.value.as_deref().unwrap_or("none")
                );
            }
            println!("verdict: {verdict:?}");
        }
    }
    match exit_code(verdict) {
        0 => Ok(()),
        code => Err(Error::Exit {
            code,
            message: format!("the analysis is {verdict:?}"),
        }),
    }
}

/// The worst phase: Failed, then Error, then Inconclusive, then Successful.
fn worst(phases: impl Iterator<Item = AnalysisPhase>) -> AnalysisPhase {
    let rank = |phase: &AnalysisPhase| match phase {
        AnalysisPhase::Failed => 4,
        AnalysisPhase::Error => 3,
        AnalysisPhase::Inconclusive => 2,
        AnalysisPhase::Pending | AnalysisPhase::Running => 1,
        AnalysisPhase::Successful => 0,
    };
    phases.max_by_key(rank).unwrap_or(AnalysisPhase::Successful)
}

/// `analysis run`'s exit code for a verdict (see the module doc).
pub fn exit_code(verdict: AnalysisPhase) -> u8 {
    match verdict {
        AnalysisPhase::Successful => 0,
        AnalysisPhase::Failed => 2,
        AnalysisPhase::Inconclusive => 3,
        AnalysisPhase::Error | AnalysisPhase::Pending | AnalysisPhase::Running => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::Metric;

    fn template_args(args: &[(&str, &str)], address: Option<&str>) -> TemplateArgs {
        TemplateArgs {
            file: None,
            template: None,
            cluster_scope: false,
            args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            prometheus_address: address.map(str::to_string),
            cluster: ClusterArgs {
                namespace: None,
                kubeconfig: None,
                context: None,
                request_timeout: Duration::from_secs(1),
            },
        }
    }

    #[test]
    fn arguments_and_address_are_substituted() {
        let spec = AnalysisTemplateSpec {
            args: vec![Argument {
                name: "service".into(),
                value: None,
                value_from: None,
            }],
            metrics: vec![Metric::prometheus(
                "m",
                "http://in-cluster:9090",
                "up{service=\"{{args.service}}\"}",
            )],
            ..AnalysisTemplateSpec::default()
        };
        let run = run_spec(
            "t",
            &spec,
            &template_args(&[("service", "web")], Some("http://localhost:9090")),
            &no_sources(),
        )
        .unwrap();
        let prometheus = run.metrics[0].provider.prometheus.as_ref().unwrap();
        assert_eq!(prometheus.query, "up{service=\"web\"}");
        assert_eq!(prometheus.address, "http://localhost:9090");
        let error = run_spec("t", &spec, &template_args(&[("servce", "web")], None), &no_sources()).unwrap_err();
        assert!(error.to_string().contains("declares no argument \"servce\""), "{error}");
        let error = run_spec("t", &spec, &template_args(&[], None), &no_sources()).unwrap_err();
        assert!(error.to_string().contains("service"), "{error}");
        let error = run_spec(
            "t",
            &spec,
            &template_args(&[("service", "web")], Some("file:///etc/passwd")),
            &no_sources(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("http(s) URL"), "{error}");
        let huge = "x".repeat(MAX_QUERY_BYTES);
        let error = run_spec("t", &spec, &template_args(&[("service", &huge)], None), &no_sources()).unwrap_err();
        assert!(error.to_string().contains("bytes; at most"), "{error}");
        assert!(parse_arg("novalue").is_err());
        assert_eq!(parse_arg("a=b=c"), Ok(("a".into(), "b=c".into())));
    }

    #[test]
    fn verdicts_and_exit_codes() {
        use AnalysisPhase::*;
        assert_eq!(worst([Successful, Inconclusive, Failed, Error].into_iter()), Failed);
        assert_eq!(worst([Successful, Inconclusive].into_iter()), Inconclusive);
        assert_eq!(exit_code(Successful), 0);
        assert_eq!(exit_code(Failed), 2);
        assert_eq!(exit_code(Inconclusive), 3);
        assert_eq!(exit_code(Error), 4);
    }
}
