//! Traffic routers: each file puts a Rollout's canary weight into one kind of routing object (Gateway
//! API HTTPRoute, SMI TrafficSplit, Istio VirtualService, NGINX canary Ingress) behind [`TrafficRouter`].
//!
//! Every router keeps a pure core — `desired(…)` builds exactly the object or apply configuration it
//! writes, `observed_weight(…)` reads the weight back — and a thin async wrapper that does the I/O with
//! kube's `DynamicObject`, each call bounded by [`CALL_TIMEOUT`]. Writes are server-side applies under
//! the field manager [`FIELD_MANAGER`] with `force`, so a router takes back its weight fields from
//! whoever changed them, and never writes when the object already carries the weights.
//!
//! How the rollout reconciler uses a router:
//! 1. [`RouteTarget::from_rollout`] and [`router_for`] once per reconcile;
//! 2. [`TrafficRouter::check`] when the spec changes: its errors belong in the InvalidSpec condition;
//! 3. [`TrafficRouter::set_weight`] at each setWeight step, on abort (0) and on promotion (0 once the
//!    canary became stable: the stable Service then selects the new pods);
//! 4. [`TrafficRouter::observe`] until `canary_weight == Some(w)` and `ready`, before the step counts
//!    as reached.
//!
//! GitSync re-applies routing objects from Git: [`owned_fields`] gives it, per group and kind, the rule
//! that keeps the fields a router owns (each router file lists its kinds in `OWNED_FIELDS`).
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Map, Value, json};

use crate::api::Rollout;
use crate::api::rollout::TrafficRouting;
use crate::api::spec_error::SpecError;

pub mod gateway_api;
pub mod istio;
pub mod nginx;
pub mod routes;
pub mod smi;

pub use routes::ManagedRoute;

pub use crate::api::keys::CONTROLLER_FIELD_MANAGER as FIELD_MANAGER;
/// The longest any single API call of a router may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Where the routers' settings live in a Rollout, for error field paths.
pub const ROUTING_FIELD: &str = "spec.strategy.canary.trafficRouting";
/// Attempts of a read-modify-apply that lost a race with another writer (409 Conflict).
const CONFLICT_ATTEMPTS: usize = 3;

/// What a router needs to know about the Rollout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTarget {
    pub namespace: String,
    pub rollout: String,
    /// Owner of the objects a router creates (TrafficSplit, canary Ingress), so they are
    /// garbage-collected with the Rollout.
    pub rollout_uid: String,
    pub canary_service: String,
    pub stable_service: String,
    /// The total the weights add up to (spec.strategy.canary.maxTrafficWeight, default 100).
    pub max_weight: i32,
    /// Pod-template hashes of the canary and stable ReplicaSets. Only Istio with a DestinationRule uses
    /// them: its subsets select pods by `sluice.dev/pod-template-hash`. None leaves the subsets as they are.
    pub canary_hash: Option<String>,
    pub stable_hash: Option<String>,
    /// The Services of a running experiment step's weighted templates and their weights (Gateway API
    /// and SMI only; validation refuses them elsewhere). They take their share from stable's.
    pub experiment_backends: Vec<ExperimentBackend>,
}

/// A weighted template of a running experiment step: its Service and percent of traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentBackend {
    pub service: String,
    pub weight: i32,
}

impl RouteTarget {
    /// The target of a Rollout with a traffic router: None when canaryService or stableService is unset
    /// (validation reports that) — except for Istio's subset-level split, which routes by DestinationRule
    /// subset and names no Service (empty names) — or the Rollout has no name yet.
    pub fn from_rollout(rollout: &Rollout) -> Option<RouteTarget> {
        let canary = rollout.spec.canary();
        let subset_split = canary
            .traffic_routing
            .as_ref()
            .and_then(|r| r.istio.as_ref())
            .is_some_and(|istio| istio.destination_rule.is_some());
        let service = |name: &Option<String>| name.clone().or_else(|| subset_split.then(String::new));
        Some(RouteTarget {
            namespace: rollout.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            rollout: rollout.metadata.name.clone()?,
            rollout_uid: rollout.metadata.uid.clone().unwrap_or_default(),
            canary_service: service(&canary.canary_service)?,
            stable_service: service(&canary.stable_service)?,
            max_weight: canary.max_traffic_weight_or_default(),
            canary_hash: None,
            stable_hash: None,
            experiment_backends: Vec::new(),
        })
    }

