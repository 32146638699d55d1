//! The analysis engine: turns metric measurements into the verdict a Rollout acts on.
//!
//! Everything here except `providers` and `allowlist` is pure — no client, no clock, no network — so the
//! AnalysisRun controller only observes, calls [`rules::step`], measures what it is told to, and writes
//! the status back:
//!
//! ```text
//! let plan = rules::step(&run.spec, run.status.as_ref(), now, vec![]);     // what is due?
//! for metric in plan.measure { measure it (allowlist, secrets, provider) → MeasurementOutcome }
//! let plan = rules::step(&run.spec, Some(&plan.status), now, outcomes);    // record + assess
//! patch status = plan.status; requeue after plan.requeue_after
//! ```
//!
//! The controller splits the second call: it judges each outcome off the async runtime under a time
//! budget ([`reconcile::judge_within_budget`], conditions are hostile CEL) and records the judged
//! measurements with [`rules::step_judged`], which also keeps the status under
//! [`MAX_STATUS_BYTES`](crate::bounds::MAX_STATUS_BYTES).
//!
//! - [`template`] builds an AnalysisRun spec from templates and arguments,
//! - [`condition`] compiles and evaluates successCondition / failureCondition (CEL),
//! - [`rules`] holds the measurement → metric → run verdict rules and the scheduling,
//! - [`backtest`] replays the rules over Prometheus history (what a template would have said),
//! - [`providers`] query Prometheus or a web endpoint, and [`allowlist`] restricts where they may go.
use std::fmt;

use chrono::{DateTime, Utc};

pub mod allowlist;
pub mod backtest;
pub mod condition;
pub mod providers;
pub mod reconcile;
pub mod rules;
pub mod template;

/// What a provider measured; conditions see it as `result`.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultValue {
    /// A single number (a PromQL scalar, a JSON number or numeric string): `result >= 0.95`.
    Scalar(f64),
    /// Numbers in series order (a PromQL instant vector, a JSON array): `result[0] >= 0.95`. Empty when
    /// the query matched no series.
    Vector(Vec<f64>),
    /// A JSON boolean from a web metric: `result == true`.
    Bool(bool),
    /// A non-numeric JSON string from a web metric: `result == "ok"`.
    Text(String),
}

impl ResultValue {
    /// No evidence either way: an empty vector or any NaN. Such results follow the metric's `onNoData`
    /// and never reach the conditions (see [`rules::assess_measurement`]).
    pub fn is_no_data(&self) -> bool {
        match self {
            ResultValue::Scalar(value) => value.is_nan(),
            ResultValue::Vector(values) => values.is_empty() || values.iter().any(|v| v.is_nan()),
            ResultValue::Bool(_) | ResultValue::Text(_) => false,
        }
    }
}

/// The text stored in `Measurement.value`: `0.99`, `[0.99, 1]`, `[]`, `NaN`, `+Inf`, `true`, `"ok"`.
impl fmt::Display for ResultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn number(f: &mut fmt::Formatter<'_>, value: f64) -> fmt::Result {
            // Prometheus' own spelling, so the value reads the same as in the Prometheus UI.
            if value.is_nan() {
                f.write_str("NaN")
            } else if value.is_infinite() {
                f.write_str(if value > 0.0 { "+Inf" } else { "-Inf" })
            } else {
                write!(f, "{value}")
            }
        }
        match self {
            ResultValue::Scalar(value) => number(f, *value),
            ResultValue::Vector(values) => {
                f.write_str("[")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    number(f, *value)?;
                }
                f.write_str("]")
            }
            ResultValue::Bool(value) => write!(f, "{value}"),
            ResultValue::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// One finished measurement, as the controller hands it to [`rules::step`].
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurementOutcome {
    /// When the provider was called.
    pub started_at: DateTime<Utc>,
    /// When it answered (or gave up). The next measurement is scheduled from here.
    pub finished_at: DateTime<Utc>,
    /// The query or URL as sent, for the status — with secret arguments still as `{{args.NAME}}`
    /// (see [`template::recorded_query`]), so credentials never land in the AnalysisRun.
    pub query: Option<String>,
    /// The value, or why there is none (connection refused, timeout, HTTP or PromQL error, address not
    /// allowed, Secret missing …). An `Err` is an Error measurement: retried 10 s later.
    pub value: Result<ResultValue, String>,
}

#[cfg(test)]
mod tests {
    use super::ResultValue::*;

    #[test]
    fn no_data_is_empty_or_nan() {
        assert!(Vector(vec![]).is_no_data());
        assert!(Vector(vec![1.0, f64::NAN]).is_no_data());
        assert!(Scalar(f64::NAN).is_no_data());
        assert!(!Scalar(f64::INFINITY).is_no_data());
        assert!(!Vector(vec![0.0]).is_no_data());
        assert!(!Bool(false).is_no_data());
    }

    #[test]
    fn values_display_like_prometheus() {
        assert_eq!(Scalar(0.99).to_string(), "0.99");
        assert_eq!(Scalar(1.0).to_string(), "1");
        assert_eq!(
            Vector(vec![0.5, f64::NAN, f64::NEG_INFINITY]).to_string(),
            "[0.5, NaN, -Inf]"
        );
        assert_eq!(Vector(vec![]).to_string(), "[]");
        assert_eq!(Scalar(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Text("ok".into()).to_string(), "\"ok\"");
        assert_eq!(Bool(true).to_string(), "true");
    }
}
