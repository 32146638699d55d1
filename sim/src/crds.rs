//! Minimal CustomResourceDefinitions of the third-party APIs whose data plane the simulator emulates
//! (Gateway API HTTPRoute, SMI TrafficSplit, Istio VirtualService and DestinationRule): what a test or
//! the e2e simulator target installs before it uses a router.
pub const HTTPROUTE: &str = include_str!("../crds/httproute-crd.yaml");
pub const TRAFFICSPLIT: &str = include_str!("../crds/trafficsplit-crd.yaml");
pub const VIRTUALSERVICE: &str = include_str!("../crds/virtualservice-crd.yaml");
pub const DESTINATIONRULE: &str = include_str!("../crds/destinationrule-crd.yaml");

/// Every router's CRD, for a test or target that uses them all.
pub const ROUTERS: [&str; 4] = [HTTPROUTE, TRAFFICSPLIT, VIRTUALSERVICE, DESTINATIONRULE];

/// The CRD in `yaml` as JSON (the form `Simulator::install_crds` takes).
pub fn parse(yaml: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_saphyr::from_str(yaml)?)
}
