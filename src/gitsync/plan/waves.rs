//! Sync waves, with Argo CD's semantics (its hooks are out of scope): an object annotated
//! `sluice.dev/sync-wave: "N"` belongs to wave N (default 0); waves are applied in ascending order,
//! each healthy before the next is applied. A reconcile applies the waves up to the first one that
//! is not healthy yet and stops there; the next reconcile applies them again (a no-op with
//! server-side apply) and goes on. CRDs and Namespaces still come first, whatever their wave: every
//! other object may need them to be served.
use std::ops::Range;

use serde_json::Value;

pub use crate::api::keys::SYNC_WAVE_ANNOTATION;
use crate::bounds::truncate;
use crate::gitsync::health::Health;

/// The wave of `object`: its `sluice.dev/sync-wave` annotation, a whole number (i32); 0 without it.
/// The error quotes the value (cut short); the caller names the field.
pub fn wave_of(object: &Value) -> Result<i32, String> {
    let Some(value) = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SYNC_WAVE_ANNOTATION))
    else {
        return Ok(0);
    };
    let invalid = |shown: &str| {
        format!(
            "{:?} is not a whole number from {} to {}",
            truncate(shown, 32),
            i32::MIN,
            i32::MAX
        )
    };
    match value {
        Value::String(text) => text.trim().parse::<i32>().map_err(|_| invalid(text)),
        other => Err(invalid(&other.to_string())),
    }
}

/// One wave of a revision: its number and where its objects are in the apply order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    pub number: i32,
    pub members: Range<usize>,
}

/// The waves of objects already in apply order (ascending wave, see `manifest::prepare`): each run
/// of equal wave numbers is one wave. Objects out of order would make two waves of one number —
/// still applied in the order given, never merged out of it.
pub fn waves(numbers: &[i32]) -> Vec<Wave> {
    let mut waves: Vec<Wave> = Vec::new();
    for (index, &number) in numbers.iter().enumerate() {
        match waves.last_mut() {
            Some(last) if last.number == number => last.members.end = index + 1,
            _ => waves.push(Wave {
                number,
                members: index..index + 1,
            }),
        }
    }
    waves
}

/// What to do once a wave is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Apply the next wave.
    Continue,
    /// Every wave is applied: the revision counts as applied.
    Done,
    /// Stop here until a later reconcile finds this wave healthy.
    Wait { wave: i32, message: String },
}

/// After applying wave `index` of `waves`, whose objects are now `health` (`None`: not read, which
/// is only needed when a later wave follows): the last wave ends the apply, any other one must be
/// healthy before the next is applied.
pub fn after(waves: &[Wave], index: usize, health: Option<&Health>) -> Next {
    let Some(wave) = waves.get(index) else {
        return Next::Done;
    };
    if index + 1 >= waves.len() {
        return Next::Done;
    }
    match health {
        Some(Health::Healthy) => Next::Continue,
        Some(other) => Next::Wait {
            wave: wave.number,
            message: format!(
                "applied waves up to {}; waiting for wave {} to be healthy before wave {}: {}",
                wave.number,
                wave.number,
                waves[index + 1].number,
                other.message()
            ),
        },
        None => Next::Wait {
            wave: wave.number,
            message: format!("applied waves up to {}; its health is unknown", wave.number),
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn annotated(value: Value) -> Value {
        json!({"metadata": {"name": "x", "annotations": {"sluice.dev/sync-wave": value}}})
    }

    #[test]
    fn wave_annotation_is_a_whole_number_default_zero() {
        assert_eq!(wave_of(&json!({"metadata": {"name": "x"}})), Ok(0));
        assert_eq!(wave_of(&annotated(json!("-1"))), Ok(-1));
        assert_eq!(wave_of(&annotated(json!("5"))), Ok(5));
        assert_eq!(wave_of(&annotated(json!(" 2 "))), Ok(2));
        assert_eq!(wave_of(&annotated(json!("2147483647"))), Ok(i32::MAX));
        for bad in [json!("one"), json!("2147483648"), json!("1.5"), json!(""), json!(3)] {
            let error = wave_of(&annotated(bad.clone())).unwrap_err();
            assert!(error.contains("is not a whole number"), "{bad}: {error}");
        }
        let long = wave_of(&annotated(json!("9".repeat(10_000)))).unwrap_err();
        assert!(long.len() < 200, "a hostile value is quoted cut: {long}");
    }

    #[test]
    fn runs_of_equal_numbers_are_waves() {
        assert_eq!(waves(&[]), vec![]);
        assert_eq!(
            waves(&[-1, -1, 0, 3, 3, 3]),
            vec![
                Wave {
                    number: -1,
                    members: 0..2
                },
                Wave {
                    number: 0,
                    members: 2..3
                },
                Wave {
                    number: 3,
                    members: 3..6
                },
            ]
        );
    }

    #[test]
    fn each_wave_waits_for_health_except_the_last() {
        let plan = waves(&[-1, 0, 1]);
        assert_eq!(after(&plan, 0, Some(&Health::Healthy)), Next::Continue);
        let Next::Wait { wave, message } = after(&plan, 1, Some(&Health::Progressing("job/migrate: running".into())))
        else {
            panic!("expected to wait");
        };
        assert_eq!(wave, 0);
        assert!(message.contains("waiting for wave 0 to be healthy before wave 1: job/migrate: running"));
        assert_eq!(after(&plan, 2, None), Next::Done);
        assert_eq!(
            after(&waves(&[0, 0]), 0, None),
            Next::Done,
            "one wave: nothing to wait for"
        );
    }

    fn arb_health() -> impl Strategy<Value = Health> {
        prop_oneof![
            3 => Just(Health::Healthy),
            1 => Just(Health::Progressing("starting".into())),
            1 => Just(Health::Degraded("failed".into())),
        ]
    }

    proptest! {
        /// Waves partition the objects in order, their numbers strictly ascending when the input is
        /// sorted; reconciles driven by `after` apply a prefix of the waves, a wave only once every
        /// earlier one was healthy in that reconcile, and finish only with every wave applied.
        #[test]
        fn waves_go_in_order_each_healthy_before_the_next(
            mut numbers in proptest::collection::vec(-3i32..3, 0..20),
            healths in proptest::collection::vec(arb_health(), 1..40),
        ) {
            numbers.sort();
            let plan = waves(&numbers);
            let covered: Vec<usize> = plan.iter().flat_map(|w| w.members.clone()).collect();
            prop_assert_eq!(covered, (0..numbers.len()).collect::<Vec<_>>());
            prop_assert!(plan.windows(2).all(|w| w[0].number < w[1].number));
            for wave in &plan {
                prop_assert!(numbers[wave.members.clone()].iter().all(|n| *n == wave.number));
            }
            // Each reconcile applies waves from the first, reading a health per wave from the script.
            let mut script = healths.iter().cycle();
            for _reconcile in 0..10 {
                let mut applied = Vec::new();
                let mut done = plan.is_empty();
                for index in 0..plan.len() {
                    applied.push(index);
                    let health = (index + 1 < plan.len()).then(|| script.next().cloned()).flatten();
                    match after(&plan, index, health.as_ref()) {
                        Next::Continue => prop_assert_eq!(health, Some(Health::Healthy)),
                        Next::Done => { done = true; break; }
                        Next::Wait { wave, .. } => {
                            prop_assert_eq!(wave, plan[index].number);
                            prop_assert!(health != Some(Health::Healthy));
                            break;
                        }
                    }
                }
                prop_assert_eq!(applied.clone(), (0..applied.len()).collect::<Vec<_>>());
                prop_assert!(!done || applied.len() == plan.len());
            }
        }
    }
}
