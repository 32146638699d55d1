//! `meta.k8s.io/v1` Table responses for `kubectl get`: the server-side printer columns of the built-in
//! kinds, and a CRD's additionalPrinterColumns evaluated with a small JSONPath subset.
// ApiError is only built on failure paths; boxing it would buy nothing.
#![allow(clippy::result_large_err)]
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::selector::LabelSelector;
use crate::status::{ApiError, ApiResult};

/// A column as a CRD's `additionalPrinterColumns` declares it (and as the Table's columnDefinitions show it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(rename = "jsonPath")]
    pub json_path: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub format: String,
}

/// What each row carries besides its cells (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn parse(param: Option<&str>) -> ApiResult<Self> {
        match param.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"None\", \"Metadata\", \"Object\""
            ))),
        }
    }
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. It is required when creating resources, \
     although some resources may allow a client to request the generation of an appropriate name automatically. \
     Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More \
     info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object \
     was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may \
     not set this value. It is represented in RFC3339 form and is in UTC.";

/// The Table for `objects` of resource `plural`: the built-in columns of that kind, or, for a custom
/// resource, `custom_columns` (Name first, Age last unless a column is already named Age).
/// `list_metadata` (resourceVersion, continue) becomes the Table's metadata.
pub fn table(
    plural: &str,
    custom_columns: Option<&[PrinterColumn]>,
    objects: &[Value],
    include: IncludeObject,
    list_metadata: Value,
    now: DateTime<Utc>,
) -> Value {
    let columns = match custom_columns {
        Some(custom) => custom_resource_columns(custom),
        None => builtin_columns(plural),
    };
    let definitions: Vec<Value> = columns.iter().map(|c| definition(&c.def)).collect();
    let rows: Vec<Value> = objects.iter().map(|obj| row(&columns, obj, include, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn definition(c: &PrinterColumn) -> Value {
    json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
}

fn row(columns: &[Column], obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(obj, now)).collect();
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            let partial =
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata});
            row.insert("object".into(), partial);
        }
        IncludeObject::Object => {
            row.insert("object".into(), obj.clone());
        }
    }
    Value::Object(row)
}

// ---------------------------------------------------------------------------------------------
// Columns

type CellFn = Box<dyn Fn(&Value, DateTime<Utc>) -> Value + Send + Sync>;

/// A column definition and how to compute its cell from an object.
struct Column {
    def: PrinterColumn,
    cell: CellFn,
}

impl Column {
    fn new(name: &str, type_: &str, description: &str, cell: CellFn) -> Self {
        let def = PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            json_path: String::new(),
            description: description.into(),
            priority: 0,
            format: String::new(),
        };
        Column { def, cell }
    }

    /// Shown only by `-o wide`.
    fn wide(mut self) -> Self {
        self.def.priority = 1;
        self
    }

    fn name() -> Self {
        let mut c = Column::new(
            "Name",
            "string",
            NAME_DESCRIPTION,
            Box::new(|o, _| json!(text(o, "/metadata/name"))),
        );
        c.def.format = "name".into();
        c
    }

    fn age() -> Self {
        Column::new(
            "Age",
            "string",
            AGE_DESCRIPTION,
            Box::new(|o, now| json!(age(o.pointer("/metadata/creationTimestamp"), now))),
        )
    }

    fn text(name: &str, description: &str, f: fn(&Value) -> String) -> Self {
        Column::new(name, "string", description, Box::new(move |o, _| Value::String(f(o))))
    }

    fn integer(name: &str, description: &str, f: fn(&Value) -> i64) -> Self {
        Column::new(name, "integer", description, Box::new(move |o, _| json!(f(o))))
    }

    fn with_time(name: &str, description: &str, f: fn(&Value, DateTime<Utc>) -> String) -> Self {
        Column::new(
            name,
            "string",
            description,
            Box::new(move |o, now| Value::String(f(o, now))),
        )
    }
}

fn custom_resource_columns(custom: &[PrinterColumn]) -> Vec<Column> {
    let mut columns = vec![Column::name()];
    columns.extend(custom.iter().map(custom_column));
    if !custom.iter().any(|c| c.name == "Age") {
        columns.push(custom_column(&PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            description: AGE_DESCRIPTION.into(),
            priority: 0,
            format: String::new(),
        }));
    }
    columns
}

