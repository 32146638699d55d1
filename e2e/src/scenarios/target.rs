//! Where the scenarios run. [`SimTarget`] starts the simulator, a real Prometheus scraping its
//! traffic and the controller in-process; [`ClusterTarget`] uses the cluster in KUBECONFIG, with the
//! controller installed there or started locally. The trait holds only what differs between them:
//! how an app version is made to fail requests, how its success rate is queried, where a Gateway
//! is, how Git reaches the controller, and whether served requests can be counted.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::Skip;
use crate::kit::prometheus;
use sluice::api::rollout::Rollout;
use sluice::controller::gitsync::GitSyncConfig;
use sluice::controller::{ControllerConfig, Running};
use sluice_sim::{SimConfig, Simulator};

#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// One line naming the target, printed before the results.
    fn describe(&self) -> String;
    fn client(&self) -> kube::Client;
    /// The app the scenarios deploy.
    fn workload(&self) -> &Workload;
    /// `provider.prometheus.address` of the scenarios' AnalysisTemplates ("" = the controller's default).
    fn analysis_prometheus_address(&self) -> String;
    /// `parentRefs` of the scenarios' HTTPRoutes: a Gateway whose implementation reports route status.
    fn gateway_parent_refs(&self) -> Result<Value, Skip>;
    /// Where the scenario's Git repository is created and the URL the controller fetches it from.
    fn git_repository(&self, namespace: &str) -> Result<GitRepository, Skip>;
    /// Requests served so far per backend Service of `namespace`, when the target can count them.
    async fn served_requests(&self, namespace: &str) -> Option<BTreeMap<String, f64>>;
    /// Mirrored copies of requests (setMirrorRoute) received so far per Service of `namespace`, when
    /// the target can count them apart from served requests.
    async fn mirrored_requests(&self, _namespace: &str) -> Option<BTreeMap<String, f64>> {
        None
    }
}

pub struct GitRepository {
    /// `LocalRepo::create` directory: the bare repository is `<dir>/repo.git`.
    pub dir: PathBuf,
    /// The GitSync's `repoURL`; None: the local `file://` URL.
    pub url: Option<String>,
    /// Removes `dir` when dropped.
    pub _temp: Option<tempfile::TempDir>,
}

/// How the scenarios' app behaves on a target.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The container image of every version (versions differ by a pod-template annotation, so a real
    /// cluster never has to pull a tag that does not exist).
    pub image: String,
    /// How a version is made to answer a share of its requests with errors; None: it cannot.
    pub errors: Option<ErrorInjection>,
    /// PromQL for the success rate of one version's requests, with `$NAMESPACE`, `$SERVICE` and
    /// `{{args.canary-hash}}` (the pod-template-hash) in it; None: no such metric.
    pub success_rate_query: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ErrorInjection {
    /// The simulator's `sim.sluice.dev/error-rate` pod-template annotation.
    SimAnnotation,
    /// An environment variable of the app's container holding the error rate (0–1).
    Env(String),
}

/// The simulator's success-rate query over `sim_http_requests_total`.
pub const SIM_SUCCESS_RATE_QUERY: &str = r#"sum(rate(sim_http_requests_total{namespace="$NAMESPACE",service="$SERVICE",pod_template_hash="{{args.canary-hash}}",code!~"5.."}[6s])) / sum(rate(sim_http_requests_total{namespace="$NAMESPACE",service="$SERVICE",pod_template_hash="{{args.canary-hash}}"}[6s]))"#;

impl Workload {
    /// The pod template of app `app` at `version` answering `error_rate` of its requests with errors.
    pub fn pod_template(&self, app: &str, version: u32, error_rate: f64) -> Value {
        let mut annotations = json!({"e2e.sluice.dev/version": version.to_string()});
        let mut container = json!({"name": app, "image": self.image});
        match &self.errors {
            Some(ErrorInjection::SimAnnotation) => {
                annotations["sim.sluice.dev/error-rate"] = json!(error_rate.to_string());
            }
            Some(ErrorInjection::Env(name)) => {
                container["env"] = json!([{"name": name, "value": error_rate.to_string()}]);
            }
            None => {}
        }
        json!({"metadata": {"labels": {"app": app}, "annotations": annotations}, "spec": {"containers": [container]}})
    }

