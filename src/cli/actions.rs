//! The commands that change a Rollout. Each one is a pure decision (is the command sensible in the
//! rollout's current state, and which patch says it) plus one small async function that reads the
//! Rollout, decides and applies. The patch bodies are the protocol the controller reads.
use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::{Error, Result, Target};
use crate::api::rollout::{PauseReason, Rollout};
use crate::rollout::plan::{current_hash, describe_step};

pub use crate::api::keys::CLI_FIELD_MANAGER as FIELD_MANAGER;

/// Where a rollout stands, as far as the commands care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The controller has not reported on the current pod template yet, so the status describes
    /// something else and writing protocol fields against it would be lost or misapplied.
    Pending { why: String },
    /// The stable revision runs the current template: nothing is being rolled out.
    Steady,
    /// A canary is in progress; `index` is status.currentStepIndex (== steps when all are done).
    Canary { index: i32, steps: usize },
    /// The canary was aborted (status.abort).
    Aborted,
}

/// Classifies a rollout from its spec and status.
pub fn stage(rollout: &Rollout) -> Stage {
    let Some(status) = rollout.status.as_ref().filter(|s| s.stable_rs.is_some()) else {
        return Stage::Pending {
            why: "the controller has not reported on it yet (is the sluice controller running?)".into(),
        };
    };
    if status.current_pod_hash.as_deref() != Some(current_hash(rollout).as_str()) {
        // Protocol fields are reset when the controller starts a new revision, so a command sent now
        // could be wiped out a moment later.
        return Stage::Pending {
            why: "the controller has not picked up its latest pod template yet; try again in a moment".into(),
        };
    }
    if status.current_pod_hash == status.stable_rs {
        return Stage::Steady;
    }
    if status.is_aborted() {
        return Stage::Aborted;
    }
    Stage::Canary {
        index: status.current_step_index_or_default(),
        steps: rollout.spec.canary().steps.len(),
    }
}

/// One write to a Rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A JSON merge patch of the status subresource.
    Status(Value),
    /// A JSON merge patch of the object.
    Merge(Value),
    /// A JSON patch (RFC 6902) of the object.
    Json(Value),
}

/// What a command decided: the write (none when the rollout is already as asked) and what to tell
/// the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub change: Option<Change>,
    pub message: String,
}

impl Planned {
    fn write(change: Change, message: String) -> Self {
        Planned {
            change: Some(change),
            message,
        }
    }

    fn nothing(message: String) -> Self {
        Planned { change: None, message }
    }
}

/// Promote past step `index`: naming the index (not "next") keeps a repeated promote from skipping two.
pub fn promote_step_patch(index: i32) -> Value {
    json!({"status": {"promotedStep": index}})
}

pub fn promote_full_patch() -> Value {
    json!({"status": {"promoteFull": true}})
}

pub fn abort_patch() -> Value {
    json!({"status": {"abort": true}})
}

/// Clears abort but keeps abortedAt: the controller reads "abort cleared, abortedAt set" as a retry.
pub fn retry_patch() -> Value {
    json!({"status": {"abort": null}})
}

pub fn paused_patch(paused: bool) -> Value {
    json!({"spec": {"paused": paused}})
}

pub fn restart_patch(at: DateTime<Utc>) -> Value {
    json!({"spec": {"restartAt": restart_time(at).to_rfc3339_opts(SecondsFormat::Secs, true)}})
}

/// The restart time written: `at` rounded up to the second. Kubernetes timestamps have whole seconds
/// and the controller restarts pods created strictly before restartAt, so rounding down would spare a
/// pod created earlier in the same second.
pub fn restart_time(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = at.duration_trunc(chrono::Duration::seconds(1)).unwrap_or(at);
    if floor == at {
        at
    } else {
        floor + chrono::Duration::seconds(1)
    }
}

fn step_label(index: i32, steps: usize, rollout: &Rollout) -> String {
    let step = rollout
        .spec
        .canary()
        .steps
        .get(index.max(0) as usize)
        .map(describe_step);
    match step {
        Some(step) => format!("step {}/{steps} ({step})", index + 1),
        None => format!("step {}/{steps}", index + 1),
    }
}

fn refuse_pending(name: &str, stage: &Stage) -> Option<Error> {
    match stage {
        Stage::Pending { why } => Some(Error::Refused(format!("rollout \"{name}\": {why}"))),
        _ => None,
    }
}

