//! Restarts (spec.restartAt): pods created before it are replaced, within maxUnavailable.
use super::{Action, ObservedPod, Planner};
use crate::rollout::replicas::ScaleLimits;

impl Planner<'_> {
    /// Restarts (spec.restartAt): replace pods created before it, within maxUnavailable.
    pub(super) fn restart(&mut self, limits: ScaleLimits) {
        let Some(restart_at) = self.rollout.spec.restart_at else {
            return;
        };
        if self.status.restarted_at.is_some_and(|done| done >= restart_at) {
            return;
        }
        if restart_at > self.now {
            self.requeue_in((restart_at - self.now).to_std().unwrap_or_default());
            return;
        }
        let stale: Vec<&ObservedPod> = self
            .observed
            .pods
            .iter()
            .filter(|p| p.created_at < restart_at)
            .collect();
        if stale.is_empty() {
            self.status.restarted_at = Some(restart_at);
            self.event("RolloutRestarted", "every pod was restarted");
            return;
        }
        let ready = i64::try_from(self.observed.pods.iter().filter(|p| p.ready).count()).unwrap_or(i64::MAX);
        // In i64: maxUnavailable may be any i32, and replicas − maxUnavailable − ready overflows i32.
        let room = ready.saturating_sub(i64::from(self.replicas) - i64::from(limits.max_unavailable));
        let not_ready_stale = stale.iter().filter(|p| !p.ready).count();
        if not_ready_stale > 0 {
            return; // wait for replacements to become ready before taking more down
        }
        let mut stale = stale;
        stale.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        for pod in stale.into_iter().take(usize::try_from(room).unwrap_or(0)) {
            self.actions.push(Action::DeletePod { name: pod.name.clone() });
        }
    }
}
