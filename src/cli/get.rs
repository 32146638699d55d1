//! `sluice get rollout` and `sluice list rollouts`: read the Rollout and what belongs to it, render
//! with `view`, and with --watch redraw whenever the Rollout or its ReplicaSets change.
use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};

use super::output::{Rendering, print_object, print_objects};
use super::undo::owned_by;
use super::view::{self, Snapshot};
use super::{Error, OutputFormat, Result, Target};
use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::api::keys::{POD_TEMPLATE_HASH_LABEL, ROLLOUT_LABEL};
use crate::api::rollout::Rollout;

/// Redraws at most this often, however fast the objects change.
const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

/// The Rollout's ReplicaSets: labelled with a pod-template hash and owned by its uid.
pub async fn replica_sets(target: &Target, rollout: &Rollout) -> Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = target.api();
    let what = format!("listing the ReplicaSets in namespace \"{}\"", target.namespace);
    let list = target
        .call(what, api.list(&ListParams::default().labels(POD_TEMPLATE_HASH_LABEL)))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|rs| owned_by(rollout, &rs.metadata))
        .collect())
}

/// The label selector of a Rollout's pods, as a query string.
fn pod_selector(rollout: &Rollout) -> String {
    let selector = &rollout.spec.selector;
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        parts.push(match expression.operator.as_str() {
            "In" => format!("{} in ({values})", expression.key),
            "NotIn" => format!("{} notin ({values})", expression.key),
            "Exists" => expression.key.clone(),
            _ => format!("!{}", expression.key),
        });
    }
    parts.join(",")
}

/// Reads everything the summary shows. The Rollout must exist; the rest is best effort only in the
/// sense that an empty list is fine, API errors still fail loudly.
pub async fn snapshot(target: &Target, name: &str) -> Result<Snapshot> {
    let rollout = target.get_rollout(name).await?;
    let ns = &target.namespace;
    let replica_sets = replica_sets(target, &rollout).await?;
    let pods: Api<Pod> = target.api();
    let selector = pod_selector(&rollout);
    let pods = if selector.is_empty() {
        // An empty selector would match every pod of the namespace.
        Vec::new()
    } else {
        let what = format!("listing the pods of rollout \"{name}\" in namespace \"{ns}\"");
        target
            .call(what, pods.list(&ListParams::default().labels(&selector)))
            .await?
            .items
    };
    let runs: Api<AnalysisRun> = target.api();
    let what = format!("listing the AnalysisRuns in namespace \"{ns}\"");
    let analysis_runs = target
        .call(what, runs.list(&ListParams::default()))
        .await?
        .items
        .into_iter()
        .filter(|run| owned_by(&rollout, &run.metadata))
        .collect();
    let experiments: Api<Experiment> = target.api();
    let what = format!("listing the Experiments of rollout \"{name}\" in namespace \"{ns}\"");
    let experiments = target
        .call(
            what,
            experiments.list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}"))),
        )
        .await?
        .items
        .into_iter()
        .filter(|experiment| owned_by(&rollout, &experiment.metadata))
        .collect();
    let events: Api<Event> = target.api();
    let what = format!("listing the events of rollout \"{name}\" in namespace \"{ns}\"");
    let events = target
        .call(
            what,
            events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))),
        )
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Rollout"))
        .collect();
    Ok(Snapshot {
        rollout,
        replica_sets,
        pods,
        analysis_runs,
        experiments,
        events,
    })
}

/// `sluice get rollout NAME [-o json|yaml|wide|name]`.
pub async fn show(target: &Target, name: &str, output: Option<OutputFormat>) -> Result<()> {
    if let Rendering::Objects(format) = Rendering::of(output) {
        let rollout = target.get_rollout(name).await?;
        return print_object(&rollout, format);
    }
    let snapshot = snapshot(target, name).await?;
    print!("{}", view::render(&snapshot, chrono::Utc::now()));
    Ok(())
}

