//! Compatibility with Argo Rollouts, measured on Argo's own manifests: every YAML file of its
//! `examples/` and `test/e2e/functional/` (copied unmodified into `e2e/testdata/argo-rollouts/`), with
//! only the API group changed to sluice.dev, is linted as the API server and the controller would judge
//! it (`sluice lint`: schema with strict fields, then InvalidSpec and analysis rules). A file is accepted
//! when every Argo object in it is.
//!
//! The files that are not accepted must be exactly those in [`EXCEPTIONS`], each with its reason: a file
//! that starts passing, or one that stops, fails the test until the list says so. The test prints the
//! tally (`cargo nextest run -p sluice-e2e --test argo_corpus --no-capture`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice::gitsync::render::parse_documents;
use sluice::migrate::lint::lint;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/argo-rollouts");

/// Files Sluice does not accept, and why.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "examples/ambassador/rollout.yaml",
        "needs Ambassador, which Sluice does not route with",
    ),
    (
        "examples/analysis-templates.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): maxFailures",
    ),
    (
        "examples/apisix/rollout.yaml",
        "needs Apache APISIX, which Sluice does not route with",
    ),
    (
        "examples/appmesh/canary-rollout.yaml",
        "needs AWS App Mesh, which Sluice does not route with",
    ),
    (
        "examples/example-experiment.yaml",
        "written for an older Argo API: experiment duration as an integer (Argo's CRD declares a duration string); also broken upstream: the baseline's labels are not indented under labels",
    ),
    (
        "examples/example-rollout-canary-run-tmp-canary.yaml",
        "broken upstream: pause's duration is not indented under pause, so the step has two kinds",
    ),
    (
        "examples/example-rollout-canary.yaml",
        "broken upstream: spec.selector (app: rollout) does not match the template's labels (app: guestbook); Argo refuses it too",
    ),
    (
        "examples/example-rollout.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): strategy.type, pause: true",
    ),
    (
        "examples/helm-blue-green/templates/rollout.yaml",
        "a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "examples/helm-blue-green/templates/services.yaml",
        "a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "examples/rollout-analysis-step.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): analysis.name, analysis.templateName",
    ),
    (
        "examples/rollout-background-analysis.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): analysis.name, analysis.templateName",
    ),
    (
        "examples/rollout-canary-with-analysis.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): templates[].clusterTemplateName",
    ),
    (
        "examples/rollout-experiment-step.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): the AnalysisTemplate's maxFailures, an integer interval",
    ),
    (
        "examples/rollout-with-analysis.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): analysis.name, analysis.templateName",
    ),
    (
        "examples/traffic-management/rollout-linkerd.yaml",
        "a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "examples/traffic-routing-experiment-step/rollout-alb-experiment-step.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/alb-canary-multi-ingress-rollout.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/alb-canary-rollout-with-delay.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/alb-canary-rollout.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/alb-pingpong-multi-ingress-rollout.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with (ping-pong)",
    ),
    (
        "test/e2e/functional/alb-pingpong-rollout.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with (ping-pong)",
    ),
    (
        "test/e2e/functional/alb-rollout.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/alb-template.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with; also a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "test/e2e/functional/albmesh-pingpong-stablecanary-rollout.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with (ping-pong)",
    ),
    (
        "test/e2e/functional/bluegreen-duration-template.yaml",
        "a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "test/e2e/functional/canary-duration-template.yaml",
        "a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "test/e2e/functional/canary-dynamic-stable-scale-abort-delay.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/canary-dynamic-stable-scale.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/canary-scale-reporting.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/canary-scaledowndelay.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/canary-scaledownonabort.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/canary-unscaledownonabort.yaml",
        "needs AWS ALB (trafficRouting.alb), which Sluice does not route with",
    ),
    (
        "test/e2e/functional/experiment-mann-whitney-u.yaml",
        "written for an older Argo API (fields Argo's own CRD no longer declares): templates[].spec without a pod template, analyses[].executionPhase, status.status",
    ),
    (
        "test/e2e/functional/experiment-same-template.yaml",
        "written for an older Argo API: experiment duration as an integer (Argo's CRD declares a duration string)",
    ),
    (
        "test/e2e/functional/experiment-with-analysis.yaml",
        "written for an older Argo API: experiment duration as an integer (Argo's CRD declares a duration string)",
    ),
    (
        "test/e2e/functional/nginx-template.yaml",
        "a text template, not a manifest: placeholders (REPLACEME, ROLLOUT_NAME, Helm or unquoted {{args}}) must be filled in first",
    ),
    (
        "test/e2e/functional/rollout-container-resource-formats.yaml",
        "a CPU quantity written as a YAML number (0.001): Sluice's CRD types quantities int-or-string as CRD schemas can; write '0.001' or 1m",
    ),
    (
        "test/e2e/functional/rollout-shared-secret.yaml",
        "secretKeyRef.sharedSecret reads a Secret from the controller's namespace; Sluice reads analysis Secrets only from the run's own namespace (trust boundary)",
    ),
    (
        "test/e2e/functional/rollout-with-experiment.yaml",
        "written for an older Argo API: experiment.duration as an integer (Argo's CRD declares a duration string)",
    ),
];

