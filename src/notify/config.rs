//! The notifications ConfigMap (`--notifications-configmap`), read as Argo's notifications-engine
//! reads `argo-rollouts-notification-configmap`: each `service.*` entry is YAML, a value `$key` is
//! taken from key `key` of the Secret `sluice-notifications-secret` beside it, and `template.<name>`
//! overrides the message of the trigger `on-<name>`.
//!
//! Every entry is checked on its own: a bad one is reported (log and Warning event) and left out, and
//! the others still work.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::template::Template;
use super::triggers::Trigger;

/// The Secret `$key` values are read from, in the ConfigMap's namespace (as Argo names its own
/// `argo-rollouts-notification-secret`).
pub const SECRET_NAME: &str = "sluice-notifications-secret";
/// Largest ConfigMap entry read.
const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Most services and templates taken from one ConfigMap.
const MAX_ENTRIES: usize = 64;
/// Most headers of one webhook.
const MAX_HEADERS: usize = 32;
/// Most named Teams recipients.
const MAX_RECIPIENTS: usize = 128;
/// Longest URL accepted.
const MAX_URL_BYTES: usize = 2048;
/// Slack's Web API, unless `apiURL` says otherwise (tests point it at a local receiver).
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// The service names that are not webhooks.
pub const SLACK: &str = "slack";
pub const TEAMS: &str = "teams";

/// Services and templates, ready to send with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifyConfig {
    /// By the name subscriptions use: a webhook's `<name>`, `slack`, `teams`.
    pub services: BTreeMap<String, Service>,
    /// Templates that override a trigger's default message.
    pub templates: BTreeMap<Trigger, Template>,
}

impl NotifyConfig {
    /// The message template of `trigger`: the ConfigMap's, else the built-in one.
    pub fn template(&self, trigger: Trigger) -> Template {
        // The built-in messages parse (a test checks each).
        self.templates
            .get(&trigger)
            .cloned()
            .unwrap_or_else(|| Template::parse(trigger.default_message()).unwrap_or_default())
    }
}

/// One configured service.
#[derive(Clone, Debug, PartialEq)]
pub enum Service {
    Webhook(Webhook),
    Slack(Slack),
    Teams(Teams),
}

/// `service.webhook.<name>`: a JSON body (see `delivery`) sent to `url`.
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub url: reqwest::Url,
    pub method: reqwest::Method,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// `service.slack`: `chat.postMessage` with a bot token; the recipient is the channel.
#[derive(Clone, PartialEq)]
pub struct Slack {
    pub token: String,
    pub api_url: reqwest::Url,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("token", &"<redacted>")
            .field("api_url", &self.api_url.as_str())
            .finish()
    }
}

/// `service.teams`: an incoming-webhook URL per recipient name (`recipientUrls`, as Argo); a recipient
/// may also be the URL itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Teams {
    pub recipient_urls: BTreeMap<String, reqwest::Url>,
}