    /// The stable side of a split whose canary side is `canary_weight` (and whose experiment
    /// backends take theirs); never below 0.
    pub fn stable_weight(&self, canary_weight: i32) -> i32 {
        let experiments: i64 = self
            .experiment_backends
            .iter()
            .map(|b| i64::from(b.weight.max(0)))
            .sum();
        let rest = i64::from(self.max_weight) - i64::from(canary_weight) - experiments;
        rest.clamp(0, i64::from(self.max_weight.max(0))) as i32
    }

    /// The weight of experiment backend `service`, when it is one.
    pub fn experiment_weight(&self, service: &str) -> Option<i32> {
        self.experiment_backends
            .iter()
            .find(|b| b.service == service)
            .map(|b| b.weight)
    }

    /// The ownerReference objects created for the Rollout carry (controller: only one owner manages them).
    pub fn owner_reference(&self) -> Value {
        json!({
            "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            "kind": "Rollout",
            "name": self.rollout,
            "uid": self.rollout_uid,
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    /// Whether `object` is controlled by this Rollout (by uid: a recreated Rollout is another owner).
    pub fn owns(&self, object: &Value) -> bool {
        let owners = object.pointer("/metadata/ownerReferences").and_then(Value::as_array);
        owners
            .into_iter()
            .flatten()
            .any(|o| o["kind"] == "Rollout" && o["uid"] == self.rollout_uid.as_str() && o["controller"] == true)
    }
}

/// What a router reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterState {
    /// The canary weight the routing object carries. None when the object is missing, the weights are
    /// unset, or they are not a consistent split (canary w and stable max − w everywhere the router
    /// writes): in every such case `set_weight` has work to do.
    pub canary_weight: Option<i32>,
    /// The change is live: the data plane serves the weights the object carries (Gateway API: every
    /// parent Accepted the route's current generation; the other routers: the object exists).
    pub ready: bool,
    /// Why the weight is None or the route not ready, for events and the Rollout's message.
    pub message: Option<String>,
}

/// Why a router call failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The spec or the objects it names are wrong (a route is missing, does not name the Services, an
    /// object is owned by someone else): a person must act; report it like an InvalidSpec.
    #[error("{0}")]
    Invalid(SpecError),
    /// The API server refused or failed a call; retrying may help.
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The API server did not answer within [`CALL_TIMEOUT`].
    #[error("{action} {kind} {namespace}/{name}: no answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

impl RouterError {
    /// A short label to count failures by kind.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RouterError::Invalid(_) => "invalid",
            RouterError::Api { .. } => "api",
            RouterError::Timeout { .. } => "timeout",
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, RouterError::Api { source: kube::Error::Api(status), .. } if status.is_conflict())
    }
}

impl From<SpecError> for RouterError {
    fn from(error: SpecError) -> Self {
        RouterError::Invalid(error)
    }
}