/// Every .yaml/.yml file under `dir`, sorted.
fn yaml_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            into.push(path);
        }
    }
}

/// The text with Argo's API group changed to Sluice's in every `apiVersion:` line, nothing else.
fn with_sluice_group(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().trim_start_matches("- ").starts_with("apiVersion:") {
                line.replace("argoproj.io/", "sluice.dev/")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_argo(document: &Value) -> bool {
    document
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("sluice.dev/"))
}

/// None when accepted, else the first problems.
fn judge(path: &Path) -> Option<String> {
    let text = with_sluice_group(&std::fs::read_to_string(path).unwrap());
    let documents = match parse_documents(&text, "corpus") {
        Ok(documents) => documents,
        Err(e) => return Some(format!("does not parse: {e}")),
    };
    let argo: Vec<Value> = documents.into_iter().filter(is_argo).collect();
    let report = lint(&argo);
    let problems: Vec<String> = report.errors.iter().take(3).map(ToString::to_string).collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[test]
fn argo_manifests_are_accepted_except_the_listed_ones() {
    let mut files = Vec::new();
    yaml_files(Path::new(CORPUS), &mut files);
    assert!(files.len() > 80, "the corpus is incomplete: {} files", files.len());
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let (mut rollout_files, mut rollouts_accepted) = (0, 0);
    for path in &files {
        let name = path
            .strip_prefix(CORPUS)
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        let names_a_rollout = std::fs::read_to_string(path).unwrap().contains("kind: Rollout");
        let verdict = judge(path);
        if names_a_rollout {
            rollout_files += 1;
            rollouts_accepted += usize::from(verdict.is_none());
        }
        if let Some(problems) = verdict {
            refused.insert(name, problems);
        }
    }
    println!(
        "{} of {} files accepted; of the {rollout_files} naming a Rollout, {rollouts_accepted} accepted",
        files.len() - refused.len(),
        files.len()
    );
    for (name, problems) in &refused {
        println!("refused {name}: {problems}");
    }
    let expected: Vec<&str> = EXCEPTIONS.iter().map(|(name, _)| *name).collect();
    let actual: Vec<&str> = refused.keys().map(String::as_str).collect();
    let unexpected: Vec<_> = actual.iter().filter(|n| !expected.contains(n)).collect();
    let now_accepted: Vec<_> = expected.iter().filter(|n| !actual.contains(n)).collect();
    assert!(
        unexpected.is_empty() && now_accepted.is_empty(),
        "refused but not listed: {unexpected:?}\nlisted but accepted now: {now_accepted:?}"
    );
}
