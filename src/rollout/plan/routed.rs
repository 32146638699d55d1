//! Planning with a traffic router: the router carries the weight, so the canary is scaled to the
//! step (or setCanaryScale) and the stable stays at full scale unless dynamicStableScale. Weights move
//! only when the pods that will receive them are available; abort sets weight 0 before any scaling;
//! completion gives the promoted version all traffic before the old ReplicaSet scales down.

use std::time::Duration;

use super::{Action, ObservedReplicaSet, Planner};
use crate::api::duration::deadline_after;
use crate::rollout::replicas::{self, CanaryScale};

/// How often to look again while the router applies a change (routes are not watched).
const ROUTER_POLL: Duration = Duration::from_secs(1);

impl Planner<'_> {
    fn traffic_weight(&self) -> Option<i32> {
        self.observed.traffic.and_then(|t| t.canary_weight)
    }

    fn traffic_ready(&self) -> bool {
        self.observed.traffic.is_some_and(|t| t.ready)
    }

    /// Writes the canary weight unless the router already has it; the write goes before any scaling
    /// planned in this reconcile (abort must move traffic first).
    fn request_weight(&mut self, weight: i32, first: bool) {
        if self.traffic_weight() == Some(weight) {
            return;
        }
        let action = Action::SetCanaryWeight { weight };
        if first {
            self.actions.insert(0, action)
        } else {
            self.actions.push(action)
        }
        self.requeue_in(ROUTER_POLL);
    }

    /// The setCanaryScale in force at step `index` (the last one at or before it).
    fn canary_scale_at(&self, index: usize) -> CanaryScale {
        let upto = index.min(self.steps.len().saturating_sub(1));
        if self.steps.is_empty() || index >= self.steps.len() {
            return CanaryScale::MatchTrafficWeight;
        }
        self.steps[..=upto]
            .iter()
            .rev()
            .find_map(|s| s.set_canary_scale.as_ref())
            .map(|scale| match (scale.replicas, scale.weight) {
                (Some(replicas), _) => CanaryScale::Replicas(replicas),
                (None, Some(weight)) => CanaryScale::Weight(weight),
                _ => CanaryScale::MatchTrafficWeight,
            })
            .unwrap_or(CanaryScale::MatchTrafficWeight)
    }

    fn percent(&self, weight: i32) -> i32 {
        // Clamped: a weight read back from a router may be anything someone wrote there.
        (i64::from(weight) * 100 / i64::from(self.max_weight.max(1))).clamp(0, 100) as i32
    }

    /// (canary, stable) replica targets at step `index` with traffic `weight`. With dynamicStableScale,
    /// stable keeps the pods for the larger of the share it is to serve and the share the router still
    /// sends it: traffic moves only once the canary's pods are up, so scaling stable down first would
    /// leave its share of the traffic with too few pods.
    pub(super) fn routed_targets(&self, index: usize, weight: i32) -> (i32, i32) {
        let percent = self.percent(weight);
        let canary = replicas::set_canary_scale_replicas(self.replicas, percent, self.canary_scale_at(index));
        let dynamic = self.rollout.spec.canary().is_dynamic_stable_scale();
        let canary_share_in_force = self.percent(self.traffic_weight().unwrap_or(0));
        let stable_share = 100 - percent.min(canary_share_in_force);
        let stable = replicas::routed_stable_replicas(self.replicas, stable_share, dynamic);
        let min_pods = self.rollout.spec.canary().min_pods_per_replica_set;
        (at_least_min_pods(canary, min_pods), at_least_min_pods(stable, min_pods))
    }

    /// Scales to the targets; older ReplicaSets get no traffic through the router and go at once.
    fn scale_routed(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
        canary_target: i32,
        stable_target: i32,
    ) {
        self.scale(stable, stable_target);
        if let Some(canary) = canary {
            self.scale(canary, canary_target);
        }
        for rs in older {
            self.scale(rs, 0);
        }
    }

    fn available_at(rs: &ObservedReplicaSet, target: i32) -> bool {
        rs.spec_replicas == target && rs.available >= target
    }

    /// Whether the routed step at `weight` is live: pods at their targets and available, the router
    /// at the weight and ready. Pure: the loop over steps asks this for every step it passes.
    pub(super) fn routed_reached(
        &self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        index: usize,
        weight: i32,
    ) -> bool {
        let (canary_target, stable_target) = self.routed_targets(index, weight);
        Self::available_at(canary, canary_target)
            && stable.spec_replicas == stable_target
            && stable.available >= stable_target
            && self.traffic_weight() == Some(weight)
            && self.traffic_ready()
    }

    /// Moves towards the routed step at `weight`: scale, then (once the canary's pods are available)
    /// move traffic, then wait for the router to accept it.
    pub(super) fn routed_step(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        index: usize,
        weight: i32,
    ) {
        let (canary_target, stable_target) = self.routed_targets(index, weight);
        self.scale_routed(stable, Some(canary), older, canary_target, stable_target);
        // Traffic follows pods: the canary's share moves only onto available canary pods.
        if canary.available < canary_target.min(canary.spec_replicas.max(canary_target)) {
            return;
        }
        if self.traffic_weight() != Some(weight) {
            self.request_weight(weight, false);
        } else if !self.traffic_ready() {
            self.requeue_in(ROUTER_POLL);
        }
    }

    /// Holds the current weight while paused.
    pub(super) fn hold_routed(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
        weight: i32,
    ) {
        let (canary_target, stable_target) = self.routed_targets(self.step_index(), weight);
        self.scale_routed(stable, Some(canary), older, canary_target, stable_target);
    }

    /// Points canaryService and stableService at the given revisions.
    pub(super) fn sync_services(&mut self, canary_hash: &str, stable_hash: &str) {
        let canary = self.rollout.spec.canary();
        let wanted = [
            (canary.canary_service, canary_hash),
            (canary.stable_service, stable_hash),
        ];
        for (service, hash) in wanted {
            let Some(service) = service else { continue };
            self.point_service(service, hash);
        }
    }

    /// Points one observed Service's selector at `hash` unless it is there already. Selectors move
    /// before any scaling in this reconcile, so no Service ever points at pods being removed (only a
    /// weight change goes earlier).
    pub(super) fn point_service(&mut self, service: String, hash: &str) {
        let observed = self.observed.services.iter().find(|s| s.name == service);
        if observed.is_none_or(|s| s.selector_hash.as_deref() == Some(hash)) {
            return;
        }
        let at = self
            .actions
            .iter()
            .take_while(|a| matches!(a, Action::SetCanaryWeight { .. }))
            .count();
        self.actions.insert(
            at,
            Action::SetServiceSelector {
                service,
                hash: hash.to_string(),
            },
        );
    }

    /// Aborted with a router: weight 0 first (or, with dynamicStableScale, only as fast as stable pods
    /// come back), stable to full scale, the canary scaled away after abortScaleDownDelaySeconds.
    pub(super) fn aborted_routed(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
    ) {
        let dynamic = self.rollout.spec.canary().is_dynamic_stable_scale();
        let weight = if dynamic && self.replicas > 0 {
            // The canary keeps the share stable cannot serve yet.
            let missing = (self.replicas - stable.available.min(self.replicas)).max(0);
            let replicas = i64::from(self.replicas);
            let allowed = ((i64::from(missing) * i64::from(self.max_weight) + replicas - 1) / replicas) as i32;
            allowed.min(self.traffic_weight().unwrap_or(0))
        } else {
            0
        };
        self.request_weight(weight, true);
        self.status.canary_weight = Some(weight);
        self.scale(stable, self.replicas);
        for rs in older {
            self.scale(rs, 0);
        }
        let Some(canary) = canary else { return };
        let delay = delay_seconds(self.rollout.spec.canary().abort_scale_down_delay_seconds_or_default());
        let aborted_at = self.status.aborted_at.unwrap_or(self.now).min(self.now);
        let deadline = deadline_after(aborted_at, delay);
        if weight == 0 && self.traffic_weight() == Some(0) && self.now >= deadline {
            self.scale(canary, 0);
        } else if self.now < deadline {
            self.requeue_in((deadline - self.now).to_std().unwrap_or_default());
        }
    }

    /// All steps done with a router: canary to full scale, all traffic to it, the stable Service moved
    /// onto it, weight back to 0 (the stable Service now is the new version), and only then the old
    /// stable is marked stable-no-more and scheduled for scale-down.
    pub(super) fn complete_routed(
        &mut self,
        stable: &ObservedReplicaSet,
        canary: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
    ) -> bool {
        let (canary_target, stable_target) = self.routed_targets(self.steps.len(), self.max_weight);
        self.scale_routed(
            stable,
            Some(canary),
            older,
            canary_target.max(self.replicas),
            stable_target,
        );
        if canary.available < self.replicas || canary.spec_replicas < self.replicas {
            return false;
        }
        let stable_service_moved = match self.rollout.spec.canary().stable_service {
            Some(name) => self
                .observed
                .services
                .iter()
                .any(|s| s.name == name && s.selector_hash.as_deref() == Some(self.current_hash.as_str())),
            None => true,
        };
        if !stable_service_moved {
            if self.traffic_weight() != Some(self.max_weight) {
                self.request_weight(self.max_weight, false);
                return false;
            }
            if !self.traffic_ready() {
                self.requeue_in(ROUTER_POLL);
                return false;
            }
            let current = self.current_hash.clone();
            self.sync_services(&current, &current);
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        if self.traffic_weight() != Some(0) {
            self.request_weight(0, false);
            return false;
        }
        if !self.traffic_ready() {
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        let delay = delay_seconds(self.rollout.spec.canary().scale_down_delay_seconds_or_default());
        self.actions.push(Action::SetScaleDownDeadline {
            name: stable.name.clone(),
            at: deadline_after(self.now, delay),
        });
        true
    }

    /// Steady with a router: traffic and Services on stable; old ReplicaSets scale down once their
    /// deadline passes (set now when they have none).
    pub(super) fn steady_routed(&mut self, live: &[&ObservedReplicaSet], stable: &ObservedReplicaSet) {
        self.request_weight(0, true);
        self.scale(stable, self.replicas);
        let delay = delay_seconds(self.rollout.spec.canary().scale_down_delay_seconds_or_default());
        let waiting: Vec<&ObservedReplicaSet> = live
            .iter()
            .filter(|rs| rs.hash != stable.hash && rs.spec_replicas > 0)
            .copied()
            .collect();
        let past_limit = past_revision_limit(&waiting, self.rollout.spec.canary().scale_down_delay_revision_limit);
        for rs in waiting {
            if past_limit.contains(&rs.name) {
                self.scale(rs, 0);
                continue;
            }
            match rs.scale_down_at {
                Some(at) if self.now >= at => self.scale(rs, 0),
                Some(at) => self.requeue_in((at - self.now).to_std().unwrap_or_default()),
                None => {
                    self.actions.push(Action::SetScaleDownDeadline {
                        name: rs.name.clone(),
                        at: deadline_after(self.now, delay),
                    });
                    self.requeue_in(delay);
                }
            }
        }
    }
}

/// minPodsPerReplicaSet (Argo's semantics): a ReplicaSet that is to have pods has at least this many,
/// so a small weight still has a pod to go to; one that is to have none keeps none.
pub(super) fn at_least_min_pods(count: i32, min_pods: Option<i32>) -> i32 {
    match min_pods {
        Some(min) if count > 0 => count.max(min),
        _ => count,
    }
}

/// scaleDownDelayRevisionLimit: of the old ReplicaSets still up waiting for their scale-down
/// deadline, the names of those beyond the newest `limit` revisions, which go to 0 at once (no limit:
/// none; a negative limit is an invalid spec, never planned, and counts as 0).
pub(super) fn past_revision_limit(waiting: &[&ObservedReplicaSet], limit: Option<i32>) -> Vec<String> {
    let Some(limit) = limit else { return vec![] };
    let mut newest_first: Vec<&ObservedReplicaSet> = waiting.to_vec();
    newest_first.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
    newest_first
        .into_iter()
        .skip(usize::try_from(limit).unwrap_or(0))
        .map(|rs| rs.name.clone())
        .collect()
}

/// A `*DelaySeconds` field as a wait; negative (an invalid spec, never planned) counts as none.
pub(super) fn delay_seconds(seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}
