//! Opt-in adapter for Rollouts that Argo CD (not a GitSync) deploys. When such a canary is aborted
//! because its revision was judged bad, Argo CD's automated sync would keep re-applying it ("Synced
//! but Degraded"); the adapter turns automated sync off on the owning Application, records the last
//! healthy revision there and tells the Rollout's readers with a Warning event. It never syncs or
//! rolls back itself: what to deploy next stays a human's (or Git's) decision.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::rollout::{AbortReason, Rollout};
use crate::events::{Event, EventType, Recorder, Reporter};

pub use crate::api::keys::ARGOCD_TRACKING_ID_ANNOTATION as TRACKING_ID_ANNOTATION;
pub use crate::api::keys::{
    AUTO_SYNC_DISABLED_BY_ANNOTATION, LAST_HEALTHY_REVISION_ANNOTATION, PREVIOUS_AUTOMATED_ANNOTATION,
};
/// Where Applications live unless the tracking id names a namespace (`<ns>_<name>`).
pub const DEFAULT_ARGOCD_NAMESPACE: &str = "argocd";
pub use crate::api::keys::ARGOCD_ADAPTER_FIELD_MANAGER as FIELD_MANAGER;
/// Reason of the Warning event on the Rollout.
pub const EVENT_REASON: &str = "ArgoCDAutoSyncDisabled";

/// How the adapter runs.
#[derive(Debug, Clone)]
pub struct ArgoCdAdapterConfig {
    /// Namespace of Argo CD's control plane, where Applications live by default.
    pub argocd_namespace: String,
}

impl Default for ArgoCdAdapterConfig {
    fn default() -> Self {
        ArgoCdAdapterConfig {
            argocd_namespace: DEFAULT_ARGOCD_NAMESPACE.into(),
        }
    }
}

/// `argoproj.io/v1alpha1 Application`, without an Argo CD types crate.
pub fn application_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"))
}

/// A parsed `argocd.argoproj.io/tracking-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingId {
    /// Set for apps-in-any-namespace (`<ns>_<name>`); otherwise the Application is in Argo CD's namespace.
    pub application_namespace: Option<String>,
    pub application: String,
    /// API group of the tracked object (empty for the core group).
    pub group: String,
    pub kind: String,
    /// Namespace of the tracked object (empty for cluster-scoped objects).
    pub namespace: String,
    pub name: String,
}

/// `<namespace>/<name>` of an Application, for messages.
fn application_key(application: &Value) -> String {
    let field = |pointer: &str| application.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    format!("{}/{}", field("/metadata/namespace"), field("/metadata/name"))
}

/// Ok when `application` deploys into the Rollout's namespace; otherwise why the adapter leaves it alone.
fn deploys_into_namespace_of(application: &Value, rollout: &Rollout) -> Result<(), String> {
    let rollout_namespace = rollout.namespace().unwrap_or_default();
    let app = application_key(application);
    match application
        .pointer("/spec/destination/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) if namespace == rollout_namespace => Ok(()),
        Some(namespace) => Err(format!(
            "Application {app} deploys to namespace {namespace:?}, not the Rollout's {rollout_namespace:?}: left alone"
        )),
        None => Err(format!(
            "Application {app} names no destination namespace, so it cannot be shown to deploy the Rollout: left alone"
        )),
    }
}