    /// The success-rate query for `service` in `namespace`, or why analysis scenarios cannot run.
    pub fn success_rate(&self, namespace: &str, service: &str) -> Result<String, Skip> {
        if self.errors.is_none() {
            return Err(Skip(
                "needs a workload whose error rate the pod template sets (the simulator's \
                 sim.sluice.dev/error-rate; on a cluster --error-rate-env with an app that honours it)"
                    .into(),
            ));
        }
        let query = self.success_rate_query.as_deref().ok_or_else(|| {
            Skip("needs a success-rate query over the app's request metrics (--success-rate-query)".into())
        })?;
        Ok(query.replace("$NAMESPACE", namespace).replace("$SERVICE", service))
    }

    /// The `e2e.sluice.dev/version` of a Rollout's pod template.
    pub fn version_of(rollout: &Rollout) -> Option<String> {
        rollout
            .spec
            .template
            .spec()
            .metadata?
            .annotations?
            .remove("e2e.sluice.dev/version")
    }
}

/// A controller started by the runner, stopped by [`SimTarget::stop`] / [`ClusterTarget::stop`].
struct LocalController {
    running: Running,
    _cache: tempfile::TempDir,
}

async fn start_controller(
    client: kube::Client,
    kube_config: kube::Config,
    prometheus_address: Option<String>,
) -> anyhow::Result<LocalController> {
    let cache = tempfile::Builder::new().prefix("sluice-e2e-git-").tempdir()?;
    let config = ControllerConfig {
        namespace: None,
        metrics_addr: "127.0.0.1:0".parse()?,
        prometheus_address,
        analysis_address_allowlist: vec![],
        notifications_configmap: sluice::controller::DEFAULT_NOTIFICATIONS_CONFIGMAP.into(),
        gitsync: GitSyncConfig {
            kube_config: Some(kube_config),
            client_options: None,
            cache_dir: Some(cache.path().to_path_buf()),
            webhook_addr: None,
            argocd: Default::default(),
            allow_remote_bases: false,
            // The scenarios' and the demo's repositories are local folders.
            allow_file_repos: true,
            gitsync_default_service_account: None,
            gitsync_apply_as_controller: false,
        },
    };
    let running = sluice::controller::start(client, config, Default::default()).await?;
    Ok(LocalController { running, _cache: cache })
}

#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// The Prometheus binary (default: SLUICE_PROMETHEUS, else `prometheus` on PATH).
    pub prometheus: Option<PathBuf>,
}

/// The simulator, a real Prometheus scraping its `/sim/metrics`, and the controller, in-process.
pub struct SimTarget {
    pub sim: Simulator,
    pub prometheus_address: String,
    workload: Workload,
    controller: Option<LocalController>,
    _prometheus: prometheus::Prometheus,
    _dir: tempfile::TempDir,
}

impl SimTarget {
    pub async fn start(options: SimOptions) -> anyhow::Result<SimTarget> {
        let sim = Simulator::start(SimConfig {
            pod_ready_delay: Duration::from_millis(200),
            ..SimConfig::default()
        })
        .await?;
        crate::kit::install_sluice_crds(&sim)?;
        let client = sim.client()?;
        apply_crd(
            &client,
            serde_saphyr::from_str(sluice_sim::crds::HTTPROUTE).context("HTTPRoute CRD")?,
        )
        .await?;
        let dir = tempfile::Builder::new().prefix("sluice-e2e-").tempdir()?;
        let binary = options
            .prometheus
            .or_else(|| std::env::var_os("SLUICE_PROMETHEUS").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("prometheus"));
        let prometheus = prometheus::start(&binary, dir.path(), &sim).await?;
        let prometheus_address = prometheus.address.clone();
        // The controller runs as deploy/'s ServiceAccount; the scenarios act as the admin.
        let controller_config = crate::kit::controller_kube_config(&sim).await?;
        let controller = start_controller(
            kube::Client::try_from(controller_config.clone())?,
            controller_config,
            Some(prometheus_address.clone()),
        )
        .await?;
        Ok(SimTarget {
            sim,
            prometheus_address,
            workload: Workload {
                image: "example.com/web:1".into(),
                errors: Some(ErrorInjection::SimAnnotation),
                success_rate_query: Some(SIM_SUCCESS_RATE_QUERY.into()),
            },
            controller: Some(controller),
            _prometheus: prometheus,
            _dir: dir,
        })
    }

    pub async fn stop(mut self) {
        if let Some(controller) = self.controller.take() {
            controller.running.stop(Duration::from_secs(5)).await;
        }
        self.sim.shutdown().await;
    }
}