/// One kind of traffic routing object: puts the canary weight into it and reads it back.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// The router's key under trafficRouting: "gatewayAPI", "smi", "istio" or "nginx".
    fn name(&self) -> &'static str;

    /// Problems with the objects the spec names (missing, not naming the Services, owned by another
    /// Rollout), each at the spec field that names the object. Err only when the API could not answer.
    async fn check(&self, client: &kube::Client, target: &RouteTarget) -> Result<Vec<SpecError>, RouterError>;

    /// The weight the routing objects carry now, and whether it is live.
    async fn observe(&self, client: &kube::Client, target: &RouteTarget) -> Result<RouterState, RouterError>;

    /// Routes `canary_weight` to the canary Service and `max_weight − canary_weight` to the stable one
    /// (`canary_weight` is clamped to 0..=max_weight). Idempotent: no write when already in place.
    async fn set_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        canary_weight: i32,
    ) -> Result<(), RouterError>;

    /// Makes the routing objects carry exactly `routes` of the Rollout's managed routes (setHeaderRoute
    /// / setMirrorRoute): every managed route Sluice wrote earlier and not in `routes` is removed;
    /// routes Sluice does not manage are left alone. Idempotent: no write when already in place.
    /// Routers without managed routes accept only an empty set (validation refuses the steps).
    async fn set_routes(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        routes: &[ManagedRoute],
    ) -> Result<(), RouterError> {
        let _ = (client, target);
        match routes.first() {
            None => Ok(()),
            Some(route) => Err(RouterError::Invalid(spec_error(
                "managedRoutes",
                format!("{} cannot carry the managed route {:?}", self.name(), route.name()),
            ))),
        }
    }
}

/// The router configured in `routing` (the first one set; validation rejects more than one).
pub fn router_for(routing: &TrafficRouting) -> Option<Box<dyn TrafficRouter>> {
    if let Some(spec) = &routing.gateway_api {
        return Some(Box::new(gateway_api::GatewayApiRouter::new(spec.clone())));
    }
    if let Some(spec) = &routing.smi {
        return Some(Box::new(smi::SmiRouter::new(spec.clone())));
    }
    if let Some(spec) = &routing.istio {
        return Some(Box::new(istio::IstioRouter::new(spec.clone())));
    }
    if let Some(spec) = &routing.nginx {
        return Some(Box::new(nginx::NginxRouter::new(spec.clone())));
    }
    None
}

/// A Rollout's canary/stable pair of Services, whose weights its router writes. GitSync reads these
/// from the Rollouts it applies, to tell the weights Sluice owns from those Git owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanarySplit {
    pub namespace: String,
    pub canary_service: String,
    pub stable_service: String,
    /// Istio subsets (canary, stable), when the Rollout routes by DestinationRule subset.
    pub subsets: Option<(String, String)>,
}

/// How GitSync keeps the fields a router owns in one kind of object: it copies their live values from
/// `live` into `desired` (Git's object) before re-applying Git, so re-applying is not a traffic change;
/// every other field stays as Git says. `splits` are the [`CanarySplit`]s of the Rollouts being applied;
/// None when they are not known: every rule or route with two or more backends then counts as a split.
pub type PreserveOwnedFields = fn(desired: &mut Value, live: &Value, splits: Option<&[CanarySplit]>);

/// A kind of object (API group and kind) in which a router owns fields, and how they are kept.
pub(crate) struct OwnedFields {
    pub group: &'static str,
    pub kind: &'static str,
    pub preserve: PreserveOwnedFields,
}

/// The rule that keeps the router-owned fields of objects of `group` and `kind`; None when no router
/// writes into such objects.
pub fn owned_fields(group: &str, kind: &str) -> Option<PreserveOwnedFields> {
    [
        gateway_api::OWNED_FIELDS,
        smi::OWNED_FIELDS,
        istio::OWNED_FIELDS,
        nginx::OWNED_FIELDS,
    ]
    .into_iter()
    .flatten()
    .find(|owned| owned.group == group && owned.kind == kind)
    .map(|owned| owned.preserve)
}

/// A spec problem at `field` (relative to trafficRouting).
pub(crate) fn spec_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: format!("{ROUTING_FIELD}.{field}"),
        message: message.into(),
    }
}