/// What parsing found: the usable configuration, and one line per entry left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub config: NotifyConfig,
    pub problems: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookEntry {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<HeaderEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderEntry {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackEntry {
    token: String,
    #[serde(default, rename = "apiURL")]
    api_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TeamsEntry {
    #[serde(default)]
    recipient_urls: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateEntry {
    message: String,
}

/// Parses the ConfigMap's `data`; `secret` is the Secret's data (None: it does not exist or could
/// not be read), consulted for `$key` values.
pub fn parse(data: &BTreeMap<String, String>, secret: Option<&BTreeMap<String, String>>) -> Parsed {
    let mut parsed = Parsed::default();
    let mut taken = 0usize;
    for (key, value) in data {
        let kind = if key.starts_with("service.") || key.starts_with("template.") {
            key.as_str()
        } else {
            // Other keys (Argo's trigger.*, defaultTriggers, context, …) are not ours.
            parsed
                .problems
                .push(format!("{}: not a service.* or template.* entry; ignored", shown(key)));
            continue;
        };
        taken += 1;
        if taken > MAX_ENTRIES {
            parsed.problems.push(format!(
                "more than {MAX_ENTRIES} entries; {} and later ones ignored",
                shown(key)
            ));
            break;
        }
        if value.len() > MAX_ENTRY_BYTES {
            parsed.problems.push(format!(
                "{}: {} bytes, more than the {MAX_ENTRY_BYTES} allowed",
                shown(kind),
                value.len()
            ));
            continue;
        }
        if let Err(why) = parse_entry(&mut parsed.config, kind, value, secret) {
            parsed.problems.push(format!("{}: {why}", shown(kind)));
        }
    }
    parsed
}

fn parse_entry(
    config: &mut NotifyConfig,
    key: &str,
    value: &str,
    secret: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    if let Some(name) = key.strip_prefix("template.") {
        let trigger = Trigger::ALL
            .into_iter()
            .find(|t| t.template_name() == name)
            .ok_or_else(|| {
                format!(
                    "no trigger on-{name}; templates are named after a trigger without `on-` ({})",
                    Trigger::ALL.map(|t| t.template_name()).join(", ")
                )
            })?;
        let entry: TemplateEntry = yaml(value)?;
        config.templates.insert(
            trigger,
            Template::parse(&entry.message).map_err(|e| format!("message: {e}"))?,
        );
        return Ok(());
    }
    let resolve = |field: &str, text: &str| resolve_secret(field, text, secret);
    if let Some(name) = key.strip_prefix("service.webhook.") {
        check_service_name(name)?;
        if name == SLACK || name == TEAMS {
            return Err(format!(
                "a webhook cannot be named {name:?} (that is the {name} service)"
            ));
        }
        let entry: WebhookEntry = yaml(value)?;
        let url = check_url(&resolve("url", &entry.url)?).map_err(|e| format!("url: {e}"))?;
        let method = match entry.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => reqwest::Method::POST,
            Some("PUT") => reqwest::Method::PUT,
            Some("PATCH") => reqwest::Method::PATCH,
            Some(other) => return Err(format!("method {:?}: only POST, PUT or PATCH", shown(other))),
        };
        if entry.headers.len() > MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} headers"));
        }
        let mut headers = Vec::new();
        for (i, header) in entry.headers.iter().enumerate() {
            let name = http::HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| format!("headers[{i}].name {:?} is not a header name", shown(&header.name)))?;
            let value = resolve(&format!("headers[{i}].value"), &header.value)?;
            let mut value = http::HeaderValue::from_str(&value)
                .map_err(|_| format!("headers[{i}].value is not a valid header value"))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        config
            .services
            .insert(name.to_string(), Service::Webhook(Webhook { url, method, headers }));
        return Ok(());
    }
    match key {
        "service.slack" => {
            let entry: SlackEntry = yaml(value)?;
            let token = resolve("token", &entry.token)?;
            if token.is_empty() || token.len() > 512 || token.chars().any(|c| c.is_control() || c == ' ') {
                return Err("token: empty, longer than 512 bytes or not a token".into());
            }
            let api_url =
                check_url(entry.api_url.as_deref().unwrap_or(SLACK_API_URL)).map_err(|e| format!("apiURL: {e}"))?;
            config
                .services
                .insert(SLACK.into(), Service::Slack(Slack { token, api_url }));
            Ok(())
        }
        "service.teams" => {
            let entry: TeamsEntry = yaml(value)?;
            if entry.recipient_urls.len() > MAX_RECIPIENTS {
                return Err(format!("more than {MAX_RECIPIENTS} recipientUrls"));
            }
            let mut teams = Teams::default();
            for (name, url) in &entry.recipient_urls {
                let field = format!("recipientUrls.{}", shown(name));
                let url = check_url(&resolve(&field, url)?).map_err(|e| format!("{field}: {e}"))?;
                teams.recipient_urls.insert(name.clone(), url);
            }
            config.services.insert(TEAMS.into(), Service::Teams(teams));
            Ok(())
        }
        _ => Err("not a known service: service.webhook.<name>, service.slack or service.teams".into()),
    }
}

fn yaml<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_saphyr::from_str(value).map_err(|e| {
        let text = e.to_string();
        format!("not valid: {}", super::template::truncate(&text, 300))
    })
}

/// `$key` → the Secret's value of `key`; anything else as it is.
fn resolve_secret(field: &str, text: &str, secret: Option<&BTreeMap<String, String>>) -> Result<String, String> {
    let Some(key) = text.strip_prefix('$') else {
        return Ok(text.to_string());
    };
    let secret = secret.ok_or_else(|| format!("{field}: refers to ${key} but Secret {SECRET_NAME} is not there"))?;
    secret
        .get(key)
        .cloned()
        .ok_or_else(|| format!("{field}: Secret {SECRET_NAME} has no key {:?}", shown(key)))
}

/// Whether `name` may name a service (what subscription annotations can spell: a DNS label).
pub fn check_service_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "service name {:?}: 1 to 63 lowercase letters, digits, `-` or `_`",
            shown(name)
        ))
    }
}

/// An address notifications may be sent to: http or https, a host, no user or password (a
/// credential in a URL ends up in logs; headers and tokens come from the Secret instead).
pub fn check_url(text: &str) -> Result<reqwest::Url, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("longer than {MAX_URL_BYTES} bytes"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?}: only http and https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a user or password in the URL is not allowed; use a header from the Secret".into());
    }
    Ok(url)
}