#[async_trait::async_trait]
impl Target for SimTarget {
    fn describe(&self) -> String {
        format!(
            "simulator at {} with Prometheus at {} and the controller in-process",
            self.sim.url(),
            self.prometheus_address
        )
    }

    fn client(&self) -> kube::Client {
        self.sim.client().expect("the simulator's client config is valid")
    }

    fn workload(&self) -> &Workload {
        &self.workload
    }

    fn analysis_prometheus_address(&self) -> String {
        String::new()
    }

    fn gateway_parent_refs(&self) -> Result<Value, Skip> {
        // The simulator accepts every route for every parent.
        Ok(json!([{"name": "gateway"}]))
    }

    fn git_repository(&self, _namespace: &str) -> Result<GitRepository, Skip> {
        let temp = tempfile::Builder::new()
            .prefix("sluice-e2e-repo-")
            .tempdir()
            .map_err(|e| Skip(format!("creating a temp dir: {e}")))?;
        Ok(GitRepository {
            dir: temp.path().to_path_buf(),
            url: None,
            _temp: Some(temp),
        })
    }

    async fn served_requests(&self, namespace: &str) -> Option<BTreeMap<String, f64>> {
        // Mirrored copies are not served to anyone: they do not count towards a split.
        sim_requests(&self.sim.url(), namespace, false).await
    }

    async fn mirrored_requests(&self, namespace: &str) -> Option<BTreeMap<String, f64>> {
        sim_requests(&self.sim.url(), namespace, true).await
    }
}

/// `sim_http_requests_total` of `namespace` summed per Service, the mirrored copies or the others;
/// None when the simulator does not answer within 10 s.
async fn sim_requests(sim_url: &str, namespace: &str, mirrored: bool) -> Option<BTreeMap<String, f64>> {
    let fetch = async { reqwest::get(format!("{sim_url}/sim/metrics")).await?.text().await };
    let text = tokio::time::timeout(Duration::from_secs(10), fetch).await.ok()?.ok()?;
    let wanted_namespace = format!("namespace=\"{namespace}\"");
    let mut totals = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("sim_http_requests_total{") && l.contains(&wanted_namespace))
        .filter(|l| l.contains("mirrored=\"true\"") == mirrored)
    {
        let service = line
            .split("service=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *totals.entry(service.to_string()).or_insert(0.0) += value;
    }
    Some(totals)
}

