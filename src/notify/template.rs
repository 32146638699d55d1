//! Message templates: text with `{{ .path.to.field }}` placeholders looked up in a JSON context (the
//! object, the trigger, the revision). Deliberately not a template language: no functions, loops or
//! conditions, so a ConfigMap entry cannot run code or loop forever, and every output is bounded.

use serde_json::Value;

/// Longest template source accepted.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
/// Most placeholders in one template.
const MAX_PLACEHOLDERS: usize = 64;
/// Most segments in one placeholder path.
const MAX_PATH_DEPTH: usize = 12;
/// Longest text one placeholder renders to (longer values are cut with `…`).
const MAX_VALUE_CHARS: usize = 1024;
/// Longest rendered message.
pub const MAX_MESSAGE_CHARS: usize = 8192;

/// A parsed template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    /// `.a.b.c` → ["a", "b", "c"]; a numeric segment also indexes a list.
    Field(Vec<String>),
}

impl Template {
    /// Parses `source`; the error says what is wrong and where.
    pub fn parse(source: &str) -> Result<Template, String> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(format!(
                "template is {} bytes, more than the {MAX_TEMPLATE_BYTES} allowed",
                source.len()
            ));
        }
        let mut parts = Vec::new();
        let mut rest = source;
        let mut fields = 0usize;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` at byte {}", source.len() - rest.len() + open))?;
            let expression = after[..close].trim();
            parts.push(Part::Field(parse_path(expression)?));
            fields += 1;
            if fields > MAX_PLACEHOLDERS {
                return Err(format!("more than {MAX_PLACEHOLDERS} placeholders"));
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders against `context`. A path that leads nowhere renders as nothing (as Go templates render
    /// a missing map key), a string as itself, any other value as compact JSON; each value and the whole
    /// message are cut to their bounds.
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(path) => out.push_str(&truncate(&lookup(context, path), MAX_VALUE_CHARS)),
            }
            if out.len() > MAX_MESSAGE_CHARS * 4 {
                break;
            }
        }
        truncate(&out, MAX_MESSAGE_CHARS)
    }
}

fn parse_path(expression: &str) -> Result<Vec<String>, String> {
    let Some(path) = expression.strip_prefix('.') else {
        return Err(format!(
            "`{{{{ {} }}}}`: only field paths like `{{{{ .rollout.metadata.name }}}}` are supported",
            truncate(expression, 64)
        ));
    };
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    if segments.len() > MAX_PATH_DEPTH {
        return Err(format!(
            "`.{}`: deeper than {MAX_PATH_DEPTH} fields",
            truncate(path, 64)
        ));
    }
    let valid = |s: &String| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !segments.iter().all(valid) {
        return Err(format!(
            "`.{}`: a field path is names of letters, digits, `_` and `-` joined by `.`",
            truncate(path, 64)
        ));
    }
    Ok(segments)
}

fn lookup(context: &Value, path: &[String]) -> String {
    let mut value = context;
    for segment in path {
        value = match value {
            Value::Object(map) => match map.get(segment) {
                Some(v) => v,
                None => return String::new(),
            },
            Value::Array(items) => match segment.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return String::new(),
            },
            _ => return String::new(),
        };
    }
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `text` cut to at most `max` characters, `…` marking a cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn fields_are_substituted_and_missing_ones_render_empty() {
        let template = Template::parse("Rollout {{ .rollout.metadata.name }} step {{.step}}{{ .nope.x }}!").unwrap();
        let context = json!({"rollout": {"metadata": {"name": "checkout"}}, "step": 3});
        assert_eq!(template.render(&context), "Rollout checkout step 3!");
    }

    #[test]
    fn lists_are_indexed_and_objects_render_as_json() {
        let template = Template::parse("{{ .items.1 }} {{ .obj }}").unwrap();
        let context = json!({"items": ["a", "b"], "obj": {"k": true}});
        assert_eq!(template.render(&context), r#"b {"k":true}"#);
    }

    #[test]
    fn anything_but_a_field_path_is_refused_with_the_reason() {
        assert!(Template::parse("{{ .a").unwrap_err().contains("unclosed"));
        assert!(
            Template::parse("{{ printf \"%s\" .a }}")
                .unwrap_err()
                .contains("only field paths")
        );
        assert!(Template::parse("{{ .a..b }}").unwrap_err().contains("field path"));
        assert!(
            Template::parse(&"x".repeat(MAX_TEMPLATE_BYTES + 1))
                .unwrap_err()
                .contains("more than")
        );
        assert!(
            Template::parse(&"{{.a}}".repeat(MAX_PLACEHOLDERS + 1))
                .unwrap_err()
                .contains("placeholders")
        );
    }

    #[test]
    fn every_built_in_message_parses() {
        for trigger in crate::notify::triggers::Trigger::ALL {
            Template::parse(trigger.default_message()).unwrap();
        }
    }

    #[test]
    fn huge_values_are_cut() {
        let template = Template::parse("{{ .big }}{{ .big }}{{ .big }}").unwrap();
        let rendered = template.render(&json!({"big": "x".repeat(100_000)}));
        assert_eq!(rendered.chars().count(), 3 * MAX_VALUE_CHARS);
        let many = Template::parse(&"{{ .big }}".repeat(MAX_PLACEHOLDERS)).unwrap();
        assert_eq!(
            many.render(&json!({"big": "x".repeat(100_000)})).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }

    proptest! {
        #[test]
        fn any_source_parses_or_fails_without_panicking_and_renders_bounded(source in ".{0,300}") {
            if let Ok(template) = Template::parse(&source) {
                let rendered = template.render(&json!({"a": "b"}));
                prop_assert!(rendered.chars().count() <= MAX_MESSAGE_CHARS);
            }
        }

        #[test]
        fn text_without_braces_renders_as_itself(text in "[^{}]{0,200}") {
            prop_assert_eq!(Template::parse(&text).unwrap().render(&json!({})), text);
        }
    }
}
