//! Fault injection for reliability tests: error answers and extra latency per verb and resource,
//! dropped watches and compacted history. Configured by flags and changed at run time under `/sim/faults`.
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::status::ApiError;

/// One rule; empty `verbs` / `resources` match everything. Rates are fractions of matching requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultRule {
    /// Kubernetes verbs: get, list, watch, create, update, patch, delete, deletecollection.
    pub verbs: Vec<String>,
    /// Resources as `plural` or `plural.group` (e.g. `replicasets.apps`).
    pub resources: Vec<String>,
    pub internal_error_rate: f64,
    pub too_many_requests_rate: f64,
    pub conflict_rate: f64,
    pub extra_latency_ms: u64,
}

impl FaultRule {
    fn applies(&self, verb: &str, resource: &str) -> bool {
        let plural = resource.split('.').next().unwrap_or(resource);
        (self.verbs.is_empty() || self.verbs.iter().any(|v| v == verb))
            && (self.resources.is_empty() || self.resources.iter().any(|r| r == resource || r == plural))
    }

    fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("internalErrorRate", self.internal_error_rate),
            ("tooManyRequestsRate", self.too_many_requests_rate),
            ("conflictRate", self.conflict_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: must be between 0 and 1, got {rate}"));
            }
        }
        if self.internal_error_rate + self.too_many_requests_rate + self.conflict_rate > 1.0 {
            return Err("the error rates of one rule must add up to at most 1".into());
        }
        Ok(())
    }
}

/// What the request should suffer before (or instead of) being served.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub delay: Duration,
    pub error: Option<ApiError>,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: RwLock<Vec<FaultRule>>,
    /// Draws the rolls of [`Faults::roll`]; seeded when a test wants its faults replayable.
    rng: Mutex<fastrand::Rng>,
}

impl Faults {
    pub fn new(rules: Vec<FaultRule>) -> Result<Self, String> {
        let faults = Faults::default();
        faults.set(rules)?;
        Ok(faults)
    }

    /// Fault rolls drawn from `seed`: the same sequence of requests suffers the same faults.
    pub fn seeded(rules: Vec<FaultRule>, seed: u64) -> Result<Self, String> {
        let faults = Faults::new(rules)?;
        *faults.rng.lock().unwrap_or_else(|p| p.into_inner()) = fastrand::Rng::with_seed(seed);
        Ok(faults)
    }

    /// The next uniform draw in [0, 1) for [`Faults::judge`].
    pub fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64()
    }

    pub fn set(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        for (i, rule) in rules.iter().enumerate() {
            rule.validate().map_err(|e| format!("rules[{i}].{e}"))?;
        }
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        Ok(())
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Decides the fate of one request; `roll` is a uniform draw in [0, 1) (injected for tests).
    pub fn judge(&self, verb: &str, resource: &str, roll: f64) -> Verdict {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        let mut verdict = Verdict::default();
        for rule in rules.iter().filter(|r| r.applies(verb, resource)) {
            verdict.delay += Duration::from_millis(rule.extra_latency_ms);
            if verdict.error.is_some() {
                continue;
            }
            let mut threshold = rule.internal_error_rate;
            if roll < threshold {
                verdict.error = Some(ApiError::internal("injected fault: internal error"));
                continue;
            }
            threshold += rule.too_many_requests_rate;
            if roll < threshold {
                verdict.error = Some(ApiError::too_many_requests(
                    "injected fault: too many requests, please try again later",
                ));
                continue;
            }
            threshold += rule.conflict_rate;
            if roll < threshold {
                verdict.error = Some(ApiError::new(
                    409,
                    "Conflict",
                    "injected fault: the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], resources: &[&str]) -> FaultRule {
        FaultRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            internal_error_rate: 0.2,
            too_many_requests_rate: 0.3,
            conflict_rate: 0.1,
            extra_latency_ms: 5,
        }
    }

    #[test]
    fn rates_partition_the_roll() {
        let faults = Faults::new(vec![rule(&["patch"], &["replicasets.apps"])]).unwrap();
        assert_eq!(faults.judge("patch", "replicasets.apps", 0.1).error.unwrap().code, 500);
        assert_eq!(faults.judge("patch", "replicasets.apps", 0.4).error.unwrap().code, 429);
        assert_eq!(faults.judge("patch", "replicasets.apps", 0.55).error.unwrap().code, 409);
        let clean = faults.judge("patch", "replicasets.apps", 0.9);
        assert!(clean.error.is_none());
        assert_eq!(clean.delay, Duration::from_millis(5));
    }

    #[test]
    fn rules_match_verbs_and_resources_by_plural_or_full_name() {
        let faults = Faults::new(vec![rule(&[], &["pods"])]).unwrap();
        assert!(faults.judge("get", "pods", 0.0).error.is_some());
        assert!(faults.judge("get", "services", 0.0).error.is_none());
        let faults = Faults::new(vec![rule(&["create"], &[])]).unwrap();
        assert!(faults.judge("get", "pods", 0.0).error.is_none());
    }

    #[test]
    fn invalid_rates_are_refused_with_the_field() {
        let mut bad = rule(&[], &[]);
        bad.conflict_rate = 1.5;
        assert!(Faults::new(vec![bad]).unwrap_err().contains("rules[0].conflictRate"));
    }
}
