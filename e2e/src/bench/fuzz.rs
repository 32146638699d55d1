//! `sluice bench fuzz`: many hostile objects per kind through deserialize → validate → plan
//! ([`crate::fuzz`]), counting how far each got and catching every panic. A panicking case is shrunk
//! (proptest's value tree) and reported with its kind, message and the minimal JSON.
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::Instant;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::Serialize;

use crate::fuzz::{self, Case, Kind};

/// Shrinking stops after this many candidate cases: a smaller example is not worth minutes.
const MAX_SHRINK_STEPS: u32 = 2000;
/// Panics reported in full; more are counted only.
const MAX_REPORTED_PANICS: usize = 20;

#[derive(Debug, Clone, clap::Args)]
pub struct FuzzBenchOptions {
    /// Cases in all, shared evenly between the kinds.
    #[arg(long, default_value_t = 100_000)]
    pub cases: u64,
    /// Seed of the generator (default: from the clock); the report names it so a run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The kinds to fuzz, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rollout,analysistemplate,analysisrun,gitsync"
    )]
    pub kinds: Vec<Kind>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct FuzzBenchReport {
    pub seed: u64,
    pub cases: u64,
    pub panics: u64,
    pub elapsed_seconds: f64,
    pub kinds: Vec<KindReport>,
    /// The first panics (up to 20), each shrunk.
    pub panic_cases: Vec<PanicReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct KindReport {
    pub kind: String,
    pub cases: u64,
    pub deserialized: u64,
    pub valid: u64,
    pub planned: u64,
    pub panics: u64,
    pub elapsed_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct PanicReport {
    pub kind: String,
    /// The panic's message and location, for the shrunk case.
    pub message: String,
    pub document: serde_json::Value,
    pub now: String,
    pub results: String,
    pub text: String,
}

/// The last panic's message and location, recorded by the hook installed for the run.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

pub fn run(options: &FuzzBenchOptions) -> FuzzBenchReport {
    let seed = options.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64)
    });
    let strategies: Vec<(Kind, _)> = options
        .kinds
        .iter()
        .map(|&kind| (kind, fuzz::case_strategy(kind)))
        .collect();
    // Panics are expected to be caught here; the default hook would print each one, shrink steps included.
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text panic)".into());
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{message}{}", location.unwrap_or_default()));
    }));
    let started = Instant::now();
    let kinds = options.kinds.len().max(1) as u64;
    let mut reports = Vec::new();
    let mut panic_cases = Vec::new();
    for (i, (kind, strategy)) in strategies.iter().enumerate() {
        let share = options.cases / kinds + u64::from((i as u64) < options.cases % kinds);
        reports.push(fuzz_kind(*kind, strategy, share, seed, &mut panic_cases));
    }
    panic::set_hook(previous_hook);
    FuzzBenchReport {
        seed,
        cases: reports.iter().map(|r| r.cases).sum(),
        panics: reports.iter().map(|r| r.panics).sum(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        kinds: reports,
        panic_cases,
    }
}

fn fuzz_kind(
    kind: Kind,
    strategy: &impl Strategy<Value = Case>,
    cases: u64,
    seed: u64,
    panic_cases: &mut Vec<PanicReport>,
) -> KindReport {
    let started = Instant::now();
    // Each kind has its own stream, so `--kinds gitsync` repeats the gitsync cases of a full run.
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8] = kind as u8;
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let mut report = KindReport {
        kind: kind.to_string(),
        cases,
        ..KindReport::default()
    };
    for _ in 0..cases {
        let Ok(mut tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        match panic_message(kind, &tree.current()) {
            Ok(outcome) => {
                report.deserialized += u64::from(outcome.deserialized);
                report.valid += u64::from(outcome.valid);
                report.planned += u64::from(outcome.planned);
            }
            Err(message) => {
                report.panics += 1;
                if panic_cases.len() < MAX_REPORTED_PANICS {
                    let (case, message) = shrink(kind, &mut tree, message);
                    panic_cases.push(PanicReport {
                        kind: kind.to_string(),
                        message,
                        document: case.document,
                        now: case.now.to_rfc3339(),
                        results: format!("{:?}", case.results),
                        text: case.text,
                    });
                }
            }
        }
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report
}

/// The case's outcome, or the message of its panic.
fn panic_message(kind: Kind, case: &Case) -> Result<fuzz::Outcome, String> {
    panic::catch_unwind(AssertUnwindSafe(|| fuzz::exercise(kind, case))).map_err(|_| {
        LAST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    })
}

/// The simplest case the tree reaches that still panics, as proptest's runner shrinks: simplify while
/// it fails, complicate back when a simplification passed.
fn shrink(kind: Kind, tree: &mut impl ValueTree<Value = Case>, message: String) -> (Case, String) {
    let mut smallest = (tree.current(), message);
    if !tree.simplify() {
        return smallest;
    }
    for _ in 0..MAX_SHRINK_STEPS {
        let candidate = tree.current();
        let more = match panic_message(kind, &candidate) {
            Err(message) => {
                smallest = (candidate, message);
                tree.simplify()
            }
            Ok(_) => tree.complicate(),
        };
        if !more {
            break;
        }
    }
    smallest
}

/// The report as a table, panics after it.
pub fn print_table(report: &FuzzBenchReport) {
    println!("seed {}", report.seed);
    println!(
        "{:<18} {:>8} {:>13} {:>8} {:>8} {:>7} {:>9}",
        "kind", "cases", "deserialized", "valid", "planned", "panics", "elapsed"
    );
    for kind in &report.kinds {
        println!(
            "{:<18} {:>8} {:>13} {:>8} {:>8} {:>7} {:>8.1}s",
            kind.kind, kind.cases, kind.deserialized, kind.valid, kind.planned, kind.panics, kind.elapsed_seconds
        );
    }
    println!(
        "{:<18} {:>8} {:>13} {:>8} {:>8} {:>7} {:>8.1}s",
        "all", report.cases, "", "", "", report.panics, report.elapsed_seconds
    );
    for case in &report.panic_cases {
        println!("\npanic in {}: {}", case.kind, case.message);
        println!("  now {}, results {}, text {:?}", case.now, case.results, case.text);
        println!("  {}", serde_json::to_string(&case.document).unwrap_or_default());
    }
}