/// Parses `<app-name>:<group>/<kind>:<namespace>/<name>`. Kubernetes names hold neither `:` nor `_`,
/// so both separators are unambiguous.
pub fn parse_tracking_id(value: &str) -> Option<TrackingId> {
    let mut parts = value.trim().splitn(3, ':');
    let (app, group_kind, namespaced_name) = (parts.next()?, parts.next()?, parts.next()?);
    let (group, kind) = group_kind.split_once('/')?;
    let (namespace, name) = namespaced_name.split_once('/')?;
    let (application_namespace, application) = match app.split_once('_') {
        Some((ns, app)) => (Some(ns.to_string()), app),
        None => (None, app),
    };
    if application.is_empty() || kind.is_empty() || name.is_empty() || application_namespace.as_deref() == Some("") {
        return None;
    }
    Some(TrackingId {
        application_namespace,
        application: application.to_string(),
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// Namespace and name of an Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRef {
    pub namespace: String,
    pub name: String,
}

/// The abort reason when the Rollout is aborted because its revision was judged bad.
fn abort_blaming_revision(rollout: &Rollout) -> Option<AbortReason> {
    let status = rollout.status.as_ref().filter(|s| s.is_aborted())?;
    status.abort_reason.filter(|r| r.blames_revision())
}

/// The Application to look at for this Rollout, or why there is none: not aborted, aborted by a
/// person, not tracked by Argo CD, or a tracking id copied from another object (Argo CD itself
/// ignores those).
pub fn application_to_check(rollout: &Rollout, argocd_namespace: &str) -> Result<ApplicationRef, String> {
    let Some(status) = rollout.status.as_ref().filter(|s| s.is_aborted()) else {
        return Err("not aborted".into());
    };
    match status.abort_reason {
        Some(reason) if reason.blames_revision() => {}
        Some(reason) => return Err(format!("aborted ({reason:?}), which does not blame the revision")),
        None => return Err("aborted without a reason, so the revision is not known to be bad".into()),
    }
    let Some(value) = rollout.annotations().get(TRACKING_ID_ANNOTATION) else {
        return Err(format!(
            "no {TRACKING_ID_ANNOTATION} annotation: not deployed by Argo CD"
        ));
    };
    let Some(id) = parse_tracking_id(value) else {
        return Err(format!(
            "{TRACKING_ID_ANNOTATION} {value:?} is not <app>:<group>/<kind>:<namespace>/<name>"
        ));
    };
    let namespace = rollout.namespace().unwrap_or_default();
    if id.group != Rollout::group(&())
        || id.kind != Rollout::kind(&())
        || id.namespace != namespace
        || id.name != rollout.name_any()
    {
        return Err(format!(
            "{TRACKING_ID_ANNOTATION} {value:?} names another object (copied annotation)"
        ));
    }
    Ok(ApplicationRef {
        namespace: id.application_namespace.unwrap_or_else(|| argocd_namespace.to_string()),
        name: id.application,
    })
}

/// What to do about an Application.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing, and why (logged).
    Nothing(String),
    /// Apply `patch` (a JSON merge patch) to the Application and record `note` as a Warning event
    /// on the Rollout.
    DisableAutoSync { patch: Value, note: String },
}

/// Decides from the Rollout and the Application (as JSON) whether automated sync must be turned off.
/// `now` stands in for status.abortedAt when the Rollout has none.
///
/// A tracking-id annotation is written by whoever can write the Rollout, so it alone does not prove the
/// Application deploys it: the adapter acts only on an Application whose `spec.destination.namespace` is
/// the Rollout's namespace (an Application with no destination namespace is left alone), so a tenant
/// cannot turn off another team's automated sync by naming its Application.
///
/// An abort is handled once: when the Application's disabled-by annotation already names this abort,
/// nothing is done, even if someone turned automated sync back on since (they decided; the adapter
/// does not fight them). A later abort of the same Rollout is a new abort.
pub fn decide(rollout: &Rollout, application: &Value, now: DateTime<Utc>) -> Decision {
    let Some(reason) = abort_blaming_revision(rollout) else {
        return Decision::Nothing("the rollout is not aborted for a bad revision".into());
    };
    if let Err(why) = deploys_into_namespace_of(application, rollout) {
        return Decision::Nothing(why);
    }
    let rollout_key = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
    let app_key = application_key(application);
    let status = rollout.status.as_ref();
    let aborted_at = status.and_then(|s| s.aborted_at);
    let by_prefix = format!("{rollout_key} aborted ({reason:?})");
    let disabled_by = format!(
        "{by_prefix} at {}",
        aborted_at.unwrap_or(now).to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let recorded = application
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTO_SYNC_DISABLED_BY_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    let handled = match (recorded, aborted_at) {
        (Some(recorded), Some(_)) => recorded == disabled_by,
        // Without abortedAt the time above is `now`, so only the rest can be compared.
        (Some(recorded), None) => recorded.starts_with(&by_prefix),
        (None, _) => false,
    };
    let automated = application
        .pointer("/spec/syncPolicy/automated")
        .filter(|a| is_automated_on(a));
    if handled {
        return Decision::Nothing(match automated {
            Some(_) => format!(
                "Application {app_key}: this abort was handled already and automated sync was turned on again since; leaving it on"
            ),
            None => format!("Application {app_key}: automated sync is already off for this abort"),
        });
    }
    let last_healthy = status
        .and_then(|s| s.stable_revision.as_ref())
        .and_then(|r| r.git_revision.clone())
        .filter(|r| !r.is_empty())
        .or_else(|| last_healthy_from_history(application));
    let mut annotations = Map::new();
    annotations.insert(AUTO_SYNC_DISABLED_BY_ANNOTATION.into(), json!(disabled_by));
    if let Some(revision) = &last_healthy {
        annotations.insert(LAST_HEALTHY_REVISION_ANNOTATION.into(), json!(revision));
    }
    let mut patch = json!({"metadata": {"annotations": annotations}});
    if let Some(automated) = automated {
        annotations_of(&mut patch).insert(PREVIOUS_AUTOMATED_ANNOTATION.into(), json!(automated.to_string()));
        patch["spec"] = json!({"syncPolicy": {"automated": null}});
    }
    let healthy = match &last_healthy {
        Some(revision) => format!("last healthy revision {revision}"),
        None => "no earlier revision known".into(),
    };
    let note = match automated {
        Some(_) => format!(
            "canary aborted ({reason:?}): turned off automated sync of Argo CD Application {app_key} so it does not re-apply the failed revision; {healthy}. Sync a good revision, then turn automated sync back on"
        ),
        None => format!(
            "canary aborted ({reason:?}): automated sync of Argo CD Application {app_key} was already off; {healthy}"
        ),
    };
    Decision::DisableAutoSync { patch, note }
}

fn annotations_of(patch: &mut Value) -> &mut Map<String, Value> {
    patch["metadata"]["annotations"]
        .as_object_mut()
        .expect("the patch is built with an annotations object")
}

/// Automated sync is on when `automated` is an object not saying `enabled: false` (Argo CD 3 can
/// switch it off in place).
fn is_automated_on(automated: &Value) -> bool {
    automated.is_object() && automated.get("enabled").and_then(Value::as_bool) != Some(false)
}

/// The newest revision in status.history that is not the one synced now (status.sync.revision).
fn last_healthy_from_history(application: &Value) -> Option<String> {
    let status = application.get("status")?;
    let current = status.get("sync").and_then(revision_of);
    status
        .get("history")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(revision_of)
        .find(|revision| Some(revision) != current.as_ref())
}

/// `revision`, or for multi-source Applications `revisions` joined with commas.
fn revision_of(entry: &Value) -> Option<String> {
    if let Some(revision) = entry.get("revision").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        return Some(revision.to_string());
    }
    let revisions: Vec<&str> = entry
        .get("revisions")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!revisions.is_empty()).then(|| revisions.join(","))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rollout {rollout}: Argo CD Application {application}: {action}: {source}")]
    Kube {
        rollout: String,
        application: String,
        action: &'static str,
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    recorder: Recorder,
    config: ArgoCdAdapterConfig,
    application: ApiResource,
}

/// Watches Rollouts (in `namespace`, or all) until `shutdown` and turns off automated sync of the
/// Argo CD Application of every Rollout aborted for a bad revision.
pub async fn run(
    client: Client,
    scope: crate::controller::rollouts::Scope,
    config: ArgoCdAdapterConfig,
    shutdown: CancellationToken,
) {
    // Only the Rollouts of the held shards, when sharded.
    let (store, writer) = reflector::store();
    let rollouts = scope
        .watch::<Rollout>(&client, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client,
        config,
        application: application_resource(),
    });
    tracing::info!(argocd_namespace = %ctx.config.argocd_namespace, "Argo CD adapter started");
    Controller::for_stream(rollouts, store)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "argocd adapter event");
            }
        })
        .await;
}

