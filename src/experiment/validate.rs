//! Spec validation of an Experiment: every problem with the field path a user needs to fix it. An
//! invalid Experiment ends in Error with an InvalidSpec condition and a Warning event; nothing runs.
use std::collections::BTreeSet;

use crate::api::duration::MAX_SECONDS;
use crate::api::experiment::{Experiment, MAX_ANALYSES, MAX_TEMPLATES};
use crate::api::spec_error::{Findings, SpecError};

/// Most pods one template may ask for (the CRD's bound, checked again for objects that bypassed it).
pub const MAX_TEMPLATE_REPLICAS: i32 = 10_000;
/// Longest argument value, placeholders included.
const MAX_ARG_VALUE_BYTES: usize = 4 * 1024;
/// What `{{templates.NAME.FIELD}}` may read.
pub const TEMPLATE_FIELDS: [&str; 2] = ["podTemplateHash", "replicaSetName"];

pub use crate::api::spec_error::dns_label;

/// Every problem with the spec (empty when valid).
pub fn validate(experiment: &Experiment) -> Vec<SpecError> {
    let spec = &experiment.spec;
    let mut found = Findings::default();
    if spec.templates.is_empty() {
        found.add("spec.templates", "at least one template is required");
    }
    if spec.templates.len() > MAX_TEMPLATES {
        found.add(
            "spec.templates",
            format!("at most {MAX_TEMPLATES} templates, got {}", spec.templates.len()),
        );
    }
    if spec.analyses.len() > MAX_ANALYSES {
        found.add(
            "spec.analyses",
            format!("at most {MAX_ANALYSES} analyses, got {}", spec.analyses.len()),
        );
    }
    if let Err(e) = spec.duration() {
        found.add("spec.duration", e.to_string());
    }
    found.check_range(
        "spec.progressDeadlineSeconds",
        spec.progress_deadline_seconds,
        0..=MAX_SECONDS,
    );
    found.check_range(
        "spec.scaleDownDelaySeconds",
        spec.scale_down_delay_seconds,
        0..=MAX_SECONDS,
    );
    // Past the count limits, per-item checks would only repeat the same answer many times.
    if !found
        .0
        .iter()
        .any(|e| e.field == "spec.templates" || e.field == "spec.analyses")
    {
        check_templates(experiment, &mut found);
        check_analyses(experiment, &mut found);
    }
    found.0
}

fn check_templates(experiment: &Experiment, found: &mut Findings) {
    let mut names = BTreeSet::new();
    let mut services = BTreeSet::new();
    for (i, template) in experiment.spec.templates.iter().enumerate() {
        let at = format!("spec.templates[{i}]");
        found.check_dns_label(&format!("{at}.name"), &template.name);
        if !names.insert(template.name.as_str()) {
            found.add(
                format!("{at}.name"),
                format!("{:?} is used by an earlier template", template.name),
            );
        }
        found.check_range(&format!("{at}.replicas"), template.replicas, 0..=MAX_TEMPLATE_REPLICAS);
        found.check_range(
            &format!("{at}.minReadySeconds"),
            template.min_ready_seconds,
            0..=MAX_SECONDS,
        );
        let pod_template = template.template.spec();
        let labels = pod_template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        found.check_selector(
            &format!("{at}.selector"),
            &template.selector,
            &labels,
            &format!("{at}.template.metadata.labels"),
        );
        let containers = pod_template
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        if containers.is_empty() {
            found.add(
                format!("{at}.template.spec.containers"),
                "at least one container is required",
            );
        }
        if let Some(service) = &template.service {
            let explicit = service.name.as_deref().is_some_and(|n| !n.is_empty());
            let experiment_name = experiment.metadata.name.clone().unwrap_or_default();
            if let Some(name) = super::names::service_name(&experiment_name, template) {
                // A Service name is a DNS label starting with a letter (RFC 1035); the default one comes
                // from the Experiment's name, which may hold dots or start with a digit.
                let checked = dns_label(&name).and_then(|()| {
                    if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                        Ok(())
                    } else {
                        Err(format!("{name:?} must start with a letter"))
                    }
                });
                if let Err(message) = checked {
                    let hint = if explicit {
                        ""
                    } else {
                        " (the default name; set service.name)"
                    };
                    found.add(format!("{at}.service.name"), format!("{message}{hint}"));
                } else if !services.insert(name.clone()) {
                    found.add(
                        format!("{at}.service.name"),
                        format!("Service {name:?} is used by an earlier template"),
                    );
                }
            }
            let has_port = containers
                .iter()
                .any(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()));
            if service.ports.is_empty() && !has_port {
                found.add(
                    format!("{at}.service"),
                    "without service.ports the Service takes its ports from the containers, and no container \
                     declares one",
                );
            }
            check_service_ports(&format!("{at}.service.ports"), &service.ports, found);
        }
    }
}

