//! The API surface fuzzed in CI: a few thousand objects generated from the CRD schemas go through
//! deserialize → validate → plan (`sluice_e2e::fuzz`). A panic fails the test with the case proptest
//! shrank it to. `sluice bench fuzz --cases 100000` runs the same pipeline at scale.
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::test_runner::{Config, TestRunner};
use sluice_e2e::fuzz::{self, Kind};

/// Runs `cases` generated objects of `kind` and checks that enough of them got as far as planning:
/// a generator that drifted into objects that never deserialize would prove nothing.
fn fuzz_kind(kind: Kind, cases: u32) {
    let planned = AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&fuzz::case_strategy(kind), |case| {
            if fuzz::exercise(kind, &case).planned {
                planned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{kind}: {failure}"));
    let planned = planned.into_inner();
    assert!(
        planned >= cases / 4,
        "only {planned} of {cases} {kind} cases reached planning"
    );
}

// Case counts keep each test to a few seconds in a debug build; a Rollout case (two worlds, two plans
// each) costs about four times the others.
#[test]
fn hostile_rollouts_never_panic() {
    fuzz_kind(Kind::Rollout, 300);
}

#[test]
fn hostile_analysis_templates_never_panic() {
    fuzz_kind(Kind::AnalysisTemplate, 600);
}

#[test]
fn hostile_analysis_runs_never_panic() {
    fuzz_kind(Kind::AnalysisRun, 600);
}

#[test]
fn hostile_gitsyncs_never_panic() {
    fuzz_kind(Kind::GitSync, 600);
}