/// A kind of object a router reads and writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObjectKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl ObjectKind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn api(&self, client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(self.group, self.version, self.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, self.plural);
        Api::namespaced_with(client.clone(), namespace, &resource)
    }

    /// The object as JSON, None when it does not exist.
    pub async fn get(&self, client: &kube::Client, namespace: &str, name: &str) -> Result<Option<Value>, RouterError> {
        let api = self.api(client, namespace);
        let object = self.call("get", namespace, name, api.get_opt(name)).await?;
        // DynamicObject always serializes (its data is already JSON).
        Ok(object.map(|o| serde_json::to_value(o).unwrap_or_default()))
    }

    /// Server-side apply of `body` under [`FIELD_MANAGER`], taking conflicting fields (`force`).
    pub async fn apply(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<(), RouterError> {
        let api = self.api(client, namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.call("apply", namespace, name, api.patch(name, &params, &Patch::Apply(body)))
            .await
            .map(|_| ())
    }

    async fn call<T>(
        &self,
        action: &'static str,
        namespace: &str,
        name: &str,
        call: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, RouterError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(RouterError::Api {
                action,
                kind: self.kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            }),
            Err(_) => Err(RouterError::Timeout {
                action,
                kind: self.kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
        }
    }
}

/// Runs a read-modify-apply `attempt` again when it lost a race with another writer: the apply
/// carries the resourceVersion it was computed from, so a concurrent change makes it fail with 409
/// instead of being overwritten.
pub(crate) async fn retry_on_conflict<F, Fut>(mut attempt: F) -> Result<(), RouterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), RouterError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_conflict() && tries < CONFLICT_ATTEMPTS => tries += 1,
            result => return result,
        }
    }
}

/// The metadata of an apply configuration: identity plus, for read-modify-apply, the resourceVersion
/// it was computed from (the API server treats it as a precondition).
pub(crate) fn apply_metadata(current: &Value) -> Value {
    let mut metadata = json!({
        "name": current.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "namespace": current.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
    });
    if let Some(version) = current.pointer("/metadata/resourceVersion") {
        metadata["resourceVersion"] = version.clone();
    }
    metadata
}

/// `namespace/name` of an object, for messages.
pub(crate) fn object_name(object: &Value) -> String {
    let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default();
    format!("{}/{}", text("/metadata/namespace"), text("/metadata/name"))
}

/// A weight written as a number or (SMI v1alpha1, annotations) a numeric string.
pub(crate) fn weight_value(value: &Value) -> Option<i32> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The one value all items agree on; None when there are none or they differ.
pub(crate) fn agreed<T: PartialEq>(mut items: impl Iterator<Item = Option<T>>) -> Option<T> {
    let first = items.next()??;
    for item in items {
        if item.as_ref() != Some(&first) {
            return None;
        }
    }
    Some(first)
}

