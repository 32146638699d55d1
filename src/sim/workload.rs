//! STUB: replaced by the workload helper.
use crate::sim::SimConfig;
use crate::sim::api::ApiServer;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
pub struct Workloads;
impl Workloads {
    pub fn new(_api: Arc<ApiServer>, _config: &SimConfig) -> Self {
        Workloads
    }
    pub fn routes(&self) -> axum::Router {
        axum::Router::new()
    }
    pub fn spawn(self, _shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        vec![]
    }
}
