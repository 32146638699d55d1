//! The user CLI for Rollouts (`sluice promote|abort|retry|pause|resume|undo|restart|set image|get|list`),
//! also installed as the kubectl plugin `kubectl sluice`. Commands write the protocol fields the
//! controller acts on (status.promotedStep, status.abort, spec.paused, …); they never drive the
//! rollout themselves, so the controller stays the single writer of everything else.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::api::rollout::Rollout;
use crate::rollout::plan::humantime;
pub use output::OutputFormat;

pub mod actions;
pub mod analysis;
pub mod experiment_get;
pub mod get;
pub mod gitsync;
pub mod gitsync_get;
pub mod gitsync_view;
pub mod manifests;
pub mod output;
pub mod status;
pub mod undo;
pub mod view;

/// The Rollout commands. `main` flattens these into the `sluice` command line.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Promote a rollout past its current step (with --full: past every remaining step and analysis).
    Promote(PromoteArgs),
    /// Abort a rollout: all traffic back to the stable version, the canary scaled down.
    Abort(RolloutArgs),
    /// Retry an aborted rollout from its first step.
    Retry(RolloutArgs),
    /// Pause a rollout (sets spec.paused): no step advances until resumed.
    Pause(RolloutArgs),
    /// Resume a rollout paused with `sluice pause` (clears spec.paused).
    Resume(RolloutArgs),
    /// Roll the pod template back to an earlier revision (default: the one before the current).
    Undo(UndoArgs),
    /// Restart every pod of a rollout (sets spec.restartAt to now).
    Restart(RolloutArgs),
    /// Change a rollout's pod template.
    #[command(subcommand)]
    Set(SetCommand),
    /// Show one rollout in detail, or list rollouts.
    #[command(subcommand)]
    Get(GetCommand),
    /// List rollouts.
    #[command(subcommand)]
    List(ListCommand),
    /// Stop promotions into a GitSync that follows another (`sluice hold gitsync NAME`).
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Wait for a rollout to settle, for CI: exits 0 when Healthy, 1 when Degraded, 2 when it has not
    /// settled within --timeout (or at once with --watch=false).
    Status(StatusArgs),
    /// Try an analysis template against Prometheus: `analysis backtest` (what it would have said over
    /// past instants or past revisions) and `analysis run` (once, now).
    #[command(subcommand)]
    Analysis(analysis::AnalysisCommand),
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// How long to wait, e.g. 10m; 0 waits for ever.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Wait for the rollout to settle (--watch=false: report once and exit).
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,
}

/// Where the cluster is and which namespace to use.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// How long each API request may take, e.g. 15s.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

