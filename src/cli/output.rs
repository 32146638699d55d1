//! `-o json|yaml|wide|name` for every `get`/`list` command, with kubectl's meaning: json and yaml print
//! the objects (a `List` for several), name prints `KIND.GROUP/NAME` lines for scripts, wide adds
//! columns to a table. One place decides, so the three kinds cannot drift apart.
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::{Error, Result};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// The object(s) as JSON (several: a `List`).
    Json,
    /// The object(s) as YAML.
    Yaml,
    /// The table with more columns (for one object: the summary).
    Wide,
    /// `KIND.GROUP/NAME` per object, as `kubectl get -o name` prints.
    Name,
}

/// What to print for objects of one kind.
pub enum Rendering {
    /// The human summary or table; `wide` asks for the extra columns.
    Human { wide: bool },
    /// The objects themselves (json/yaml) or their names.
    Objects(OutputFormat),
}

impl Rendering {
    pub fn of(format: Option<OutputFormat>) -> Self {
        match format {
            None => Rendering::Human { wide: false },
            Some(OutputFormat::Wide) => Rendering::Human { wide: true },
            Some(format) => Rendering::Objects(format),
        }
    }
}

/// `rollout.sluice.dev/web`: the form `kubectl get -o name` prints and `kubectl` accepts back.
pub fn qualified_name<K>(object: &K) -> String
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&()).to_lowercase();
    let group = K::group(&());
    let name = object.name_any();
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

/// Prints one object as json, yaml or its name.
pub fn print_object<K>(object: &K, format: OutputFormat) -> Result<()>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    match format {
        OutputFormat::Name => {
            println!("{}", qualified_name(object));
            Ok(())
        }
        format => print_value(object, format),
    }
}

/// Prints objects as a `List` (json, yaml) or their names, one per line.
pub fn print_objects<K>(objects: &[K], format: OutputFormat) -> Result<()>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    match format {
        OutputFormat::Name => {
            for object in objects {
                println!("{}", qualified_name(object));
            }
            Ok(())
        }
        format => print_value(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            format,
        ),
    }
}

/// Serializes as `kubectl get -o` does: without managedFields, which only add noise.
fn print_value(value: &impl Serialize, format: OutputFormat) -> Result<()> {
    let mut value = serde_json::to_value(value).map_err(|e| Error::Output(e.to_string()))?;
    strip_managed_fields(&mut value);
    let text = match format {
        OutputFormat::Yaml => serde_saphyr::to_string(&value).map_err(|e| Error::Output(e.to_string()))?,
        _ => serde_json::to_string_pretty(&value).map_err(|e| Error::Output(e.to_string()))? + "\n",
    };
    print!("{text}");
    Ok(())
}

fn strip_managed_fields(value: &mut serde_json::Value) {
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    if let Some(items) = value.get_mut("items").and_then(|i| i.as_array_mut()) {
        items.iter_mut().for_each(strip_managed_fields);
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::api::gitsync::GitSync;
    use crate::api::rollout::Rollout;

    #[test]
    fn names_carry_kind_and_group_as_kubectl_prints_them() {
        let mut rollout = Rollout::new("web", Default::default());
        rollout.metadata.namespace = Some("shop".into());
        assert_eq!(qualified_name(&rollout), "rollout.sluice.dev/web");
        let gitsync = GitSync {
            metadata: ObjectMeta {
                name: Some("apps".into()),
                ..ObjectMeta::default()
            },
            spec: Default::default(),
            status: None,
        };
        assert_eq!(qualified_name(&gitsync), "gitsync.sluice.dev/apps");
        let namespace = k8s_openapi::api::core::v1::Namespace {
            metadata: ObjectMeta {
                name: Some("core".into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        assert_eq!(qualified_name(&namespace), "namespace/core");
    }

    #[test]
    fn managed_fields_are_left_out() {
        let mut value = serde_json::json!({"metadata": {"name": "a", "managedFields": [{}]},
            "items": [{"metadata": {"managedFields": []}}]});
        strip_managed_fields(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"metadata": {"name": "a"}, "items": [{"metadata": {}}]})
        );
    }

    #[test]
    fn wide_is_a_table_and_the_rest_print_objects() {
        assert!(matches!(Rendering::of(None), Rendering::Human { wide: false }));
        assert!(matches!(
            Rendering::of(Some(OutputFormat::Wide)),
            Rendering::Human { wide: true }
        ));
        assert!(matches!(
            Rendering::of(Some(OutputFormat::Name)),
            Rendering::Objects(OutputFormat::Name)
        ));
    }
}
