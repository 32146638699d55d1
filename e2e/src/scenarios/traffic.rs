//! A Gateway API canary: the controller writes the HTTPRoute's weights step by step; abort sets the
//! canary's weight to 0 at once; completion gives the promoted version all traffic before the old
//! ReplicaSet goes. Where the target counts requests, the measured split must follow the weights.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use serde_json::json;

use super::context::{Ctx, at_step, canary_hash, ensure, phase, stable_hash};
use sluice::api::rollout::{Rollout, RolloutPhase};

/// (canary, stable) weights on the route's first rule.
async fn route_weights(ctx: &Ctx<'_>) -> anyhow::Result<Option<(i64, i64)>> {
    let route = ctx
        .api_for("gateway.networking.k8s.io/v1", "HTTPRoute")
        .get("web")
        .await?;
    let Some(refs) = route
        .data
        .pointer("/spec/rules/0/backendRefs")
        .and_then(|r| r.as_array())
    else {
        return Ok(None);
    };
    let weight = |name: &str| {
        refs.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["weight"].as_i64())
    };
    Ok(weight("web-canary").zip(weight("web-stable")))
}

async fn wait_weights(ctx: &Ctx<'_>, what: &str, wanted: (i64, i64)) -> anyhow::Result<()> {
    ctx.eventually(what, || async {
        Ok((route_weights(ctx).await? == Some(wanted)).then_some(()))
    })
    .await
}

/// The canary's share of the requests served over `window`, when the target counts requests.
async fn measured_canary_share(ctx: &Ctx<'_>, window: Duration) -> Option<f64> {
    let before = ctx.target.served_requests(&ctx.namespace).await?;
    tokio::time::sleep(window).await;
    let after = ctx.target.served_requests(&ctx.namespace).await?;
    let delta = |s: &str| after.get(s).copied().unwrap_or(0.0) - before.get(s).copied().unwrap_or(0.0);
    let (canary, stable) = (delta("web-canary"), delta("web-stable"));
    Some(canary / (canary + stable))
}

/// What both scenarios start from: the `web-canary` and `web-stable` Services, the HTTPRoute `web`
/// with all traffic on stable (`annotations` tell the simulator how to drive it), and the Rollout
/// `web` at v1 routed through it, `canary` holding its trafficRouting and steps. Returns v1 Healthy.
async fn routed_rollout(
    ctx: &Ctx<'_>,
    annotations: serde_json::Value,
    replicas: i32,
    canary: serde_json::Value,
) -> anyhow::Result<Rollout> {
    let parent_refs = ctx.target.gateway_parent_refs()?;
    for name in ["web-canary", "web-stable"] {
        ctx.create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await?;
    }
    ctx.create(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {"parentRefs": parent_refs, "hostnames": [format!("web.{}.example.com", ctx.namespace)], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]},
    }))
    .await?;
    let mut strategy = json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2});
    if let (Some(strategy), Some(canary)) = (strategy.as_object_mut(), canary.as_object()) {
        strategy.extend(canary.clone());
    }
    ctx.create(
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": ctx.target.workload().pod_template("web", 1, 0.0),
            "strategy": {"canary": strategy}}}),
    )
    .await?;
    let v1 = ctx
        .wait_rollout("web", "v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy))
        .await?;
    wait_weights(ctx, "all traffic on stable", (0, 100)).await?;
    Ok(v1)
}

async fn selector_hash(ctx: &Ctx<'_>, service: &str) -> anyhow::Result<Option<String>> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    Ok(services
        .get(service)
        .await?
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("sluice.dev/pod-template-hash").cloned()))
}