async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let rollout_key = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
    let app_ref = match application_to_check(&rollout, &ctx.config.argocd_namespace) {
        Ok(app_ref) => app_ref,
        Err(why) => {
            if abort_blaming_revision(&rollout).is_some() {
                tracing::debug!(rollout = %rollout_key, "argocd adapter: {why}");
            }
            return Ok(Requeue::await_change());
        }
    };
    let application = format!("{}/{}", app_ref.namespace, app_ref.name);
    let kube_error = |action: &'static str| {
        let (rollout, application) = (rollout_key.clone(), application.clone());
        move |source| Error::Kube {
            rollout,
            application,
            action,
            source,
        }
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &app_ref.namespace, &ctx.application);
    let Some(app) = api.get_opt(&app_ref.name).await.map_err(kube_error("reading"))? else {
        tracing::warn!(rollout = %rollout_key, %application, "argocd adapter: the Application in the rollout's tracking id does not exist");
        return Ok(Requeue::await_change());
    };
    let app_json = serde_json::to_value(&app).unwrap_or_default();
    match decide(&rollout, &app_json, Utc::now()) {
        Decision::Nothing(why) => tracing::debug!(rollout = %rollout_key, "argocd adapter: {why}"),
        Decision::DisableAutoSync { patch, note } => {
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            api.patch(&app_ref.name, &params, &Patch::Merge(&patch))
                .await
                .map_err(kube_error("turning off automated sync"))?;
            tracing::warn!(rollout = %rollout_key, %application, "{note}");
            let event = Event {
                type_: EventType::Warning,
                reason: EVENT_REASON.into(),
                note: Some(note),
                action: "DisableAutoSync".into(),
                secondary: Some(app.object_ref(&ctx.application)),
            };
            // Best effort, as everywhere: the Application is already patched.
            if let Err(e) = ctx.recorder.publish(&event, &rollout.object_ref(&())).await {
                tracing::debug!(error = %e, "could not record event");
            }
        }
    }
    Ok(Requeue::await_change())
}