/// `sluice promote [--full]`: only a canary in progress can be promoted.
pub fn plan_promote(rollout: &Rollout, full: bool) -> Result<Planned> {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let stage = stage(rollout);
    if let Some(e) = refuse_pending(name, &stage) {
        return Err(e);
    }
    match stage {
        Stage::Steady => Err(Error::Refused(format!(
            "rollout \"{name}\" is not mid-rollout: the stable revision runs the current template, nothing to promote"
        ))),
        Stage::Aborted => Err(Error::Refused(format!(
            "rollout \"{name}\" is aborted; run `sluice retry {name}` to start its steps again"
        ))),
        Stage::Canary { .. } if rollout.spec.blue_green().is_some() => Ok(plan_promote_blue_green(rollout, full)),
        Stage::Canary { steps, .. } if full => Ok(Planned::write(
            Change::Status(promote_full_patch()),
            format!("rollout \"{name}\" fully promoted: skipping the remaining steps of {steps}"),
        )),
        Stage::Canary { index, steps } if index as usize >= steps => Ok(Planned::nothing(format!(
            "rollout \"{name}\" has completed all {steps} steps; it becomes stable once the canary is available"
        ))),
        Stage::Canary { index, steps } => Ok(Planned::write(
            Change::Status(promote_step_patch(index)),
            format!(
                "rollout \"{name}\" promoted: {} counts as done",
                step_label(index, steps, rollout)
            ),
        )),
        Stage::Pending { .. } => unreachable!("refused above"),
    }
}

/// `sluice promote` of a blue-green rollout in progress: its pause (or an inconclusive promotion
/// analysis) counts as passed; `--full` also skips the promotion analyses. Once the new version has
/// all its pods available the active Service switches.
fn plan_promote_blue_green(rollout: &Rollout, full: bool) -> Planned {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let active = rollout
        .spec
        .blue_green()
        .map(|b| b.active_service.as_str())
        .unwrap_or_default();
    if full {
        return Planned::write(
            Change::Status(promote_full_patch()),
            format!(
                "rollout \"{name}\" fully promoted: skipping the promotion analyses; Service {active} switches once every new pod is available"
            ),
        );
    }
    Planned::write(
        Change::Status(promote_step_patch(0)),
        format!("rollout \"{name}\" promoted: Service {active} switches once every new pod is available"),
    )
}

/// `sluice abort`: idempotent; a rollout with no canary has nothing to abort.
pub fn plan_abort(rollout: &Rollout) -> Result<Planned> {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let stage = stage(rollout);
    if let Some(e) = refuse_pending(name, &stage) {
        return Err(e);
    }
    match stage {
        Stage::Steady => Err(Error::Refused(format!(
            "rollout \"{name}\" is not mid-rollout: there is no canary to abort"
        ))),
        Stage::Aborted => Ok(Planned::nothing(format!("rollout \"{name}\" is already aborted"))),
        _ => Ok(Planned::write(
            Change::Status(abort_patch()),
            format!("rollout \"{name}\" aborted: all traffic goes back to the stable revision"),
        )),
    }
}

/// `sluice retry`: only an aborted rollout can be retried.
pub fn plan_retry(rollout: &Rollout) -> Result<Planned> {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let stage = stage(rollout);
    if let Some(e) = refuse_pending(name, &stage) {
        return Err(e);
    }
    match stage {
        Stage::Aborted => Ok(Planned::write(
            Change::Status(retry_patch()),
            format!("rollout \"{name}\" retrying from step 1"),
        )),
        _ => Err(Error::Refused(format!(
            "rollout \"{name}\" is not aborted: nothing to retry"
        ))),
    }
}

/// `sluice pause`.
pub fn plan_pause(rollout: &Rollout) -> Planned {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    if rollout.spec.is_paused() {
        return Planned::nothing(format!("rollout \"{name}\" is already paused"));
    }
    Planned::write(Change::Merge(paused_patch(true)), format!("rollout \"{name}\" paused"))
}