fn check_analyses(experiment: &Experiment, found: &mut Findings) {
    let templates: BTreeSet<&str> = experiment.spec.templates.iter().map(|t| t.name.as_str()).collect();
    let mut names = BTreeSet::new();
    for (i, analysis) in experiment.spec.analyses.iter().enumerate() {
        let at = format!("spec.analyses[{i}]");
        found.check_dns_label(&format!("{at}.name"), &analysis.name);
        if !names.insert(analysis.name.as_str()) {
            found.add(
                format!("{at}.name"),
                format!("{:?} is used by an earlier analysis", analysis.name),
            );
        }
        if analysis.template_name.is_empty() || analysis.template_name.len() > 253 {
            found.add(format!("{at}.templateName"), "must be 1 to 253 characters");
        }
        for (j, arg) in analysis.args.iter().enumerate() {
            if arg.name.is_empty() {
                found.add(format!("{at}.args[{j}].name"), "must not be empty");
            }
            let Some(value) = &arg.value else { continue };
            let field = format!("{at}.args[{j}].value");
            if value.len() > MAX_ARG_VALUE_BYTES {
                found.add(field, format!("must be at most {MAX_ARG_VALUE_BYTES} bytes"));
                continue;
            }
            for reference in template_references(value) {
                match reference {
                    Ok((template, field_name)) => {
                        if !templates.contains(template) {
                            found.add(
                                &field,
                                format!("{{{{templates.{template}.…}}}}: no template {template:?}"),
                            );
                        } else if !TEMPLATE_FIELDS.contains(&field_name) {
                            found.add(
                                &field,
                                format!(
                                    "{{{{templates.{template}.{field_name}}}}}: use podTemplateHash or replicaSetName"
                                ),
                            );
                        }
                    }
                    Err(message) => found.add(&field, message),
                }
            }
        }
    }
}

/// The `{{templates.NAME.FIELD}}` placeholders of `value`, as (NAME, FIELD); a malformed one is an error.
pub fn template_references(value: &str) -> Vec<Result<(&str, &str), String>> {
    const OPEN: &str = "{{templates.";
    let mut found = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find("}}") else {
            found.push(Err("unterminated {{templates.…}} placeholder".to_string()));
            break;
        };
        let inner = &after[..end];
        found.push(match inner.split_once('.') {
            Some((name, field)) if !name.is_empty() && !field.is_empty() => Ok((name.trim(), field.trim())),
            _ => Err(format!(
                "{{{{templates.{}}}}}: write {{{{templates.NAME.podTemplateHash}}}} or {{{{templates.NAME.replicaSetName}}}}",
                crate::bounds::truncate(inner, 80)
            )),
        });
        rest = &after[end + 2..];
    }
    found
}