fn error_policy(rollout: Arc<Rollout>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(rollout = %rollout.name_any(), error = %error, "argocd adapter reconcile failed");
    Requeue::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{RevisionInfo, RolloutStatus};
    use chrono::TimeZone;

    const TRACKING: &str = "web:sluice.dev/Rollout:shop/web";

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn rollout(reason: Option<AbortReason>, tracking: Option<&str>) -> Rollout {
        let mut rollout = Rollout::example("web", 3, vec![]).with_namespace("shop");
        if let Some(tracking) = tracking {
            rollout
                .annotations_mut()
                .insert(TRACKING_ID_ANNOTATION.into(), tracking.into());
        }
        rollout.status = Some(RolloutStatus {
            abort: Some(reason.is_some()),
            aborted_at: reason.map(|_| at()),
            abort_reason: reason,
            ..RolloutStatus::default()
        });
        rollout
    }

    fn application(automated: Value, annotations: Value) -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "argocd", "annotations": annotations},
            "spec": {
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
                "syncPolicy": {"automated": automated, "syncOptions": ["CreateNamespace=true"]},
            },
            "status": {
                "sync": {"status": "Synced", "revision": "bad3333"},
                "history": [
                    {"id": 1, "revision": "old1111"},
                    {"id": 2, "revision": "good2222"},
                    {"id": 3, "revision": "bad3333"},
                ],
            },
        })
    }

    #[test]
    fn an_application_deploying_elsewhere_is_left_alone() {
        let rollout = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        let mut app = application(json!({"prune": true}), json!({}));
        app["spec"]["destination"]["namespace"] = json!("team-b");
        let Decision::Nothing(why) = decide(&rollout, &app, at()) else {
            panic!("acted on another namespace's Application")
        };
        assert!(why.contains("team-b") && why.contains("left alone"), "{why}");
        app["spec"]["destination"].as_object_mut().unwrap().remove("namespace");
        let Decision::Nothing(why) = decide(&rollout, &app, at()) else {
            panic!("acted on an Application with no destination namespace")
        };
        assert!(why.contains("no destination namespace"), "{why}");
    }

    #[test]
    fn tracking_ids_parse() {
        assert_eq!(
            parse_tracking_id(TRACKING),
            Some(TrackingId {
                application_namespace: None,
                application: "web".into(),
                group: "sluice.dev".into(),
                kind: "Rollout".into(),
                namespace: "shop".into(),
                name: "web".into(),
            })
        );
        let any_ns = parse_tracking_id("team-a_web:sluice.dev/Rollout:shop/web").unwrap();
        assert_eq!(any_ns.application_namespace.as_deref(), Some("team-a"));
        assert_eq!(any_ns.application, "web");
        let core = parse_tracking_id("web:/Service:shop/web").unwrap();
        assert_eq!((core.group.as_str(), core.kind.as_str()), ("", "Service"));
        let cluster = parse_tracking_id("web:rbac.authorization.k8s.io/ClusterRole:/reader").unwrap();
        assert_eq!((cluster.namespace.as_str(), cluster.name.as_str()), ("", "reader"));
        for bad in [
            "",
            "web",
            "web:sluice.dev/Rollout",
            "web:Rollout:shop/web",
            ":sluice.dev/Rollout:shop/web",
            "_web:sluice.dev/Rollout:shop/web",
            "web:sluice.dev/Rollout:shop/",
        ] {
            assert_eq!(parse_tracking_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_revision_blaming_aborts_of_tracked_rollouts_are_checked() {
        let app = ApplicationRef {
            namespace: "argocd".into(),
            name: "web".into(),
        };
        let tracked = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        assert_eq!(application_to_check(&tracked, "argocd"), Ok(app.clone()));
        let deadline = rollout(Some(AbortReason::ProgressDeadlineExceeded), Some(TRACKING));
        assert_eq!(application_to_check(&deadline, "argocd"), Ok(app));
        let any_ns = rollout(
            Some(AbortReason::AnalysisFailed),
            Some("team-a_web:sluice.dev/Rollout:shop/web"),
        );
        assert_eq!(application_to_check(&any_ns, "argocd").unwrap().namespace, "team-a");
        assert_eq!(application_to_check(&tracked, "gitops").unwrap().namespace, "gitops");

        let requested = rollout(Some(AbortReason::Requested), Some(TRACKING));
        assert!(
            application_to_check(&requested, "argocd")
                .unwrap_err()
                .contains("Requested")
        );
        assert!(application_to_check(&rollout(None, Some(TRACKING)), "argocd").is_err());
        let untracked = rollout(Some(AbortReason::AnalysisFailed), None);
        assert!(
            application_to_check(&untracked, "argocd")
                .unwrap_err()
                .contains("not deployed by Argo CD")
        );
        for copied in [
            "web:sluice.dev/Rollout:other/web",
            "web:apps/Deployment:shop/web",
            "web:sluice.dev/Rollout:shop/api",
        ] {
            let rollout = rollout(Some(AbortReason::AnalysisFailed), Some(copied));
            assert!(
                application_to_check(&rollout, "argocd").unwrap_err().contains("copied"),
                "{copied}"
            );
        }
        let garbage = rollout(Some(AbortReason::AnalysisFailed), Some("web"));
        assert!(application_to_check(&garbage, "argocd").is_err());
    }

    #[test]
    fn an_analysis_abort_turns_off_automated_sync_and_records_the_history_revision() {
        let rollout = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        let app = application(json!({"prune": true, "selfHeal": true}), json!({}));
        let Decision::DisableAutoSync { patch, note } = decide(&rollout, &app, at()) else {
            panic!("expected a patch");
        };
        assert_eq!(
            patch,
            json!({
                "metadata": {"annotations": {
                    "sluice.dev/auto-sync-disabled-by": "shop/web aborted (AnalysisFailed) at 2025-03-01T12:00:00Z",
                    "sluice.dev/last-healthy-revision": "good2222",
                    "sluice.dev/previous-automated-sync-policy": "{\"prune\":true,\"selfHeal\":true}",
                }},
                "spec": {"syncPolicy": {"automated": null}},
            })
        );
        assert!(
            note.contains("argocd/web") && note.contains("good2222") && note.contains("AnalysisFailed"),
            "{note}"
        );
    }

    #[test]
    fn the_rollouts_stable_git_revision_wins_over_history() {
        let mut rollout = rollout(Some(AbortReason::ProgressDeadlineExceeded), Some(TRACKING));
        rollout.status.as_mut().unwrap().stable_revision = Some(RevisionInfo {
            git_revision: Some("stable9999".into()),
            revision: Some(4),
        });
        let Decision::DisableAutoSync { patch, .. } = decide(&rollout, &application(json!({}), json!({})), at()) else {
            panic!("expected a patch");
        };
        assert_eq!(
            patch["metadata"]["annotations"][LAST_HEALTHY_REVISION_ANNOTATION],
            "stable9999"
        );
    }

    #[test]
    fn history_without_an_earlier_revision_records_none() {
        let rollout = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        let mut app = application(json!({}), json!({}));
        app["status"]["history"] = json!([{"id": 1, "revision": "bad3333"}]);
        let Decision::DisableAutoSync { patch, note } = decide(&rollout, &app, at()) else {
            panic!("expected a patch");
        };
        assert!(
            patch["metadata"]["annotations"]
                .get(LAST_HEALTHY_REVISION_ANNOTATION)
                .is_none()
        );
        assert!(note.contains("no earlier revision known"), "{note}");
        // Multi-source Applications list revisions.
        app["status"]["sync"] = json!({"revisions": ["bad3333", "chart-2"]});
        app["status"]["history"] =
            json!([{"revisions": ["good2222", "chart-1"]}, {"revisions": ["bad3333", "chart-2"]}]);
        let Decision::DisableAutoSync { patch, .. } = decide(&rollout, &app, at()) else {
            panic!("expected a patch");
        };
        assert_eq!(
            patch["metadata"]["annotations"][LAST_HEALTHY_REVISION_ANNOTATION],
            "good2222,chart-1"
        );
    }

    #[test]
    fn an_abort_is_handled_once() {
        let rollout = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        let recorded =
            json!({AUTO_SYNC_DISABLED_BY_ANNOTATION: "shop/web aborted (AnalysisFailed) at 2025-03-01T12:00:00Z"});
        let off = application(Value::Null, recorded.clone());
        assert!(matches!(decide(&rollout, &off, at()), Decision::Nothing(why) if why.contains("already off")));
        // Someone turned it back on after the adapter handled this abort: their call.
        let back_on = application(json!({"prune": true}), recorded);
        assert!(matches!(decide(&rollout, &back_on, at()), Decision::Nothing(why) if why.contains("turned on again")));
        // A later abort of the same rollout is a new abort.
        let mut later = rollout.clone();
        later.status.as_mut().unwrap().aborted_at = Some(at() + chrono::Duration::hours(2));
        assert!(matches!(
            decide(&later, &back_on, at()),
            Decision::DisableAutoSync { .. }
        ));
    }

    #[test]
    fn automated_already_off_still_records_the_abort_without_touching_the_spec() {
        let rollout = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        for automated in [Value::Null, json!({"enabled": false, "prune": true})] {
            let app = application(automated, json!({}));
            let Decision::DisableAutoSync { patch, note } = decide(&rollout, &app, at()) else {
                panic!("expected annotations");
            };
            assert!(patch.get("spec").is_none(), "{patch}");
            assert!(
                patch["metadata"]["annotations"]
                    .get(PREVIOUS_AUTOMATED_ANNOTATION)
                    .is_none()
            );
            assert!(note.contains("already off"), "{note}");
        }
    }

    #[test]
    fn manual_aborts_and_healthy_rollouts_decide_nothing() {
        let app = application(json!({"prune": true}), json!({}));
        let requested = rollout(Some(AbortReason::Requested), Some(TRACKING));
        assert!(matches!(decide(&requested, &app, at()), Decision::Nothing(_)));
        let healthy = rollout(None, Some(TRACKING));
        assert!(matches!(decide(&healthy, &app, at()), Decision::Nothing(_)));
    }

    #[test]
    fn without_aborted_at_the_time_is_now_and_the_prefix_is_compared() {
        let mut rollout = rollout(Some(AbortReason::AnalysisFailed), Some(TRACKING));
        rollout.status.as_mut().unwrap().aborted_at = None;
        let app = application(json!({}), json!({}));
        let Decision::DisableAutoSync { patch, .. } = decide(&rollout, &app, at()) else {
            panic!("expected a patch");
        };
        let recorded = patch["metadata"]["annotations"][AUTO_SYNC_DISABLED_BY_ANNOTATION].clone();
        assert_eq!(recorded, "shop/web aborted (AnalysisFailed) at 2025-03-01T12:00:00Z");
        let app = application(Value::Null, json!({AUTO_SYNC_DISABLED_BY_ANNOTATION: recorded}));
        let later = at() + chrono::Duration::minutes(5);
        assert!(matches!(decide(&rollout, &app, later), Decision::Nothing(_)));
    }
}
