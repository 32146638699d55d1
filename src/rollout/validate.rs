//! Spec validation: every problem with a Rollout's spec, each with the field path a user needs to
//! fix it. An invalid spec gets an InvalidSpec condition and an event, and nothing is scaled.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::duration::MAX_SECONDS;
use crate::api::experiment::RolloutExperimentStep;
use crate::api::rollout::{
    BlueGreenStrategy, CanaryStep, CanaryStrategy, Rollout, RolloutAnalysis, SetCanaryScale, TrafficRouting,
};
use crate::rollout::replicas::{IntOrPercent, ScaleLimits};

use crate::api::spec_error::{Findings, dns_label};
pub use crate::api::spec_error::{SpecError, summary};

/// Every problem with the spec (empty when valid). Checks only what the spec itself says; whether
/// referenced objects exist is checked where they are read.
pub fn validate(rollout: &Rollout) -> Vec<SpecError> {
    let spec = &rollout.spec;
    let mut found = Findings::default();
    found.check_range("spec.replicas", spec.replicas, 0..=i32::MAX);
    if let Some(reference) = &spec.workload_ref {
        found.0.extend(crate::rollout::workload_ref::check_reference(reference));
    }
    // With workloadRef and no template yet (the spec as written), the template and selector are the
    // Deployment's: they are checked once resolved (`workload_ref::resolve`).
    let unresolved = spec.workload_ref.is_some() && spec.template.is_empty();
    if !unresolved {
        let template = spec.template.spec();
        found.check_selector(
            "spec.selector",
            &spec.selector,
            &template_labels(&template),
            "spec.template.metadata.labels",
        );
        let containers = template.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
        if containers == 0 {
            found.add("spec.template.spec.containers", "at least one container is required");
        }
    }
    found.check_range("spec.revisionHistoryLimit", spec.revision_history_limit, 0..=i32::MAX);
    found.check_range(
        "spec.rollbackWindow.revisions",
        spec.rollback_window.as_ref().map(|w| w.revisions),
        0..=i32::MAX,
    );
    found.check_range(
        "spec.progressDeadlineSeconds",
        spec.progress_deadline_seconds,
        1..=MAX_SECONDS,
    );
    found.check_range("spec.minReadySeconds", spec.min_ready_seconds, 0..=MAX_SECONDS);
    if let Some(history) = &spec.analysis {
        for (field, value) in [
            ("successfulRunHistoryLimit", history.successful_run_history_limit),
            ("unsuccessfulRunHistoryLimit", history.unsuccessful_run_history_limit),
        ] {
            found.check_range(&format!("spec.analysis.{field}"), value, 0..=i32::MAX);
        }
    }
    check_canary(&spec.canary(), spec.replicas_or_default(), &mut found);
    if !unresolved {
        check_canary_pod_extras(&spec.canary(), &spec.template.spec(), &mut found);
    }
    if let Some(blue_green) = spec.blue_green() {
        if spec.strategy.canary.is_some() {
            found.add("spec.strategy", "set exactly one of canary and blueGreen, not both");
        }
        let template = (!unresolved).then(|| spec.template.spec());
        check_blue_green(blue_green, template.as_ref(), &mut found);
    }
    found.0
}

/// The spec as a user wrote it, before workloadRef is resolved (`sluice lint`, admission): also
/// reports a template set next to workloadRef.
pub fn validate_as_written(rollout: &Rollout) -> Vec<SpecError> {
    let mut errors = crate::rollout::workload_ref::check_unresolved(rollout);
    errors.extend(validate(rollout));
    errors
}

/// The blue-green strategy's fields. Role metadata is checked against the pod template, which is
/// unknown while a workloadRef is unresolved (`template` None): it is checked once resolved.
fn check_blue_green(blue_green: &BlueGreenStrategy, template: Option<&PodTemplateSpec>, found: &mut Findings) {
    const BLUE_GREEN: &str = "spec.strategy.blueGreen";
    if blue_green.active_service.trim().is_empty() {
        found.add(format!("{BLUE_GREEN}.activeService"), "is required");
    }
    if blue_green.preview_service.as_deref() == Some(blue_green.active_service.as_str()) {
        found.add(format!("{BLUE_GREEN}.previewService"), "must differ from activeService");
    } else if blue_green
        .preview_service
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        found.add(format!("{BLUE_GREEN}.previewService"), "must not be empty");
    }
    found.check_range(
        &format!("{BLUE_GREEN}.previewReplicaCount"),
        blue_green.preview_replica_count,
        1..=i32::MAX,
    );
    found.check_range(
        &format!("{BLUE_GREEN}.scaleDownDelayRevisionLimit"),
        blue_green.scale_down_delay_revision_limit,
        0..=i32::MAX,
    );
    for (field, value) in [
        ("autoPromotionSeconds", blue_green.auto_promotion_seconds),
        ("scaleDownDelaySeconds", blue_green.scale_down_delay_seconds),
        ("abortScaleDownDelaySeconds", blue_green.abort_scale_down_delay_seconds),
    ] {
        found.check_range(&format!("{BLUE_GREEN}.{field}"), value, 0..=MAX_SECONDS);
    }
    for (field, analysis) in [
        ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
        ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
    ] {
        if let Some(analysis) = analysis {
            check_analysis(analysis, &format!("{BLUE_GREEN}.{field}"), found);
        }
    }
    if let Some(anti_affinity) = &blue_green.anti_affinity {
        let field = format!("{BLUE_GREEN}.antiAffinity");
        found
            .0
            .extend(crate::rollout::anti_affinity::check(&field, anti_affinity));
    }
    for (field, metadata) in [
        ("activeMetadata", &blue_green.active_metadata),
        ("previewMetadata", &blue_green.preview_metadata),
    ] {
        if let (Some(metadata), Some(template)) = (metadata, template) {
            let field = format!("{BLUE_GREEN}.{field}");
            found
                .0
                .extend(crate::rollout::pod_metadata::check(&field, metadata, template));
        }
    }
}