/// `sluice resume`: clears spec.paused only. A pause step or an inconclusive analysis is the
/// controller's own pause, ended by `promote`; the message says so rather than leaving the user
/// wondering why nothing moves.
pub fn plan_resume(rollout: &Rollout) -> Planned {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let mut planned = if rollout.spec.is_paused() {
        Planned::write(
            Change::Merge(paused_patch(false)),
            format!("rollout \"{name}\" resumed"),
        )
    } else {
        Planned::nothing(format!("rollout \"{name}\" is not paused with `sluice pause`"))
    };
    let conditions = rollout
        .status
        .as_ref()
        .map(|s| s.pause_conditions.as_slice())
        .unwrap_or_default();
    for condition in conditions {
        let why = match condition.reason {
            PauseReason::CanaryPauseStep => "at a pause step",
            PauseReason::InconclusiveAnalysisRun => "after an inconclusive analysis",
            PauseReason::BlueGreenPause => "before switching the active Service",
        };
        planned.message.push_str(&format!(
            "\nnote: the controller has paused it {why} since {}; run `sluice promote {name}` to continue",
            condition.start_time.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    planned
}

/// `sluice restart`.
pub fn plan_restart(rollout: &Rollout, now: DateTime<Utc>) -> Planned {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    Planned::write(
        Change::Merge(restart_patch(now)),
        format!(
            "rollout \"{name}\" restarting: pods created before {} are replaced",
            restart_time(now).to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    )
}

/// One `CONTAINER=IMAGE` argument of `sluice set image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUpdate {
    /// A container or init container name; `*` means all of them.
    pub container: String,
    pub image: String,
}

/// Parses `CONTAINER=IMAGE`.
pub fn parse_image_update(text: &str) -> Result<ImageUpdate, String> {
    match text.split_once('=') {
        Some((container, image)) if !container.is_empty() && !image.is_empty() => Ok(ImageUpdate {
            container: container.to_string(),
            image: image.to_string(),
        }),
        _ => Err(format!("expected CONTAINER=IMAGE, got \"{text}\"")),
    }
}

/// A JSON patch setting the images of the named containers (and init containers) in a Rollout's
/// template; empty when every image is already as asked. Each write is guarded by a `test` of the
/// container's name, so a concurrent edit that reorders containers fails instead of changing the
/// wrong one.
pub fn set_image_patch(rollout_name: &str, template: &PodTemplateSpec, updates: &[ImageUpdate]) -> Result<Value> {
    let Some(pod) = template.spec.as_ref() else {
        return Err(Error::Invalid(format!(
            "rollout \"{rollout_name}\" has no pod spec in its template"
        )));
    };
    let lists = [
        ("containers", pod.containers.as_slice()),
        ("initContainers", pod.init_containers.as_deref().unwrap_or_default()),
    ];
    let mut ops = Vec::new();
    for update in updates {
        let mut matched = false;
        for (list, containers) in lists {
            for (i, container) in containers.iter().enumerate() {
                if update.container != "*" && container.name != update.container {
                    continue;
                }
                matched = true;
                if container.image.as_deref() == Some(update.image.as_str()) {
                    continue;
                }
                let at = format!("/spec/template/spec/{list}/{i}");
                ops.push(json!({"op": "test", "path": format!("{at}/name"), "value": container.name}));
                // `add` also replaces, and works when the container has no image field yet.
                ops.push(json!({"op": "add", "path": format!("{at}/image"), "value": update.image}));
            }
        }
        if !matched {
            let names: Vec<&str> = lists
                .iter()
                .flat_map(|(_, containers)| containers.iter().map(|c| c.name.as_str()))
                .collect();
            return Err(Error::Invalid(format!(
                "container \"{}\" not found in rollout \"{rollout_name}\"; its containers: {}",
                update.container,
                names.join(", ")
            )));
        }
    }
    Ok(Value::Array(ops))
}

/// `sluice set image`.
pub fn plan_set_image(rollout: &Rollout, updates: &[ImageUpdate]) -> Result<Planned> {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    if let Some(reference) = &rollout.spec.workload_ref {
        return Err(Error::Invalid(format!(
            "rollout \"{name}\" runs the template of Deployment \"{}\" (spec.workloadRef): set the image there \
             (kubectl set image deployment/{} ...)",
            reference.name, reference.name
        )));
    }
    let patch = set_image_patch(name, &rollout.spec.template.spec(), updates)?;
    let asked: Vec<String> = updates.iter().map(|u| format!("{}={}", u.container, u.image)).collect();
    if patch.as_array().is_some_and(Vec::is_empty) {
        return Ok(Planned::nothing(format!(
            "rollout \"{name}\" already runs {}: unchanged",
            asked.join(" ")
        )));
    }
    Ok(Planned::write(
        Change::Json(patch),
        format!("rollout \"{name}\" image updated: {}", asked.join(" ")),
    ))
}

/// Writes a change to the named Rollout.
pub async fn apply(target: &Target, name: &str, change: &Change) -> Result<()> {
    let api = target.rollouts();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let what = format!("updating rollout \"{name}\" in namespace \"{}\"", target.namespace);
    match change {
        Change::Status(patch) => {
            target
                .call(what, api.patch_status(name, &params, &Patch::Merge(patch)))
                .await?;
        }
        Change::Merge(patch) => {
            target
                .call(what, api.patch(name, &params, &Patch::Merge(patch)))
                .await?;
        }
        Change::Json(patch) => {
            target.call(what, json_patch(target, name, patch)).await?;
        }
    }
    Ok(())
}

/// Sends a JSON patch (RFC 6902). Built by hand because kube's `Patch::Json` wants its own
/// json-patch major version, and the patch is plain JSON here anyway.
async fn json_patch(target: &Target, name: &str, patch: &Value) -> kube::Result<Rollout> {
    use kube::Resource;
    let url = format!(
        "{}/{name}?fieldManager={FIELD_MANAGER}",
        Rollout::url_path(&(), Some(&target.namespace))
    );
    let request = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(patch).map_err(kube::Error::SerdeError)?)
        .map_err(kube::Error::HttpError)?;
    target.client.request::<Rollout>(request).await
}

/// Reads the rollout, decides with `decide`, applies, and returns the message.
async fn read_decide_apply(
    target: &Target,
    name: &str,
    decide: impl FnOnce(&Rollout) -> Result<Planned>,
) -> Result<String> {
    let rollout = target.get_rollout(name).await?;
    let planned = decide(&rollout)?;
    if let Some(change) = &planned.change {
        apply(target, name, change).await?;
    }
    Ok(planned.message)
}

pub async fn promote(target: &Target, name: &str, full: bool) -> Result<String> {
    read_decide_apply(target, name, |r| plan_promote(r, full)).await
}

pub async fn abort(target: &Target, name: &str) -> Result<String> {
    read_decide_apply(target, name, plan_abort).await
}

pub async fn retry(target: &Target, name: &str) -> Result<String> {
    read_decide_apply(target, name, plan_retry).await
}

pub async fn pause(target: &Target, name: &str) -> Result<String> {
    read_decide_apply(target, name, |r| Ok(plan_pause(r))).await
}

pub async fn resume(target: &Target, name: &str) -> Result<String> {
    read_decide_apply(target, name, |r| Ok(plan_resume(r))).await
}

pub async fn restart(target: &Target, name: &str, now: DateTime<Utc>) -> Result<String> {
    read_decide_apply(target, name, |r| Ok(plan_restart(r, now))).await
}

pub async fn set_image(target: &Target, name: &str, updates: &[ImageUpdate]) -> Result<String> {
    read_decide_apply(target, name, |r| plan_set_image(r, updates)).await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use k8s_openapi::api::core::v1::Container;

    use super::*;
    use crate::api::rollout::{CanaryStep, PauseCondition, RolloutStatus};

    fn steps() -> Vec<CanaryStep> {
        vec![
            CanaryStep::set_weight(20),
            CanaryStep::pause(),
            CanaryStep::set_weight(50),
            CanaryStep::pause_for("30s"),
        ]
    }

    fn hash_of(rollout: &Rollout) -> String {
        current_hash(rollout)
    }

    /// A rollout mid-canary at step `index` (0-based), its template the current one.
    fn canary_at(index: i32) -> Rollout {
        let rollout = Rollout::example("web", 4, steps()).with_image("example.com/web:2");
        let hash = hash_of(&rollout);
        rollout.with_status(RolloutStatus {
            stable_rs: Some("stable1".into()),
            current_pod_hash: Some(hash),
            current_step_index: Some(index),
            ..RolloutStatus::default()
        })
    }

    fn steady() -> Rollout {
        let rollout = Rollout::example("web", 4, steps());
        let hash = hash_of(&rollout);
        rollout.with_status(RolloutStatus {
            stable_rs: Some(hash.clone()),
            current_pod_hash: Some(hash),
            current_step_index: Some(4),
            ..RolloutStatus::default()
        })
    }

    fn aborted() -> Rollout {
        let mut rollout = canary_at(1);
        let status = rollout.status.as_mut().unwrap();
        status.abort = Some(true);
        status.aborted_at = Some(Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap());
        rollout
    }

    #[test]
    fn stage_follows_the_status() {
        assert_eq!(stage(&canary_at(1)), Stage::Canary { index: 1, steps: 4 });
        assert_eq!(stage(&steady()), Stage::Steady);
        assert_eq!(stage(&aborted()), Stage::Aborted);
        assert!(matches!(
            stage(&Rollout::example("web", 1, vec![])),
            Stage::Pending { .. }
        ));
        // A template the controller has not seen yet: the status is about the previous one.
        let changed = canary_at(1).with_image("example.com/web:3");
        let Stage::Pending { why } = stage(&changed) else {
            panic!("pending")
        };
        assert!(why.contains("latest pod template"), "{why}");
    }

    #[test]
    fn promote_names_the_current_step() {
        let planned = plan_promote(&canary_at(1), false).unwrap();
        assert_eq!(
            planned.change,
            Some(Change::Status(json!({"status": {"promotedStep": 1}})))
        );
        assert_eq!(
            planned.message,
            "rollout \"web\" promoted: step 2/4 (pause until promoted) counts as done"
        );
        let full = plan_promote(&canary_at(1), true).unwrap();
        assert_eq!(
            full.change,
            Some(Change::Status(json!({"status": {"promoteFull": true}})))
        );
    }

    #[test]
    fn promote_of_a_blue_green_releases_its_pause_and_full_skips_the_analyses() {
        let rollout = Rollout::blue_green_example("web", 2).with_image("example.com/web:2");
        let hash = hash_of(&rollout);
        let rollout = rollout.with_status(RolloutStatus {
            stable_rs: Some("stable1".into()),
            current_pod_hash: Some(hash),
            current_step_index: Some(0),
            ..RolloutStatus::default()
        });
        let planned = plan_promote(&rollout, false).unwrap();
        assert_eq!(
            planned.change,
            Some(Change::Status(json!({"status": {"promotedStep": 0}})))
        );
        assert!(
            planned.message.contains("Service web-active switches"),
            "{}",
            planned.message
        );
        let full = plan_promote(&rollout, true).unwrap();
        assert_eq!(
            full.change,
            Some(Change::Status(json!({"status": {"promoteFull": true}})))
        );
        assert!(plan_abort(&rollout).unwrap().change.is_some());
    }

    #[test]
    fn promote_refuses_steady_and_aborted_rollouts() {
        let e = plan_promote(&steady(), false).unwrap_err();
        assert!(e.to_string().contains("not mid-rollout"), "{e}");
        let e = plan_promote(&aborted(), true).unwrap_err();
        assert!(e.to_string().contains("sluice retry web"), "{e}");
        let e = plan_promote(&Rollout::example("web", 1, vec![]), false).unwrap_err();
        assert!(e.to_string().contains("controller has not reported"), "{e}");
        // All steps done, waiting for the canary to become available: nothing to write.
        assert_eq!(plan_promote(&canary_at(4), false).unwrap().change, None);
    }

    #[test]
    fn abort_is_idempotent_and_needs_a_canary() {
        assert_eq!(
            plan_abort(&canary_at(0)).unwrap().change,
            Some(Change::Status(json!({"status": {"abort": true}})))
        );
        let again = plan_abort(&aborted()).unwrap();
        assert_eq!(again.change, None);
        assert!(again.message.contains("already aborted"));
        assert!(plan_abort(&steady()).is_err());
    }

    #[test]
    fn retry_clears_abort_only_when_aborted() {
        let planned = plan_retry(&aborted()).unwrap();
        assert_eq!(planned.change, Some(Change::Status(json!({"status": {"abort": null}}))));
        let e = plan_retry(&canary_at(1)).unwrap_err();
        assert_eq!(e.to_string(), "rollout \"web\" is not aborted: nothing to retry");
    }

    #[test]
    fn pause_and_resume_write_spec_paused() {
        assert_eq!(
            plan_pause(&canary_at(0)).change,
            Some(Change::Merge(json!({"spec": {"paused": true}})))
        );
        assert_eq!(plan_pause(&canary_at(0).with_paused(true)).change, None);
        let resumed = plan_resume(&canary_at(0).with_paused(true));
        assert_eq!(resumed.change, Some(Change::Merge(json!({"spec": {"paused": false}}))));
        assert_eq!(resumed.message, "rollout \"web\" resumed");
    }

    #[test]
    fn resume_points_at_promote_for_controller_pauses() {
        let mut rollout = canary_at(1).with_paused(true);
        rollout.status.as_mut().unwrap().pause_conditions = vec![PauseCondition {
            reason: PauseReason::InconclusiveAnalysisRun,
            start_time: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap(),
        }];
        let planned = plan_resume(&rollout);
        assert!(planned.change.is_some());
        assert_eq!(
            planned.message,
            "rollout \"web\" resumed\nnote: the controller has paused it after an inconclusive analysis since \
             2025-01-01T12:00:00Z; run `sluice promote web` to continue"
        );
    }

    #[test]
    fn restart_rounds_up_to_the_second() {
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::milliseconds(300);
        assert_eq!(
            restart_patch(at),
            json!({"spec": {"restartAt": "2025-01-01T12:00:01Z"}})
        );
        let whole = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            restart_patch(whole),
            json!({"spec": {"restartAt": "2025-01-01T12:00:00Z"}})
        );
    }

    fn update(container: &str, image: &str) -> ImageUpdate {
        ImageUpdate {
            container: container.into(),
            image: image.into(),
        }
    }

    fn with_sidecar_and_init() -> Rollout {
        let mut rollout = Rollout::example("web", 1, vec![]);
        rollout.spec.template.update(|template| {
            let pod = template.spec.as_mut().unwrap();
            pod.containers.push(Container {
                name: "proxy".into(),
                image: Some("envoy:1".into()),
                ..Container::default()
            });
            pod.init_containers = Some(vec![Container {
                name: "migrate".into(),
                ..Container::default()
            }]);
        });
        rollout
    }

    #[test]
    fn set_image_patches_the_named_containers() {
        let rollout = with_sidecar_and_init();
        let patch = set_image_patch(
            "web",
            &rollout.spec.template.spec(),
            &[update("proxy", "envoy:2"), update("migrate", "tool:3")],
        )
        .unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "proxy"},
                {"op": "add", "path": "/spec/template/spec/containers/1/image", "value": "envoy:2"},
                {"op": "test", "path": "/spec/template/spec/initContainers/0/name", "value": "migrate"},
                {"op": "add", "path": "/spec/template/spec/initContainers/0/image", "value": "tool:3"},
            ])
        );
        // The patch applies to the object as served.
        let mut object = serde_json::to_value(&rollout).unwrap();
        let ops: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut object, &ops).unwrap();
        assert_eq!(object["spec"]["template"]["spec"]["containers"][1]["image"], "envoy:2");
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["image"],
            "example.com/web:1"
        );
    }

    #[test]
    fn set_image_star_means_every_container_and_unchanged_is_a_noop() {
        let rollout = with_sidecar_and_init();
        let patch = set_image_patch("web", &rollout.spec.template.spec(), &[update("*", "x:1")]).unwrap();
        assert_eq!(patch.as_array().unwrap().len(), 6);
        let same = plan_set_image(&rollout, &[update("app", "example.com/web:1")]).unwrap();
        assert_eq!(same.change, None);
        assert!(same.message.ends_with("unchanged"), "{}", same.message);
    }

    #[test]
    fn set_image_names_a_missing_container_and_lists_the_others() {
        let e = plan_set_image(&with_sidecar_and_init(), &[update("db", "pg:16")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "container \"db\" not found in rollout \"web\"; its containers: app, proxy, migrate"
        );
    }

    #[test]
    fn set_image_on_a_workload_ref_rollout_points_at_the_deployment() {
        let mut rollout = with_sidecar_and_init();
        rollout.spec.workload_ref = Some(crate::api::workload_ref::WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web-deploy".into(),
            scale_down: None,
        });
        let e = plan_set_image(&rollout, &[update("app", "x:2")]).unwrap_err();
        assert!(e.to_string().contains("deployment/web-deploy"), "{e}");
    }

    #[test]
    fn image_updates_parse() {
        assert_eq!(
            parse_image_update("app=img:2@sha256:x=y"),
            Ok(update("app", "img:2@sha256:x=y"))
        );
        assert!(parse_image_update("img:2").is_err());
        assert!(parse_image_update("=img").is_err());
        assert!(parse_image_update("app=").is_err());
    }
}