/// Creates a CRD (or leaves an existing one) and waits until it is Established.
async fn apply_crd(client: &kube::Client, crd: CustomResourceDefinition) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(&name, &PatchParams::apply("sluice-e2e").force(), &Patch::Apply(&crd))
        .await
        .with_context(|| format!("applying CRD {name}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let established = crds.get(&name).await.ok().and_then(|c| c.status).is_some_and(|s| {
            s.conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("CRD {name} not Established after 30s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How `sluice e2e` reaches a real cluster (the flags it takes).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterOptions {
    /// Run against this cluster (default when KUBECONFIG is set) instead of the simulator.
    #[arg(long, env = "KUBECONFIG", hide_env_values = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Cluster: Prometheus for analysis, written into the scenarios' AnalysisTemplates and used by
    /// --local-controller; must be reachable from the controller (default: the controller's
    /// --prometheus-address).
    #[arg(long, env = "SLUICE_E2E_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Cluster: run the controller in this process (applies the CRDs) instead of the installed one.
    #[arg(long)]
    pub local_controller: bool,
    /// Cluster: the image every app version runs.
    #[arg(long, default_value = DEFAULT_CLUSTER_APP_IMAGE)]
    pub app_image: String,
    /// Cluster: env var through which --app-image fails that share (0–1) of its requests; without it the
    /// analysis and GitSync scenarios are skipped.
    #[arg(long)]
    pub error_rate_env: Option<String>,
    /// Cluster: PromQL success rate of one app version, with $NAMESPACE, $SERVICE and
    /// {{args.canary-hash}} (its pod-template-hash); without it the analysis and GitSync scenarios are skipped.
    #[arg(long)]
    pub success_rate_query: Option<String>,
    /// Cluster: Gateway (NAMESPACE/NAME) for the HTTPRoute scenario; skipped without it.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Cluster: directory to create the GitSync scenario's repository in, served to the cluster at --git-url
    /// (`git daemon --base-path=DIR`).
    #[arg(long, requires = "git_url")]
    pub git_root: Option<PathBuf>,
    /// Cluster: URL prefix under which the controller reaches --git-root (e.g. git://172.18.0.1:9418).
    #[arg(long, requires = "git_root")]
    pub git_url: Option<String>,
}

/// The image [`ClusterOptions::app_image`] defaults to: tiny, on every node of a kind cluster, Ready as
/// soon as it runs (it serves no requests: traffic and analysis need `--app-image` and friends).
pub const DEFAULT_CLUSTER_APP_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// A real cluster from a kubeconfig.
pub struct ClusterTarget {
    client: kube::Client,
    description: String,
    options: ClusterOptions,
    workload: Workload,
    controller: Option<LocalController>,
}

impl ClusterTarget {
    pub async fn connect(options: ClusterOptions) -> anyhow::Result<ClusterTarget> {
        let config_options = kube::config::KubeConfigOptions {
            context: options.context.clone(),
            ..Default::default()
        };
        let kube_config = match &options.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &config_options).await?
            }
            None => kube::Config::from_kubeconfig(&config_options)
                .await
                .context("reading the kubeconfig (KUBECONFIG or ~/.kube/config)")?,
        };
        let server = kube_config.cluster_url.to_string();
        let client = kube::Client::try_from(kube_config.clone())?;
        let controller = if options.local_controller {
            for crd in sluice::api::crds::all() {
                apply_crd(&client, crd).await?;
            }
            Some(start_controller(client.clone(), kube_config, options.prometheus_url.clone()).await?)
        } else {
            let rollouts: Api<Rollout> = Api::all(client.clone());
            rollouts.list(&ListParams::default().limit(1)).await.with_context(|| {
                format!(
                    "listing Rollouts on {server}: is Sluice installed (kubectl apply --server-side -k deploy/)? \
                     Or pass --local-controller"
                )
            })?;
            None
        };
        let description = format!(
            "cluster at {server} with {}; Prometheus for analysis: {}",
            if controller.is_some() {
                "the controller started by this runner"
            } else {
                "the installed controller"
            },
            options
                .prometheus_url
                .as_deref()
                .unwrap_or("the controller's --prometheus-address")
        );
        let workload = Workload {
            image: options.app_image.clone(),
            errors: options.error_rate_env.clone().map(ErrorInjection::Env),
            success_rate_query: options.success_rate_query.clone(),
        };
        Ok(ClusterTarget {
            client,
            description,
            options,
            workload,
            controller,
        })
    }

    pub async fn stop(mut self) {
        if let Some(controller) = self.controller.take() {
            controller.running.stop(Duration::from_secs(5)).await;
        }
    }
}

#[async_trait::async_trait]
impl Target for ClusterTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn workload(&self) -> &Workload {
        &self.workload
    }

    fn analysis_prometheus_address(&self) -> String {
        self.options.prometheus_url.clone().unwrap_or_default()
    }

    fn gateway_parent_refs(&self) -> Result<Value, Skip> {
        let gateway = self.options.gateway.as_deref().ok_or_else(|| {
            Skip(
                "needs a Gateway whose implementation reports HTTPRoute status and accepts routes from \
                 other namespaces (--gateway NAMESPACE/NAME)"
                    .into(),
            )
        })?;
        Ok(match gateway.split_once('/') {
            Some((namespace, name)) => json!([{"name": name, "namespace": namespace}]),
            None => json!([{"name": gateway}]),
        })
    }

    fn git_repository(&self, namespace: &str) -> Result<GitRepository, Skip> {
        if self.controller.is_some() && self.options.git_url.is_none() {
            // A local controller reads file:// URLs like the simulator target's.
            let temp = tempfile::Builder::new()
                .prefix("sluice-e2e-repo-")
                .tempdir()
                .map_err(|e| Skip(format!("creating a temp dir: {e}")))?;
            return Ok(GitRepository {
                dir: temp.path().to_path_buf(),
                url: None,
                _temp: Some(temp),
            });
        }
        match (&self.options.git_root, &self.options.git_url) {
            (Some(root), Some(url)) => Ok(GitRepository {
                dir: root.join(namespace),
                url: Some(format!("{}/{namespace}/repo.git", url.trim_end_matches('/'))),
                _temp: None,
            }),
            _ => Err(Skip(
                "the installed controller cannot read the runner's file:// repository: pass --local-controller, \
                 or --git-root DIR --git-url URL with DIR served at URL to the cluster (e.g. git daemon \
                 --base-path=DIR --export-all --enable=receive-pack)"
                    .into(),
            )),
        }
    }

    async fn served_requests(&self, _namespace: &str) -> Option<BTreeMap<String, f64>> {
        None
    }
}
