//! `PodTemplate`: a Rollout's pod template kept as compact JSON text rather than a parsed
//! `PodTemplateSpec`.
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A pod template held as the compact JSON text of its `PodTemplateSpec`, parsed on demand.
/// Why: every Rollout stays in the controller's cache, where a parsed `PodTemplateSpec` costs
/// ~1.9 KB inline plus ~2 KB per container, yet the reconciler reads the template rarely.
///
/// The text is always `serde_json::to_string` of a `PodTemplateSpec`, so equal templates have equal
/// texts, and it serializes, hashes and has the JSON schema of that `PodTemplateSpec`.
#[derive(Clone, PartialEq, Eq)]
pub struct PodTemplate(Arc<str>);

impl PodTemplate {
    /// The parsed template.
    pub fn spec(&self) -> PodTemplateSpec {
        // Not user input: the text is what `from_spec` wrote for a PodTemplateSpec, so it parses back.
        serde_json::from_str(&self.0).expect("a PodTemplate holds a serialized PodTemplateSpec")
    }

    /// The template as a JSON value: the same value as `serde_json::to_value` of its
    /// `PodTemplateSpec` (the text is that value, written out), which the pod template hash is
    /// computed from.
    pub fn to_value(&self) -> Value {
        // Any text serde_json wrote is valid JSON.
        serde_json::from_str(&self.0).expect("a PodTemplate holds JSON text")
    }

    /// Edits the template: parses it, applies `edit` and stores the result.
    pub fn update(&mut self, edit: impl FnOnce(&mut PodTemplateSpec)) {
        let mut spec = self.spec();
        edit(&mut spec);
        *self = spec.into();
    }

    /// Whether this is the empty template `{}` (left out, as with workloadRef).
    pub fn is_empty(&self) -> bool {
        &*self.0 == "{}"
    }

    /// The canonical JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    fn from_spec(spec: &PodTemplateSpec) -> Result<Self, serde_json::Error> {
        serde_json::to_string(spec).map(|text| PodTemplate(text.into()))
    }
}

impl From<PodTemplateSpec> for PodTemplate {
    fn from(spec: PodTemplateSpec) -> Self {
        // serde_json fails only on maps whose keys are not strings; a PodTemplateSpec has none.
        PodTemplate::from_spec(&spec).expect("a PodTemplateSpec serializes to JSON")
    }
}

impl Default for PodTemplate {
    /// The empty template, `{}`.
    fn default() -> Self {
        PodTemplateSpec::default().into()
    }
}

impl fmt::Debug for PodTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PodTemplate({})", self.0)
    }
}

impl<'de> Deserialize<'de> for PodTemplate {
    /// Reads a `PodTemplateSpec`, so a malformed template fails as it would as a `PodTemplateSpec`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = PodTemplateSpec::deserialize(deserializer)?;
        PodTemplate::from_spec(&spec).map_err(D::Error::custom)
    }
}

impl Serialize for PodTemplate {
    /// Writes the `PodTemplateSpec` again (not the raw text), so that any format, YAML included,
    /// gets the same output as from a `PodTemplateSpec`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let spec: PodTemplateSpec = serde_json::from_str(&self.0).map_err(S::Error::custom)?;
        spec.serialize(serializer)
    }
}

/// The schema of `PodTemplateSpec`, so the CRD does not change.
impl JsonSchema for PodTemplate {
    fn inline_schema() -> bool {
        PodTemplateSpec::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        PodTemplateSpec::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        PodTemplateSpec::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        PodTemplateSpec::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::api::{Rollout, RolloutSpec};
    use crate::rollout::hash::pod_template_hash;

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            env: Some(vec![
                EnvVar {
                    name: "MODE".into(),
                    value: Some("canary".into()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "EMPTY".into(),
                    ..EnvVar::default()
                },
            ]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("100m".into())),
                    ("memory".to_string(), Quantity("64Mi".into())),
                ])),
                limits: Some(BTreeMap::from([("memory".to_string(), Quantity("128Mi".into()))])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    fn busy_spec() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("app".to_string(), "web".to_string()),
                    ("tier".to_string(), "front".to_string()),
                ])),
                annotations: Some(BTreeMap::from([("note".to_string(), "ü \"quoted\"".to_string())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![
                    container("app", "example.com/web:2"),
                    container("proxy", "envoy:1.30"),
                    container("metrics", "exporter:0.9"),
                ],
                init_containers: Some(vec![container("migrate", "tool:3")]),
                termination_grace_period_seconds: Some(30),
                priority: Some(-5),
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn the_template_field_is_much_smaller_than_a_pod_template_spec() {
        let saved = size_of::<PodTemplateSpec>() - size_of::<PodTemplate>();
        assert!(saved > 1024, "saves only {saved} bytes per Rollout");
        assert!(size_of::<RolloutSpec>() < 1024, "{}", size_of::<RolloutSpec>());
    }

    #[test]
    fn value_and_hash_are_those_of_the_pod_template_spec() {
        let spec = busy_spec();
        let old = serde_json::to_value(&spec).unwrap();
        let template = PodTemplate::from(spec.clone());
        assert_eq!(template.to_value(), old);
        assert_eq!(serde_json::to_value(&template).unwrap(), old);
        assert_eq!(pod_template_hash(&template.to_value()), pod_template_hash(&old));
        assert_eq!(template.spec(), spec);
    }

    #[test]
    fn rollout_round_trips_through_json_and_yaml() {
        let mut rollout = Rollout::example("web", 3, vec![]);
        rollout.spec.template = busy_spec().into();
        let json = serde_json::to_value(&rollout).unwrap();
        let parsed: Rollout = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(parsed, rollout);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), json);
        assert_eq!(json["spec"]["template"]["spec"]["priority"], -5);

        let yaml = serde_saphyr::to_string(&rollout).unwrap();
        assert!(yaml.contains("image: example.com/web:2"), "{yaml}");
        let parsed: Rollout = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(parsed, rollout);
    }

    #[test]
    fn a_malformed_template_fails_as_a_pod_template_spec_does() {
        for bad in [
            json!({"spec": {"containers": "app"}}),
            json!({"spec": {"containers": [{"name": 5}]}}),
            json!({"metadata": {"labels": {"app": 1}}}),
            json!([]),
        ] {
            let want = serde_json::from_value::<PodTemplateSpec>(bad.clone()).unwrap_err();
            let got = serde_json::from_value::<PodTemplate>(bad).unwrap_err();
            assert_eq!(got.to_string(), want.to_string());
        }
    }

    #[test]
    fn equal_templates_compare_equal_and_edits_show() {
        let mut template = PodTemplate::from(busy_spec());
        assert_eq!(template, PodTemplate::from(busy_spec()));
        template.update(|t| t.spec.as_mut().unwrap().containers[0].image = Some("example.com/web:3".into()));
        assert_ne!(template, PodTemplate::from(busy_spec()));
        assert_eq!(
            template.to_value()["spec"]["containers"][0]["image"],
            "example.com/web:3"
        );
        assert_eq!(PodTemplate::default().as_json(), "{}");
        assert_eq!(format!("{:?}", PodTemplate::default()), "PodTemplate({})");
    }
}