/// A command on one rollout.
#[derive(Args, Debug, Clone)]
pub struct RolloutArgs {
    /// Name of the Rollout.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Skip every remaining step and analysis.
    #[arg(long, conflicts_with = "revision")]
    pub full: bool,
    /// `sluice promote gitsync NAME`: the GitSync to promote into (the first argument is then `gitsync`).
    #[arg(value_name = "GITSYNC")]
    pub gitsync: Option<String>,
    /// With `promote gitsync`: the commit to promote (default: the upstream's healthy revision); the
    /// soak is skipped, a revision blocked here or upstream is refused.
    #[arg(long, requires = "gitsync")]
    pub revision: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum HoldCommand {
    /// Hold promotions into a GitSync (what runs stays); `--release` lets them go on.
    #[command(name = "gitsync", visible_aliases = ["gitsyncs", "gs"])]
    GitSync(HoldArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    /// Name of the GitSync.
    pub name: String,
    /// Release the hold.
    #[arg(long)]
    pub release: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The words that make `sluice promote KIND NAME` mean a GitSync.
const GITSYNC_KIND: [&str; 3] = ["gitsync", "gitsyncs", "gs"];

#[derive(Args, Debug, Clone)]
pub struct UndoArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// The revision to roll back to (default: the newest revision older than the current one).
    #[arg(long)]
    pub to_revision: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum SetCommand {
    /// Set container images: `sluice set image NAME CONTAINER=IMAGE…` (`*=IMAGE`: every container).
    Image(SetImageArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SetImageArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// CONTAINER=IMAGE pairs.
    #[arg(required = true, value_parser = actions::parse_image_update)]
    pub images: Vec<actions::ImageUpdate>,
}

#[derive(Subcommand, Debug)]
pub enum GetCommand {
    /// Show a rollout: phase, step, weights, ReplicaSets, pods, analysis runs and recent events.
    /// Without a name, list the rollouts.
    #[command(visible_aliases = ["rollouts", "ro"])]
    Rollout(GetRolloutArgs),
    /// Show a GitSync: its source or upstream stage, applied and healthy revisions, promotion, stage
    /// chain, blocked revisions and history. Without a name, list the GitSyncs (--chain: as pipelines).
    #[command(visible_aliases = ["gitsyncs", "gs"])]
    Gitsync(GetGitSyncArgs),
    /// Show an Experiment: phase, templates (status, replicas, ReplicaSet, pod hash, Service) and
    /// analysis runs. Without a name, list the Experiments.
    #[command(visible_aliases = ["experiments", "exp"])]
    Experiment(GetExperimentArgs),
    /// Print every chain of stages (GitSyncs following each other) as dev → staging → prod with the
    /// revision at each stage.
    #[command(visible_aliases = ["pipelines"])]
    Pipeline(PipelineArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GetGitSyncArgs {
    /// Name of the GitSync (omit to list).
    pub name: Option<String>,
    /// Print the GitSync object instead of the summary.
    #[arg(short, long, value_enum, conflicts_with = "chain")]
    pub output: Option<OutputFormat>,
    /// List the GitSyncs of every namespace (without a name).
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    /// List as pipelines (same as `sluice get pipeline`).
    #[arg(long, conflicts_with = "name")]
    pub chain: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct GetExperimentArgs {
    /// Name of the Experiment (omit to list).
    pub name: Option<String>,
    /// Print the Experiment object instead of the summary.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    /// List the Experiments of every namespace (without a name).
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipelines of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Subcommand, Debug)]
pub enum ListCommand {
    /// List rollouts: NAME, STATUS, STEP, SET-WEIGHT, READY, AGE.
    #[command(visible_aliases = ["rollout", "ro"])]
    Rollouts(ListArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GetRolloutArgs {
    /// Name of the Rollout (omit to list).
    pub name: Option<String>,
    /// Redraw whenever the rollout or its ReplicaSets change (Ctrl-C to stop).
    #[arg(short, long, requires = "name", conflicts_with = "output")]
    pub watch: bool,
    /// Print the Rollout object instead of the summary.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    /// List the rollouts of every namespace (without a name).
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// List the rollouts of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print the Rollout objects instead of the table.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::api::duration::parse(text).map_err(|e| e.to_string())
}

/// What went wrong, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("rollout \"{name}\" not found in namespace \"{namespace}\"")]
    RolloutNotFound { name: String, namespace: String },
    #[error("namespace \"{0}\" not found")]
    NamespaceNotFound(String),
    #[error(
        "the Rollout CRD (rollouts.sluice.dev) is not installed in this cluster; install it with \
         `sluice crds | kubectl apply --server-side -f -`"
    )]
    CrdMissing,
    /// The request makes no sense in the rollout's current state.
    #[error("{0}")]
    Refused(String),
    /// The arguments name something that does not exist (a container, a revision).
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: no answer from the API server within {}", humantime(*after))]
    Timeout { what: String, after: Duration },
    #[error("{what}: {message}")]
    Api {
        what: String,
        message: String,
        code: Option<u16>,
    },
    #[error("{0}")]
    Output(String),
    /// A command whose exit code is its answer (`sluice status`).
    #[error("{message}")]
    Exit { code: u8, message: String },
}

impl Error {
    /// The process exit code: a command's own answer, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Exit { code, .. } => *code,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs one command, printing its result on stdout.
pub async fn run(command: Command) -> Result<()> {
    let message = match command {
        Command::Promote(args) => match &args.gitsync {
            Some(name) if GITSYNC_KIND.contains(&args.rollout.name.as_str()) => {
                let target = Target::connect(&args.rollout.cluster).await?;
                gitsync::promote(&target, name, args.revision.as_deref(), chrono::Utc::now()).await?
            }
            Some(extra) => {
                return Err(Error::Invalid(format!(
                    "unexpected argument \"{extra}\": `sluice promote NAME` promotes a rollout, \
                     `sluice promote gitsync NAME` a GitSync"
                )));
            }
            None => {
                let target = Target::connect(&args.rollout.cluster).await?;
                actions::promote(&target, &args.rollout.name, args.full).await?
            }
        },
        Command::Hold(HoldCommand::GitSync(args)) => {
            gitsync::hold(&Target::connect(&args.cluster).await?, &args.name, args.release).await?
        }
        Command::Abort(args) => actions::abort(&Target::connect(&args.cluster).await?, &args.name).await?,
        Command::Retry(args) => actions::retry(&Target::connect(&args.cluster).await?, &args.name).await?,
        Command::Pause(args) => actions::pause(&Target::connect(&args.cluster).await?, &args.name).await?,
        Command::Resume(args) => actions::resume(&Target::connect(&args.cluster).await?, &args.name).await?,
        Command::Restart(args) => {
            actions::restart(&Target::connect(&args.cluster).await?, &args.name, chrono::Utc::now()).await?
        }
        Command::Undo(args) => {
            let target = Target::connect(&args.rollout.cluster).await?;
            undo::undo(&target, &args.rollout.name, args.to_revision).await?
        }
        Command::Set(SetCommand::Image(args)) => {
            let target = Target::connect(&args.rollout.cluster).await?;
            actions::set_image(&target, &args.rollout.name, &args.images).await?
        }
        Command::Get(GetCommand::Rollout(args)) => {
            let target = Target::connect(&args.cluster).await?;
            return match &args.name {
                Some(name) if args.watch => get::watch(&target, name).await,
                Some(name) => get::show(&target, name, args.output).await,
                None => get::list(&target, args.all_namespaces, args.output).await,
            };
        }
        Command::Get(GetCommand::Gitsync(args)) => {
            let target = Target::connect(&args.cluster).await?;
            return match &args.name {
                Some(name) => gitsync_get::show(&target, name, args.output).await,
                None if args.chain => gitsync_get::pipeline(&target, args.all_namespaces).await,
                None => gitsync_get::list(&target, args.all_namespaces, args.output).await,
            };
        }
        Command::Get(GetCommand::Experiment(args)) => {
            let target = Target::connect(&args.cluster).await?;
            return match &args.name {
                Some(name) => experiment_get::show(&target, name, args.output).await,
                None => experiment_get::list(&target, args.all_namespaces, args.output).await,
            };
        }
        Command::Get(GetCommand::Pipeline(args)) => {
            let target = Target::connect(&args.cluster).await?;
            return gitsync_get::pipeline(&target, args.all_namespaces).await;
        }
        Command::Status(args) => {
            let target = Target::connect(&args.rollout.cluster).await?;
            return status::status(&target, &args.rollout.name, args.timeout, args.watch).await;
        }
        Command::List(ListCommand::Rollouts(args)) => {
            let target = Target::connect(&args.cluster).await?;
            return get::list(&target, args.all_namespaces, args.output).await;
        }
        Command::Analysis(command) => return analysis::run(command).await,
    };
    println!("{message}");
    Ok(())
}

/// A connected client and the namespace commands act in.
#[derive(Clone)]
pub struct Target {
    pub client: Client,
    pub namespace: String,
    /// Applied to every request except watches, which are long-lived by design.
    pub timeout: Duration,
    cluster_url: String,
}

impl Target {
    /// Builds a client from --kubeconfig/--context, else KUBECONFIG, ~/.kube/config or the in-cluster
    /// config, the same order kubectl uses.
    pub async fn connect(args: &ClusterArgs) -> Result<Target> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = match (&args.kubeconfig, &args.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| Error::Config(format!("reading kubeconfig {}: {}", path.display(), chain(&e))))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| Error::Config(format!("kubeconfig {}: {}", path.display(), chain(&e))))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::Config(format!("kubeconfig: {}", chain(&e))))?,
            (None, None) => Config::infer().await.map_err(|e| {
                Error::Config(format!(
                    "no cluster configured (set KUBECONFIG or pass --kubeconfig): {}",
                    chain(&e)
                ))
            })?,
        };
        config.connect_timeout = Some(args.request_timeout);
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let cluster_url = config.cluster_url.to_string();
        let client =
            Client::try_from(config).map_err(|e| Error::Config(format!("building the client: {}", chain(&e))))?;
        Ok(Target {
            client,
            namespace,
            timeout: args.request_timeout,
            cluster_url,
        })
    }

    /// A target for an existing client (tests).
    pub fn new(client: Client, namespace: &str, timeout: Duration) -> Target {
        Target {
            client,
            namespace: namespace.to_string(),
            timeout,
            cluster_url: "the API server".into(),
        }
    }

    /// The same client and timeout acting in another namespace (the dashboard serves several).
    pub fn in_namespace(&self, namespace: &str) -> Target {
        Target {
            namespace: namespace.to_string(),
            ..self.clone()
        }
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Runs one API request with the request timeout, turning failures into messages that say what
    /// was being done.
    pub async fn call<T>(&self, what: impl Into<String>, request: impl Future<Output = kube::Result<T>>) -> Result<T> {
        let what = what.into();
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(Error::Timeout {
                what,
                after: self.timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.api_error(what, &e)),
        }
    }

    pub(crate) fn api_error(&self, what: String, e: &kube::Error) -> Error {
        match e {
            kube::Error::Api(status) => Error::Api {
                what,
                message: if status.message.is_empty() {
                    format!("{} (HTTP {})", status.reason, status.code)
                } else {
                    status.message.clone()
                },
                code: Some(status.code),
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Api {
                what,
                message: format!("cannot reach the API server at {}: {}", self.cluster_url, chain(e)),
                code: None,
            },
            other => Error::Api {
                what,
                message: chain(other),
                code: None,
            },
        }
    }

    /// Reads a Rollout; a 404 says whether the rollout, its namespace or the CRD is missing.
    pub async fn get_rollout(&self, name: &str) -> Result<Rollout> {
        let what = format!("reading rollout \"{name}\" in namespace \"{}\"", self.namespace);
        match self.call(what, self.rollouts().get(name)).await {
            Err(Error::Api {
                code: Some(404),
                message,
                ..
            }) => Err(self.not_found(name, &message).await),
            other => other,
        }
    }

    async fn not_found(&self, name: &str, message: &str) -> Error {
        // A 404 without an object name in it is about the resource type: the CRD is not installed.
        if !message.contains(&format!("\"{name}\"")) {
            return Error::CrdMissing;
        }
        match self.namespace_exists().await {
            Ok(false) => Error::NamespaceNotFound(self.namespace.clone()),
            // Exists, or we may not read namespaces (RBAC): the rollout is what is missing.
            _ => Error::RolloutNotFound {
                name: name.to_string(),
                namespace: self.namespace.clone(),
            },
        }
    }

    /// Whether the target namespace exists; an error when that cannot be told (e.g. no RBAC).
    pub async fn namespace_exists(&self) -> Result<bool> {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let what = format!("reading namespace \"{}\"", self.namespace);
        match self.call(what, namespaces.get(&self.namespace)).await {
            Ok(_) => Ok(true),
            Err(Error::Api { code: Some(404), .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An error and its causes on one line (`a: b: c`), skipping causes already in the message.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn analysis_commands_parse() {
        let Command::Analysis(analysis::AnalysisCommand::Backtest(args)) = parse(&[
            "analysis",
            "backtest",
            "t.yaml",
            "--from",
            "-2h",
            "--every",
            "5s",
            "--arg",
            "service=web",
            "-o",
            "json",
        ]) else {
            panic!("backtest")
        };
        assert_eq!(args.from, "-2h");
        assert_eq!(args.to, "now");
        assert_eq!(args.every, Duration::from_secs(5));
        assert_eq!(args.template.args, [("service".to_string(), "web".to_string())]);
        assert_eq!(args.output, analysis::ReportFormat::Json);
        let Command::Analysis(analysis::AnalysisCommand::Backtest(args)) =
            parse(&["analysis", "backtest", "--revisions", "--rollout", "web", "-n", "shop"])
        else {
            panic!("revisions")
        };
        assert!(args.revisions && args.template.file.is_none());
        let Command::Analysis(analysis::AnalysisCommand::Run(args)) =
            parse(&["analysis", "run", "--template", "errors", "--cluster-scope"])
        else {
            panic!("run")
        };
        assert!(args.template.cluster_scope);
        let wrapped =
            |args: &[&str]| Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied())).is_err();
        assert!(
            wrapped(&["analysis", "backtest", "t.yaml", "--revisions"]),
            "--revisions needs --rollout"
        );
    }

    #[test]
    fn flags_parse_before_and_after_the_name() {
        let Command::Promote(args) = parse(&["promote", "-n", "shop", "web", "--full"]) else {
            panic!("promote")
        };
        assert_eq!(args.rollout.name, "web");
        assert_eq!(args.rollout.cluster.namespace.as_deref(), Some("shop"));
        assert!(args.full);
        assert_eq!(args.rollout.cluster.request_timeout, Duration::from_secs(15));

        let Command::Undo(args) = parse(&["undo", "web", "--to-revision", "3", "--request-timeout", "2s"]) else {
            panic!("undo")
        };
        assert_eq!(args.to_revision, Some(3));
        assert_eq!(args.rollout.cluster.request_timeout, Duration::from_secs(2));
    }

    #[test]
    fn promote_and_hold_take_gitsync_as_a_kind() {
        let Command::Promote(args) = parse(&["promote", "gitsync", "prod", "--revision", "abc123", "-n", "shop"])
        else {
            panic!("promote gitsync")
        };
        assert_eq!(args.rollout.name, "gitsync");
        assert_eq!(args.gitsync.as_deref(), Some("prod"));
        assert_eq!(args.revision.as_deref(), Some("abc123"));
        let Command::Promote(args) = parse(&["promote", "web"]) else {
            panic!("promote")
        };
        assert_eq!((args.rollout.name.as_str(), args.gitsync), ("web", None));
        let Command::Hold(HoldCommand::GitSync(hold)) = parse(&["hold", "gs", "prod", "--release"]) else {
            panic!("hold")
        };
        assert_eq!(hold.name, "prod");
        assert!(hold.release);
        for nonsense in [
            &["sluice", "promote", "web", "--revision", "abcd"][..],
            &["sluice", "promote", "gitsync", "prod", "--full", "--revision", "abcd"],
        ] {
            assert!(Cli::try_parse_from(nonsense).is_err(), "{nonsense:?}");
        }
    }

    #[test]
    fn get_and_list_accept_kubectl_spellings() {
        for args in [
            &["get", "rollout", "web", "-w", "-n", "x"][..],
            &["get", "ro", "web", "--watch"],
        ] {
            let Command::Get(GetCommand::Rollout(get)) = parse(args) else {
                panic!("get")
            };
            assert_eq!(get.name.as_deref(), Some("web"));
            assert!(get.watch);
        }
        let Command::Get(GetCommand::Rollout(get)) = parse(&["get", "rollouts", "-A"]) else {
            panic!("get rollouts")
        };
        assert!(get.name.is_none() && get.all_namespaces);
        let Command::Get(GetCommand::Rollout(get)) = parse(&["get", "rollout", "web", "-o", "yaml"]) else {
            panic!("get -o")
        };
        assert_eq!(get.output, Some(OutputFormat::Yaml));
        let Command::List(ListCommand::Rollouts(list)) = parse(&["list", "rollouts", "-n", "shop"]) else {
            panic!("list")
        };
        assert_eq!(list.cluster.namespace.as_deref(), Some("shop"));
        for nonsense in [
            &["sluice", "get", "rollout", "web", "-w", "-o", "json"][..],
            &["sluice", "get", "rollout", "-w"],
            &["sluice", "get", "rollout", "web", "-A"],
        ] {
            assert!(Cli::try_parse_from(nonsense).is_err(), "{nonsense:?}");
        }
    }

    #[test]
    fn get_gitsync_and_pipeline_parse() {
        let Command::Get(GetCommand::Gitsync(get)) = parse(&["get", "gs", "prod", "-n", "shop"]) else {
            panic!("get gs")
        };
        assert_eq!(get.name.as_deref(), Some("prod"));
        let Command::Get(GetCommand::Gitsync(get)) = parse(&["get", "gitsyncs", "--chain", "-A"]) else {
            panic!("get gitsyncs --chain")
        };
        assert!(get.chain && get.all_namespaces && get.name.is_none());
        assert!(matches!(parse(&["get", "pipeline", "-A"]), Command::Get(GetCommand::Pipeline(p)) if p.all_namespaces));
    }

    #[test]
    fn set_image_needs_container_equals_image() {
        let Command::Set(SetCommand::Image(args)) = parse(&["set", "image", "web", "app=img:2", "side=s:1"]) else {
            panic!("set image")
        };
        assert_eq!(args.images.len(), 2);
        assert_eq!(args.images[1].container, "side");
        let err = Cli::try_parse_from(["sluice", "set", "image", "web", "img:2"]).unwrap_err();
        assert!(err.to_string().contains("CONTAINER=IMAGE"), "{err}");
        assert!(Cli::try_parse_from(["sluice", "set", "image", "web"]).is_err());
    }

    #[test]
    fn errors_name_what_is_missing() {
        let e = Error::RolloutNotFound {
            name: "web".into(),
            namespace: "shop".into(),
        };
        assert_eq!(e.to_string(), "rollout \"web\" not found in namespace \"shop\"");
        assert_eq!(
            Error::NamespaceNotFound("x".into()).to_string(),
            "namespace \"x\" not found"
        );
        let e = Error::Timeout {
            what: "reading rollout \"web\"".into(),
            after: Duration::from_secs(15),
        };
        assert_eq!(
            e.to_string(),
            "reading rollout \"web\": no answer from the API server within 15s"
        );
    }
}
