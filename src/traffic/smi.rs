//! SMI router: a TrafficSplit (`split.smi-spec.io/v1alpha2`) that Sluice creates and owns, splitting the
//! root Service between the canary (w) and stable (max − w) Services. The Rollout owns it
//! (ownerReference), so it is garbage-collected with the Rollout; one owned by anything else is an error
//! rather than taken over. Sluice owns the whole object, so it is applied whole; ready once written
//! (SMI has no status to wait for).
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::api::rollout::SmiTrafficRouting;
use crate::api::spec_error::SpecError;
use crate::traffic::{
    CanarySplit, ObjectKind, OwnedFields, RouteTarget, RouterError, RouterState, TrafficRouter, copy_weights,
    namespace_of, object_name, select_split, spec_error,
};

pub(crate) const TRAFFIC_SPLIT: ObjectKind = ObjectKind {
    group: "split.smi-spec.io",
    version: "v1alpha2",
    kind: "TrafficSplit",
    plural: "trafficsplits",
};

/// The router for `trafficRouting.smi`.
#[derive(Debug, Clone)]
pub struct SmiRouter {
    spec: SmiTrafficRouting,
}

impl SmiRouter {
    pub fn new(spec: SmiTrafficRouting) -> Self {
        SmiRouter { spec }
    }

    /// trafficSplitName, else the Rollout's name.
    pub fn split_name<'a>(&'a self, target: &'a RouteTarget) -> &'a str {
        self.spec.traffic_split_name.as_deref().unwrap_or(&target.rollout)
    }

    /// The Service clients call: rootService, else the stable Service.
    pub fn root_service<'a>(&'a self, target: &'a RouteTarget) -> &'a str {
        self.spec.root_service.as_deref().unwrap_or(&target.stable_service)
    }
}

#[async_trait]
impl TrafficRouter for SmiRouter {
    fn name(&self) -> &'static str {
        "smi"
    }

    async fn check(&self, client: &kube::Client, target: &RouteTarget) -> Result<Vec<SpecError>, RouterError> {
        let current = TRAFFIC_SPLIT
            .get(client, &target.namespace, self.split_name(target))
            .await?;
        Ok(desired(current.as_ref(), &self.spec, target, 0)
            .err()
            .into_iter()
            .collect())
    }

    async fn observe(&self, client: &kube::Client, target: &RouteTarget) -> Result<RouterState, RouterError> {
        let name = self.split_name(target);
        let Some(current) = TRAFFIC_SPLIT.get(client, &target.namespace, name).await? else {
            return Ok(RouterState {
                canary_weight: None,
                ready: false,
                message: Some(format!("TrafficSplit {}/{name} not created yet", target.namespace)),
            });
        };
        let canary_weight = observed_weight(&current, target);
        Ok(RouterState {
            canary_weight,
            ready: true,
            message: canary_weight
                .is_none()
                .then(|| format!("TrafficSplit {} carries no consistent split", object_name(&current))),
        })
    }

    async fn set_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        canary_weight: i32,
    ) -> Result<(), RouterError> {
        let canary_weight = canary_weight.clamp(0, target.max_weight);
        let name = self.split_name(target);
        let current = TRAFFIC_SPLIT.get(client, &target.namespace, name).await?;
        let body = desired(current.as_ref(), &self.spec, target, canary_weight)?;
        if current.as_ref().is_some_and(|c| c.get("spec") == body.get("spec")) {
            return Ok(());
        }
        TRAFFIC_SPLIT.apply(client, &target.namespace, name, &body).await
    }
}