/// A printer column: the first JSONPath result, typed as the column says (an unusable path gives empty
/// cells, as the server does for paths that match nothing).
fn custom_column(c: &PrinterColumn) -> Column {
    let path = JsonPath::parse(&c.json_path).ok();
    let type_ = c.type_.clone();
    let cell: CellFn = Box::new(move |obj, now| {
        let value = path.as_ref().and_then(|p| p.find(obj).into_iter().next());
        value.map_or(Value::Null, |v| typed_cell(&type_, v, now))
    });
    Column { def: c.clone(), cell }
}

fn typed_cell(type_: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (type_, v) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(_)) => v.clone(),
        // Anything else is printed as the JSONPath printer would: scalars bare, the rest as JSON.
        ("string", other) => Value::String(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .map_or_else(|| json!(n.as_f64().unwrap_or(0.0) as i64), Value::from),
        ("number", Value::Number(n)) => json!(n.as_f64()),
        ("boolean", Value::Bool(_)) => v.clone(),
        ("date", Value::String(s)) => Value::String(match DateTime::parse_from_rfc3339(s) {
            Ok(t) => human_duration(now.signed_duration_since(t)),
            Err(_) => "<invalid>".into(),
        }),
        _ => Value::Null,
    }
}

fn builtin_columns(plural: &str) -> Vec<Column> {
    let mut columns = vec![Column::name()];
    columns.extend(match plural {
        "pods" => pod_columns(),
        "replicasets" => replica_set_columns(),
        "deployments" => deployment_columns(),
        "services" => service_columns(),
        "namespaces" => vec![
            Column::text("Status", "The status of the namespace", |o| {
                text(o, "/status/phase").into()
            }),
            Column::age(),
        ],
        "configmaps" => vec![
            Column::integer("Data", "Number of data in configmap", |o| {
                (keys(o, "/data") + keys(o, "/binaryData")) as i64
            }),
            Column::age(),
        ],
        "secrets" => vec![
            Column::text("Type", "The type of the secret", |o| or(text(o, "/type"), "Opaque")),
            Column::integer("Data", "The number of data in the secret", |o| keys(o, "/data") as i64),
            Column::age(),
        ],
        _ => vec![Column::age()],
    });
    columns
}

fn pod_columns() -> Vec<Column> {
    vec![
        Column::text(
            "Ready",
            "The aggregate readiness state of this pod for accepting traffic.",
            pod_ready,
        ),
        Column::text(
            "Status",
            "The aggregate status of the containers in this pod.",
            pod_status,
        ),
        Column::with_time(
            "Restarts",
            "The number of times the containers in this pod have been restarted and when the last container in \
             this pod has restarted.",
            pod_restarts,
        ),
        Column::age(),
        Column::text("IP", "podIP address allocated to the pod.", |o| {
            or(text(o, "/status/podIP"), "<none>")
        })
        .wide(),
        Column::text("Node", "NodeName indicates in which node this pod is scheduled.", |o| {
            or(text(o, "/spec/nodeName"), "<none>")
        })
        .wide(),
        Column::text(
            "Nominated Node",
            "nominatedNodeName is set when this pod preempts other pods.",
            |o| or(text(o, "/status/nominatedNodeName"), "<none>"),
        )
        .wide(),
        Column::text(
            "Readiness Gates",
            "If specified, all readiness gates will be evaluated for pod readiness.",
            pod_gates,
        )
        .wide(),
    ]
}

fn replica_set_columns() -> Vec<Column> {
    vec![
        Column::integer("Desired", "Number of desired pods.", |o| int_or(o, "/spec/replicas", 1)),
        Column::integer(
            "Current",
            "Replicas is the most recently observed number of replicas.",
            |o| int_or(o, "/status/replicas", 0),
        ),
        Column::integer("Ready", "The number of ready replicas for this replica set.", |o| {
            int_or(o, "/status/readyReplicas", 0)
        }),
        Column::age(),
    ]
    .into_iter()
    .chain(template_columns())
    .collect()
}

