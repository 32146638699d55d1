//! `sluice demo`: the whole GitOps loop on one machine, no cluster. A simulated cluster with traffic,
//! a real Prometheus scraping it, a local Git repository holding the app, and the Sluice controller
//! with a GitSync following it. Only commits drive the story (see `story`); a live timeline shows what
//! Git, the GitSync and the Rollout do, and the demo succeeds only if the story happened as told.
mod app;
pub mod stages;
mod story;
mod timeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kube::api::Api;

pub use story::Outcome;

use crate::kit::local_repo::LocalRepo;
use crate::kit::prometheus;
use sluice::api::analysis::ClusterAnalysisTemplate;
use sluice::api::gitsync::GitSync;
use sluice::controller::gitsync::GitSyncConfig;
use sluice_sim::api::WriteOptions;
use sluice_sim::{SimConfig, Simulator};
use story::Story;
use timeline::{Commits, Timeline};

const SUCCESS_RATE_TEMPLATE: &str = include_str!("../../../analysis-templates/sim-success-rate.yaml");
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Leave the simulator, Prometheus, the Git repository and the controller running afterwards
    /// (prints the kubeconfig and how to commit a v4 yourself).
    #[arg(long)]
    pub keep: bool,
    /// The Prometheus binary (default: `prometheus` on PATH).
    #[arg(long)]
    pub prometheus: Option<PathBuf>,
    /// The multistage story instead: a commit promoted dev → staging → prod on evidence, a bad one
    /// stopped in dev.
    #[arg(long)]
    pub stages: bool,
}

pub async fn run(options: DemoOptions) -> anyhow::Result<Outcome> {
    let timeline = Timeline::start();
    let stack = Stack::start(&options, timeline).await?;
    app::write_base(&stack.repo)?;
    timeline.say(
        "setup",
        format!(
            "Git repository {} (work clone {}): {}/service.yaml, {}/rollout.yaml",
            stack.repo.bare_path().display(),
            stack.repo.work_path().display(),
            app::APP_PATH,
            app::APP_PATH
        ),
    );
    let client = stack.client.clone();
    let gitsyncs: Api<GitSync> = Api::namespaced(client.clone(), "default");
    let commits = Commits(stack.repo.clone());
    let printers = [
        tokio::spawn(timeline::print_gitsync(
            gitsyncs.clone(),
            commits.clone(),
            timeline,
            |_| "gitsync".into(),
        )),
        tokio::spawn(timeline::print_rollout(
            client.clone(),
            stack.prometheus.address.clone(),
            timeline,
            |_| "rollout".into(),
        )),
    ];
    let story = Story {
        repo: stack.repo.clone(),
        commits,
        gitsyncs,
        rollouts: Api::namespaced(client, "default"),
        timeline,
    };
    let result = match story.tell().await {
        Ok(outcome) => story.conclude(&outcome).await.map(|()| outcome),
        Err(e) => Err(e),
    };
    let keep = options
        .keep
        .then(|| keep_instructions(&stack.kubeconfig, &stack.repo, &stack.prometheus.address));
    let told = "v2 promoted on evidence; v3 stopped at 20%, blocked, v2 pinned";
    stack.finish(result, timeline, told, keep, printers).await
}

/// What every demo runs on: the simulated cluster with the platform installed, a real Prometheus
/// scraping it, an empty Git repository, and the controller running as deploy/'s ServiceAccount.
struct Stack {
    sim: Simulator,
    prometheus: prometheus::Prometheus,
    controller: sluice::controller::Running,
    repo: LocalRepo,
    kubeconfig: PathBuf,
    /// The admin: plays the user.
    client: kube::Client,
    /// Holds the kubeconfig, the repository and the caches until the demo ends.
    _workdir: tempfile::TempDir,
}

