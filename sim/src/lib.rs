//! Kubernetes API simulator: serves the API a controller and kubectl use, runs ReplicaSets → Pods and
//! splits simulated traffic by weights, so every part of Sluice can be tested, demonstrated and
//! benchmarked without a cluster.
pub mod api;
pub mod apply;
pub mod auth;
pub mod cli;
pub mod crds;
pub mod deployments;
pub mod discovery;
pub mod events;
pub mod faults;
pub mod gateway;
pub mod http;
pub mod job;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod routing;
pub mod schema;
pub mod selector;
pub mod status;
pub mod store;
pub mod structure;
pub mod table;
pub mod tls;
pub mod traffic;
pub mod watch;
pub mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::ApiServer;
use crate::auth::Authenticator;
pub use crate::auth::Authorization;
use crate::faults::{FaultRule, Faults};
use crate::http::{HttpState, RequestLog};
use crate::store::StoreConfig;

/// How a simulator instance behaves; `Default` suits tests.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub addr: SocketAddr,
    /// How long a new pod takes to turn Ready (per pod: annotation `sim.sluice.dev/ready-delay`).
    pub pod_ready_delay: Duration,
    pub bookmark_interval: Duration,
    /// Changes kept for watches that resume; older resourceVersions get 410.
    pub watch_history: usize,
    pub faults: Vec<FaultRule>,
    /// Seeds the fault rolls (random when unset), so a chaos run can be replayed.
    pub fault_seed: Option<u64>,
    /// API requests kept in the request log (`GET /sim/requests`).
    pub request_log_capacity: usize,
    /// How often simulated traffic is generated and counted.
    pub traffic_tick: Duration,
    /// How requests are authorized: RBAC from the stored objects (the default), or all allowed.
    /// Requests are authenticated either way.
    pub authorization: Authorization,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pod_ready_delay: Duration::from_secs(1),
            bookmark_interval: Duration::from_secs(5),
            watch_history: 20_000,
            faults: vec![],
            fault_seed: None,
            request_log_capacity: 100_000,
            traffic_tick: Duration::from_millis(100),
            authorization: Authorization::default(),
        }
    }
}

/// A running simulator: the API on `addr`, with garbage collection, workloads and traffic running.
pub struct Simulator {
    pub addr: SocketAddr,
    pub api: Arc<ApiServer>,
    pub http: Arc<HttpState>,
    tls: Arc<tls::ServerTls>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            anyhow::bail!("the simulator only serves on loopback addresses, not {addr}");
        }
        let api = ApiServer::new(StoreConfig {
            history_limit: config.watch_history,
            ..Default::default()
        });
        let faults = match config.fault_seed {
            Some(seed) => Faults::seeded(config.faults.clone(), seed),
            None => Faults::new(config.faults.clone()),
        };
        let faults = Arc::new(faults.map_err(|e| anyhow::anyhow!("faults: {e}"))?);
        let (drop_watches, _) = tokio::sync::watch::channel(0u64);
        let http = Arc::new(HttpState {
            api: api.clone(),
            faults,
            requests: RequestLog::new(config.request_log_capacity),
            drop_watches,
            bookmark_interval: config.bookmark_interval,
            server_address: addr.to_string(),
            authenticator: Authenticator::new(),
            authorization: config.authorization,
        });
        let shutdown = CancellationToken::new();
        let workloads = workload::Workloads::new(api.clone(), &config);
        let router = http::router(http.clone()).merge(workloads.routes());
        let tls = Arc::new(tls::ServerTls::self_signed(addr.ip())?);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(tls::serve(
            listener,
            router,
            tls.clone(),
            shutdown.clone(),
        )));
        let stop = shutdown.clone();
        let gc = api.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! { _ = gc.run_gc() => {}, _ = stop.cancelled() => {} }
        }));
        tasks.extend(workloads.spawn(shutdown.clone()));
        Ok(Simulator {
            addr,
            api,
            http,
            tls,
            shutdown,
            tasks,
        })
    }

    /// The plain-HTTP address of the API and the `/sim/*` endpoints.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same API over HTTPS (one port serves both), with [`Simulator::certificate_pem`] as its
    /// certificate: what the kubeconfig names, because kubectl sends no credentials over plain HTTP.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The simulator's self-signed server certificate, in PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.tls.certificate_pem
    }

    /// The bearer token of the simulator's administrator (user `sluice-admin` in `system:masters`),
    /// created at random when the simulator starts. The kubeconfig and `client()` use it.
    pub fn admin_token(&self) -> &str {
        self.http.authenticator.admin_token()
    }

    /// A kubeconfig whose current context points at this simulator (over HTTPS, trusting its
    /// certificate) as its administrator.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        use base64::Engine as _;
        let authority = base64::engine::general_purpose::STANDARD.encode(self.certificate_pem());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-sim\n  cluster:\n    server: {}\n    certificate-authority-data: {authority}\nusers:\n- name: sluice-sim\n  user:\n    token: {}\ncontexts:\n- name: sluice-sim\n  context:\n    cluster: sluice-sim\n    user: sluice-sim\n    namespace: {namespace}\ncurrent-context: sluice-sim\n",
            self.https_url(),
            self.admin_token(),
        )
    }

    /// An HTTP client that sends the admin token with every request, for tests that speak to the
    /// API without a Kubernetes client.
    pub fn http_client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.admin_token()))
            .expect("the admin token is hex");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("a client with default headers builds")
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig("default"))
    }

    /// Installs CustomResourceDefinitions given as data (for Sluice, what `sluice crds` prints); the
    /// simulator knows no product's types.
    pub fn install_crds(&self, crds: impl IntoIterator<Item = serde_json::Value>) -> anyhow::Result<()> {
        let resource = self
            .api
            .resource("apiextensions.k8s.io", "customresourcedefinitions")
            .expect("CRDs are built in");
        let options = crate::api::WriteOptions {
            field_manager: "sluice".into(),
            ..Default::default()
        };
        for crd in crds {
            let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
            self.api
                .create(&resource, "", crd, &options)
                .map_err(|e| anyhow::anyhow!("installing CRD {name}: {e}"))?;
        }
        Ok(())
    }

    /// The client configuration of this simulator (what `client` connects with).
    pub fn kube_config(&self) -> anyhow::Result<kube::Config> {
        let mut config = kube::Config::new(self.url().parse()?);
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(295));
        config.auth_info.token = Some(self.admin_token().to_string().into());
        Ok(config)
    }

    /// A kube client for this simulator (tests and the demo use it in-process).
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_from(self.kube_config()?)?)
    }

    /// Stops serving and every background task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// A simulator dropped without `shutdown` still stops its tasks: the workload controller runs on a
/// thread of its own, which no runtime's drop would end.
impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