fn deployment_columns() -> Vec<Column> {
    vec![
        Column::text("Ready", "Number of the pod with ready state", |o| {
            format!(
                "{}/{}",
                int_or(o, "/status/readyReplicas", 0),
                int_or(o, "/spec/replicas", 1)
            )
        }),
        Column::integer(
            "Up-to-date",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            |o| int_or(o, "/status/updatedReplicas", 0),
        ),
        Column::integer(
            "Available",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            |o| int_or(o, "/status/availableReplicas", 0),
        ),
        Column::age(),
    ]
    .into_iter()
    .chain(template_columns())
    .collect()
}

/// The wide columns of workloads: their pod template's containers and their selector.
fn template_columns() -> Vec<Column> {
    vec![
        Column::text("Containers", "Names of each container in the template.", |o| {
            containers(o, "/name")
        })
        .wide(),
        Column::text("Images", "Images referenced by each container in the template.", |o| {
            containers(o, "/image")
        })
        .wide(),
        Column::text("Selector", "Label selector for pods.", |o| {
            let selector = LabelSelector::from_json(o.pointer("/spec/selector").unwrap_or(&Value::Null));
            selector.map_or("<error>".into(), |s| or(&s.to_string(), "<none>"))
        })
        .wide(),
    ]
}

/// One field of every container in a workload's pod template, comma-separated.
fn containers(workload: &Value, field: &str) -> String {
    let values: Vec<&str> = list(workload, "/spec/template/spec/containers")
        .iter()
        .map(|c| text(c, field))
        .collect();
    values.join(",")
}

fn service_columns() -> Vec<Column> {
    vec![
        Column::text("Type", "The type of the service.", |o| {
            or(text(o, "/spec/type"), "ClusterIP")
        }),
        Column::text("Cluster-IP", "The IP address of the service.", |o| {
            or(text(o, "/spec/clusterIP"), "<none>")
        }),
        Column::text(
            "External-IP",
            "The external IP address of the service.",
            service_external_ip,
        ),
        Column::text("Port(s)", "The ports the service exposes.", service_ports),
        Column::age(),
        Column::text(
            "Selector",
            "Route service traffic to pods with label keys and values matching this selector.",
            |o| format_labels(o.pointer("/spec/selector")),
        )
        .wide(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cells of the built-in kinds (after kubectl's printers)

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn or(s: &str, fallback: &str) -> String {
    if s.is_empty() { fallback } else { s }.to_string()
}

fn int_or(v: &Value, pointer: &str, fallback: i64) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(fallback)
}

fn keys(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer).and_then(Value::as_object).map_or(0, Map::len)
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn condition_true(pod: &Value, type_: &str) -> bool {
    list(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == type_ && text(c, "/status") == "True")
}

/// `ready/total` containers; without container statuses, the pod's Ready condition speaks for all.
fn pod_ready(pod: &Value) -> String {
    let total = list(pod, "/spec/containers").len();
    let statuses = list(pod, "/status/containerStatuses");
    let ready = if statuses.is_empty() {
        if condition_true(pod, "Ready") { total } else { 0 }
    } else {
        statuses
            .iter()
            .filter(|s| s.get("ready") == Some(&Value::Bool(true)))
            .count()
    };
    format!("{ready}/{total}")
}

/// The STATUS column: the phase, overridden by the most telling container state, as kubectl shows it.
fn pod_status(pod: &Value) -> String {
    let mut reason = or(text(pod, "/status/reason"), text(pod, "/status/phase"));
    if let Some(init) = init_container_status(pod) {
        reason = init;
    } else {
        let mut running = false;
        for status in list(pod, "/status/containerStatuses").iter().rev() {
            if let Some(r) = container_reason(status) {
                reason = r;
            } else if status.get("ready") == Some(&Value::Bool(true)) && status.pointer("/state/running").is_some() {
                running = true;
            }
        }
        if reason == "Completed" && running {
            reason = if condition_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        reason = if text(pod, "/status/reason") == "NodeLost" {
            "Unknown"
        } else {
            "Terminating"
        }
        .into();
    }
    reason
}

/// `Init:...` while an init container has not completed.
fn init_container_status(pod: &Value) -> Option<String> {
    let total = list(pod, "/spec/initContainers").len();
    for (i, status) in list(pod, "/status/initContainerStatuses").iter().enumerate() {
        if status.pointer("/state/terminated/exitCode").and_then(Value::as_i64) == Some(0) {
            continue;
        }
        let waiting = text(status, "/state/waiting/reason");
        return Some(match container_reason(status) {
            Some(r) if waiting != "PodInitializing" => format!("Init:{r}"),
            _ => format!("Init:{i}/{total}"),
        });
    }
    None
}

/// Why a container is not simply running: its waiting or terminated reason, or its exit.
fn container_reason(status: &Value) -> Option<String> {
    let waiting = text(status, "/state/waiting/reason");
    if !waiting.is_empty() {
        return Some(waiting.into());
    }
    let terminated = status.pointer("/state/terminated")?;
    let reason = text(terminated, "/reason");
    if !reason.is_empty() {
        return Some(reason.into());
    }
    let signal = int_or(terminated, "/signal", 0);
    Some(if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_or(terminated, "/exitCode", 0))
    })
}

/// Restarts, with how long ago the last one was (`2 (5m ago)`).
fn pod_restarts(pod: &Value, now: DateTime<Utc>) -> String {
    let statuses = list(pod, "/status/containerStatuses");
    let restarts: i64 = statuses.iter().map(|s| int_or(s, "/restartCount", 0)).sum();
    let last = statuses
        .iter()
        .filter_map(|s| s.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str))
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .max();
    match last {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now.signed_duration_since(t))),
        _ => restarts.to_string(),
    }
}