/// `value` with every `{{templates.NAME.FIELD}}` replaced by `lookup(NAME, FIELD)`; other placeholders
/// (`{{args.…}}`) are left for the analysis to resolve.
pub fn substitute_templates(value: &str, lookup: impl Fn(&str, &str) -> Option<String>) -> Result<String, String> {
    const OPEN: &str = "{{templates.";
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find("}}")
            .ok_or_else(|| "unterminated {{templates.…}} placeholder".to_string())?;
        let inner = &after[..end];
        let (name, field) = inner
            .split_once('.')
            .ok_or_else(|| format!("{{{{templates.{}}}}}: no field", crate::bounds::truncate(inner, 80)))?;
        let resolved = lookup(name.trim(), field.trim()).ok_or_else(|| {
            format!(
                "{{{{templates.{}}}}}: unknown template or field",
                crate::bounds::truncate(inner, 80)
            )
        })?;
        out.push_str(&resolved);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Argo's `service.ports`: bounded in number, each port and numeric target a valid port number, named
/// targets IANA service names (at most 15 characters), names unique and required when there are several
/// (the API server's rules, checked here so the field is named rather than a create refused).
pub(crate) fn check_service_ports(at: &str, ports: &[k8s_openapi::api::core::v1::ServicePort], found: &mut Findings) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    if ports.len() > crate::api::experiment::MAX_SERVICE_PORTS {
        found.add(
            at,
            format!(
                "at most {} ports, got {}",
                crate::api::experiment::MAX_SERVICE_PORTS,
                ports.len()
            ),
        );
        return;
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("{at}[{i}]");
        if !(1..=65_535).contains(&port.port) {
            found.add(
                format!("{field}.port"),
                format!("must be between 1 and 65535, got {}", port.port),
            );
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) if !(1..=65_535).contains(n) => {
                found.add(
                    format!("{field}.targetPort"),
                    format!("must be between 1 and 65535, got {n}"),
                );
            }
            Some(IntOrString::String(name)) if name.is_empty() || name.len() > 15 => {
                found.add(format!("{field}.targetPort"), "a named port has 1 to 15 characters")
            }
            _ => {}
        }
        match port.name.as_deref() {
            Some(name) if !names.insert(name.to_string()) => {
                found.add(format!("{field}.name"), format!("{name:?} is used by an earlier port"));
            }
            None if ports.len() > 1 => found.add(format!("{field}.name"), "required when there are several ports"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::Argument;
    use crate::experiment::fixtures::{analysis, experiment};
    use proptest::prelude::*;

    fn fields(e: &Experiment) -> Vec<String> {
        validate(e).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_fixture_is_valid() {
        assert_eq!(validate(&experiment("exp", &["baseline", "canary"])), vec![]);
    }

    #[test]
    fn duplicate_and_invalid_template_names_name_the_field() {
        let mut e = experiment("exp", &["a", "a"]);
        assert_eq!(fields(&e), ["spec.templates[1].name"]);
        e.spec.templates[0].name = "Not_A_Label".into();
        assert_eq!(fields(&e), ["spec.templates[0].name"]);
        e.spec.templates[0].name = "x".repeat(64);
        assert_eq!(fields(&e), ["spec.templates[0].name"]);
    }

    #[test]
    fn the_selector_must_match_the_labels() {
        let mut e = experiment("exp", &["a"]);
        e.spec.templates[0]
            .selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert("tier".into(), "web".into());
        assert_eq!(fields(&e), ["spec.templates[0].selector.matchLabels"]);
        e.spec.templates[0].selector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector::default();
        assert_eq!(fields(&e), ["spec.templates[0].selector"]);
    }

    #[test]
    fn bounds_on_numbers_durations_and_counts() {
        let mut e = experiment("exp", &["a"]);
        e.spec.templates[0].replicas = Some(-1);
        e.spec.duration = Some("forever".into());
        e.spec.progress_deadline_seconds = Some(-5);
        e.spec.scale_down_delay_seconds = Some(i32::MAX);
        assert_eq!(
            fields(&e),
            [
                "spec.duration",
                "spec.progressDeadlineSeconds",
                "spec.scaleDownDelaySeconds",
                "spec.templates[0].replicas"
            ]
        );
        let names: Vec<String> = (0..=MAX_TEMPLATES).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(fields(&experiment("exp", &names)), ["spec.templates"]);
        let mut e = experiment("exp", &["a"]);
        e.spec.analyses = (0..=MAX_ANALYSES).map(|i| analysis(&format!("a{i}"), "t")).collect();
        assert_eq!(fields(&e), ["spec.analyses"]);
    }

    #[test]
    fn args_may_only_reference_known_templates_and_fields() {
        let mut e = experiment("exp", &["baseline"]);
        let mut a = analysis("compare", "t");
        a.args = vec![
            Argument {
                name: "ok".into(),
                value: Some("{{templates.baseline.podTemplateHash}}".into()),
                value_from: None,
            },
            Argument {
                name: "unknown".into(),
                value: Some("{{templates.canary.podTemplateHash}}".into()),
                value_from: None,
            },
            Argument {
                name: "field".into(),
                value: Some("{{templates.baseline.image}}".into()),
                value_from: None,
            },
        ];
        e.spec.analyses = vec![a];
        assert_eq!(
            fields(&e),
            ["spec.analyses[0].args[1].value", "spec.analyses[0].args[2].value"]
        );
    }

    #[test]
    fn substitution_replaces_template_placeholders_only() {
        let out = substitute_templates("h={{templates.a.podTemplateHash}} {{args.x}}", |n, f| {
            (n == "a" && f == "podTemplateHash").then(|| "abc".to_string())
        });
        assert_eq!(out.unwrap(), "h=abc {{args.x}}");
        assert!(substitute_templates("{{templates.a.podTemplateHash", |_, _| None).is_err());
    }

    #[test]
    fn a_service_name_must_be_an_rfc_1035_label() {
        let mut e = experiment("v1.2", &["a"]);
        e.spec.templates[0].service = Some(Default::default());
        assert_eq!(fields(&e), ["spec.templates[0].service.name"]);
        e.spec.templates[0].service = Some(crate::api::experiment::TemplateService {
            name: Some("9lives".into()),
            ..Default::default()
        });
        assert_eq!(fields(&e), ["spec.templates[0].service.name"]);
        e.spec.templates[0].service = Some(crate::api::experiment::TemplateService {
            name: Some("web-canary".into()),
            ..Default::default()
        });
        assert_eq!(fields(&e), Vec::<String>::new());
    }

    #[test]
    fn a_service_needs_a_container_port() {
        let mut e = experiment("exp", &["a"]);
        e.spec.templates[0].service = Some(Default::default());
        e.spec.templates[0].template.update(|t| {
            if let Some(spec) = t.spec.as_mut() {
                spec.containers[0].ports = None;
            }
        });
        assert_eq!(fields(&e), ["spec.templates[0].service"]);
    }

    #[test]
    fn listed_service_ports_stand_in_for_container_ports_and_are_checked() {
        use k8s_openapi::api::core::v1::ServicePort;
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let port = |name: Option<&str>, port: i32, target: IntOrString| ServicePort {
            name: name.map(str::to_string),
            port,
            target_port: Some(target),
            ..Default::default()
        };
        let mut e = experiment("exp", &["a"]);
        e.spec.templates[0].template.update(|t| {
            if let Some(spec) = t.spec.as_mut() {
                spec.containers[0].ports = None;
            }
        });
        let service = |ports| Some(crate::api::experiment::TemplateService { name: None, ports });
        e.spec.templates[0].service = service(vec![
            port(Some("http"), 80, IntOrString::Int(8080)),
            port(Some("admin"), 81, IntOrString::String("testport1".into())),
        ]);
        assert_eq!(fields(&e), Vec::<String>::new());
        e.spec.templates[0].service = service(vec![
            port(Some("http"), 0, IntOrString::Int(70_000)),
            port(
                Some("http"),
                i32::MAX,
                IntOrString::String("a-name-far-too-long".into()),
            ),
            port(None, 82, IntOrString::Int(82)),
        ]);
        assert_eq!(
            fields(&e),
            [
                "spec.templates[0].service.ports[0].port",
                "spec.templates[0].service.ports[0].targetPort",
                "spec.templates[0].service.ports[1].port",
                "spec.templates[0].service.ports[1].targetPort",
                "spec.templates[0].service.ports[1].name",
                "spec.templates[0].service.ports[2].name",
            ]
        );
        e.spec.templates[0].service = service(vec![port(None, 80, IntOrString::Int(80)); 33]);
        assert_eq!(fields(&e), ["spec.templates[0].service.ports"]);
    }

    proptest! {
        #[test]
        fn no_value_panics(
            names in proptest::collection::vec("\\PC{0,70}", 0..20),
            replicas in any::<i32>(),
            duration in "\\PC{0,20}",
            arg in "\\PC{0,60}",
        ) {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut e = experiment("exp", &refs);
            if let Some(t) = e.spec.templates.first_mut() {
                t.replicas = Some(replicas);
            }
            e.spec.duration = Some(duration);
            let mut a = analysis("a", "t");
            a.args = vec![Argument { name: "x".into(), value: Some(arg.clone()), value_from: None }];
            e.spec.analyses = vec![a];
            let _ = validate(&e);
            let _ = substitute_templates(&arg, |_, _| Some(String::new()));
        }
    }
}