/// User text as shown in a message: bounded, control characters dropped.
fn shown(text: &str) -> String {
    super::template::truncate(&text.chars().filter(|c| !c.is_control()).collect::<String>(), 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn webhook_slack_teams_and_templates_parse_with_secret_references() {
        let secret = data(&[("slack-token", "xoxb-123"), ("hook-auth", "Bearer s3cret")]);
        let parsed = parse(
            &data(&[
                (
                    "service.webhook.hook",
                    "url: http://127.0.0.1:9/hook\nheaders:\n- name: Authorization\n  value: $hook-auth\n",
                ),
                ("service.slack", "token: $slack-token\napiURL: http://127.0.0.1:9/api\n"),
                (
                    "service.teams",
                    "recipientUrls:\n  ops: https://example.com/teams/ops\n",
                ),
                ("template.rollout-aborted", "message: \"{{ .object.name }} aborted\"\n"),
            ]),
            Some(&secret),
        );
        assert_eq!(parsed.problems, Vec::<String>::new());
        let Some(Service::Webhook(hook)) = parsed.config.services.get("hook") else {
            panic!("webhook parsed: {:?}", parsed.config);
        };
        assert_eq!(hook.url.as_str(), "http://127.0.0.1:9/hook");
        assert_eq!(hook.method, reqwest::Method::POST);
        assert_eq!(hook.headers[0].1, "Bearer s3cret");
        let Some(Service::Slack(slack)) = parsed.config.services.get("slack") else {
            panic!("slack parsed");
        };
        assert_eq!(slack.token, "xoxb-123");
        assert!(!format!("{slack:?}").contains("xoxb"), "the token never shows in logs");
        let Some(Service::Teams(teams)) = parsed.config.services.get("teams") else {
            panic!("teams parsed");
        };
        assert_eq!(teams.recipient_urls["ops"].as_str(), "https://example.com/teams/ops");
        let rendered = parsed
            .config
            .template(Trigger::RolloutAborted)
            .render(&serde_json::json!({"object": {"name": "web"}}));
        assert_eq!(rendered, "web aborted");
        assert!(
            parsed
                .config
                .template(Trigger::RolloutPaused)
                .render(&serde_json::json!({"object": {"name": "web"}}))
                .contains("web")
        );
    }

    #[test]
    fn a_bad_entry_is_reported_and_the_others_still_work() {
        let parsed = parse(
            &data(&[
                ("service.webhook.good", "url: https://hooks.example.com/x\n"),
                ("service.webhook.creds", "url: https://user:pw@hooks.example.com/x\n"),
                ("service.webhook.file", "url: file:///etc/passwd\n"),
                ("service.webhook.Bad.Name", "url: https://hooks.example.com/x\n"),
                ("service.webhook.extra", "url: https://a.example.com\nbasicAuth: {}\n"),
                ("service.webhook.verb", "url: https://a.example.com\nmethod: DELETE\n"),
                ("service.slack", "token: $missing\n"),
                ("service.pagerduty", "token: x\n"),
                ("template.deployed", "message: hi\n"),
                ("template.rollout-paused", "message: \"{{ call .x }}\"\n"),
                ("trigger.on-deployed", "- send: [x]\n"),
            ]),
            None,
        );
        assert_eq!(parsed.config.services.keys().collect::<Vec<_>>(), ["good"]);
        assert!(parsed.config.templates.is_empty());
        let problems = parsed.problems.join("\n");
        for expected in [
            "service.webhook.creds: url: a user or password",
            "service.webhook.file: url: scheme \"file\"",
            "service.webhook.Bad.Name: service name",
            "service.webhook.extra: not valid",
            "service.webhook.verb: method",
            "service.slack: token: refers to $missing but Secret sluice-notifications-secret is not there",
            "service.pagerduty: not a known service",
            "template.deployed: no trigger on-deployed",
            "template.rollout-paused: message:",
            "trigger.on-deployed: not a service.* or template.* entry",
        ] {
            assert!(problems.contains(expected), "{expected:?} missing from:\n{problems}");
        }
    }

    #[test]
    fn oversized_and_too_many_entries_are_refused() {
        let big = format!("url: https://a.example.com/{}\n", "x".repeat(MAX_ENTRY_BYTES));
        let parsed = parse(&data(&[("service.webhook.big", &big)]), None);
        assert!(parsed.problems[0].contains("bytes, more than"));
        let many: BTreeMap<String, String> = (0..MAX_ENTRIES + 5)
            .map(|i| {
                (
                    format!("service.webhook.h{i:03}"),
                    "url: https://a.example.com\n".to_string(),
                )
            })
            .collect();
        let parsed = parse(&many, None);
        assert_eq!(parsed.config.services.len(), MAX_ENTRIES);
        assert!(parsed.problems.iter().any(|p| p.contains("more than 64 entries")));
    }

    proptest! {
        #[test]
        fn any_configmap_parses_without_panicking(entries in prop::collection::btree_map("(service|template)\\.[a-z.]{0,20}", ".{0,200}", 0..8)) {
            let parsed = parse(&entries, None);
            prop_assert!(parsed.config.services.len() <= entries.len());
        }
    }
}
