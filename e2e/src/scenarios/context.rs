//! What a scenario works with: the target, a client, its namespace, and bounded waits whose failure
//! says what was awaited and what the Rollout (and its AnalysisRuns) looked like at the end.
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::target::Target;
use sluice::api::AnalysisRun;
use sluice::api::rollout::{Rollout, RolloutPhase};

/// The longest any single wait of a scenario takes before it fails.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Ctx<'a> {
    pub target: &'a dyn Target,
    pub client: kube::Client,
    pub namespace: String,
    notes: Mutex<Vec<String>>,
    last_step: Mutex<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(target: &'a dyn Target, client: kube::Client, namespace: String) -> Self {
        Ctx {
            target,
            client,
            namespace,
            notes: Mutex::default(),
            last_step: Mutex::new("set-up".into()),
        }
    }

    /// Records something the scenario could not check on this target (printed under its result).
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).push(text.into());
    }

    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The last thing the scenario was waiting for (reported on a timeout).
    pub fn last_step(&self) -> String {
        self.last_step.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn step(&self, what: &str) {
        *self.last_step.lock().unwrap_or_else(|e| e.into_inner()) = what.to_string();
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn api_for(&self, api_version: &str, kind: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    /// Creates an object (any kind) in the scenario's namespace.
    pub async fn create(&self, object: Value) -> anyhow::Result<()> {
        let api_version = object["apiVersion"].as_str().context("apiVersion")?.to_string();
        let kind = object["kind"].as_str().context("kind")?.to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let object: DynamicObject = serde_json::from_value(object)?;
        self.api_for(&api_version, &kind)
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating {kind} {}/{name}", self.namespace))?;
        Ok(())
    }

    pub async fn rollout(&self, name: &str) -> anyhow::Result<Rollout> {
        self.rollouts()
            .get(name)
            .await
            .with_context(|| format!("reading Rollout {}/{name}", self.namespace))
    }

    pub async fn patch_rollout(&self, name: &str, patch: Value) -> anyhow::Result<()> {
        self.rollouts()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patching Rollout {}/{name}", self.namespace))?;
        Ok(())
    }

    /// What `sluice abort|retry|promote` write.
    pub async fn patch_rollout_status(&self, name: &str, status: Value) -> anyhow::Result<()> {
        self.rollouts()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await
            .with_context(|| format!("patching the status of Rollout {}/{name}", self.namespace))?;
        Ok(())
    }

    /// Polls `check` every 100 ms until it returns Some, for at most [`WAIT`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        self.step(what);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last_error = None;
        loop {
            match check().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if tokio::time::Instant::now() > deadline {
                match last_error {
                    Some(e) => bail!("timed out after {WAIT:?} waiting for {what} (last error: {e:#})"),
                    None => bail!("timed out after {WAIT:?} waiting for {what}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until Rollout `name` passes `check`; a timeout reports its status and its AnalysisRuns'.
    pub async fn wait_rollout(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Rollout) -> bool,
    ) -> anyhow::Result<Rollout> {
        let result = self
            .eventually(what, || async {
                Ok(self.rollout(name).await.ok().filter(|r| check(r)))
            })
            .await;
        match result {
            Ok(rollout) => Ok(rollout),
            Err(e) => {
                let status = self.rollout(name).await.ok().and_then(|r| r.status);
                let runs: Api<AnalysisRun> = Api::namespaced(self.client.clone(), &self.namespace);
                let runs: Vec<_> = runs
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| (r.metadata.name.unwrap_or_default(), r.status.and_then(|s| s.message)))
                    .collect();
                Err(e.context(format!(
                    "rollout status: {}{}; analysis runs: {runs:?}",
                    serde_json::to_string(&status).unwrap_or_default(),
                    no_status_hint(status.is_none())
                )))
            }
        }
    }

    /// Desired and available replicas of ReplicaSet `<rollout>-<hash>` ((0, 0) when it does not exist).
    pub async fn replicas(&self, rollout: &str, hash: &str) -> anyhow::Result<(i32, i32)> {
        let replica_sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(replica_sets
            .get_opt(&format!("{rollout}-{hash}"))
            .await?
            .map(|rs| {
                (
                    rs.spec.and_then(|s| s.replicas).unwrap_or(0),
                    rs.status.and_then(|s| s.available_replicas).unwrap_or(0),
                )
            })
            .unwrap_or((0, 0)))
    }

    /// (stable replicas, canary replicas, available across both) by the Rollout's status.
    pub async fn counts(&self, rollout: &Rollout) -> anyhow::Result<(i32, i32, i32)> {
        let name = rollout.metadata.name.as_deref().unwrap_or_default();
        let status = rollout.status.clone().unwrap_or_default();
        let stable = match &status.stable_rs {
            Some(hash) => self.replicas(name, hash).await?,
            None => (0, 0),
        };
        let canary = match &status.current_pod_hash {
            Some(hash) if status.stable_rs.as_ref() != Some(hash) => self.replicas(name, hash).await?,
            _ => (0, 0),
        };
        Ok((stable.0, canary.0, stable.1 + canary.1))
    }

    /// Waits for `check` on the Rollout and its replica counts together.
    pub async fn wait_counts(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Rollout, (i32, i32, i32)) -> bool,
    ) -> anyhow::Result<Rollout> {
        let result = self
            .eventually(what, || async {
                let rollout = self.rollout(name).await?;
                let counts = self.counts(&rollout).await?;
                Ok(check(&rollout, counts).then_some(rollout))
            })
            .await;
        match result {
            Ok(rollout) => Ok(rollout),
            Err(e) => {
                let rollout = self.rollout(name).await?;
                let counts = self.counts(&rollout).await.ok();
                Err(e.context(format!(
                    "(stable, canary, available) = {counts:?}; rollout status: {}{}",
                    serde_json::to_string(&rollout.status).unwrap_or_default(),
                    no_status_hint(rollout.status.is_none())
                )))
            }
        }
    }
}

fn no_status_hint(missing: bool) -> &'static str {
    if missing {
        " (no controller wrote a status: is Sluice running and watching this namespace?)"
    } else {
        ""
    }
}

pub fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

pub fn at_step(rollout: &Rollout, step: i32) -> bool {
    rollout.status.as_ref().and_then(|s| s.current_step_index) == Some(step)
}

pub fn stable_hash(rollout: &Rollout) -> Option<String> {
    rollout.status.as_ref().and_then(|s| s.stable_rs.clone())
}

pub fn canary_hash(rollout: &Rollout) -> Option<String> {
    rollout.status.as_ref().and_then(|s| s.current_pod_hash.clone())
}

/// Fails the scenario with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> anyhow::Result<()> {
    if condition { Ok(()) } else { bail!(message()) }
}
