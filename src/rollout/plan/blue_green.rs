//! Blue-green (Argo's semantics): the new version comes up beside the stable one behind the preview
//! Service; once it has its preview pods available, passed its prePromotionAnalysis and was promoted
//! (or promotes itself), it goes to full scale and — only when every pod is available — the active
//! Service switches to it. A postPromotionAnalysis then decides whether it becomes stable (the old
//! version keeps its pods for scaleDownDelaySeconds) or the active Service switches back. An abort at
//! any point puts both Services on stable, which never lost a pod.
use chrono::{DateTime, Utc};

use super::analysis::run_ref;
use super::routed::delay_seconds;
use super::{Action, AnalysisKind, ObservedReplicaSet, Planner};
use crate::api::analysis::AnalysisPhase;
use crate::api::duration::deadline_after;
use crate::api::rollout::{BlueGreenStatus, BlueGreenStrategy, PauseCondition, PauseReason, RolloutAnalysis};

impl Planner<'_> {
    /// The blue-green flow, dispatched from `run` for a Rollout with `strategy.blueGreen`.
    pub(super) fn blue_green(&mut self, live: &[&ObservedReplicaSet], stable: Option<String>) {
        let Some(strategy) = self.rollout.spec.blue_green().cloned() else {
            return;
        };
        match stable {
            None => {
                // Nothing serves yet: the first version is active (and preview) at once, as in Argo.
                self.first_deployment(live);
                self.status.canary_weight = None;
                let current = self.current_hash.clone();
                self.point_services(&strategy, &current, &current);
            }
            Some(stable) if stable == self.current_hash => self.blue_green_steady(&strategy, live, &stable),
            Some(stable) => self.blue_green_rollout(&strategy, live, &stable),
        }
    }

    /// The template is the stable one: both Services on it, at full scale; old versions leave as their
    /// scale-down deadlines pass (an undo or a GitSync pin after an abort lands here too).
    fn blue_green_steady(&mut self, strategy: &BlueGreenStrategy, live: &[&ObservedReplicaSet], stable: &str) {
        if self.old.current_pod_hash.as_deref().is_some_and(|h| h != stable) {
            self.event(
                "RolledBack",
                format!(
                    "the template is the stable revision again: {} is active",
                    self.rs_name(stable)
                ),
            );
        }
        self.status.current_pod_hash = Some(stable.to_string());
        self.status.current_step_index = Some(0);
        self.clear_progress_state();
        let Some(stable_rs) = live.iter().find(|rs| rs.hash == stable).copied() else {
            return;
        };
        self.scale(stable_rs, self.replicas);
        self.point_services(strategy, stable, stable);
        let older: Vec<&ObservedReplicaSet> = live.iter().filter(|rs| rs.hash != stable).copied().collect();
        self.scale_down_old(strategy, &older, true);
        self.terminate_analysis_runs(|_| true);
    }

    /// A new template: preview first, the switch after promotion, then stable.
    fn blue_green_rollout(&mut self, strategy: &BlueGreenStrategy, live: &[&ObservedReplicaSet], stable: &str) {
        let Some(stable_rs) = live.iter().find(|rs| rs.hash == stable).copied() else {
            return;
        };
        if self.old.current_pod_hash.as_deref() != Some(self.current_hash.as_str()) {
            self.supersede_in_flight();
            self.clear_progress_state();
            self.status.current_step_index = Some(0);
            let existing = live.iter().find(|rs| rs.hash == self.current_hash);
            if let Some(back) = existing.filter(|rs| self.within_rollback_window(live, rs.revision)) {
                // As for a canary's steps: a return to a recent revision skips the analyses and the
                // pause. The switch still waits for every pod to be available.
                self.status.promote_full = Some(true);
                self.event(
                    "RolledBack",
                    format!(
                        "revision {} ({}) is within the rollback window: promoted without analysis or pause",
                        back.revision, self.current_hash
                    ),
                );
            } else {
                self.event(
                    "NewRevision",
                    format!(
                        "rolling out revision {} blue-green: preview first, the active Service switches on promotion",
                        self.current_hash
                    ),
                );
            }
        }
        self.status.current_pod_hash = Some(self.current_hash.clone());
        self.handle_manual_controls();
        let older: Vec<&ObservedReplicaSet> = live
            .iter()
            .filter(|rs| rs.hash != stable && rs.hash != self.current_hash)
            .copied()
            .collect();
        let preview_replicas = self.preview_replicas(strategy);
        let initial = if self.status.is_aborted() { 0 } else { preview_replicas };
        let new_rs = self.ensure_current(live, initial);
        // The stable version keeps every pod until the new one is stable: it is what active returns to.
        self.scale(stable_rs, self.replicas);
        if self.status.is_aborted() {
            self.blue_green_aborted(strategy, stable_rs, new_rs, &older);
            return;
        }
        self.scale_down_old(strategy, &older, false);
        let current = self.current_hash.clone();
        if self.switched(strategy) {
            self.point_services(strategy, &current, &current);
            if let Some(new_rs) = new_rs
                && !self.rollout.spec.is_paused()
            {
                self.after_switch(strategy, stable_rs, new_rs, &older);
            }
            return;
        }
        self.point_services(strategy, stable, &current);
        let Some(new_rs) = new_rs else {
            return; // created in this reconcile, with its preview pods
        };
        if self.rollout.spec.is_paused() {
            return;
        }
        self.before_switch(strategy, stable_rs, new_rs, &older);
    }

    /// Pods of the new version before promotion: previewReplicaCount, at most spec.replicas.
    fn preview_replicas(&self, strategy: &BlueGreenStrategy) -> i32 {
        strategy
            .preview_replica_count
            .unwrap_or(self.replicas)
            .clamp(0, self.replicas.max(0))
    }

    /// Whether the active Service already serves the current template (the switch happened): from the
    /// last status, or from the Service itself when that status write was lost.
    fn switched(&self, strategy: &BlueGreenStrategy) -> bool {
        let current = Some(self.current_hash.as_str());
        let in_status = self
            .old
            .blue_green
            .as_ref()
            .is_some_and(|b| b.active_selector.as_deref() == current);
        let in_service = self
            .observed
            .services
            .iter()
            .any(|s| s.name == strategy.active_service && s.selector_hash.as_deref() == current);
        in_status || in_service
    }

    /// Preview pods available → prePromotionAnalysis → pause (unless autoPromotionEnabled) → full scale,
    /// every pod available → switch.
    fn before_switch(
        &mut self,
        strategy: &BlueGreenStrategy,
        stable_rs: &ObservedReplicaSet,
        new_rs: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
    ) {
        let preview = self.preview_replicas(strategy);
        if new_rs.spec_replicas < preview || new_rs.available < preview || new_rs.spec_replicas > self.replicas {
            // Never below the preview count, never above spec.replicas; a promoted one keeps its pods.
            self.scale(new_rs, new_rs.spec_replicas.clamp(preview, self.replicas.max(preview)));
            return;
        }
        if let Some(analysis) = strategy.pre_promotion_analysis.clone()
            && self.status.promote_full != Some(true)
            && !self.promotion_analysis(AnalysisKind::PrePromotion, analysis, "pre-promotion analysis")
        {
            if self.status.is_aborted() {
                self.blue_green_aborted(strategy, stable_rs, Some(new_rs), older);
            }
            return;
        }
        if !self.promotion_granted(strategy) {
            return;
        }
        self.scale(new_rs, self.replicas);
        if new_rs.spec_replicas < self.replicas || new_rs.available < self.replicas {
            return; // the switch waits until every pod of the new version is available
        }
        self.status.promoted_step = None;
        self.status.pause_conditions.clear();
        self.status.controller_pause = None;
        let current = self.current_hash.clone();
        self.event(
            "ActiveServiceSwitched",
            format!(
                "Service {} now selects {} ({} pods available)",
                strategy.active_service, new_rs.name, new_rs.available
            ),
        );
        self.point_services(strategy, &current, &current);
        self.after_switch(strategy, stable_rs, new_rs, older);
    }

    /// The gate before the switch: autoPromotionEnabled, `sluice promote` (promotedStep 0 or
    /// promoteFull), or autoPromotionSeconds after the pause began. Pauses (BlueGreenPause) otherwise.
    fn promotion_granted(&mut self, strategy: &BlueGreenStrategy) -> bool {
        let paused_since = self
            .status
            .pause_conditions
            .iter()
            .find(|c| c.reason == PauseReason::BlueGreenPause)
            .map(|c| c.start_time);
        let promoted = self.status.promoted_step == Some(0) || self.status.promote_full == Some(true);
        if strategy.is_auto_promotion_enabled() || promoted {
            if paused_since.is_some() {
                self.event("RolloutPromoted", "promoted: switching the active Service");
            }
            self.release_pause(PauseReason::BlueGreenPause);
            return true;
        }
        let started = match paused_since {
            Some(started) => started.min(self.now),
            None => {
                self.status.pause_conditions.push(PauseCondition {
                    reason: PauseReason::BlueGreenPause,
                    start_time: self.now,
                });
                self.event(
                    "RolloutPaused",
                    format!(
                        "paused before switching Service {} to {}: `sluice promote` continues",
                        strategy.active_service, self.current_hash
                    ),
                );
                self.now
            }
        };
        self.status.controller_pause = Some(true);
        if let Some(seconds) = strategy.auto_promotion_seconds {
            let delay = delay_seconds(seconds);
            let ends = deadline_after(started, delay);
            if self.now >= ends {
                // Recorded as a promotion, so the pause is not taken again while the pods scale up.
                self.status.promoted_step = Some(0);
                self.release_pause(PauseReason::BlueGreenPause);
                self.event(
                    "RolloutPromoted",
                    format!("autoPromotionSeconds ({seconds}s) passed: switching the active Service"),
                );
                return true;
            }
            self.requeue_in((ends - self.now).to_std().unwrap_or_default());
        }
        false
    }

    fn release_pause(&mut self, reason: PauseReason) {
        self.status.pause_conditions.retain(|c| c.reason != reason);
        if self.status.pause_conditions.is_empty() {
            self.status.controller_pause = None;
        }
    }

    /// Active serves the new version: it keeps full scale while postPromotionAnalysis judges it; then it
    /// becomes stable and the previous version gets its scale-down deadline.
    fn after_switch(
        &mut self,
        strategy: &BlueGreenStrategy,
        stable_rs: &ObservedReplicaSet,
        new_rs: &ObservedReplicaSet,
        older: &[&ObservedReplicaSet],
    ) {
        self.scale(new_rs, self.replicas);
        if let Some(analysis) = strategy.post_promotion_analysis.clone()
            && self.status.promote_full != Some(true)
            && !self.promotion_analysis(AnalysisKind::PostPromotion, analysis, "post-promotion analysis")
        {
            if self.status.is_aborted() {
                self.blue_green_aborted(strategy, stable_rs, Some(new_rs), older);
            }
            return;
        }
        self.status.stable_rs = Some(self.current_hash.clone());
        self.status.promote_full = None;
        self.status.promoted_step = None;
        self.status.step_started_at = None;
        self.status.pause_conditions.clear();
        self.status.controller_pause = None;
        if let Some(blue_green) = self.status.blue_green.as_mut() {
            blue_green.pre_promotion_analysis_run = None;
            blue_green.post_promotion_analysis_run = None;
        }
        self.terminate_analysis_runs(|_| true);
        self.event(
            "RolloutCompleted",
            format!("revision {} ({}) is now stable", new_rs.revision, self.current_hash),
        );
        if stable_rs.spec_replicas > 0 {
            let delay = delay_seconds(strategy.scale_down_delay_seconds_or_default());
            self.actions.push(Action::SetScaleDownDeadline {
                name: stable_rs.name.clone(),
                at: deadline_after(self.now, delay),
            });
            self.requeue_in(delay);
        }
    }

    /// Creates and follows a promotion AnalysisRun; true once it passed. An inconclusive run pauses;
    /// `sluice promote` then counts it as passed.
    fn promotion_analysis(&mut self, kind: AnalysisKind, analysis: RolloutAnalysis, what: &str) -> bool {
        let Some(run) = self.current_run(kind) else {
            let name = self.start_run(kind, analysis);
            self.event("AnalysisRunCreated", format!("started {what} {name}"));
            return false;
        };
        self.set_run_ref(kind, run_ref(&run));
        if run.phase == AnalysisPhase::Inconclusive && self.status.promoted_step == Some(0) {
            self.status.promoted_step = None;
            self.release_pause(PauseReason::InconclusiveAnalysisRun);
            self.event(
                "RolloutPromoted",
                format!("{what} {} was inconclusive and is promoted past", run.name),
            );
            return true;
        }
        self.follow_verdict(&run, what)
    }

    /// Aborted: both Services back on stable first (it kept all its pods), the new version's pods go
    /// after abortScaleDownDelaySeconds, every analysis stops.
    fn blue_green_aborted(
        &mut self,
        strategy: &BlueGreenStrategy,
        stable_rs: &ObservedReplicaSet,
        new_rs: Option<&ObservedReplicaSet>,
        older: &[&ObservedReplicaSet],
    ) {
        let stable = stable_rs.hash.clone();
        self.point_services(strategy, &stable, &stable);
        self.scale(stable_rs, self.replicas);
        self.scale_down_old(strategy, older, false);
        self.terminate_aborted_attempt();
        let Some(new_rs) = new_rs else { return };
        let delay = delay_seconds(strategy.abort_scale_down_delay_seconds_or_default());
        let aborted_at = self.status.aborted_at.unwrap_or(self.now).min(self.now);
        let deadline = deadline_after(aborted_at, delay);
        if self.now >= deadline {
            self.scale(new_rs, 0);
        } else {
            self.requeue_in((deadline - self.now).to_std().unwrap_or_default());
        }
    }

    /// Old ReplicaSets: each waits for its scale-down deadline, at most scaleDownDelayRevisionLimit of
    /// them (newest first), the rest go at once. Without a deadline one is set (`set_missing`, when
    /// steady: it just stopped being active) or it goes at once (it never was active).
    fn scale_down_old(&mut self, strategy: &BlueGreenStrategy, older: &[&ObservedReplicaSet], set_missing: bool) {
        let mut running: Vec<&ObservedReplicaSet> = older.iter().filter(|rs| rs.spec_replicas > 0).copied().collect();
        running.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
        let limit = strategy
            .scale_down_delay_revision_limit
            .map(|l| usize::try_from(l).unwrap_or(0));
        let delay = delay_seconds(strategy.scale_down_delay_seconds_or_default());
        for (i, rs) in running.into_iter().enumerate() {
            if limit.is_some_and(|limit| i >= limit) {
                self.scale(rs, 0);
                continue;
            }
            match rs.scale_down_at {
                Some(at) if self.now >= at => self.scale(rs, 0),
                Some(at) => self.requeue_in((at - self.now).to_std().unwrap_or_default()),
                None if set_missing => {
                    self.actions.push(Action::SetScaleDownDeadline {
                        name: rs.name.clone(),
                        at: deadline_after(self.now, delay),
                    });
                    self.requeue_in(delay);
                }
                None => self.scale(rs, 0),
            }
        }
    }

    /// Points activeService at `active` and previewService at `preview`, recording both in
    /// status.blueGreen; a role that moves takes its metadata along, written before the selector.
    fn point_services(&mut self, strategy: &BlueGreenStrategy, active: &str, preview: &str) {
        let preview_now = strategy.preview_service.as_ref().map(|_| preview.to_string());
        // Each goes to the front: preview first, so active ends up moving first.
        if let Some(service) = strategy.preview_service.clone() {
            self.point_service(service, preview);
        }
        self.point_service(strategy.active_service.clone(), active);
        let blue_green = self.status.blue_green.get_or_insert_with(BlueGreenStatus::default);
        blue_green.active_selector = Some(active.to_string());
        blue_green.preview_selector = preview_now;
    }
}

/// When `at` lies in the future relative to `now` (for the settled test of finish).
pub(super) fn pending(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    at.is_some_and(|at| at > now)
}