/// `metadata.namespace` of an object ("" when unset).
pub(crate) fn namespace_of(object: &Value) -> String {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Which backends of a rule get their live weight back: None when the rule is not a canary split.
/// Without splits, a rule of two or more backends is a split and all its backends keep their
/// weights; with them, only the canary and stable backends of a Rollout that the rule routes to both.
pub(crate) type Selected = Option<Vec<bool>>;

/// The [`Selected`] backends of a rule; `sides` tells whether a backend is the canary and whether it
/// is the stable side of a split.
pub(crate) fn select_split(
    splits: Option<&[CanarySplit]>,
    backends: &[&Value],
    sides: impl Fn(&CanarySplit, &Value) -> (bool, bool),
) -> Selected {
    let Some(splits) = splits else {
        return (backends.len() >= 2).then(|| vec![true; backends.len()]);
    };
    let mut selected = vec![false; backends.len()];
    let mut any = false;
    for split in splits {
        let sides: Vec<(bool, bool)> = backends.iter().map(|b| sides(split, b)).collect();
        if sides.iter().any(|s| s.0) && sides.iter().any(|s| s.1) {
            any = true;
            for (i, (canary, stable)) in sides.into_iter().enumerate() {
                selected[i] |= canary || stable;
            }
        }
    }
    any.then_some(selected)
}

/// For each rule of `desired.spec.<rules>` that is a split, the live weights of its backends. Rules
/// are matched by name, else by `<matches_key>`, else by position (when both lists are as long).
pub(crate) fn preserve_rules(
    desired: &mut Value,
    live: &Value,
    rules_key: &str,
    backends_key: &str,
    matches_key: &str,
    identity: &dyn Fn(&Value) -> Option<Value>,
    is_split: &dyn Fn(&[&Value]) -> Selected,
) {
    let live_rules = live
        .pointer(&format!("/spec/{rules_key}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(rules) = desired
        .pointer_mut(&format!("/spec/{rules_key}"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let positional = rules.len() == live_rules.len();
    for (index, rule) in rules.iter_mut().enumerate() {
        let live_rule = match rule.get("name").filter(|n| n.is_string()) {
            Some(name) => live_rules.iter().find(|r| r.get("name") == Some(name)),
            None => {
                let by_matches = live_rules
                    .iter()
                    .filter(|r| r.get("name").is_none() && r.get(matches_key) == rule.get(matches_key))
                    .collect::<Vec<_>>();
                match by_matches[..] {
                    [only] => Some(only),
                    _ if positional => live_rules.get(index),
                    _ => None,
                }
            }
        };
        let Some(live_backends) = live_rule.and_then(|r| r.get(backends_key)).and_then(Value::as_array) else {
            continue;
        };
        let Some(backends) = rule.get_mut(backends_key).and_then(Value::as_array_mut) else {
            continue;
        };
        let selected = {
            let all: Vec<&Value> = backends.iter().collect();
            is_split(&all)
        };
        copy_weights(backends, live_backends, identity, &selected);
    }
}

/// Copies `weight` from the live entry of the same identity into each selected desired entry.
pub(crate) fn copy_weights(
    desired: &mut [Value],
    live: &[Value],
    identity: &dyn Fn(&Value) -> Option<Value>,
    selected: &Selected,
) {
    let Some(selected) = selected else { return };
    for (entry, _) in desired.iter_mut().zip(selected).filter(|(_, s)| **s) {
        let Some(id) = identity(entry) else { continue };
        let mut same = live.iter().filter(|l| identity(l).as_ref() == Some(&id));
        // An identity listed twice cannot be matched safely: leave Git's value.
        let (Some(live_entry), None) = (same.next(), same.next()) else {
            continue;
        };
        // A live entry without a weight was not written by Sluice: Git's value stands.
        if let (Some(weight), Some(fields)) = (live_entry.get("weight"), entry.as_object_mut()) {
            fields.insert("weight".into(), weight.clone());
        }
    }
}

/// The object at `key` of `fields`, made one (empty) when missing or not an object.
pub(crate) fn object_entry<'a>(fields: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = fields.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}

/// A key as a JSON pointer segment.
pub(crate) fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::rollout::{GatewayApiTrafficRouting, NginxTrafficRouting, SmiTrafficRouting};

    /// The target every router test uses: Rollout default/web, Services web-canary and web-stable.
    pub(crate) fn target() -> RouteTarget {
        RouteTarget {
            namespace: "default".into(),
            rollout: "web".into(),
            rollout_uid: "uid-1".into(),
            canary_service: "web-canary".into(),
            stable_service: "web-stable".into(),
            max_weight: 100,
            canary_hash: None,
            stable_hash: None,
            experiment_backends: vec![],
        }
    }

    /// The split GitSync reads from the Rollout shop/web (Services web-canary and web-stable).
    pub(crate) fn split() -> CanarySplit {
        CanarySplit {
            namespace: "shop".into(),
            canary_service: "web-canary".into(),
            stable_service: "web-stable".into(),
            subsets: None,
        }
    }

    #[test]
    fn owned_fields_are_looked_up_by_group_and_kind() {
        for (group, kind) in [
            ("gateway.networking.k8s.io", "HTTPRoute"),
            ("gateway.networking.k8s.io", "GRPCRoute"),
            ("split.smi-spec.io", "TrafficSplit"),
            ("networking.istio.io", "VirtualService"),
            ("networking.istio.io", "DestinationRule"),
            ("networking.k8s.io", "Ingress"),
        ] {
            assert!(owned_fields(group, kind).is_some(), "{group} {kind}");
        }
        for (group, kind) in [
            ("", "Service"),
            ("apps", "Deployment"),
            ("networking.istio.io", "HTTPRoute"),
        ] {
            assert!(owned_fields(group, kind).is_none(), "{group} {kind}");
        }
    }

    #[test]
    fn router_for_picks_the_configured_router() {
        assert!(router_for(&TrafficRouting::default()).is_none());
        let name = |routing: TrafficRouting| router_for(&routing).map(|r| r.name());
        let gateway = TrafficRouting {
            gateway_api: Some(GatewayApiTrafficRouting::default()),
            ..Default::default()
        };
        let smi = TrafficRouting {
            smi: Some(SmiTrafficRouting::default()),
            ..Default::default()
        };
        let nginx = TrafficRouting {
            nginx: Some(NginxTrafficRouting::default()),
            ..Default::default()
        };
        assert_eq!(name(gateway), Some("gatewayAPI"));
        assert_eq!(name(smi), Some("smi"));
        assert_eq!(name(nginx), Some("nginx"));
    }

    #[test]
    fn target_from_rollout() {
        let rollout = Rollout::example("web", 3, vec![]).with_services("web-canary", "web-stable");
        let target = RouteTarget::from_rollout(&rollout).unwrap();
        assert_eq!(
            (target.namespace.as_str(), target.rollout.as_str(), target.max_weight),
            ("default", "web", 100)
        );
        assert_eq!(target.stable_weight(30), 70);
        assert!(RouteTarget::from_rollout(&Rollout::example("web", 3, vec![])).is_none());
    }

    #[test]
    fn a_subset_split_needs_no_services() {
        use crate::api::rollout::{IstioDestinationRule, IstioTrafficRouting, IstioVirtualService};
        let istio = |destination_rule: Option<IstioDestinationRule>| {
            Rollout::example("web", 3, vec![]).with_canary(|c| {
                c.traffic_routing = Some(TrafficRouting {
                    istio: Some(IstioTrafficRouting {
                        virtual_service: Some(IstioVirtualService {
                            name: "vs".into(),
                            ..Default::default()
                        }),
                        destination_rule,
                    }),
                    ..Default::default()
                })
            })
        };
        let subsets = IstioDestinationRule {
            name: "dr".into(),
            canary_subset_name: "canary".into(),
            stable_subset_name: "stable".into(),
        };
        let by_subset = istio(Some(subsets));
        let target = RouteTarget::from_rollout(&by_subset).unwrap();
        assert_eq!(
            (target.canary_service.as_str(), target.stable_service.as_str()),
            ("", "")
        );
        assert!(crate::rollout::validate::validate(&by_subset).is_empty());
        let by_host = istio(None);
        assert!(RouteTarget::from_rollout(&by_host).is_none());
        let fields: Vec<String> = crate::rollout::validate::validate(&by_host)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["spec.strategy.canary.canaryService"]);
    }

    #[test]
    fn ownership_is_by_uid_and_controller() {
        let target = target();
        let owned = json!({"metadata": {"ownerReferences": [target.owner_reference()]}});
        assert!(target.owns(&owned));
        let other = json!({"metadata": {"ownerReferences": [{"kind": "Rollout", "uid": "uid-2", "controller": true}]}});
        assert!(!target.owns(&other));
        assert!(!target.owns(&json!({"metadata": {}})));
    }

    #[test]
    fn agreed_needs_every_item_equal() {
        assert_eq!(agreed([Some(1), Some(1)].into_iter()), Some(1));
        assert_eq!(agreed([Some(1), Some(2)].into_iter()), None);
        assert_eq!(agreed([Some(1), None].into_iter()), None);
        assert_eq!(agreed(std::iter::empty::<Option<i32>>()), None);
    }
}
