//! `sluice promote gitsync NAME [--revision SHA]` and `sluice hold gitsync NAME [--release]`: they
//! write what the GitSync controller acts on (the `sluice.dev/promote` annotation, spec.promotion.hold)
//! and leave the promotion itself, its checks and its audit record to the controller.
use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::actions::FIELD_MANAGER;
use super::{Error, Result, Target};
use crate::api::gitsync::GitSync;
use crate::api::keys::PROMOTE_ANNOTATION;
use crate::gitsync::plan::promotion::PromoteRequest;

/// The GitSync, which must follow an upstream for promotion to mean anything.
async fn read_follower(target: &Target, name: &str) -> Result<GitSync> {
    let what = format!("reading gitsync \"{name}\" in namespace \"{}\"", target.namespace);
    let gitsync = match target.call(what, target.api::<GitSync>().get(name)).await {
        Err(Error::Api { code: Some(404), .. }) => {
            return Err(Error::Invalid(format!(
                "gitsync \"{name}\" not found in namespace \"{}\"",
                target.namespace
            )));
        }
        other => other?,
    };
    if gitsync.spec.upstream().is_none() {
        return Err(Error::Refused(format!(
            "gitsync \"{name}\" follows no upstream GitSync (spec.source.fromGitSync): it applies the head of its \
             ref, so there is nothing to promote into it or hold"
        )));
    }
    Ok(gitsync)
}

async fn patch(target: &Target, name: &str, patch: serde_json::Value) -> Result<()> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let what = format!("updating gitsync \"{name}\" in namespace \"{}\"", target.namespace);
    target
        .call(
            what,
            target.api::<GitSync>().patch(name, &params, &Patch::Merge(&patch)),
        )
        .await
        .map(drop)
}

/// Asks for a forced promotion (the soak skipped) of `revision`, or of the upstream's healthy
/// revision: a new request id each time, so the controller acts on it once.
pub async fn promote(target: &Target, name: &str, revision: Option<&str>, now: DateTime<Utc>) -> Result<String> {
    let request = PromoteRequest {
        id: now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        revision: revision.map(str::to_string),
    };
    // The same checks the controller makes, so a typo fails here rather than in an event.
    let request =
        PromoteRequest::parse(&request.value()).map_err(|why| Error::Invalid(format!("--revision: {why}")))?;
    let gitsync = read_follower(target, name).await?;
    if gitsync.spec.is_promotion_held() {
        return Err(Error::Refused(format!(
            "promotions into gitsync \"{name}\" are held: release them first with `sluice hold gitsync {name} --release`"
        )));
    }
    patch(
        target,
        name,
        json!({"metadata": {"annotations": {PROMOTE_ANNOTATION: request.value()}}}),
    )
    .await?;
    let what = match &request.revision {
        Some(revision) => format!("revision {revision}"),
        None => "the upstream's healthy revision".into(),
    };
    Ok(format!(
        "gitsync \"{name}\": promotion of {what} requested (soak skipped; refused if the revision is blocked \
         here or upstream); see status.promotion and its events"
    ))
}

/// Holds (or releases) promotions into the GitSync: what runs stays.
pub async fn hold(target: &Target, name: &str, release: bool) -> Result<String> {
    let gitsync = read_follower(target, name).await?;
    if gitsync.spec.is_promotion_held() != release {
        let message = match release {
            true => "promotions are not held",
            false => "promotions are already held",
        };
        return Ok(format!("gitsync \"{name}\": {message}"));
    }
    let hold = if release { serde_json::Value::Null } else { json!(true) };
    patch(target, name, json!({"spec": {"promotion": {"hold": hold}}})).await?;
    Ok(match release {
        true => format!("gitsync \"{name}\": promotions released; the upstream's soaked revision is promoted next"),
        false => format!(
            "gitsync \"{name}\": promotions held; what runs stays (release with `sluice hold gitsync {name} --release`)"
        ),
    })
}
