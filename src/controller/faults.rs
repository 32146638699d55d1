//! Fault injection for tests (feature `fault-injection`, turned on only by the e2e and app crates'
//! dev-dependencies, so never in a binary built without its tests): an object annotated `faults.sluice.dev/panic` makes the controller reconciling it
//! panic — `reconcile`: inside the reconcile, which the isolation turns into that object's error;
//! `controller`: outside it, which ends the controller's task as a bug in the wiring would.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::keys::FAULT_PANIC_ANNOTATION;

/// `faults.sluice.dev/panic: reconcile`.
pub const PANIC_IN_RECONCILE: &str = "reconcile";
/// `faults.sluice.dev/panic: controller`.
pub const PANIC_IN_CONTROLLER: &str = "controller";

fn asked(meta: &ObjectMeta, fault: &str) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(FAULT_PANIC_ANNOTATION))
        .is_some_and(|value| value == fault)
}

pub fn panic_in_reconcile_if_asked(meta: &ObjectMeta) {
    if asked(meta, PANIC_IN_RECONCILE) {
        panic!("fault injected by {FAULT_PANIC_ANNOTATION}: {PANIC_IN_RECONCILE}");
    }
}

pub fn panic_outside_reconcile_if_asked(meta: &ObjectMeta) {
    if asked(meta, PANIC_IN_CONTROLLER) {
        panic!("fault injected by {FAULT_PANIC_ANNOTATION}: {PANIC_IN_CONTROLLER}");
    }
}