fn template_labels(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn int_or_string_text(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// canaryMetadata, stableMetadata, antiAffinity, scaleDownDelayRevisionLimit, minPodsPerReplicaSet.
fn check_canary_pod_extras(canary: &CanaryStrategy, template: &PodTemplateSpec, found: &mut Findings) {
    const CANARY: &str = "spec.strategy.canary";
    for (field, metadata) in [
        ("canaryMetadata", &canary.canary_metadata),
        ("stableMetadata", &canary.stable_metadata),
    ] {
        if let Some(metadata) = metadata {
            let field = format!("{CANARY}.{field}");
            found
                .0
                .extend(crate::rollout::pod_metadata::check(&field, metadata, template));
        }
    }
    if let Some(anti_affinity) = &canary.anti_affinity {
        found.0.extend(crate::rollout::anti_affinity::check(
            &format!("{CANARY}.antiAffinity"),
            anti_affinity,
        ));
    }
    found.check_range(
        &format!("{CANARY}.scaleDownDelayRevisionLimit"),
        canary.scale_down_delay_revision_limit,
        0..=i32::MAX,
    );
    found.check_range(
        &format!("{CANARY}.minPodsPerReplicaSet"),
        canary.min_pods_per_replica_set,
        1..=i32::MAX,
    );
}

fn check_canary(canary: &CanaryStrategy, replicas: i32, found: &mut Findings) {
    const CANARY: &str = "spec.strategy.canary";
    let surge = int_or_string_text(&canary.max_surge_or_default());
    let unavailable = int_or_string_text(&canary.max_unavailable_or_default());
    for (field, text) in [("maxSurge", &surge), ("maxUnavailable", &unavailable)] {
        if let Err(e) = IntOrPercent::parse(text) {
            found.add(format!("{CANARY}.{field}"), e);
        }
    }
    if let Err(e) = ScaleLimits::parse(replicas, &surge, &unavailable) {
        // Parse errors were reported per field above; this is the "both zero" case.
        if IntOrPercent::parse(&surge).is_ok() && IntOrPercent::parse(&unavailable).is_ok() {
            found.add(format!("{CANARY}.maxUnavailable"), e);
        }
    }
    let max_weight = canary.max_traffic_weight_or_default();
    if max_weight <= 0 {
        found.add(
            format!("{CANARY}.maxTrafficWeight"),
            format!("must be at least 1, got {max_weight}"),
        );
    }
    for (field, value) in [
        ("abortScaleDownDelaySeconds", canary.abort_scale_down_delay_seconds),
        ("scaleDownDelaySeconds", canary.scale_down_delay_seconds),
    ] {
        found.check_range(&format!("{CANARY}.{field}"), value, 0..=MAX_SECONDS);
    }
    match (&canary.canary_service, &canary.stable_service) {
        (Some(c), Some(s)) if c == s => {
            found.add(format!("{CANARY}.stableService"), "must differ from canaryService");
        }
        _ => {}
    }
    if let Some(routing) = &canary.traffic_routing {
        let routers: Vec<&str> = [
            ("gatewayAPI", routing.gateway_api.is_some()),
            ("smi", routing.smi.is_some()),
            ("istio", routing.istio.is_some()),
            ("nginx", routing.nginx.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect();
        if routers.len() != 1 {
            found.add(
                format!("{CANARY}.trafficRouting"),
                format!(
                    "set exactly one router (gatewayAPI, smi, istio, nginx), found {}",
                    describe(&routers)
                ),
            );
        }
        // Istio's subset-level split routes to DestinationRule subsets of one host: no Services needed.
        let subset_split = routing.istio.as_ref().is_some_and(|i| i.destination_rule.is_some());
        let neither = canary.canary_service.is_none() && canary.stable_service.is_none();
        if (canary.canary_service.is_none() || canary.stable_service.is_none()) && !(subset_split && neither) {
            found.add(
                format!("{CANARY}.canaryService"),
                "canaryService and stableService are both required with trafficRouting \
                 (except with an Istio destinationRule, which needs neither)",
            );
        }
        if let Some(nginx) = &routing.nginx {
            for error in crate::traffic::nginx::check_spec(nginx, &format!("{CANARY}.trafficRouting.nginx")) {
                found.add(error.field, error.message);
            }
        }
        if let Some(gateway) = &routing.gateway_api
            && gateway.route_names().is_empty()
        {
            found.add(
                format!("{CANARY}.trafficRouting.gatewayAPI"),
                "name an httpRoute or httpRoutes",
            );
        }
    }
    if let Some(analysis) = &canary.analysis {
        check_analysis(analysis, &format!("{CANARY}.analysis"), found);
        if let Some(start) = analysis.starting_step
            && (start < 0 || start as usize > canary.steps.len())
        {
            found.add(
                format!("{CANARY}.analysis.startingStep"),
                format!(
                    "must be between 0 and {} (the number of steps), got {start}",
                    canary.steps.len()
                ),
            );
        }
    }
    found.0.extend(crate::traffic::routes::check_steps(canary));
    for (i, step) in canary.steps.iter().enumerate() {
        check_step(step, &format!("{CANARY}.steps[{i}]"), max_weight, found);
        if let Some(experiment) = &step.experiment {
            let step_weight = canary.steps[..=i].iter().rev().find_map(|s| s.set_weight).unwrap_or(0);
            check_experiment(
                experiment,
                &format!("{CANARY}.steps[{i}].experiment"),
                step_weight,
                max_weight,
                canary.traffic_routing.as_ref(),
                found,
            );
        }
        if step.set_canary_scale.is_some() && canary.traffic_routing.is_none() {
            found.add(
                format!("{CANARY}.steps[{i}].setCanaryScale"),
                "needs trafficRouting: without a router the replica counts are the traffic weight",
            );
        }
    }
}

fn describe(kinds: &[&str]) -> String {
    match kinds {
        [] => "none".into(),
        [one] => one.to_string(),
        many => many.join(" and "),
    }
}

fn check_step(step: &CanaryStep, field: &str, max_weight: i32, found: &mut Findings) {
    let kinds = step.kinds();
    if kinds.len() != 1 {
        found.add(
            field,
            format!(
                "a step needs exactly one of setWeight, pause, analysis, experiment, setCanaryScale, \
                 setHeaderRoute, setMirrorRoute; found {}",
                describe(&kinds)
            ),
        );
        return;
    }
    if let Some(unknown) = step.unknown.keys().next() {
        found.add(
            format!("{field}.{unknown}"),
            "unknown step kind: use setWeight, pause, analysis, experiment, setCanaryScale, setHeaderRoute or \
             setMirrorRoute",
        );
    }
    if let Some(weight) = step.set_weight
        && !(0..=max_weight).contains(&weight)
    {
        found.add(
            format!("{field}.setWeight"),
            format!("must be between 0 and {max_weight}, got {weight}"),
        );
    }
    if let Some(pause) = &step.pause
        && let Err(e) = pause.duration()
    {
        found.add(format!("{field}.pause.duration"), e.to_string());
    }
    if let Some(analysis) = &step.analysis {
        check_analysis(analysis, &format!("{field}.analysis"), found);
    }
    if let Some(scale) = &step.set_canary_scale {
        check_canary_scale(scale, &format!("{field}.setCanaryScale"), found);
    }
}

/// Reports a name at `field` that is not a DNS label or repeats one in `seen`.
fn check_unique_name<'a>(
    name: &'a str,
    field: String,
    seen: &mut std::collections::HashSet<&'a str>,
    found: &mut Findings,
) {
    if dns_label(name).is_err() {
        found.add(
            field,
            format!(
                "{:?} must be a DNS label (lowercase letters, digits and '-', at most 63)",
                crate::bounds::truncate(name, 80)
            ),
        );
    } else if !seen.insert(name) {
        found.add(field, format!("{name:?} is given twice"));
    }
}

/// An experiment step: bounded lists, unique DNS-label names, a duration, and per-template weights
/// only with a router that can send traffic to the templates' Services, within maxTrafficWeight
/// together with the canary's weight at this step.
fn check_experiment(
    experiment: &RolloutExperimentStep,
    field: &str,
    step_weight: i32,
    max_weight: i32,
    routing: Option<&TrafficRouting>,
    found: &mut Findings,
) {
    use crate::api::experiment::{MAX_ANALYSES, MAX_TEMPLATES};
    if experiment.templates.is_empty() || experiment.templates.len() > MAX_TEMPLATES {
        found.add(
            format!("{field}.templates"),
            format!(
                "name between 1 and {MAX_TEMPLATES} templates, got {}",
                experiment.templates.len()
            ),
        );
        return;
    }
    if experiment.analyses.len() > MAX_ANALYSES {
        found.add(
            format!("{field}.analyses"),
            format!("at most {MAX_ANALYSES} analyses, got {}", experiment.analyses.len()),
        );
        return;
    }
    if let Err(e) = experiment.duration() {
        found.add(format!("{field}.duration"), e.to_string());
    }
    let mut names = std::collections::HashSet::new();
    let mut weights: i64 = 0;
    for (i, template) in experiment.templates.iter().enumerate() {
        let at = format!("{field}.templates[{i}]");
        check_unique_name(&template.name, format!("{at}.name"), &mut names, found);
        found.check_range(&format!("{at}.replicas"), template.replicas, 0..=10_000);
        if let Some(service) = template.service.as_ref().and_then(|s| s.name.as_deref())
            && dns_label(service).is_err()
        {
            found.add(format!("{at}.service.name"), "must be a DNS label (at most 63)");
        }
        if let Some(service) = &template.service {
            crate::experiment::validate::check_service_ports(&format!("{at}.service.ports"), &service.ports, found);
        }
        let Some(weight) = template.weight else { continue };
        if !(0..=100).contains(&weight) {
            found.add(
                format!("{at}.weight"),
                format!("must be between 0 and 100, got {weight}"),
            );
            continue;
        }
        weights += i64::from(weight);
        match routing.map(experiment_router) {
            None => found.add(
                format!("{at}.weight"),
                "needs trafficRouting: without a router the template's pods get no share of traffic",
            ),
            Some(Err(router)) => found.add(
                format!("{at}.weight"),
                format!(
                    "the {router} router cannot send traffic to an experiment's Services (Gateway API and SMI can)"
                ),
            ),
            Some(Ok(())) => {}
        }
    }
    if weights > 0 && weights + i64::from(step_weight) > i64::from(max_weight) {
        found.add(
            format!("{field}.templates"),
            format!(
                "the templates' weights ({weights}) and the canary's weight at this step ({step_weight}) \
                 add up to more than maxTrafficWeight ({max_weight})"
            ),
        );
    }
    let mut analysis_names = std::collections::HashSet::new();
    for (i, analysis) in experiment.analyses.iter().enumerate() {
        let at = format!("{field}.analyses[{i}]");
        check_unique_name(&analysis.name, format!("{at}.name"), &mut analysis_names, found);
        if analysis.template_name.trim().is_empty() {
            found.add(format!("{at}.templateName"), "must not be empty");
        }
        let mut args = std::collections::HashSet::new();
        for (j, arg) in analysis.args.iter().enumerate() {
            if arg.name.trim().is_empty() {
                found.add(format!("{at}.args[{j}].name"), "must not be empty");
            } else if !args.insert(arg.name.as_str()) {
                found.add(format!("{at}.args[{j}].name"), format!("{:?} is given twice", arg.name));
            }
        }
    }
}

/// Whether the router can weight an experiment's templates (extra backends); Err names it when not.
fn experiment_router(routing: &TrafficRouting) -> Result<(), &'static str> {
    if routing.istio.is_some() {
        Err("istio")
    } else if routing.nginx.is_some() {
        Err("nginx")
    } else {
        Ok(())
    }
}

fn check_canary_scale(scale: &SetCanaryScale, field: &str, found: &mut Findings) {
    let set: Vec<&str> = [
        ("replicas", scale.replicas.is_some()),
        ("weight", scale.weight.is_some()),
        ("matchTrafficWeight", scale.match_traffic_weight == Some(true)),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name)
    .collect();
    if set.len() != 1 {
        found.add(
            field,
            format!(
                "set exactly one of replicas, weight, matchTrafficWeight; found {}",
                describe(&set)
            ),
        );
    }
    found.check_range(&format!("{field}.replicas"), scale.replicas, 0..=i32::MAX);
    found.check_range(&format!("{field}.weight"), scale.weight, 0..=100);
}

fn check_analysis(analysis: &RolloutAnalysis, field: &str, found: &mut Findings) {
    if analysis.templates.is_empty() {
        found.add(format!("{field}.templates"), "name at least one template");
    }
    for (i, template) in analysis.templates.iter().enumerate() {
        if template.template_name.trim().is_empty() {
            found.add(format!("{field}.templates[{i}].templateName"), "must not be empty");
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, arg) in analysis.args.iter().enumerate() {
        if arg.name.trim().is_empty() {
            found.add(format!("{field}.args[{i}].name"), "must not be empty");
        } else if !seen.insert(arg.name.clone()) {
            found.add(
                format!("{field}.args[{i}].name"),
                format!("{:?} is given twice", arg.name),
            );
        }
    }
    // Argo's lists by metric name: patterns bounded and compiled here; "matches no metric" needs the
    // templates and is reported when the run is built.
    let lists = analysis.dry_run.len() + analysis.measurement_retention.len();
    if lists > crate::analysis::template::MAX_METRIC_LIST_ENTRIES {
        found.add(
            format!("{field}.dryRun"),
            format!(
                "{lists} dryRun/measurementRetention entries; at most {}",
                crate::analysis::template::MAX_METRIC_LIST_ENTRIES
            ),
        );
        return;
    }
    let patterns = (analysis.dry_run.iter().map(|d| ("dryRun", &d.metric_name)).enumerate()).chain(
        analysis
            .measurement_retention
            .iter()
            .map(|m| ("measurementRetention", &m.metric_name))
            .enumerate(),
    );
    for (i, (list, pattern)) in patterns {
        if let Err(why) = crate::analysis::template::metric_name_pattern(pattern) {
            found.add(format!("{field}.{list}[{i}].metricName"), why);
        }
    }
    for (i, retention) in analysis.measurement_retention.iter().enumerate() {
        found.check_range(
            &format!("{field}.measurementRetention[{i}].limit"),
            Some(retention.limit),
            0..=crate::analysis::rules::MAX_MEASUREMENT_RETENTION,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{CanaryStep, PauseStep, TrafficRouting};

    fn fields(rollout: &Rollout) -> Vec<String> {
        validate(rollout).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn analysis_lists_by_metric_name_are_checked() {
        use crate::api::analysis::{DryRun, MeasurementRetention};
        let rollout = Rollout::example(
            "web",
            1,
            vec![CanaryStep {
                analysis: Some(RolloutAnalysis {
                    dry_run: vec![DryRun {
                        metric_name: "(unclosed".into(),
                    }],
                    measurement_retention: vec![MeasurementRetention {
                        metric_name: ".*".into(),
                        limit: 1000,
                    }],
                    ..RolloutAnalysis::template("t")
                }),
                ..CanaryStep::default()
            }],
        );
        let errors = fields(&rollout);
        assert!(
            errors.iter().any(|f| f.ends_with("analysis.dryRun[0].metricName")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|f| f.ends_with("analysis.measurementRetention[0].limit")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_good_rollout_is_valid() {
        let rollout = Rollout::example(
            "web",
            10,
            vec![CanaryStep::set_weight(20), CanaryStep::pause_for("30s")],
        );
        assert_eq!(validate(&rollout), vec![]);
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases: Vec<(Rollout, &str)> = vec![
            (
                Rollout::example("w", 1, vec![CanaryStep::set_weight(120)]),
                "spec.strategy.canary.steps[0].setWeight",
            ),
            (
                Rollout::example("w", 1, vec![CanaryStep::set_weight(-1)]),
                "spec.strategy.canary.steps[0].setWeight",
            ),
            (
                Rollout::example("w", 1, vec![CanaryStep::default()]),
                "spec.strategy.canary.steps[0]",
            ),
            (
                Rollout::example(
                    "w",
                    1,
                    vec![CanaryStep {
                        set_weight: Some(10),
                        pause: Some(PauseStep::default()),
                        ..Default::default()
                    }],
                ),
                "spec.strategy.canary.steps[0]",
            ),
            (
                Rollout::example("w", 1, vec![CanaryStep::set_weight(10), CanaryStep::pause_for("5x")]),
                "spec.strategy.canary.steps[1].pause.duration",
            ),
            (Rollout::example("w", -3, vec![]), "spec.replicas"),
            (
                Rollout::example("w", 1, vec![]).with_canary(|c| {
                    c.max_surge = Some(IntOrString::Int(0));
                    c.max_unavailable = Some(IntOrString::Int(0));
                }),
                "spec.strategy.canary.maxUnavailable",
            ),
            (
                Rollout::example("w", 1, vec![])
                    .with_canary(|c| c.max_surge = Some(IntOrString::String("lots".into()))),
                "spec.strategy.canary.maxSurge",
            ),
            (
                Rollout::example("w", 1, vec![]).with_traffic_routing(TrafficRouting::default()),
                "spec.strategy.canary.trafficRouting",
            ),
        ];
        for (rollout, field) in cases {
            let found = fields(&rollout);
            assert!(
                found.iter().any(|f| f == field),
                "expected an error at {field}, got {found:?}"
            );
        }
    }

    #[test]
    fn selectors_must_be_non_empty_and_match_the_template() {
        let mut rollout = Rollout::example("w", 1, vec![]);
        rollout.spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
        assert_eq!(fields(&rollout), vec!["spec.selector.matchLabels"]);
        rollout.spec.selector.match_labels = None;
        assert_eq!(fields(&rollout), vec!["spec.selector"]);
    }

    #[test]
    fn an_unknown_step_kind_is_reported_not_ignored() {
        let mut step = CanaryStep::default();
        step.unknown.insert("plugin".into(), serde_json::json!({}));
        let rollout = Rollout::example("w", 1, vec![step]);
        let errors = validate(&rollout);
        assert_eq!(errors[0].field, "spec.strategy.canary.steps[0].plugin");
        assert!(summary(&errors).contains("unknown step kind"));
    }

    fn experiment_rollout(step: serde_json::Value, routing: Option<TrafficRouting>) -> Rollout {
        let steps = vec![
            CanaryStep::set_weight(20),
            CanaryStep::pause(),
            serde_json::from_value(serde_json::json!({ "experiment": step })).unwrap(),
        ];
        let rollout = Rollout::example("w", 1, steps);
        match routing {
            Some(routing) => rollout.with_services("c", "s").with_traffic_routing(routing),
            None => rollout,
        }
    }

    fn gateway() -> TrafficRouting {
        TrafficRouting {
            gateway_api: Some(crate::api::rollout::GatewayApiTrafficRouting {
                http_route: Some("r".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_experiment_step_is_valid() {
        let step = serde_json::json!({
            "duration": "10s",
            "templates": [
                {"name": "baseline", "specRef": "stable", "weight": 10},
                {"name": "canary", "specRef": "canary", "weight": 10, "replicas": 2}
            ],
            "analyses": [{"name": "compare", "templateName": "compare", "args": [{"name": "a", "value": "1"}]}]
        });
        assert_eq!(
            fields(&experiment_rollout(step.clone(), Some(gateway()))),
            Vec::<String>::new()
        );
        let smi = TrafficRouting {
            smi: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(fields(&experiment_rollout(step, Some(smi))), Vec::<String>::new());
    }

    #[test]
    fn experiment_step_problems_name_their_field() {
        const AT: &str = "spec.strategy.canary.steps[2].experiment";
        let cases = [
            (serde_json::json!({"templates": []}), format!("{AT}.templates")),
            (
                serde_json::json!({"templates": [{"name": "Base_line", "specRef": "stable"}]}),
                format!("{AT}.templates[0].name"),
            ),
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable"}, {"name": "a", "specRef": "canary"}]}),
                format!("{AT}.templates[1].name"),
            ),
            (
                serde_json::json!({"duration": "forever", "templates": [{"name": "a", "specRef": "stable"}]}),
                format!("{AT}.duration"),
            ),
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable", "replicas": -1}]}),
                format!("{AT}.templates[0].replicas"),
            ),
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable", "weight": 10}]}),
                format!("{AT}.templates[0].weight"),
            ),
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable"}],
                    "analyses": [{"name": "x", "templateName": ""}, {"name": "x", "templateName": "t"}]}),
                format!("{AT}.analyses[0].templateName"),
            ),
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable"}],
                    "analyses": [{"name": "x", "templateName": "t"}, {"name": "x", "templateName": "t"}]}),
                format!("{AT}.analyses[1].name"),
            ),
            // Argo's service.ports, checked here too: otherwise the Rollout would pass and only the
            // Experiment it creates would be refused, mid-canary.
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable",
                    "service": {"ports": [{"port": 70000}]}}]}),
                format!("{AT}.templates[0].service.ports[0].port"),
            ),
            (
                serde_json::json!({"templates": [{"name": "a", "specRef": "stable",
                    "service": {"ports": [{"port": 80}, {"port": 81}]}}]}),
                format!("{AT}.templates[0].service.ports[1].name"),
            ),
        ];
        for (step, field) in cases {
            let errors = fields(&experiment_rollout(step.clone(), None));
            assert!(errors.contains(&field), "{step}: {errors:?}");
        }
        let too_many: Vec<_> = (0..17)
            .map(|i| serde_json::json!({"name": format!("t{i}"), "specRef": "canary"}))
            .collect();
        let errors = fields(&experiment_rollout(serde_json::json!({ "templates": too_many }), None));
        assert_eq!(errors, vec![format!("{AT}.templates")]);
    }

    #[test]
    fn experiment_weights_need_a_router_that_routes_to_extra_services_and_room_under_the_maximum() {
        const AT: &str = "spec.strategy.canary.steps[2].experiment";
        // 20 (the canary's weight at the step) + 50 + 40 > 100.
        let heavy = serde_json::json!({"templates": [
            {"name": "a", "specRef": "stable", "weight": 50},
            {"name": "b", "specRef": "canary", "weight": 40}
        ]});
        assert_eq!(
            fields(&experiment_rollout(heavy, Some(gateway()))),
            vec![format!("{AT}.templates")]
        );
        let weighted = serde_json::json!({"templates": [{"name": "a", "specRef": "stable", "weight": 5}]});
        for (routing, router) in [
            (
                TrafficRouting {
                    istio: Some(Default::default()),
                    ..Default::default()
                },
                "istio",
            ),
            (
                TrafficRouting {
                    nginx: Some(crate::api::rollout::NginxTrafficRouting {
                        stable_ingress: "i".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "nginx",
            ),
        ] {
            let errors = validate(&experiment_rollout(weighted.clone(), Some(routing)));
            let error = errors
                .iter()
                .find(|e| e.field == format!("{AT}.templates[0].weight"))
                .unwrap_or_else(|| panic!("{router}: {errors:?}"));
            assert!(error.message.contains(router), "{}", error.message);
        }
    }

    /// The pause durations of the bug report (issue 13) and their kin: InvalidSpec at the step's
    /// pause.duration, never a panic further on.
    #[test]
    fn pauses_past_the_maximum_name_their_field() {
        let poison = [
            IntOrString::String("100000000000000".into()),
            IntOrString::String("99999999999999999999s".into()),
            IntOrString::String("2562047788015216h".into()),
            IntOrString::String("8761h".into()),
            IntOrString::String("1e400s".into()),
            IntOrString::String("-5s".into()),
            IntOrString::String(String::new()),
            IntOrString::String("0.0000000001ns".into()),
            IntOrString::String("9".repeat(100_000)),
            IntOrString::Int(i32::MAX),
            IntOrString::Int(MAX_SECONDS + 1),
            IntOrString::Int(-1),
            IntOrString::Int(i32::MIN),
        ];
        for duration in poison {
            let pause = CanaryStep {
                pause: Some(PauseStep {
                    duration: Some(duration.clone()),
                }),
                ..Default::default()
            };
            let rollout = Rollout::example("w", 1, vec![CanaryStep::set_weight(10), pause]);
            let errors = validate(&rollout);
            assert_eq!(
                fields(&rollout),
                vec!["spec.strategy.canary.steps[1].pause.duration"],
                "{duration:?}"
            );
            assert!(summary(&errors).len() < 400, "a huge value is not echoed whole");
        }
        for fine in ["8760h", "31536000", "5"] {
            let rollout = Rollout::example("w", 1, vec![CanaryStep::pause_for(fine)]);
            assert_eq!(validate(&rollout), vec![], "{fine}");
        }
    }

    /// Every bounded integer field, at and past its ends: each out-of-range value is one error at its
    /// path, i32::MIN and i32::MAX included (no wrapping arithmetic on the way).
    #[test]
    fn integer_fields_are_bounded_at_both_ends() {
        type Edit = fn(&mut Rollout, i32);
        let cases: Vec<(&str, Edit, i32, i32)> = vec![
            ("spec.replicas", |r, v| r.spec.replicas = Some(v), 0, i32::MAX),
            (
                "spec.revisionHistoryLimit",
                |r, v| r.spec.revision_history_limit = Some(v),
                0,
                i32::MAX,
            ),
            (
                "spec.rollbackWindow.revisions",
                |r, v| r.spec.rollback_window = Some(crate::api::rollout::RollbackWindow { revisions: v }),
                0,
                i32::MAX,
            ),
            (
                "spec.progressDeadlineSeconds",
                |r, v| r.spec.progress_deadline_seconds = Some(v),
                1,
                MAX_SECONDS,
            ),
            (
                "spec.minReadySeconds",
                |r, v| r.spec.min_ready_seconds = Some(v),
                0,
                MAX_SECONDS,
            ),
            (
                "spec.analysis.successfulRunHistoryLimit",
                |r, v| {
                    r.spec.analysis = Some(crate::api::rollout::AnalysisRunHistory {
                        successful_run_history_limit: Some(v),
                        ..Default::default()
                    })
                },
                0,
                i32::MAX,
            ),
            (
                "spec.strategy.canary.scaleDownDelaySeconds",
                |r, v| r.spec.strategy.canary.as_mut().unwrap().scale_down_delay_seconds = Some(v),
                0,
                MAX_SECONDS,
            ),
            (
                "spec.strategy.canary.abortScaleDownDelaySeconds",
                |r, v| r.spec.strategy.canary.as_mut().unwrap().abort_scale_down_delay_seconds = Some(v),
                0,
                MAX_SECONDS,
            ),
            (
                "spec.strategy.canary.steps[0].setWeight",
                |r, v| r.spec.strategy.canary.as_mut().unwrap().steps[0].set_weight = Some(v),
                0,
                100,
            ),
        ];
        for (field, edit, min, max) in cases {
            for value in [i32::MIN, min - 1, min, max, max.saturating_add(1), i32::MAX] {
                let mut rollout = Rollout::example("w", 1, vec![CanaryStep::set_weight(10)]);
                edit(&mut rollout, value);
                let found = fields(&rollout);
                if (min..=max).contains(&value) {
                    assert_eq!(found, Vec::<String>::new(), "{field} = {value}");
                } else {
                    assert_eq!(found, vec![field.to_string()], "{field} = {value}");
                }
            }
        }
    }

    #[test]
    fn blue_green_fields_are_checked_and_name_their_paths() {
        use crate::api::rollout::{AntiAffinity, PodMetadata, PreferredAntiAffinity, RequiredAntiAffinity};
        assert_eq!(validate(&Rollout::blue_green_example("w", 2)), vec![]);
        let mut both = Rollout::blue_green_example("w", 2);
        both.spec.strategy.canary = Some(Default::default());
        assert_eq!(fields(&both), vec!["spec.strategy"]);
        type Edit = fn(&mut crate::api::rollout::BlueGreenStrategy);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |b| b.active_service = String::new(),
                "spec.strategy.blueGreen.activeService",
            ),
            (
                |b| b.preview_service = Some(b.active_service.clone()),
                "spec.strategy.blueGreen.previewService",
            ),
            (
                |b| b.preview_replica_count = Some(0),
                "spec.strategy.blueGreen.previewReplicaCount",
            ),
            (
                |b| b.preview_replica_count = Some(i32::MIN),
                "spec.strategy.blueGreen.previewReplicaCount",
            ),
            (
                |b| b.scale_down_delay_revision_limit = Some(-1),
                "spec.strategy.blueGreen.scaleDownDelayRevisionLimit",
            ),
            (
                |b| b.auto_promotion_seconds = Some(-1),
                "spec.strategy.blueGreen.autoPromotionSeconds",
            ),
            (
                |b| b.auto_promotion_seconds = Some(MAX_SECONDS + 1),
                "spec.strategy.blueGreen.autoPromotionSeconds",
            ),
            (
                |b| b.scale_down_delay_seconds = Some(i32::MAX),
                "spec.strategy.blueGreen.scaleDownDelaySeconds",
            ),
            (
                |b| b.abort_scale_down_delay_seconds = Some(i32::MIN),
                "spec.strategy.blueGreen.abortScaleDownDelaySeconds",
            ),
            (
                |b| b.pre_promotion_analysis = Some(RolloutAnalysis::default()),
                "spec.strategy.blueGreen.prePromotionAnalysis.templates",
            ),
            (
                |b| b.post_promotion_analysis = Some(RolloutAnalysis::default()),
                "spec.strategy.blueGreen.postPromotionAnalysis.templates",
            ),
            (
                |b| b.anti_affinity = Some(AntiAffinity::default()),
                "spec.strategy.blueGreen.antiAffinity",
            ),
            (
                |b| {
                    b.anti_affinity = Some(AntiAffinity {
                        preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity {
                            weight: 101,
                        }),
                        ..AntiAffinity::default()
                    })
                },
                "spec.strategy.blueGreen.antiAffinity.preferredDuringSchedulingIgnoredDuringExecution.weight",
            ),
            (
                |b| {
                    b.anti_affinity = Some(AntiAffinity {
                        preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity { weight: 1 }),
                        required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
                    })
                },
                "spec.strategy.blueGreen.antiAffinity",
            ),
            (
                |b| {
                    b.active_metadata = Some(PodMetadata {
                        labels: [("app".to_string(), "other".to_string())].into(),
                        ..PodMetadata::default()
                    })
                },
                "spec.strategy.blueGreen.activeMetadata.labels[app]",
            ),
            (
                |b| {
                    b.preview_metadata = Some(PodMetadata {
                        labels: [("role".to_string(), "x".repeat(64))].into(),
                        ..PodMetadata::default()
                    })
                },
                "spec.strategy.blueGreen.previewMetadata.labels[role]",
            ),
            (
                |b| {
                    b.preview_metadata = Some(PodMetadata {
                        annotations: [("not a key".to_string(), String::new())].into(),
                        ..PodMetadata::default()
                    })
                },
                "spec.strategy.blueGreen.previewMetadata.annotations[not a key]",
            ),
        ];
        for (edit, field) in cases {
            let rollout = Rollout::blue_green_example("w", 2).with_blue_green(edit);
            assert_eq!(fields(&rollout), vec![field.to_string()], "{field}");
            assert!(summary(&validate(&rollout)).len() < 400);
        }
        let fine = Rollout::blue_green_example("w", 2).with_blue_green(|b| {
            b.auto_promotion_seconds = Some(MAX_SECONDS);
            b.scale_down_delay_revision_limit = Some(0);
            b.active_metadata = Some(PodMetadata {
                labels: [("example.com/role".to_string(), "active".to_string())].into(),
                annotations: [("note".to_string(), "any text at all".to_string())].into(),
            });
        });
        assert_eq!(validate(&fine), vec![]);
    }

    #[test]
    fn max_unavailable_may_not_pass_100_percent() {
        let rollout = Rollout::example("w", 4, vec![])
            .with_canary(|c| c.max_unavailable = Some(IntOrString::String("101%".into())));
        assert_eq!(fields(&rollout), vec!["spec.strategy.canary.maxUnavailable"]);
        let rollout =
            Rollout::example("w", 4, vec![]).with_canary(|c| c.max_surge = Some(IntOrString::String("300%".into())));
        assert_eq!(
            validate(&rollout),
            vec![],
            "a surge past 100% is allowed, as in Kubernetes"
        );
    }
}
