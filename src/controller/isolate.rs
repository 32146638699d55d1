//! Reconciles run isolated: a panic in one (a bug meeting some user's value) becomes an error of that
//! object's reconcile — logged with the panic message, counted, recorded on the object as a Warning
//! event and retried with the error backoff — instead of ending the controller's task, which would stop
//! every other object's progress while the process still looked healthy.
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::events::{Event, EventType, Recorder};
use crate::observe::Observer;

/// Reason of the Warning event on an object whose reconcile panicked.
pub const PANICKED_REASON: &str = "ReconcilePanicked";

/// Where a panicking reconcile is reported.
#[derive(Clone, Copy)]
pub struct PanicReport<'a> {
    /// "rollout", "analysisrun" or "gitsync", as in the reconcile metrics.
    pub controller: &'static str,
    pub metrics: &'a dyn Observer,
    /// Records the Warning event on the object; None where the controller records no events.
    pub recorder: Option<&'a Recorder>,
}

/// Runs `reconcile` of `object`; a panic in it is reported and turned into the error `panicked`
/// builds from the panic message, so the error policy backs off as for any failed reconcile.
///
/// Unwind safety: what a reconcile shares (caches, expectations, metrics) sits behind locks whose
/// poisoning every user tolerates, and each reconcile plans afresh from the caches, so state a panic
/// left half-written is at worst stale for one reconcile.
pub async fn isolated<K, T, E>(
    object: &K,
    report: PanicReport<'_>,
    reconcile: impl Future<Output = Result<T, E>>,
    panicked: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    K: Resource<DynamicType = ()>,
{
    #[cfg(feature = "fault-injection")]
    super::faults::panic_outside_reconcile_if_asked(object.meta());
    // Without the test hook the wrapper is the reconcile itself.
    #[allow(clippy::redundant_async_block)]
    let outcome = AssertUnwindSafe(async {
        #[cfg(feature = "fault-injection")]
        super::faults::panic_in_reconcile_if_asked(object.meta());
        reconcile.await
    })
    .catch_unwind()
    .await;
    let payload = match outcome {
        Ok(result) => return result,
        Err(payload) => payload,
    };
    let message = panic_message(payload.as_ref());
    tracing::error!(
        controller = report.controller,
        object = %ObjectRef::from_obj(object),
        panic = %message,
        "reconcile panicked; retrying with backoff"
    );
    report.metrics.count_reconcile_panic(report.controller);
    if let Some(recorder) = report.recorder {
        let event = Event {
            type_: EventType::Warning,
            reason: PANICKED_REASON.into(),
            note: Some(
                format!("reconcile panicked (a bug in Sluice; retrying with backoff): {message}")
                    .chars()
                    .take(1024)
                    .collect(),
            ),
            action: "Reconcile".into(),
            secondary: None,
        };
        // Best effort, as every event: the error and the metric already carry the panic.
        if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
            tracing::debug!(error = %e, "could not record the ReconcilePanicked event");
        }
    }
    Err(panicked(message))
}

/// The message a panic was raised with (`panic!` with a literal gives a `&str`, with arguments a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message.to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{CanaryStep, Rollout};
    use crate::controller::metrics::Metrics;

    fn report(metrics: &Metrics) -> PanicReport<'_> {
        PanicReport {
            controller: "rollout",
            metrics,
            recorder: None,
        }
    }

    #[tokio::test]
    async fn a_panicking_reconcile_becomes_its_error_and_is_counted() {
        let metrics = Metrics::new();
        let rollout = Rollout::example("web", 1, vec![CanaryStep::set_weight(20)]);
        let index = 7;
        let failed: Result<(), String> = isolated(
            &rollout,
            report(&metrics),
            async { panic!("index out of bounds: the len is 3 but the index is {index}") },
            |message| format!("panicked: {message}"),
        )
        .await;
        assert_eq!(
            failed,
            Err("panicked: index out of bounds: the len is 3 but the index is 7".to_string())
        );
        let fine: Result<u8, String> = isolated(&rollout, report(&metrics), async { Ok(1) }, |m| m).await;
        assert_eq!(fine, Ok(1));
        let text = metrics.render();
        assert!(
            text.contains(r#"sluice_reconcile_panics_total{controller="rollout"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let literal = std::panic::catch_unwind(|| panic!("literal")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "literal");
        let formatted = std::panic::catch_unwind(|| panic!("{}", 42)).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "42");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(3_u8)).unwrap_err();
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
    }
}