/// `sluice list rollouts [-A] [-o json|yaml|wide|name]`.
pub async fn list(target: &Target, all_namespaces: bool, output: Option<OutputFormat>) -> Result<()> {
    let (api, where_) = if all_namespaces {
        (Api::<Rollout>::all(target.client.clone()), "any namespace".to_string())
    } else {
        (target.rollouts(), format!("namespace \"{}\"", target.namespace))
    };
    let mut rollouts = match target
        .call(
            format!("listing rollouts in {where_}"),
            api.list(&ListParams::default()),
        )
        .await
    {
        Err(Error::Api { code: Some(404), .. }) => return Err(Error::CrdMissing),
        other => other?.items,
    };
    if rollouts.is_empty() && !all_namespaces && matches!(target.namespace_exists().await, Ok(false)) {
        return Err(Error::NamespaceNotFound(target.namespace.clone()));
    }
    rollouts.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
    let wide = match Rendering::of(output) {
        Rendering::Objects(format) => return print_objects(&rollouts, format),
        Rendering::Human { wide } => wide,
    };
    if rollouts.is_empty() {
        println!("No rollouts found in {where_}.");
        return Ok(());
    }
    print!(
        "{}",
        view::render_list(&rollouts, all_namespaces, wide, chrono::Utc::now())
    );
    Ok(())
}

/// How frames are separated: a terminal is cleared, anything else (a file, a pipe, a test) gets a
/// separator line so every frame stays readable in the log.
fn frame_prefix(terminal: bool, first: bool) -> &'static str {
    match (terminal, first) {
        (true, _) => "\x1b[2J\x1b[H",
        (false, true) => "",
        (false, false) => "----------------------------------------\n",
    }
}

/// `sluice get rollout NAME --watch`: redraws on every change of the Rollout or its ReplicaSets,
/// at most every 200 ms, until Ctrl-C or the Rollout is deleted.
pub async fn watch(target: &Target, name: &str) -> Result<()> {
    // Fails fast with a clear message when the rollout (or namespace, or CRD) is missing.
    let first = snapshot(target, name).await?;
    let rollouts = watcher(
        target.rollouts(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .touched_objects()
    .map(|_| ())
    .boxed();
    // Other rollouts' ReplicaSets share the label; only this rollout's (by owner uid) trigger a redraw.
    let owner = first.rollout.clone();
    let replica_sets = watcher(
        target.api::<ReplicaSet>(),
        watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
    )
    .default_backoff()
    .touched_objects()
    .filter_map(move |rs| {
        let ours = rs.is_ok_and(|rs| owned_by(&owner, &rs.metadata));
        async move { ours.then_some(()) }
    })
    .boxed();
    // Watch errors are retried with backoff by the watchers; a change is a change either way.
    let mut changes = stream::select(rollouts, replica_sets);

    let terminal = std::io::stdout().is_terminal();
    let mut last_frame = String::new();
    let mut draw = |snapshot: &Snapshot, first: bool| -> Result<()> {
        let frame = view::render(snapshot, chrono::Utc::now());
        if frame == last_frame {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{}{frame}", frame_prefix(terminal, first))
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::Output(format!("writing to stdout: {e}")))?;
        last_frame = frame;
        Ok(())
    };
    draw(&first, true)?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            change = changes.next() => {
                if change.is_none() {
                    return Ok(());
                }
            }
        }
        // Coalesce a burst of changes into one redraw.
        let settle = tokio::time::sleep(REDRAW_INTERVAL);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                _ = changes.next() => {}
            }
        }
        match snapshot(target, name).await {
            Ok(snapshot) => draw(&snapshot, false)?,
            Err(Error::RolloutNotFound { .. }) => {
                println!("rollout \"{name}\" was deleted");
                return Ok(());
            }
            Err(e @ Error::Timeout { .. }) => eprintln!("warning: {e}; will retry on the next change"),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn pod_selector_covers_labels_and_expressions() {
        let mut rollout = Rollout::example("web", 1, vec![]);
        rollout.spec.selector.match_labels = Some(BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]));
        rollout.spec.selector.match_expressions = Some(vec![
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into(), "stage".into()]),
            },
            LabelSelectorRequirement {
                key: "legacy".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
        ]);
        assert_eq!(pod_selector(&rollout), "app=web,tier=front,env in (prod,stage),!legacy");
    }

    #[test]
    fn frames_clear_a_terminal_and_are_separated_elsewhere() {
        assert_eq!(frame_prefix(true, true), "\x1b[2J\x1b[H");
        assert_eq!(frame_prefix(false, true), "");
        assert!(frame_prefix(false, false).starts_with("---"));
    }
}