pub async fn gateway_api(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let canary = json!({
        "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
        "steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]});
    let v1 = routed_rollout(ctx, json!({"sim.sluice.dev/rps": "200"}), 10, canary).await?;
    let v1 = stable_hash(&v1).unwrap_or_default();

    // v2 at 30%: ceil(10 × 30%) = 3 canary pods beside 10 stable ones.
    let template = ctx.target.workload().pod_template("web", 2, 0.0);
    ctx.patch_rollout("web", json!({"spec": {"template": template}}))
        .await?;
    let paused = ctx.wait_rollout("web", "paused at 30%", |r| at_step(r, 1)).await?;
    let v2 = canary_hash(&paused).unwrap_or_default();
    let weights = route_weights(ctx).await?;
    ensure(weights == Some((30, 70)), || {
        format!("route weights at 30%: {weights:?}")
    })?;
    match measured_canary_share(ctx, Duration::from_secs(5)).await {
        Some(share) => ensure((share - 0.30).abs() <= 0.05, || {
            format!("measured canary share {share:.3} at weight 30")
        })?,
        None => ctx.note("the measured traffic split was not checked: this target does not count requests"),
    }
    ensure(selector_hash(ctx, "web-canary").await? == Some(v2.clone()), || {
        "web-canary does not select the canary".into()
    })?;
    ensure(selector_hash(ctx, "web-stable").await? == Some(v1.clone()), || {
        "web-stable does not select stable".into()
    })?;

    // Abort: weight 0 within one reconcile, and requests follow.
    ctx.patch_rollout_status("web", json!({"abort": true})).await?;
    let started = std::time::Instant::now();
    wait_weights(ctx, "canary weight 0 after abort", (0, 100)).await?;
    ensure(started.elapsed() < Duration::from_secs(5), || {
        format!("the canary weight took {:?} to reach 0 after abort", started.elapsed())
    })?;
    if let Some(share) = measured_canary_share(ctx, Duration::from_secs(3)).await {
        ensure(share < 0.01, || {
            format!("canary still served {share:.3} of requests after abort")
        })?;
    }

    // Retry, then promote fully: stable Service and all traffic move to v2.
    ctx.patch_rollout_status("web", json!({"abort": null})).await?;
    ctx.wait_rollout("web", "back at the first pause", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.current_step_index == Some(1) && !s.is_aborted())
    })
    .await?;
    ctx.patch_rollout_status("web", json!({"promoteFull": true})).await?;
    ctx.wait_rollout("web", "v2 stable and Healthy", |r| {
        phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).as_deref() == Some(v2.as_str())
    })
    .await?;
    ensure(selector_hash(ctx, "web-stable").await? == Some(v2.clone()), || {
        "web-stable does not select v2 after completion".into()
    })?;
    let weights = route_weights(ctx).await?;
    ensure(weights == Some((0, 100)), || {
        format!("route weights after completion: {weights:?}")
    })?;
    ctx.eventually("old stable scaled down after scaleDownDelaySeconds", || async {
        Ok((ctx.replicas("web", &v1).await?.0 == 0).then_some(()))
    })
    .await
}

/// The names of the HTTPRoute's rules Sluice manages (`sluice-…`), and the route itself.
async fn managed_rules(ctx: &Ctx<'_>) -> anyhow::Result<(Vec<String>, serde_json::Value)> {
    let route = ctx
        .api_for("gateway.networking.k8s.io/v1", "HTTPRoute")
        .get("web")
        .await?;
    let rules = route
        .data
        .pointer("/spec/rules")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let names = rules
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with(sluice::traffic::routes::RULE_PREFIX))
        .map(String::from)
        .collect();
    Ok((names, route.data))
}

