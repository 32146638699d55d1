//! The test kit: what the integration tests, the e2e scenarios, the demo and the benchmarks share —
//! resource builders (`fixtures`), local Git repositories and servers, one Prometheus launcher, and the
//! harness helpers (an in-process simulator, the real kubectl, a running controller).
pub mod git_servers;
pub mod harness;
pub mod local_repo;
pub mod process;
pub mod prometheus;
pub mod receiver;

pub use harness::*;
/// Builders of example resources (`Rollout::example(…)`, `CanaryStep::set_weight(…)`).
pub use sluice::api::fixtures;

/// The repository's root folder (where `crds/`, `deploy/` and `analysis-templates/` are).
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Installs Sluice's own CRDs (what `sluice crds` prints and `crds/` holds) on a simulator.
pub fn install_sluice_crds(sim: &sluice_sim::Simulator) -> anyhow::Result<()> {
    let crds = sluice::api::crds::all()
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    sim.install_crds(crds)
}