/// The TrafficSplit Sluice applies for `canary_weight`. `current` is the live one, if any: one the
/// Rollout does not control is an error at trafficSplitName.
pub fn desired(
    current: Option<&Value>,
    spec: &SmiTrafficRouting,
    target: &RouteTarget,
    canary_weight: i32,
) -> Result<Value, SpecError> {
    let router = SmiRouter::new(spec.clone());
    let name = router.split_name(target);
    if let Some(current) = current
        && !target.owns(current)
    {
        return Err(spec_error(
            "smi.trafficSplitName",
            format!(
                "TrafficSplit {}/{name} exists and is not owned by Rollout {}/{}",
                target.namespace, target.namespace, target.rollout
            ),
        ));
    }
    Ok(json!({
        "apiVersion": TRAFFIC_SPLIT.api_version(),
        "kind": TRAFFIC_SPLIT.kind,
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "ownerReferences": [target.owner_reference()],
        },
        "spec": {
            "service": router.root_service(target),
            "backends": backends(target, canary_weight),
        },
    }))
}

/// Canary, stable, then a running experiment's weighted templates (Argo's weighted experiment step).
fn backends(target: &RouteTarget, canary_weight: i32) -> Vec<Value> {
    let mut backends = vec![
        json!({"service": target.canary_service, "weight": canary_weight}),
        json!({"service": target.stable_service, "weight": target.stable_weight(canary_weight)}),
    ];
    backends.extend(
        target
            .experiment_backends
            .iter()
            .map(|b| json!({"service": b.service, "weight": b.weight})),
    );
    backends
}

/// The canary backend's weight when the stable backend has max − it (less the experiment backends',
/// each present with its weight, and no other backend); None otherwise.
pub fn observed_weight(current: &Value, target: &RouteTarget) -> Option<i32> {
    let backends = current.pointer("/spec/backends").and_then(Value::as_array)?;
    let weight_of = |service: &str| {
        let backend = backends.iter().find(|b| b["service"] == service)?;
        backend.get("weight").and_then(crate::traffic::weight_value)
    };
    let canary = weight_of(&target.canary_service)?;
    let experiments_in_place = backends.len() == 2 + target.experiment_backends.len()
        && target
            .experiment_backends
            .iter()
            .all(|b| weight_of(&b.service) == Some(b.weight));
    (experiments_in_place && weight_of(&target.stable_service)? == target.stable_weight(canary)).then_some(canary)
}

/// The fields GitSync keeps (see [`OwnedFields`]): the backend weights of TrafficSplits.
pub(crate) const OWNED_FIELDS: &[OwnedFields] = &[OwnedFields {
    group: TRAFFIC_SPLIT.group,
    kind: TRAFFIC_SPLIT.kind,
    preserve: preserve_backend_weights,
}];

/// Keeps the live `weight` of the backends, matched by service.
fn preserve_backend_weights(desired: &mut Value, live: &Value, splits: Option<&[CanarySplit]>) {
    let namespace = namespace_of(desired);
    let (Some(desired_backends), Some(live_backends)) = (
        desired.pointer_mut("/spec/backends").and_then(Value::as_array_mut),
        live.pointer("/spec/backends").and_then(Value::as_array),
    ) else {
        return;
    };
    let all: Vec<&Value> = desired_backends.iter().collect();
    let split = select_split(splits, &all, |split, b| {
        let service = b.get("service").and_then(Value::as_str);
        (
            service == Some(split.canary_service.as_str()) && namespace == split.namespace,
            service == Some(split.stable_service.as_str()) && namespace == split.namespace,
        )
    });
    if split.is_some() {
        copy_weights(desired_backends, live_backends, &|b| b.get("service").cloned(), &split);
    }
}

#[cfg(test)]
mod tests {
    use insta::assert_json_snapshot;

    use super::*;
    use crate::traffic::tests::target;

    fn spec() -> SmiTrafficRouting {
        SmiTrafficRouting {
            root_service: Some("web".into()),
            traffic_split_name: None,
        }
    }