/// Header route and mirror on Gateway API: with weight 0 and a header route for `X-Canary: yes` on a
/// route whose traffic carries the header on 30% of requests, the canary serves 30% ± 8% of the
/// (non-mirrored) requests; setMirrorRoute adds a rule with a RequestMirror filter to the canary, and
/// the canary receives mirrored copies (`mirrored="true"`) of 50% ± 12% of the requests that rule
/// matches; a full promote removes every managed rule and the copies stop.
pub async fn header_route(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let annotations = json!({
        "sim.sluice.dev/rps": "200",
        "sim.sluice.dev/request-headers": "X-Canary: yes",
        "sim.sluice.dev/request-headers-fraction": "0.3"});
    let canary = json!({
        "trafficRouting": {"gatewayAPI": {"httpRoute": "web"},
            "managedRoutes": [{"name": "header"}, {"name": "mirror"}]},
        "steps": [
            {"setWeight": 0},
            {"setHeaderRoute": {"name": "header",
                "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}},
            {"pause": {}},
            {"setMirrorRoute": {"name": "mirror", "percentage": 50,
                "match": [{"method": {"exact": "GET"}, "path": {"prefix": "/"}}]}},
            {"pause": {}}]});
    routed_rollout(ctx, annotations, 4, canary).await?;

    let template = ctx.target.workload().pod_template("web", 2, 0.0);
    ctx.patch_rollout("web", json!({"spec": {"template": template}}))
        .await?;
    let paused = ctx
        .wait_rollout("web", "paused after setHeaderRoute", |r| at_step(r, 2))
        .await?;
    let v2 = canary_hash(&paused).unwrap_or_default();
    let (names, _) = managed_rules(ctx).await?;
    ensure(names == ["sluice-header"], || {
        format!("managed rules after setHeaderRoute: {names:?}")
    })?;
    // Weight 0: only the requests carrying the header reach the canary.
    ctx.eventually("the route accepted with the header rule", || async {
        let route = ctx
            .api_for("gateway.networking.k8s.io/v1", "HTTPRoute")
            .get("web")
            .await?;
        // The whole object: readiness compares status with metadata.generation.
        let route = serde_json::to_value(&route)?;
        Ok(sluice::traffic::gateway_api::readiness(&route).0.then_some(()))
    })
    .await?;
    match measured_canary_share(ctx, Duration::from_secs(6)).await {
        Some(share) => ensure((share - 0.30).abs() <= 0.08, || {
            format!("the canary served {share:.3} of the requests with 30% carrying X-Canary: yes")
        })?,
        None => ctx.note("the measured header share was not checked: this target does not count requests"),
    }

    // `sluice promote web`: past the pause, setMirrorRoute, then the last pause.
    ctx.patch_rollout_status("web", json!({"promotedStep": 2})).await?;
    ctx.wait_rollout("web", "paused after setMirrorRoute", |r| at_step(r, 4))
        .await?;
    let (names, route) = managed_rules(ctx).await?;
    ensure(names == ["sluice-header", "sluice-mirror"], || {
        format!("managed rules after setMirrorRoute: {names:?}")
    })?;
    let mirrors_to_canary = route
        .pointer("/spec/rules")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "sluice-mirror")
        .flat_map(|r| r["filters"].as_array().cloned().unwrap_or_default())
        .any(|f| {
            f["type"] == "RequestMirror"
                && f.pointer("/requestMirror/backendRef/name") == Some(&json!("web-canary"))
                && f.pointer("/requestMirror/percent") == Some(&json!(50))
        });
    ensure(mirrors_to_canary, || {
        format!("no RequestMirror 50% to web-canary in {}", route["spec"]["rules"])
    })?;
    if let Some(share) = measured_canary_share(ctx, Duration::from_secs(4)).await {
        // Mirrored copies are not counted: the header share stays.
        ensure((share - 0.30).abs() <= 0.08, || {
            format!("with the mirror, the canary served {share:.3} of the non-mirrored requests")
        })?;
    }
    match mirror_ratio(ctx, Duration::from_secs(5)).await {
        Some((mirrored, matched)) => ensure(matched > 0.0 && (mirrored / matched - 0.5).abs() <= 0.12, || {
            format!("{mirrored} mirrored copies reached the canary for {matched} requests the 50% mirror rule matched")
        })?,
        None => ctx.note("the mirrored copies were not counted: this target does not count them"),
    }

    // `sluice promote web --full`: completion removes every managed rule.
    ctx.patch_rollout_status("web", json!({"promoteFull": true})).await?;
    ctx.wait_rollout("web", "v2 stable and Healthy", |r| {
        phase(r) == Some(RolloutPhase::Healthy) && stable_hash(r).as_deref() == Some(v2.as_str())
    })
    .await?;
    ctx.eventually("managed rules removed after completion", || async {
        Ok(managed_rules(ctx).await?.0.is_empty().then_some(()))
    })
    .await?;
    if let Some((mirrored, matched)) = mirror_ratio(ctx, Duration::from_secs(3)).await {
        ensure(mirrored == 0.0 && matched > 0.0, || {
            format!("{mirrored} mirrored copies reached the canary after promote --full (traffic flowing: {matched})")
        })?;
    }
    Ok(())
}

/// Over `window`: (mirrored copies received by `web-canary`, requests the mirror rule matched), when
/// the target counts both. At weight 0 the requests without the header are all served by stable,
/// through the mirror rule or the weighted one: requests carry no method or path in the simulator
/// (the only target that counts mirrors), which spreads them evenly over the rules that differ only
/// by method or path (as varied real paths would), so the mirror rule matches half of them.
async fn mirror_ratio(ctx: &Ctx<'_>, window: Duration) -> Option<(f64, f64)> {
    let counts = async || {
        let served = ctx.target.served_requests(&ctx.namespace).await?;
        let mirrored = ctx.target.mirrored_requests(&ctx.namespace).await?;
        let of = |counts: &BTreeMap<String, f64>, service: &str| counts.get(service).copied().unwrap_or(0.0);
        Some((of(&mirrored, "web-canary"), of(&served, "web-stable")))
    };
    let before = counts().await?;
    tokio::time::sleep(window).await;
    let after = counts().await?;
    Some((after.0 - before.0, (after.1 - before.1) / 2.0))
}