impl Stack {
    async fn start(options: &DemoOptions, timeline: Timeline) -> anyhow::Result<Stack> {
        let prometheus_binary = options
            .prometheus
            .clone()
            .unwrap_or_else(|| PathBuf::from("prometheus"));
        prometheus::check_installed(&prometheus_binary, "the demo")?;
        let sim = Simulator::start(SimConfig {
            pod_ready_delay: Duration::from_millis(500),
            ..SimConfig::default()
        })
        .await?;
        let workdir = tempfile::Builder::new().prefix("sluice-demo-").tempdir()?;
        let kubeconfig = workdir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig)?;
        timeline.say(
            "setup",
            format!(
                "simulated cluster at {} (kubeconfig {})",
                sim.url(),
                kubeconfig.display()
            ),
        );
        install_platform(&sim)?;
        timeline.say(
            "setup",
            "platform: Sluice CRDs, the ClusterAnalysisTemplate sim-success-rate (canary success rate ≥ 95%, 3 measurements), \
             the ServiceAccount deployer the GitSync applies as",
        );
        let prometheus = prometheus::start(&prometheus_binary, workdir.path(), &sim).await?;
        timeline.say(
            "setup",
            format!(
                "Prometheus at {}, scraping the simulated traffic every second",
                prometheus.address
            ),
        );
        let repo = LocalRepo::create(workdir.path().join("git"))
            .context("creating the demo's Git repository (the demo needs git on PATH)")?;
        let client = sim.client()?;
        // The controller runs as deploy/'s ServiceAccount; `client` (the admin) plays the user.
        let controller_config = crate::kit::controller_kube_config(&sim).await?;
        let config = sluice::controller::ControllerConfig {
            namespace: None,
            metrics_addr: "127.0.0.1:0".parse()?,
            prometheus_address: Some(prometheus.address.clone()),
            analysis_address_allowlist: vec!["127.0.0.1/32".into()],
            notifications_configmap: sluice::controller::DEFAULT_NOTIFICATIONS_CONFIGMAP.into(),
            gitsync: GitSyncConfig {
                kube_config: Some(controller_config.clone()),
                client_options: None,
                cache_dir: Some(workdir.path().join("git-cache")),
                webhook_addr: None,
                argocd: Default::default(),
                allow_remote_bases: false,
                // The scenarios' and the demo's repositories are local folders.
                allow_file_repos: true,
                gitsync_default_service_account: None,
                gitsync_apply_as_controller: false,
            },
        };
        let controller =
            sluice::controller::start(kube::Client::try_from(controller_config)?, config, Default::default()).await?;
        timeline.say(
            "setup",
            format!(
                "Sluice controller running (metrics at http://{}/metrics)",
                controller.metrics_addr
            ),
        );
        Ok(Stack {
            sim,
            prometheus,
            controller,
            repo,
            kubeconfig,
            client,
            _workdir: workdir,
        })
    }

    /// The story's result, failed when deploy/'s RBAC refused the controller anything: the
    /// controller runs as deploy/'s ServiceAccount, so a refused call is a gap in deploy/.
    async fn check_rbac<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let denied = crate::kit::denied_to_controller(&self.sim.url()).await;
        match result {
            Ok(_) if !denied.is_empty() => Err(anyhow::anyhow!(
                "deploy/'s RBAC refused the controller: {}",
                denied.join(", ")
            )),
            result => result,
        }
    }

    /// The end of every story: the verdict (`told` when it happened as told, failed as well when
    /// deploy/'s RBAC refused the controller anything), then, with `keep`, those instructions and a
    /// wait for Ctrl-C, and everything stopped.
    async fn finish<T>(
        self,
        result: anyhow::Result<T>,
        timeline: Timeline,
        told: &str,
        keep: Option<String>,
        printers: impl IntoIterator<Item = tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<T> {
        let result = self.check_rbac(result).await;
        match &result {
            Ok(_) => timeline.say("demo", format!("the story happened as told: {told}")),
            Err(e) => timeline.say("demo", format!("the story did NOT happen as told: {e:#}")),
        }
        if let Some(instructions) = keep {
            println!("{instructions}");
            let _ = tokio::signal::ctrl_c().await;
        }
        for printer in printers {
            printer.abort();
        }
        self.stop().await;
        result
    }

    async fn stop(self) {
        self.controller.stop(Duration::from_secs(5)).await;
        drop(self.prometheus);
        self.sim.shutdown().await;
    }
}

/// The ServiceAccount in `default` the demo's GitSync applies as: deploy/tenant/'s.
const DEPLOYER: &str = "deployer";

/// What the platform team owns: the CRDs, the analysis template every app may use, and `default`
/// onboarded as the README's Security model says (deploy/tenant/: the ServiceAccount the app's GitSync
/// applies as, and the controller's right to act as it there).
fn install_platform(sim: &Simulator) -> anyhow::Result<()> {
    let options = WriteOptions {
        field_manager: "sluice-demo".into(),
        ..Default::default()
    };
    crate::kit::install_sluice_crds(sim)?;
    crate::kit::onboard_tenant(sim, "default")?;
    let template: ClusterAnalysisTemplate =
        serde_saphyr::from_str(SUCCESS_RATE_TEMPLATE).context("bundled analysis template")?;
    let templates = sim
        .api
        .resource("sluice.dev", "clusteranalysistemplates")
        .context("CRDs installed")?;
    sim.api
        .create(&templates, "", serde_json::to_value(template)?, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn keep_instructions(kubeconfig: &Path, repo: &LocalRepo, prometheus_address: &str) -> String {
    format!(
        "\nEverything keeps running; the timeline goes on. Explore:\n  \
         export KUBECONFIG={kubeconfig}\n  \
         kubectl get ro,gitsync\n  \
         sluice get rollout web --watch\n\
         Git: the GitSync follows main of {bare}. Ship a fixed v4 from the work clone:\n  \
         cd {work}\n  \
         {ship}\n\
         Prometheus: {prometheus_address}   Press Ctrl-C to stop.",
        kubeconfig = kubeconfig.display(),
        bare = repo.bare_path().display(),
        work = repo.work_path().display(),
        ship = app::ship_v4_commands(),
    )
}