    #[test]
    fn creates_a_traffic_split_owned_by_the_rollout() {
        let body = desired(None, &spec(), &target(), 30).unwrap();
        assert_json_snapshot!(body, @r#"
        {
          "apiVersion": "split.smi-spec.io/v1alpha2",
          "kind": "TrafficSplit",
          "metadata": {
            "name": "web",
            "namespace": "default",
            "ownerReferences": [
              {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Rollout",
                "name": "web",
                "uid": "uid-1",
                "controller": true,
                "blockOwnerDeletion": true
              }
            ]
          },
          "spec": {
            "service": "web",
            "backends": [
              {
                "service": "web-canary",
                "weight": 30
              },
              {
                "service": "web-stable",
                "weight": 70
              }
            ]
          }
        }
        "#);
    }

    #[test]
    fn defaults_to_the_rollout_name_and_the_stable_service() {
        let body = desired(None, &SmiTrafficRouting::default(), &target(), 0).unwrap();
        assert_eq!(body["metadata"]["name"], "web");
        assert_eq!(body["spec"]["service"], "web-stable");
        let named = SmiTrafficRouting {
            traffic_split_name: Some("split".into()),
            ..spec()
        };
        assert_eq!(
            desired(None, &named, &target(), 0).unwrap()["metadata"]["name"],
            "split"
        );
    }

    #[test]
    fn a_split_owned_by_someone_else_is_an_error() {
        let foreign = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {}});
        let error = desired(Some(&foreign), &spec(), &target(), 30).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.strategy.canary.trafficRouting.smi.trafficSplitName: \
             TrafficSplit default/web exists and is not owned by Rollout default/web"
        );
        let ours = desired(None, &spec(), &target(), 10).unwrap();
        assert!(desired(Some(&ours), &spec(), &target(), 30).is_ok());
    }

    #[test]
    fn a_running_experiment_adds_backends_that_go_when_it_ends() {
        let with_experiment = RouteTarget {
            experiment_backends: vec![crate::traffic::ExperimentBackend {
                service: "web-exp-canary".into(),
                weight: 10,
            }],
            ..target()
        };
        let split = desired(None, &spec(), &with_experiment, 30).unwrap();
        assert_eq!(
            split["spec"]["backends"],
            json!([
                {"service": "web-canary", "weight": 30},
                {"service": "web-stable", "weight": 60},
                {"service": "web-exp-canary", "weight": 10},
            ])
        );
        assert_eq!(observed_weight(&split, &with_experiment), Some(30));
        assert_eq!(observed_weight(&split, &target()), None, "the step is over: rewrite");
        let plain = desired(None, &spec(), &target(), 30).unwrap();
        assert_eq!(
            observed_weight(&plain, &with_experiment),
            None,
            "the experiment started: rewrite"
        );
    }

    #[test]
    fn observed_weight_reads_the_backends() {
        let target = target();
        let split = desired(None, &spec(), &target, 30).unwrap();
        assert_eq!(observed_weight(&split, &target), Some(30));
        // v1alpha1 wrote weights as quantities.
        let quantities = json!({"spec": {"backends": [
            {"service": "web-stable", "weight": "90"}, {"service": "web-canary", "weight": "10"}]}});
        assert_eq!(observed_weight(&quantities, &target), Some(10));
        let inconsistent = json!({"spec": {"backends": [
            {"service": "web-stable", "weight": 50}, {"service": "web-canary", "weight": 10}]}});
        assert_eq!(observed_weight(&inconsistent, &target), None);
        assert_eq!(observed_weight(&json!({"spec": {}}), &target), None);
    }

    #[test]
    fn traffic_split_backends_by_service() {
        let split = |canary: i64, stable: i64, service: &str| {
            json!({
                "apiVersion": "split.smi-spec.io/v1alpha2",
                "kind": "TrafficSplit",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"service": service, "backends": [
                    {"service": "web-canary", "weight": canary},
                    {"service": "web-stable", "weight": stable},
                ]},
            })
        };
        let live = split(20, 80, "web");
        let mut desired = split(0, 100, "web-root");
        desired["spec"]["backends"].as_array_mut().unwrap().reverse();
        let mut with = desired.clone();
        preserve_backend_weights(&mut desired, &live, None);
        preserve_backend_weights(&mut with, &live, Some(&[crate::traffic::tests::split()]));
        for result in [desired, with] {
            assert_eq!(result["spec"]["service"], "web-root");
            assert_eq!(
                result["spec"]["backends"],
                json!([{"service": "web-stable", "weight": 80}, {"service": "web-canary", "weight": 20}])
            );
        }
    }
}
