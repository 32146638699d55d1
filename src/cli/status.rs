//! `sluice status NAME`: waits for a rollout to settle and says how through the exit code, for CI
//! pipelines (as Argo's `kubectl argo rollouts status`): 0 Healthy, 1 Degraded, 2 not settled within
//! `--timeout`. Each change of phase or message is printed as it is seen.
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};

use super::{Error, Result, Target};
use crate::api::rollout::{Rollout, RolloutPhase};
use crate::rollout::plan::humantime;

/// Where a rollout stands for someone waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Degraded,
    /// Progressing, paused, or a status that describes an older spec than the current one.
    Waiting,
}

/// The exit code `sluice status` ends with when the rollout never settled.
pub const NOT_SETTLED_EXIT_CODE: u8 = 2;

/// What the rollout's status says now. A status written for an older generation is not trusted:
/// right after `kubectl apply` the old Healthy would otherwise end the wait before the new canary
/// has begun.
pub fn verdict(rollout: &Rollout) -> Verdict {
    let Some(status) = rollout.status.as_ref() else {
        return Verdict::Waiting;
    };
    if status.observed_generation.is_none() || status.observed_generation != rollout.metadata.generation {
        return Verdict::Waiting;
    }
    match status.phase {
        Some(RolloutPhase::Healthy) => Verdict::Healthy,
        Some(RolloutPhase::Degraded) => Verdict::Degraded,
        _ => Verdict::Waiting,
    }
}

/// One line: `Progressing - 1 of 2 replicas updated`, or `Unknown - the controller has not reported`.
pub fn describe(rollout: &Rollout) -> String {
    let Some(status) = rollout.status.as_ref() else {
        return "Unknown - the controller has not reported on it yet".into();
    };
    let phase = status.phase.map_or("Unknown".to_string(), |p| format!("{p:?}"));
    let stale = status.observed_generation.is_none() || status.observed_generation != rollout.metadata.generation;
    match status.message.as_deref().filter(|m| !m.is_empty()) {
        _ if stale => format!("{phase} - the controller has not yet seen the latest spec"),
        Some(message) => format!("{phase} - {message}"),
        None => phase,
    }
}

/// `sluice status NAME [--timeout D] [--watch=false]`. `timeout` zero waits for ever.
pub async fn status(target: &Target, name: &str, timeout: Duration, watch: bool) -> Result<()> {
    // Fails fast with a clear message when the rollout, its namespace or the CRD is missing.
    let first = target.get_rollout(name).await?;
    let mut last_line = describe(&first);
    println!("{last_line}");
    if let Some(done) = settled(name, &first) {
        return done;
    }
    if !watch {
        return Err(not_settled(name, "--watch=false", &last_line));
    }
    let changes = watcher(
        target.rollouts(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects();
    let mut changes = std::pin::pin!(changes);
    let wait = async {
        while let Some(change) = changes.next().await {
            // Watch errors are retried with backoff by the watcher; they only delay the answer.
            let Ok(rollout) = change else { continue };
            let line = describe(&rollout);
            if line != last_line {
                println!("{line}");
                last_line = line;
            }
            if let Some(done) = settled(name, &rollout) {
                return done;
            }
        }
        Err(Error::Refused(format!("rollout \"{name}\": the watch ended")))
    };
    if timeout.is_zero() {
        return wait.await;
    }
    match tokio::time::timeout(timeout, wait).await {
        Ok(done) => done,
        Err(_) => Err(not_settled(
            name,
            &format!("--timeout {}", humantime(timeout)),
            &last_line,
        )),
    }
}

fn settled(name: &str, rollout: &Rollout) -> Option<Result<()>> {
    match verdict(rollout) {
        Verdict::Healthy => Some(Ok(())),
        Verdict::Degraded => Some(Err(Error::Exit {
            code: 1,
            message: format!("rollout \"{name}\" is Degraded"),
        })),
        Verdict::Waiting => None,
    }
}

fn not_settled(name: &str, limit: &str, last: &str) -> Error {
    Error::Exit {
        code: NOT_SETTLED_EXIT_CODE,
        message: format!("rollout \"{name}\" did not settle ({limit}); last: {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::RolloutStatus;

    fn rollout(generation: i64, observed: Option<i64>, phase: Option<RolloutPhase>, message: &str) -> Rollout {
        let mut rollout = Rollout::new("web", Default::default());
        rollout.metadata.generation = Some(generation);
        rollout.status = Some(RolloutStatus {
            observed_generation: observed,
            phase,
            message: Some(message.into()).filter(|m: &String| !m.is_empty()),
            ..RolloutStatus::default()
        });
        rollout
    }

    #[test]
    fn healthy_and_degraded_settle_the_rest_waits() {
        assert_eq!(
            verdict(&rollout(2, Some(2), Some(RolloutPhase::Healthy), "")),
            Verdict::Healthy
        );
        assert_eq!(
            verdict(&rollout(2, Some(2), Some(RolloutPhase::Degraded), "aborted")),
            Verdict::Degraded
        );
        for phase in [Some(RolloutPhase::Progressing), Some(RolloutPhase::Paused), None] {
            assert_eq!(verdict(&rollout(2, Some(2), phase, "")), Verdict::Waiting);
        }
        assert_eq!(verdict(&Rollout::new("web", Default::default())), Verdict::Waiting);
    }

    #[test]
    fn a_status_for_an_older_spec_is_not_trusted() {
        let stale = rollout(3, Some(2), Some(RolloutPhase::Healthy), "done");
        assert_eq!(verdict(&stale), Verdict::Waiting);
        assert_eq!(
            describe(&stale),
            "Healthy - the controller has not yet seen the latest spec"
        );
        assert_eq!(
            verdict(&rollout(3, None, Some(RolloutPhase::Degraded), "")),
            Verdict::Waiting
        );
    }

    #[test]
    fn lines_carry_the_phase_and_message() {
        assert_eq!(
            describe(&rollout(1, Some(1), Some(RolloutPhase::Paused), "step 2/3: paused")),
            "Paused - step 2/3: paused"
        );
        assert_eq!(
            describe(&rollout(1, Some(1), Some(RolloutPhase::Healthy), "")),
            "Healthy"
        );
        assert!(describe(&Rollout::new("web", Default::default())).starts_with("Unknown - "));
    }

    #[test]
    fn exit_codes_say_how_it_ended() {
        let degraded = settled("web", &rollout(1, Some(1), Some(RolloutPhase::Degraded), "x"));
        assert_eq!(degraded.unwrap().unwrap_err().exit_code(), 1);
        assert!(
            settled("web", &rollout(1, Some(1), Some(RolloutPhase::Healthy), ""))
                .unwrap()
                .is_ok()
        );
        assert_eq!(not_settled("web", "--timeout 1s", "Progressing").exit_code(), 2);
        assert_eq!(Error::Refused("x".into()).exit_code(), 1);
    }
}
