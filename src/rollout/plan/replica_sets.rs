//! The Rollout's ReplicaSets: creating the one of the current template (or reviving it on undo),
//! scaling one, and the basic canary's scaling, where replica counts carry the traffic weight.
use super::{Action, GIT_REVISION_ANNOTATION, ObservedReplicaSet, Planner};
use crate::rollout::replicas::{self, ReplicaSetCounts, RolloutReplicaSets, ScaleLimits, ScalePlan};

impl Planner<'_> {
    /// The Git commit of the template (GitSync's annotation on the Rollout).
    fn git_revision(&self) -> Option<String> {
        self.rollout
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(GIT_REVISION_ANNOTATION))
            .cloned()
    }

    /// The revision a new (or revived) ReplicaSet gets: one past the newest.
    pub(super) fn next_revision(&self, live: &[&ObservedReplicaSet]) -> i64 {
        // Saturating: the revision comes from an annotation anyone may write.
        live.iter().map(|rs| rs.revision).max().unwrap_or(0).saturating_add(1)
    }

    /// Makes sure the ReplicaSet of the current template exists with `replicas` pods, returning it if
    /// it already existed.
    pub(super) fn ensure_current<'r>(
        &mut self,
        live: &[&'r ObservedReplicaSet],
        replicas: i32,
    ) -> Option<&'r ObservedReplicaSet> {
        let revision = self.next_revision(live);
        match live.iter().find(|rs| rs.hash == self.current_hash) {
            Some(rs) => {
                let newest = live.iter().all(|other| other.revision <= rs.revision);
                if !newest {
                    // Undo to an old template: the old ReplicaSet becomes the newest revision.
                    self.actions.push(Action::SetRevision {
                        name: rs.name.clone(),
                        revision,
                    });
                }
                Some(rs)
            }
            None => {
                let name = self.rs_name(&self.current_hash);
                self.actions.push(Action::CreateReplicaSet {
                    name: name.clone(),
                    hash: self.current_hash.clone(),
                    revision,
                    replicas,
                    git_revision: self.git_revision(),
                });
                self.event_or_join(
                    "NewRevision",
                    "NewReplicaSet",
                    format!("created ReplicaSet {name} (revision {revision}) with {replicas} replicas"),
                );
                None
            }
        }
    }

    /// Scales `rs` to `replicas` unless it has that already.
    pub(super) fn scale(&mut self, rs: &ObservedReplicaSet, replicas: i32) {
        if rs.spec_replicas != replicas {
            self.actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas,
            });
            self.event(
                "ScalingReplicaSet",
                format!("scaled ReplicaSet {} from {} to {replicas}", rs.name, rs.spec_replicas),
            );
        }
    }

    /// Splits the ReplicaSets other than `exclude` into the biggest (the one being scaled away first
    /// as "canary") and the rest (older), newest first.
    pub(super) fn split_others<'r>(
        &self,
        live: &[&'r ObservedReplicaSet],
        exclude: &[&str],
    ) -> (Option<&'r ObservedReplicaSet>, Vec<&'r ObservedReplicaSet>) {
        let mut others: Vec<&ObservedReplicaSet> = live
            .iter()
            .filter(|rs| !exclude.contains(&rs.hash.as_str()))
            .copied()
            .collect();
        others.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
        let biggest = others
            .iter()
            .enumerate()
            .max_by_key(|(_, rs)| (rs.spec_replicas, rs.revision))
            .map(|(i, _)| i);
        match biggest {
            Some(i) => {
                let canary = others.remove(i);
                (Some(canary), others)
            }
            None => (None, others),
        }
    }

    fn counts(rs: Option<&ObservedReplicaSet>) -> ReplicaSetCounts {
        rs.map(|rs| ReplicaSetCounts {
            spec: rs.spec_replicas,
            available: rs.available.min(rs.spec_replicas),
        })
        .unwrap_or_default()
    }

    fn current_counts(
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
    ) -> RolloutReplicaSets {
        RolloutReplicaSets {
            stable: Self::counts(Some(stable)),
            canary: Self::counts(canary),
            older: older.iter().map(|rs| Self::counts(Some(rs))).collect(),
        }
    }

    /// Whether the replica counts of `weight` are reached, with every desired pod available.
    pub(super) fn weight_reached(
        &self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        weight: i32,
        limits: ScaleLimits,
    ) -> bool {
        replicas::step_reached(
            self.replicas,
            weight,
            limits,
            &Self::current_counts(stable, Some(canary), older),
        )
    }

    /// Scales stable, canary and older ReplicaSets one reconcile towards `weight` (basic canary).
    pub(super) fn scale_basic(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
        weight: i32,
        limits: ScaleLimits,
    ) {
        let current = Self::current_counts(stable, canary, older);
        let plan: ScalePlan = replicas::plan_basic_canary(self.replicas, weight, limits, &current);
        self.scale(stable, plan.stable);
        if let Some(canary) = canary {
            self.scale(canary, plan.canary);
        }
        for (rs, replicas) in older.iter().zip(plan.older) {
            self.scale(rs, replicas);
        }
    }

    /// Pods a canary ReplicaSet that does not exist yet is created with: in a basic canary that is
    /// moving, what scaling towards the current step's weight would give it once it exists (within the
    /// surge), which saves a scale write; otherwise none.
    pub(super) fn initial_canary_replicas(
        &self,
        live: &[&ObservedReplicaSet],
        stable: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        limits: ScaleLimits,
    ) -> i32 {
        let exists = live.iter().any(|rs| rs.hash == self.current_hash);
        if exists || self.routed || self.status.is_aborted() || self.rollout.spec.is_paused() {
            return 0;
        }
        let weight = self.weight_at(self.step_index());
        let empty = self.unobserved(&self.current_hash, 0);
        let current = Self::current_counts(stable, Some(&empty), older);
        replicas::plan_basic_canary(self.replicas, weight, limits, &current).canary
    }

    /// The ReplicaSet for `hash` as it will be once created with `replicas` (no pods yet).
    pub(super) fn unobserved(&self, hash: &str, replicas: i32) -> ObservedReplicaSet {
        ObservedReplicaSet {
            name: self.rs_name(hash),
            hash: hash.to_string(),
            revision: 0,
            spec_replicas: replicas,
            pods: 0,
            ready: 0,
            available: 0,
            git_revision: None,
            created_at: None,
            deleting: false,
            scale_down_at: None,
            pod_metadata: None,
        }
    }
}
