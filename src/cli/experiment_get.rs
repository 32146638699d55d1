//! `sluice get experiment [NAME]`: an Experiment's phase, its templates (status, replicas, ReplicaSet,
//! pod hash, Service) and analysis runs, rendered from the status the controller writes.
use std::fmt::Write;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::output::{Rendering, print_object, print_objects};
use super::view::{age, table, to_chrono};
use super::{Error, OutputFormat, Result, Target};
use crate::api::conditions;
use crate::api::experiment::{Experiment, TemplateStatusCode};
use crate::api::keys::condition;

fn phase(experiment: &Experiment) -> String {
    experiment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or_else(|| "-".to_string(), |p| format!("{p:?}"))
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_string()
}

/// `sluice get experiments`: NAME, PHASE, AVAILABLE (templates running/total), ANALYSES (finished/total),
/// DURATION, AGE; `wide` adds each template's ReplicaSet and the message.
pub fn render_list(experiments: &[Experiment], all_namespaces: bool, wide: bool, now: DateTime<Utc>) -> String {
    let mut header = vec!["NAME", "PHASE", "AVAILABLE", "ANALYSES", "DURATION", "AGE"];
    if wide {
        header.extend(["REPLICASETS", "MESSAGE"]);
    }
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for experiment in experiments {
        let status = experiment.status.clone().unwrap_or_default();
        let available = status
            .template_statuses
            .iter()
            .filter(|t| t.status == Some(TemplateStatusCode::Running))
            .count();
        let finished = status
            .analysis_runs
            .iter()
            .filter(|r| r.phase.is_some_and(|p| p.is_completed()))
            .count();
        let mut row = vec![
            experiment.name_any(),
            phase(experiment),
            format!("{available}/{}", experiment.spec.templates.len()),
            format!("{finished}/{}", experiment.spec.analyses.len()),
            or_dash(experiment.spec.duration.as_deref()),
            age(experiment.metadata.creation_timestamp.as_ref().and_then(to_chrono), now),
        ];
        if wide {
            let replica_sets: Vec<&str> = status
                .template_statuses
                .iter()
                .filter_map(|t| t.replica_set_name.as_deref())
                .collect();
            row.extend([
                or_dash(Some(replica_sets.join(",").as_str())),
                or_dash(status.message.as_deref()),
            ]);
        }
        if all_namespaces {
            row.insert(0, experiment.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    table(&rows)
}

/// `sluice get experiment NAME`.
pub fn render(experiment: &Experiment, now: DateTime<Utc>) -> String {
    let status = experiment.status.clone().unwrap_or_default();
    let spec = &experiment.spec;
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{:<14}{value}", format!("{label}:"));
    };
    field("Name", experiment.name_any());
    field("Namespace", experiment.namespace().unwrap_or_default());
    field("Phase", phase(experiment));
    if let Some(message) = status.message.as_deref() {
        field("Message", message.to_string());
    }
    if let Some(invalid) = conditions::find(&status.conditions, condition::INVALID_SPEC) {
        field("InvalidSpec", invalid.message.clone().unwrap_or_default());
    }
    let duration = match (&spec.duration, status.available_at) {
        (Some(d), Some(at)) => format!("{d} (running for {})", age(Some(at), now)),
        (Some(d), None) => d.clone(),
        (None, _) => "- (until its required analyses finish, or terminated)".into(),
    };
    field("Duration", duration);
    if spec.is_terminated() {
        field("Terminate", "requested".into());
    }
    field(
        "Created",
        age(experiment.metadata.creation_timestamp.as_ref().and_then(to_chrono), now) + " ago",
    );
    let _ = writeln!(out, "\nTemplates:");
    let mut rows = vec![
        [
            "NAME",
            "STATUS",
            "DESIRED",
            "READY",
            "AVAILABLE",
            "REPLICASET",
            "HASH",
            "SERVICE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for template in &spec.templates {
        let found = status.template_statuses.iter().find(|t| t.name == template.name);
        rows.push(vec![
            template.name.clone(),
            found
                .and_then(|t| t.status)
                .map_or_else(|| "-".into(), |s| format!("{s:?}")),
            template.replicas_or_default().to_string(),
            found.map_or(0, |t| t.ready_replicas).to_string(),
            found.map_or(0, |t| t.available_replicas).to_string(),
            or_dash(found.and_then(|t| t.replica_set_name.as_deref())),
            or_dash(found.and_then(|t| t.pod_template_hash.as_deref())),
            or_dash(found.and_then(|t| t.service_name.as_deref())),
        ]);
    }
    for line in table(&rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
    if !spec.analyses.is_empty() {
        let _ = writeln!(out, "\nAnalyses:");
        let mut rows = vec![
            ["NAME", "TEMPLATE", "REQUIRED", "RUN", "PHASE", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        ];
        for analysis in &spec.analyses {
            let run = status.analysis_runs.iter().find(|r| r.name == analysis.name);
            rows.push(vec![
                analysis.name.clone(),
                analysis.template_name.clone(),
                if analysis.is_required_for_completion() {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                or_dash(run.and_then(|r| r.analysis_run.as_deref())),
                run.and_then(|r| r.phase)
                    .map_or_else(|| "-".into(), |p| format!("{p:?}")),
                or_dash(run.and_then(|r| r.message.as_deref())),
            ]);
        }
        for line in table(&rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// `sluice get experiment NAME [-o json|yaml|wide|name]`.
pub async fn show(target: &Target, name: &str, output: Option<OutputFormat>) -> Result<()> {
    let what = format!("reading experiment \"{name}\" in namespace \"{}\"", target.namespace);
    let Some(experiment) = target.call(what, target.api::<Experiment>().get_opt(name)).await? else {
        return Err(Error::Invalid(format!(
            "experiment \"{name}\" not found in namespace \"{}\"",
            target.namespace
        )));
    };
    if let Rendering::Objects(format) = Rendering::of(output) {
        return print_object(&experiment, format);
    }
    print!("{}", render(&experiment, Utc::now()));
    Ok(())
}

/// `sluice get experiments [-A] [-o json|yaml|wide|name]`.
pub async fn list(target: &Target, all_namespaces: bool, output: Option<OutputFormat>) -> Result<()> {
    let (api, where_) = if all_namespaces {
        (
            Api::<Experiment>::all(target.client.clone()),
            "any namespace".to_string(),
        )
    } else {
        (
            target.api::<Experiment>(),
            format!("namespace \"{}\"", target.namespace),
        )
    };
    let mut experiments = match target
        .call(
            format!("listing experiments in {where_}"),
            api.list(&ListParams::default()),
        )
        .await
    {
        Err(Error::Api { code: Some(404), .. }) => {
            return Err(Error::Config(
                "the Experiment CRD (experiments.sluice.dev) is not installed in this cluster; install it \
                 with `sluice crds | kubectl apply --server-side -f -`"
                    .into(),
            ));
        }
        other => other?.items,
    };
    experiments.sort_by_key(|e| (e.namespace(), e.name_any()));
    let wide = match Rendering::of(output) {
        Rendering::Objects(format) => return print_objects(&experiments, format),
        Rendering::Human { wide } => wide,
    };
    if experiments.is_empty() {
        println!("No experiments found in {where_}.");
        return Ok(());
    }
    print!("{}", render_list(&experiments, all_namespaces, wide, Utc::now()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::AnalysisPhase;
    use crate::api::experiment::{ExperimentAnalysisRunStatus, ExperimentStatus, TemplateStatus};
    use crate::experiment::fixtures::{analysis, experiment};

    fn running() -> Experiment {
        let mut e = experiment("exp", &["baseline", "canary"]);
        e.spec.duration = Some("10m".into());
        e.spec.analyses = vec![analysis("compare", "error-rate")];
        let now = Utc::now();
        e.status = Some(ExperimentStatus {
            phase: Some(AnalysisPhase::Running),
            message: Some("running".into()),
            available_at: Some(now - chrono::TimeDelta::seconds(90)),
            template_statuses: vec![
                TemplateStatus {
                    name: "baseline".into(),
                    replicas: 1,
                    ready_replicas: 1,
                    available_replicas: 1,
                    status: Some(TemplateStatusCode::Running),
                    replica_set_name: Some("exp-baseline".into()),
                    pod_template_hash: Some("abc123".into()),
                    ..Default::default()
                },
                TemplateStatus {
                    name: "canary".into(),
                    status: Some(TemplateStatusCode::Progressing),
                    replica_set_name: Some("exp-canary".into()),
                    service_name: Some("exp-canary".into()),
                    ..Default::default()
                },
            ],
            analysis_runs: vec![ExperimentAnalysisRunStatus {
                name: "compare".into(),
                analysis_run: Some("exp-compare".into()),
                phase: Some(AnalysisPhase::Running),
                message: None,
            }],
            ..Default::default()
        });
        e
    }

    #[test]
    fn the_summary_shows_phase_templates_hashes_and_runs() {
        let out = render(&running(), Utc::now());
        assert!(out.contains("Phase:        Running"), "{out}");
        assert!(out.contains("10m (running for 90s)"), "{out}");
        let baseline = out.lines().find(|l| l.trim_start().starts_with("baseline")).unwrap();
        for column in ["Running", "exp-baseline", "abc123"] {
            assert!(baseline.contains(column), "{baseline}");
        }
        let canary = out.lines().find(|l| l.trim_start().starts_with("canary")).unwrap();
        assert!(
            canary.contains("Progressing") && canary.ends_with("exp-canary"),
            "{canary}"
        );
        let run = out.lines().find(|l| l.trim_start().starts_with("compare")).unwrap();
        assert!(run.contains("exp-compare") && run.contains("Running"), "{run}");
    }

    #[test]
    fn the_list_counts_available_templates_and_finished_analyses() {
        let out = render_list(&[running()], false, false, Utc::now());
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        let columns: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&columns[..5], ["exp", "Running", "1/2", "0/1", "10m"]);
    }

    #[test]
    fn an_experiment_without_status_renders() {
        let e = experiment("new", &["a"]);
        let out = render(&e, Utc::now());
        assert!(out.contains("Phase:        -"), "{out}");
        assert!(render_list(&[e], true, false, Utc::now()).contains("0/1"));
    }
}