fn pod_gates(pod: &Value) -> String {
    let gates = list(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let ready = gates
        .iter()
        .filter(|g| condition_true(pod, text(g, "/conditionType")))
        .count();
    format!("{ready}/{}", gates.len())
}

fn service_external_ip(svc: &Value) -> String {
    let mut ips: Vec<&str> = list(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match text(svc, "/spec/type") {
        "ExternalName" => return text(svc, "/spec/externalName").into(),
        "LoadBalancer" => {
            let ingress = list(svc, "/status/loadBalancer/ingress");
            let lb = ingress.iter().map(|i| or(text(i, "/ip"), text(i, "/hostname")));
            let mut all: Vec<String> = lb.filter(|s| !s.is_empty()).collect();
            all.extend(ips.iter().map(|s| s.to_string()));
            return if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            };
        }
        _ => {}
    }
    ips.retain(|s| !s.is_empty());
    if ips.is_empty() { "<none>".into() } else { ips.join(",") }
}

/// `80/TCP,443:30443/TCP`.
fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = or(text(p, "/protocol"), "TCP");
            let port = int_or(p, "/port", 0);
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) if node_port != 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// A label map as `a=b,c=d` (sorted), or `<none>`.
fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

// ---------------------------------------------------------------------------------------------
// Ages

/// Age of a timestamp like kubectl (`<unknown>` when absent or unparseable).
fn age(timestamp: Option<&Value>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(Value::as_str).map(DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => human_duration(now.signed_duration_since(t)),
        _ => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`: two or three significant figures (`90s`, `5m3s`, `3h`, `2d4h`,
/// `400d`, `3y20d`).
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    // Up to a second in the future is clock skew, shown as now.
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

// ---------------------------------------------------------------------------------------------
// JSONPath (the subset printer columns use)

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    /// Negative indexes count from the end.
    Index(i64),
    /// `[*]` or `.*`: every item or value.
    Wildcard,
    /// `[?(@.a.b == "x")]`, `[?(@.a != 1)]` or `[?(@.a)]` (exists).
    Filter {
        path: Vec<String>,
        op: FilterOp,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum FilterOp {
    Exists,
    Equals(Value),
    NotEquals(Value),
}

/// A JSONPath such as `.status.phase`, `.spec.items[0].x`, `.metadata.labels['app.kubernetes.io/name']`
/// or `.status.conditions[?(@.type=="Ready")].status` (optionally wrapped in `{}` and starting with `$`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let mut rest = expr.trim();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            rest = inner.trim();
        }
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut steps = Vec::new();
        while !rest.is_empty() {
            let (step, remaining) = parse_step(rest).map_err(|e| format!("invalid JSONPath {expr:?}: {e}"))?;
            steps.push(step);
            rest = remaining;
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        self.steps.iter().fold(vec![root], |current, step| {
            current.into_iter().flat_map(|v| apply(step, v)).collect()
        })
    }
}

fn parse_step(s: &str) -> Result<(Step, &str), String> {
    if s.starts_with("..") {
        return Err("recursive descent is not supported".into());
    }
    if let Some(rest) = s.strip_prefix('.') {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let name = &rest[..end];
        return match name {
            "" => Err("empty field name".into()),
            "*" => Ok((Step::Wildcard, &rest[end..])),
            _ => Ok((Step::Field(name.to_string()), &rest[end..])),
        };
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = closing_bracket(rest).ok_or("unclosed '['")?;
        return Ok((parse_bracket(rest[..end].trim())?, &rest[end + 1..]));
    }
    Err(format!("unexpected {s:?}"))
}

/// Index of the `]` closing a bracket, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        return parse_filter(filter.trim());
    }
    if let Some(key) = unquote(inner) {
        return Ok(Step::Field(key));
    }
    inner
        .parse::<i64>()
        .map(Step::Index)
        .map_err(|_| format!("unsupported subscript [{inner}]"))
}

fn unquote(s: &str) -> Option<String> {
    let quoted = |q: char| s.len() >= 2 && s.starts_with(q) && s.ends_with(q);
    (quoted('\'') || quoted('"')).then(|| s[1..s.len() - 1].to_string())
}

fn parse_filter(filter: &str) -> Result<Step, String> {
    let (lhs, op) = if let Some((lhs, rhs)) = filter.split_once("==") {
        (lhs.trim(), FilterOp::Equals(parse_literal(rhs.trim())?))
    } else if let Some((lhs, rhs)) = filter.split_once("!=") {
        (lhs.trim(), FilterOp::NotEquals(parse_literal(rhs.trim())?))
    } else {
        (filter, FilterOp::Exists)
    };
    let path = lhs
        .strip_prefix('@')
        .ok_or_else(|| format!("filter must start with @: {filter}"))?;
    let path = path.split('.').filter(|p| !p.is_empty()).map(str::to_string).collect();
    Ok(Step::Filter { path, op })
}

fn parse_literal(s: &str) -> Result<Value, String> {
    if let Some(text) = unquote(s) {
        return Ok(Value::String(text));
    }
    serde_json::from_str(s).map_err(|_| format!("unsupported filter value {s}"))
}

fn apply<'a>(step: &Step, v: &'a Value) -> Vec<&'a Value> {
    match (step, v) {
        (Step::Field(name), Value::Object(map)) => map.get(name).into_iter().collect(),
        (Step::Index(i), Value::Array(items)) => {
            let index = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .into_iter()
                .collect()
        }
        (Step::Wildcard, Value::Array(items)) => items.iter().collect(),
        (Step::Wildcard, Value::Object(map)) => map.values().collect(),
        (Step::Filter { path, op }, Value::Array(items)) => items.iter().filter(|item| holds(path, op, item)).collect(),
        _ => vec![],
    }
}

fn holds(path: &[String], op: &FilterOp, item: &Value) -> bool {
    let found = path.iter().try_fold(item, |v, key| v.get(key));
    let same = |literal: &Value| match (found, literal) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    };
    match op {
        FilterOp::Exists => found.is_some(),
        FilterOp::Equals(literal) => same(literal),
        FilterOp::NotEquals(literal) => found.is_some() && !same(literal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2025-01-10T12:00:00Z".parse().unwrap()
    }

    fn names(table: &Value) -> Vec<&str> {
        table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    fn cells(table: &Value, row: usize) -> &Value {
        &table["rows"][row]["cells"]
    }

    fn rollout(name: &str, phase: Option<&str>, weight: Value) -> Value {
        let mut obj = json!({
            "apiVersion": "sluice.dev/v1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2025-01-10T11:55:00Z",
                         "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "steps": [{"setWeight": 10}, {"setWeight": 50}], "paused": true},
            "status": {"canaryWeight": weight, "startedAt": "2025-01-08T10:00:00Z",
                       "conditions": [{"type": "Progressing", "status": "True"},
                                      {"type": "Healthy", "status": "False"}]}
        });
        if let Some(phase) = phase {
            obj["status"]["phase"] = json!(phase);
        }
        obj
    }

    fn column(name: &str, type_: &str, path: &str) -> PrinterColumn {
        PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            json_path: path.into(),
            description: String::new(),
            priority: 0,
            format: String::new(),
        }
    }

    #[test]
    fn custom_resource_columns_are_typed_and_age_is_appended() {
        let columns = vec![
            column("Phase", "string", ".status.phase"),
            column("Weight", "integer", ".status.canaryWeight"),
            column("Replicas", "number", ".spec.replicas"),
            column("Paused", "boolean", ".spec.paused"),
            column("Healthy", "string", ".status.conditions[?(@.type==\"Healthy\")].status"),
            column("Second", "integer", ".spec.steps[1].setWeight"),
            column("App", "string", ".metadata.labels['app.kubernetes.io/name']"),
            column("Started", "date", ".status.startedAt"),
            column("Steps", "string", ".spec.steps"),
        ];
        let objects = vec![
            rollout("a", Some("Progressing"), json!(10)),
            rollout("b", None, json!("x")),
        ];
        let meta = json!({"resourceVersion": "42"});
        let t = table(
            "rollouts",
            Some(&columns),
            &objects,
            IncludeObject::Metadata,
            meta,
            now(),
        );
        assert_eq!(
            (t["kind"].as_str(), t["apiVersion"].as_str()),
            (Some("Table"), Some("meta.k8s.io/v1"))
        );
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(
            names(&t),
            [
                "Name", "Phase", "Weight", "Replicas", "Paused", "Healthy", "Second", "App", "Started", "Steps", "Age"
            ]
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][10]["type"], "date");
        let steps = r#"[{"setWeight":10},{"setWeight":50}]"#;
        assert_eq!(
            *cells(&t, 0),
            json!([
                "a",
                "Progressing",
                10,
                3.0,
                true,
                "False",
                50,
                "web",
                "2d2h",
                steps,
                "5m"
            ])
        );
        // Missing values and values of the wrong type are empty cells.
        assert_eq!(cells(&t, 1)[1], Value::Null);
        assert_eq!(cells(&t, 1)[2], Value::Null);
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": objects[0]["metadata"]})
        );
    }

    #[test]
    fn custom_age_column_is_not_duplicated() {
        let columns = vec![
            column("Age", "date", ".metadata.creationTimestamp"),
            column("Bad", "string", "status["),
        ];
        let obj = rollout("a", None, json!(1));
        let t = table(
            "rollouts",
            Some(&columns),
            &[obj],
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert_eq!(names(&t), ["Name", "Age", "Bad"]);
        assert_eq!(*cells(&t, 0), json!(["a", "5m", null]));
        assert!(t["rows"][0].get("object").is_none());
    }

    #[test]
    fn include_object_parses_and_embeds_full_objects() {
        assert_eq!(IncludeObject::parse(None).unwrap(), IncludeObject::Metadata);
        assert_eq!(IncludeObject::parse(Some("Object")).unwrap(), IncludeObject::Object);
        assert_eq!(IncludeObject::parse(Some("None")).unwrap(), IncludeObject::None);
        assert_eq!(IncludeObject::parse(Some("All")).unwrap_err().code, 400);
        let obj = rollout("a", None, json!(1));
        let t = table(
            "rollouts",
            Some(&[]),
            std::slice::from_ref(&obj),
            IncludeObject::Object,
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["object"], obj);
    }

    fn pod(containers: usize, statuses: Value, extra_status: Value) -> Value {
        let specs: Vec<Value> = (0..containers)
            .map(|i| json!({"name": format!("c{i}"), "image": "app:1"}))
            .collect();
        let mut pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2025-01-10T10:00:00Z"},
            "spec": {"containers": specs, "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": statuses}
        });
        for (k, v) in extra_status.as_object().unwrap() {
            pod["status"][k] = v.clone();
        }
        pod
    }

    #[test]
    fn pod_columns_follow_kubectl() {
        let running = json!({"ready": true, "restartCount": 0, "state": {"running": {}}});
        let crashing = json!({"ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                              "lastState": {"terminated": {"finishedAt": "2025-01-10T11:57:00Z", "exitCode": 1}}});
        let cases: Vec<(Value, Value)> = vec![
            (
                pod(1, json!([running]), json!({})),
                json!(["web-1", "1/1", "Running", "0", "120m"]),
            ),
            (
                pod(2, json!([running, crashing]), json!({})),
                json!(["web-1", "1/2", "CrashLoopBackOff", "3 (3m ago)", "120m"]),
            ),
            (
                pod(
                    1,
                    json!([]),
                    json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}),
                ),
                json!(["web-1", "0/1", "Pending", "0", "120m"]),
            ),
            (
                pod(
                    1,
                    json!([]),
                    json!({"conditions": [{"type": "Ready", "status": "True"}]}),
                ),
                json!(["web-1", "1/1", "Running", "0", "120m"]),
            ),
            (
                pod(
                    1,
                    json!([{"ready": false, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]),
                    json!({}),
                ),
                json!(["web-1", "0/1", "Signal:9", "0", "120m"]),
            ),
            (
                pod(
                    1,
                    json!([{"ready": false, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]),
                    json!({"phase": "Succeeded"}),
                ),
                json!(["web-1", "0/1", "Completed", "0", "120m"]),
            ),
            (
                pod(1, json!([]), json!({"phase": "Failed", "reason": "Evicted"})),
                json!(["web-1", "0/1", "Evicted", "0", "120m"]),
            ),
        ];
        for (obj, want) in cases {
            let t = table(
                "pods",
                None,
                std::slice::from_ref(&obj),
                IncludeObject::Metadata,
                json!({}),
                now(),
            );
            let got: Vec<Value> = cells(&t, 0).as_array().unwrap()[..5].to_vec();
            assert_eq!(Value::Array(got), want, "{obj}");
        }
    }

    #[test]
    fn pod_definitions_wide_columns_and_terminating() {
        let mut obj = pod(1, json!([{"ready": true, "state": {"running": {}}}]), json!({}));
        obj["metadata"]["deletionTimestamp"] = json!("2025-01-10T11:59:00Z");
        let t = table("pods", None, &[obj], IncludeObject::Metadata, json!({}), now());
        assert_eq!(
            names(&t),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let priorities: Vec<i64> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["priority"].as_i64().unwrap())
            .collect();
        assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(
            *cells(&t, 0),
            json!([
                "web-1",
                "1/1",
                "Terminating",
                "0",
                "120m",
                "10.0.0.7",
                "node-1",
                "<none>",
                "<none>"
            ])
        );
    }

    #[test]
    fn init_containers_show_progress() {
        let mut obj = pod(
            1,
            json!([{"ready": false, "state": {"waiting": {"reason": "PodInitializing"}}}]),
            json!({"phase": "Pending"}),
        );
        obj["spec"]["initContainers"] = json!([{"name": "i0"}, {"name": "i1"}]);
        obj["status"]["initContainerStatuses"] = json!([
            {"state": {"terminated": {"exitCode": 0}}},
            {"state": {"running": {}}}
        ]);
        let t = table(
            "pods",
            None,
            std::slice::from_ref(&obj),
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert_eq!(cells(&t, 0)[2], "Init:1/2");
        obj["status"]["initContainerStatuses"][1] = json!({"state": {"waiting": {"reason": "ImagePullBackOff"}}});
        let t = table("pods", None, &[obj], IncludeObject::None, json!({}), now());
        assert_eq!(cells(&t, 0)[2], "Init:ImagePullBackOff");
    }

    #[test]
    fn builtin_kind_columns() {
        let created = "2025-01-10T11:59:30Z";
        let template =
            json!({"spec": {"containers": [{"name": "app", "image": "app:2"}, {"name": "proxy", "image": "envoy"}]}});
        let selector = json!({"matchLabels": {"app": "web"}});
        let cases: Vec<(&str, Value, &str, Value)> = vec![
            (
                "replicasets",
                json!({"spec": {"replicas": 3, "selector": selector, "template": template},
                       "status": {"replicas": 3, "readyReplicas": 2}}),
                "Name,Desired,Current,Ready,Age,Containers,Images,Selector",
                json!(["x", 3, 3, 2, "30s", "app,proxy", "app:2,envoy", "app=web"]),
            ),
            (
                "deployments",
                json!({"spec": {"replicas": 4, "selector": selector, "template": template},
                       "status": {"readyReplicas": 1, "updatedReplicas": 2}}),
                "Name,Ready,Up-to-date,Available,Age,Containers,Images,Selector",
                json!(["x", "1/4", 2, 0, "30s", "app,proxy", "app:2,envoy", "app=web"]),
            ),
            (
                "services",
                json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"b": "2", "a": "1"},
                                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}]}}),
                "Name,Type,Cluster-IP,External-IP,Port(s),Age,Selector",
                json!([
                    "x",
                    "NodePort",
                    "10.96.0.10",
                    "<none>",
                    "80/TCP,443:30443/TCP",
                    "30s",
                    "a=1,b=2"
                ]),
            ),
            (
                "services",
                json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11"}}),
                "Name,Type,Cluster-IP,External-IP,Port(s),Age,Selector",
                json!([
                    "x",
                    "LoadBalancer",
                    "10.96.0.11",
                    "<pending>",
                    "<none>",
                    "30s",
                    "<none>"
                ]),
            ),
            (
                "namespaces",
                json!({"status": {"phase": "Active"}}),
                "Name,Status,Age",
                json!(["x", "Active", "30s"]),
            ),
            (
                "configmaps",
                json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}),
                "Name,Data,Age",
                json!(["x", 3, "30s"]),
            ),
            (
                "secrets",
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
                "Name,Type,Data,Age",
                json!(["x", "kubernetes.io/tls", 2, "30s"]),
            ),
            ("events", json!({}), "Name,Age", json!(["x", "30s"])),
        ];
        for (plural, mut obj, want_names, want_cells) in cases {
            obj["metadata"] = json!({"name": "x", "creationTimestamp": created});
            let t = table(plural, None, &[obj], IncludeObject::Metadata, json!({}), now());
            assert_eq!(names(&t).join(","), want_names, "{plural}");
            assert_eq!(*cells(&t, 0), want_cells, "{plural}");
        }
    }

    #[test]
    fn human_durations_match_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (183, "3m3s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 20, "3h20m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 20 * 86400, "3y20d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(chrono::TimeDelta::seconds(secs)), want, "{secs}s");
        }
        assert_eq!(age(None, now()), "<unknown>");
    }

    #[test]
    fn json_path_forms() {
        let doc = json!({
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "n": 1}, {"type": "Synced", "status": "False", "n": 2}]},
            "spec": {"items": [{"x": "a"}, {"x": "b"}]},
            "metadata": {"labels": {"app": "web", "app.kubernetes.io/name": "w"}}
        });
        let cases: Vec<(&str, Value)> = vec![
            (".status.phase", json!(["Running"])),
            ("{.status.phase}", json!(["Running"])),
            ("$.status.phase", json!(["Running"])),
            (".metadata.labels.app", json!(["web"])),
            (".metadata.labels['app.kubernetes.io/name']", json!(["w"])),
            (".spec.items[0].x", json!(["a"])),
            (".spec.items[-1].x", json!(["b"])),
            (".spec.items[5].x", json!([])),
            (".spec.items[*].x", json!(["a", "b"])),
            (".status.conditions[?(@.type==\"Ready\")].status", json!(["True"])),
            (".status.conditions[?(@.type == 'Synced')].status", json!(["False"])),
            (".status.conditions[?(@.type!=\"Ready\")].type", json!(["Synced"])),
            (".status.conditions[?(@.n==2)].type", json!(["Synced"])),
            (".status.conditions[?(@.n)].n", json!([1, 2])),
            (".status.missing.deeper", json!([])),
        ];
        for (expr, want) in cases {
            let path = JsonPath::parse(expr).unwrap_or_else(|e| panic!("{e}"));
            let got: Vec<Value> = path.find(&doc).into_iter().cloned().collect();
            assert_eq!(Value::Array(got), want, "{expr}");
        }
        for bad in ["status", ".a[", ".a..b", ".a[x]", ".a[?(b==1)]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
