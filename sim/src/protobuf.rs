//! Request bodies in Kubernetes' protobuf encoding. kubectl's typed commands (`create namespace`,
//! `create secret`, `create deployment`, `run`, `create token`, `auth can-i`, …) send nothing else:
//! the 4-byte magic `k8s\0` and a `runtime.Unknown` whose `raw` is the object.
//!
//! The bytes are decoded by `prost` into the generated types of `k8s-pb` (Kubernetes' own
//! `generated.proto` files), then turned into the JSON the store keeps. k8s-pb offers no serde and no
//! descriptors to reflect on, so the JSON side is one short table per message type (`json_message!`:
//! Rust field → JSON name). The table is checked both ways: a misspelt field does not compile, and any
//! field a table does not name that arrives set is refused with 400 naming the type — never silently
//! dropped. Kinds without a table stay 415 Unsupported Media Type.
//!
//! Hostile bodies: prost checks every length against the bytes it has and stops nesting at depth 100;
//! the body itself is capped by the HTTP layer (8 MiB). Errors end in 400, never a panic.
use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
/// How much of an unsupported remainder an error message shows.
const MAX_REMAINDER_SHOWN: usize = 400;

/// The JSON form of a protobuf-encoded request body, or 415 for a kind this module does not know
/// (the simulator otherwise speaks JSON and YAML only), or 400 for a body that does not decode.
pub fn decode(body: &[u8], content_type: &str) -> ApiResult<Value> {
    let bad = |why: String| ApiError::bad_request(format!("error decoding protobuf body: {why}"));
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s magic prefix".into()))?;
    let envelope = Unknown::decode(rest).map_err(|e| bad(format!("runtime.Unknown: {e}")))?;
    let type_meta = envelope.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = envelope.raw.unwrap_or_default();
    let object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => typed::<core::Namespace>(&raw),
        ("v1", "Secret") => typed::<core::Secret>(&raw),
        ("v1", "ConfigMap") => typed::<core::ConfigMap>(&raw),
        ("v1", "ServiceAccount") => typed::<core::ServiceAccount>(&raw),
        ("v1", "Service") => typed::<core::Service>(&raw),
        ("v1", "Pod") => typed::<core::Pod>(&raw),
        ("apps/v1", "Deployment") => typed::<apps::Deployment>(&raw),
        ("batch/v1", "Job") => typed::<batch::Job>(&raw),
        ("rbac.authorization.k8s.io/v1", "Role") => typed::<rbac::Role>(&raw),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed::<rbac::RoleBinding>(&raw),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed::<rbac::ClusterRole>(&raw),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => typed::<rbac::ClusterRoleBinding>(&raw),
        ("authentication.k8s.io/v1", "TokenRequest") => typed::<authn::TokenRequest>(&raw),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => typed::<authn::SelfSubjectReview>(&raw),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => typed::<authz::SelfSubjectAccessReview>(&raw),
        ("authorization.k8s.io/v1", "SubjectAccessReview") => typed::<authz::SubjectAccessReview>(&raw),
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview") => typed::<authz::LocalSubjectAccessReview>(&raw),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => typed::<authz::SelfSubjectRulesReview>(&raw),
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    let mut object = match object.map_err(|why| bad(format!("{kind}: {why}")))? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

fn typed<M: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, String> {
    M::decode(raw).map_err(|e| e.to_string())?.to_json()
}

/// A protobuf value as JSON, in the shape the Kubernetes JSON encoding gives it.
trait ToJson {
    fn to_json(self) -> Result<Value, String>;
}

/// A message field: `None` when unset (protobuf's `optional` absent, or an empty repeated/map field),
/// which the JSON leaves out as Kubernetes' `omitempty` does.
trait FieldJson {
    fn field_json(self) -> Result<Option<Value>, String>;
}

impl<T: ToJson> FieldJson for Option<T> {
    fn field_json(self) -> Result<Option<Value>, String> {
        self.map(ToJson::to_json).transpose()
    }
}

impl<T: ToJson> FieldJson for Vec<T> {
    fn field_json(self) -> Result<Option<Value>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let items = self.into_iter().map(ToJson::to_json).collect::<Result<_, _>>()?;
        Ok(Some(Value::Array(items)))
    }
}

impl<T: ToJson> FieldJson for BTreeMap<String, T> {
    fn field_json(self) -> Result<Option<Value>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut map = Map::new();
        for (key, value) in self {
            map.insert(key, value.to_json()?);
        }
        Ok(Some(Value::Object(map)))
    }
}

impl ToJson for String {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::String(self))
    }
}

impl ToJson for bool {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::Bool(self))
    }
}

impl ToJson for i32 {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::from(self))
    }
}

impl ToJson for i64 {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::from(self))
    }
}

/// `bytes` fields (Secret.data, ConfigMap.binaryData) are base64 in JSON.
impl ToJson for Vec<u8> {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(self)))
    }
}

/// `metav1.Time` is RFC 3339 with second precision in JSON; Go's zero time (which its protobuf
/// encoding writes for every unset non-pointer Time, e.g. a pod template's creationTimestamp) is null.
impl ToJson for meta::Time {
    fn to_json(self) -> Result<Value, String> {
        let seconds = self.seconds.unwrap_or_default();
        if seconds == 0 && self.nanos.unwrap_or_default() == 0 {
            return Ok(Value::Null);
        }
        let time =
            chrono::DateTime::from_timestamp(seconds, 0).ok_or_else(|| format!("time {seconds}s out of range"))?;
        Ok(Value::String(time.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
    }
}

/// `intstr.IntOrString` is a bare number or string in JSON (type 0 = Int, 1 = String).
impl ToJson for IntOrString {
    fn to_json(self) -> Result<Value, String> {
        match self.r#type.unwrap_or_default() {
            0 => Ok(Value::from(self.int_val.unwrap_or_default())),
            1 => Ok(Value::String(self.str_val.unwrap_or_default())),
            other => Err(format!("IntOrString of unknown type {other}")),
        }
    }
}

impl ToJson for Quantity {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::String(self.string.unwrap_or_default()))
    }
}

/// `map<string, ExtraValue>` in an access review: ExtraValue is a list of strings in JSON.
impl ToJson for authz::ExtraValue {
    fn to_json(self) -> Result<Value, String> {
        Ok(Value::Array(self.items.into_iter().map(Value::String).collect()))
    }
}

/// Go's protobuf encoding writes a non-pointer scalar field even at its zero value, where the JSON
/// encoding's `omitempty` leaves it out: `""`, `0` and `false` are dropped unless the field is a Go
/// pointer (`*int32` replicas, `*bool` immutable, …), where an explicit zero means something.
fn is_zero_scalar(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// One JSON table per message type: `Type { rust_field => "jsonName", … }`, where `keep` marks a Go
/// pointer field whose zero value is kept (see `is_zero_scalar`), and `ignore { … }` lists fields a
/// create request may carry that the API server drops anyway (`status`). Whatever remains set
/// afterwards is a field the simulator does not decode: 400, naming the type.
macro_rules! json_message {
    ($($ty:ty { $($field:ident => $json:literal $($keep:ident)?),* $(,)? } $(ignore { $($ignored:ident),* })?;)*) => {$(
        impl ToJson for $ty {
            fn to_json(self) -> Result<Value, String> {
                let mut rest = self;
                let mut map = Map::new();
                $(
                    let keep_zero = false $(|| stringify!($keep) == "keep")?;
                    if let Some(value) = FieldJson::field_json(std::mem::take(&mut rest.$field))?
                        && (keep_zero || !is_zero_scalar(&value))
                    {
                        map.insert($json.into(), value);
                    }
                )*
                $($( rest.$ignored = Default::default(); )*)?
                if rest != <$ty>::default() {
                    let mut shown = format!("{rest:?}");
                    if shown.len() > MAX_REMAINDER_SHOWN {
                        let end = (0..=MAX_REMAINDER_SHOWN).rev().find(|i| shown.is_char_boundary(*i)).unwrap_or(0);
                        shown.truncate(end);
                        shown.push('…');
                    }
                    return Err(format!(
                        "{} carries fields the simulator does not decode from protobuf (send JSON instead): {shown}",
                        stringify!($ty)
                    ));
                }
                Ok(Value::Object(map))
            }
        }
    )*};
}

json_message! {
    meta::ObjectMeta {
        name => "name", generate_name => "generateName", namespace => "namespace", uid => "uid",
        resource_version => "resourceVersion", generation => "generation",
        creation_timestamp => "creationTimestamp", labels => "labels", annotations => "annotations",
        owner_references => "ownerReferences", finalizers => "finalizers",
    } ignore { self_link };
    meta::OwnerReference {
        api_version => "apiVersion", kind => "kind", name => "name", uid => "uid",
        controller => "controller" keep, block_owner_deletion => "blockOwnerDeletion" keep,
    };
    meta::LabelSelector { match_labels => "matchLabels", match_expressions => "matchExpressions" };
    meta::LabelSelectorRequirement { key => "key", operator => "operator", values => "values" };

    core::Namespace { metadata => "metadata", spec => "spec" } ignore { status };
    core::NamespaceSpec { finalizers => "finalizers" };
    core::Secret {
        metadata => "metadata", immutable => "immutable" keep, data => "data", string_data => "stringData",
        r#type => "type",
    };
    core::ConfigMap { metadata => "metadata", immutable => "immutable" keep, data => "data", binary_data => "binaryData" };
    core::ServiceAccount {
        metadata => "metadata", secrets => "secrets", image_pull_secrets => "imagePullSecrets",
        automount_service_account_token => "automountServiceAccountToken" keep,
    };
    core::ObjectReference {
        kind => "kind", namespace => "namespace", name => "name", uid => "uid", api_version => "apiVersion",
        resource_version => "resourceVersion", field_path => "fieldPath",
    };
    core::LocalObjectReference { name => "name" };
    core::Service { metadata => "metadata", spec => "spec" } ignore { status };
    core::ServiceSpec {
        ports => "ports", selector => "selector", cluster_ip => "clusterIP", cluster_ips => "clusterIPs",
        r#type => "type", external_ips => "externalIPs", session_affinity => "sessionAffinity",
        load_balancer_ip => "loadBalancerIP", load_balancer_source_ranges => "loadBalancerSourceRanges",
        external_name => "externalName", external_traffic_policy => "externalTrafficPolicy",
        health_check_node_port => "healthCheckNodePort", publish_not_ready_addresses => "publishNotReadyAddresses",
        ip_families => "ipFamilies", ip_family_policy => "ipFamilyPolicy",
        allocate_load_balancer_node_ports => "allocateLoadBalancerNodePorts" keep,
        load_balancer_class => "loadBalancerClass", internal_traffic_policy => "internalTrafficPolicy",
        traffic_distribution => "trafficDistribution",
    };
    core::ServicePort {
        name => "name", protocol => "protocol", app_protocol => "appProtocol", port => "port",
        target_port => "targetPort", node_port => "nodePort",
    };
    core::Pod { metadata => "metadata", spec => "spec" } ignore { status };
    core::PodTemplateSpec { metadata => "metadata", spec => "spec" };
    core::PodSpec {
        init_containers => "initContainers", containers => "containers", restart_policy => "restartPolicy",
        termination_grace_period_seconds => "terminationGracePeriodSeconds" keep,
        active_deadline_seconds => "activeDeadlineSeconds" keep, dns_policy => "dnsPolicy",
        node_selector => "nodeSelector", service_account_name => "serviceAccountName",
        service_account => "serviceAccount", automount_service_account_token => "automountServiceAccountToken" keep,
        node_name => "nodeName", host_network => "hostNetwork", host_pid => "hostPID", host_ipc => "hostIPC",
        share_process_namespace => "shareProcessNamespace" keep, image_pull_secrets => "imagePullSecrets",
        hostname => "hostname", subdomain => "subdomain", scheduler_name => "schedulerName",
        priority_class_name => "priorityClassName", priority => "priority" keep,
        runtime_class_name => "runtimeClassName", enable_service_links => "enableServiceLinks" keep,
        preemption_policy => "preemptionPolicy", set_hostname_as_fqdn => "setHostnameAsFQDN" keep,
        host_users => "hostUsers" keep,
    };
    core::Container {
        name => "name", image => "image", command => "command", args => "args", working_dir => "workingDir",
        ports => "ports", env => "env", resources => "resources", restart_policy => "restartPolicy",
        termination_message_path => "terminationMessagePath",
        termination_message_policy => "terminationMessagePolicy", image_pull_policy => "imagePullPolicy",
        stdin => "stdin", stdin_once => "stdinOnce", tty => "tty",
    };
    core::ContainerPort {
        name => "name", host_port => "hostPort", container_port => "containerPort", protocol => "protocol",
        host_ip => "hostIP",
    };
    core::EnvVar { name => "name", value => "value" };
    core::ResourceRequirements { limits => "limits", requests => "requests" };

    apps::Deployment { metadata => "metadata", spec => "spec" } ignore { status };
    apps::DeploymentSpec {
        replicas => "replicas" keep, selector => "selector", template => "template", strategy => "strategy",
        min_ready_seconds => "minReadySeconds", revision_history_limit => "revisionHistoryLimit" keep,
        paused => "paused", progress_deadline_seconds => "progressDeadlineSeconds" keep,
    };
    apps::DeploymentStrategy { r#type => "type", rolling_update => "rollingUpdate" };
    apps::RollingUpdateDeployment { max_unavailable => "maxUnavailable", max_surge => "maxSurge" };

    batch::Job { metadata => "metadata", spec => "spec" } ignore { status };
    batch::JobSpec {
        parallelism => "parallelism" keep, completions => "completions" keep,
        active_deadline_seconds => "activeDeadlineSeconds" keep, backoff_limit => "backoffLimit" keep,
        backoff_limit_per_index => "backoffLimitPerIndex" keep, max_failed_indexes => "maxFailedIndexes" keep,
        selector => "selector", manual_selector => "manualSelector" keep, template => "template",
        ttl_seconds_after_finished => "ttlSecondsAfterFinished" keep, completion_mode => "completionMode",
        suspend => "suspend" keep, pod_replacement_policy => "podReplacementPolicy", managed_by => "managedBy",
    };

    rbac::Role { metadata => "metadata", rules => "rules" };
    rbac::ClusterRole { metadata => "metadata", rules => "rules", aggregation_rule => "aggregationRule" };
    rbac::AggregationRule { cluster_role_selectors => "clusterRoleSelectors" };
    rbac::PolicyRule {
        verbs => "verbs", api_groups => "apiGroups", resources => "resources",
        resource_names => "resourceNames", non_resource_ur_ls => "nonResourceURLs",
    };
    rbac::RoleBinding { metadata => "metadata", subjects => "subjects", role_ref => "roleRef" };
    rbac::ClusterRoleBinding { metadata => "metadata", subjects => "subjects", role_ref => "roleRef" };
    rbac::Subject { kind => "kind", api_group => "apiGroup", name => "name", namespace => "namespace" };
    rbac::RoleRef { api_group => "apiGroup", kind => "kind", name => "name" };

    authn::TokenRequest { metadata => "metadata", spec => "spec" } ignore { status };
    authn::TokenRequestSpec {
        audiences => "audiences", expiration_seconds => "expirationSeconds" keep, bound_object_ref => "boundObjectRef",
    };
    authn::BoundObjectReference { kind => "kind", api_version => "apiVersion", name => "name", u_id => "uid" };
    authn::SelfSubjectReview { metadata => "metadata" } ignore { status };

    authz::SelfSubjectAccessReview { metadata => "metadata", spec => "spec" } ignore { status };
    authz::SelfSubjectAccessReviewSpec {
        resource_attributes => "resourceAttributes", non_resource_attributes => "nonResourceAttributes",
    };
    authz::SubjectAccessReview { metadata => "metadata", spec => "spec" } ignore { status };
    authz::LocalSubjectAccessReview { metadata => "metadata", spec => "spec" } ignore { status };
    authz::SubjectAccessReviewSpec {
        resource_attributes => "resourceAttributes", non_resource_attributes => "nonResourceAttributes",
        user => "user", groups => "groups", extra => "extra", uid => "uid",
    };
    authz::SelfSubjectRulesReview { metadata => "metadata", spec => "spec" } ignore { status };
    authz::SelfSubjectRulesReviewSpec { namespace => "namespace" };
    authz::ResourceAttributes {
        namespace => "namespace", verb => "verb", group => "group", version => "version",
        resource => "resource", subresource => "subresource", name => "name",
    };
    authz::NonResourceAttributes { path => "path", verb => "verb" };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(number: u64, wire: u64) -> Vec<u8> {
        encode_varint((number << 3) | wire)
    }

    fn encode_varint(mut v: u64) -> Vec<u8> {
        let mut out = vec![];
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = tag(number, 2);
        out.extend(encode_varint(bytes.len() as u64));
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes_field(1, api_version.as_bytes()), bytes_field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            bytes_field(1, &type_meta),
            bytes_field(2, raw),
            bytes_field(3, b""),
            bytes_field(4, b""),
        ]
        .concat()
    }

    /// The bytes kubectl 1.35 sends for `kubectl create token ci --duration=20m --audience=aud1
    /// --bound-object-kind=Pod --bound-object-name=p1 --bound-object-uid=u1`.
    #[test]
    fn kubectls_token_request_decodes() {
        let bound = [
            bytes_field(1, b"Pod"),
            bytes_field(2, b"v1"),
            bytes_field(3, b"p1"),
            bytes_field(4, b"u1"),
        ]
        .concat();
        let spec = [
            bytes_field(1, b"aud1"),
            bytes_field(3, &bound),
            tag(4, 0),
            encode_varint(1200),
        ]
        .concat();
        let meta = [bytes_field(1, b""), bytes_field(3, b""), tag(7, 0), vec![0]].concat();
        let raw = [
            bytes_field(1, &meta),
            bytes_field(2, &spec),
            bytes_field(3, &bytes_field(1, b"")),
        ]
        .concat();
        let body = envelope("authentication.k8s.io/v1", "TokenRequest", &raw);
        assert_eq!(
            decode(&body, CONTENT_TYPE).unwrap(),
            json!({"metadata": {},
                   "spec": {"audiences": ["aud1"], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1", "uid": "u1"},
                            "expirationSeconds": 1200},
                   "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"})
        );
    }

    #[test]
    fn access_reviews_decode_with_extra_and_groups() {
        let attributes = [
            bytes_field(1, b"kube-system"),
            bytes_field(2, b"get"),
            bytes_field(5, b"secrets"),
        ]
        .concat();
        let extra = [
            bytes_field(1, b"scopes"),
            bytes_field(2, &[bytes_field(1, b"a"), bytes_field(1, b"b")].concat()),
        ]
        .concat();
        let spec = [
            bytes_field(1, &attributes),
            bytes_field(3, b"jane"),
            bytes_field(4, b"devs"),
            bytes_field(4, b"ops"),
            bytes_field(5, &extra),
        ]
        .concat();
        let body = envelope("authorization.k8s.io/v1", "SubjectAccessReview", &bytes_field(2, &spec));
        assert_eq!(
            decode(&body, CONTENT_TYPE).unwrap()["spec"],
            json!({"resourceAttributes": {"namespace": "kube-system", "verb": "get", "resource": "secrets"},
                   "user": "jane", "groups": ["devs", "ops"], "extra": {"scopes": ["a", "b"]}})
        );
    }

    #[test]
    fn other_kinds_are_unsupported_and_broken_bodies_bad_requests() {
        let quota = envelope("v1", "ResourceQuota", &bytes_field(1, &bytes_field(1, b"x")));
        assert_eq!(decode(&quota, CONTENT_TYPE).unwrap_err().code, 415);
        // A kind this module knows, at a version it does not: 415 too.
        let old = envelope("apps/v1beta1", "Deployment", &bytes_field(1, &bytes_field(1, b"x")));
        assert_eq!(decode(&old, CONTENT_TYPE).unwrap_err().code, 415);
        for broken in [
            b"".to_vec(),
            b"json".to_vec(),
            [MAGIC, &[0x0a, 0xff]].concat(),
            [MAGIC, &[0x0a, 0x05, 0x01]].concat(),
            [MAGIC, &[0xff; 12]].concat(),
            envelope(
                "authorization.k8s.io/v1",
                "SelfSubjectAccessReview",
                &[0x12, 0x02, 0x0a, 0x09],
            ),
            envelope(
                "authorization.k8s.io/v1",
                "SelfSubjectAccessReview",
                &[0x12, 0x02, 0x08, 0x01],
            ),
            envelope(
                "authentication.k8s.io/v1",
                "TokenRequest",
                &[0x12, 0x03, 0x0a, 0x01, 0xff],
            ),
        ] {
            assert_eq!(decode(&broken, CONTENT_TYPE).unwrap_err().code, 400, "{broken:?}");
        }
    }

    /// A body as kubectl builds it: the typed message, encoded by prost, in the Unknown envelope.
    fn kubectl_body<M: Message>(api_version: &str, kind: &str, object: &M) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(object.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC.to_vec(), unknown.encode_to_vec()].concat()
    }

    fn object_meta(name: &str) -> meta::ObjectMeta {
        meta::ObjectMeta {
            name: Some(name.into()),
            // Go writes non-pointer zero values; the JSON leaves them out.
            namespace: Some(String::new()),
            generation: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn secret_bytes_become_base64_and_zero_values_are_omitted() {
        let secret = core::Secret {
            metadata: Some(object_meta("s")),
            data: BTreeMap::from([("a".to_string(), b"b".to_vec()), ("bin".to_string(), vec![0, 255])]),
            r#type: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            decode(&kubectl_body("v1", "Secret", &secret), CONTENT_TYPE).unwrap(),
            json!({"metadata": {"name": "s"}, "data": {"a": "Yg==", "bin": "AP8="},
                   "apiVersion": "v1", "kind": "Secret"})
        );
    }

    #[test]
    fn deployment_keeps_pointer_zeros_and_int_or_string() {
        let deployment = apps::Deployment {
            metadata: Some(object_meta("web")),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                min_ready_seconds: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                    ..Default::default()
                }),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: Some("RollingUpdate".into()),
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString {
                            r#type: Some(1),
                            str_val: Some("25%".into()),
                            int_val: Some(0),
                        }),
                        max_surge: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(2),
                            str_val: Some(String::new()),
                        }),
                    }),
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx".into()),
                            ports: vec![core::ContainerPort {
                                container_port: Some(80),
                                host_port: Some(0),
                                ..Default::default()
                            }],
                            resources: Some(core::ResourceRequirements {
                                limits: BTreeMap::from([(
                                    "cpu".to_string(),
                                    Quantity {
                                        string: Some("500m".into()),
                                    },
                                )]),
                                ..Default::default()
                            }),
                            stdin: Some(false),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(Default::default()),
        };
        let json = decode(&kubectl_body("apps/v1", "Deployment", &deployment), CONTENT_TYPE).unwrap();
        assert_eq!(
            json["spec"],
            json!({"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}],
                                                         "resources": {"limits": {"cpu": "500m"}}}]}},
                   "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2}}})
        );
        assert!(json.get("status").is_none());
    }

    #[test]
    fn fields_without_a_table_are_refused_not_dropped() {
        let pod = core::Pod {
            metadata: Some(object_meta("p")),
            spec: Some(core::PodSpec {
                volumes: vec![core::Volume {
                    name: Some("v".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let error = decode(&kubectl_body("v1", "Pod", &pod), CONTENT_TYPE).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(
            error
                .message
                .contains("PodSpec carries fields the simulator does not decode"),
            "{}",
            error.message
        );
    }

    #[test]
    fn cluster_role_binding_and_rules_decode() {
        let role = rbac::ClusterRole {
            metadata: Some(object_meta("reader")),
            rules: vec![rbac::PolicyRule {
                verbs: vec!["get".into(), "list".into()],
                api_groups: vec![String::new()],
                resources: vec!["pods".into()],
                ..Default::default()
            }],
            aggregation_rule: None,
        };
        assert_eq!(
            decode(
                &kubectl_body("rbac.authorization.k8s.io/v1", "ClusterRole", &role),
                CONTENT_TYPE
            )
            .unwrap()["rules"],
            json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])
        );
        let binding = rbac::ClusterRoleBinding {
            metadata: Some(object_meta("b")),
            subjects: vec![rbac::Subject {
                kind: Some("ServiceAccount".into()),
                api_group: Some(String::new()),
                name: Some("sa".into()),
                namespace: Some("ns".into()),
            }],
            role_ref: Some(rbac::RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: Some("ClusterRole".into()),
                name: Some("reader".into()),
            }),
        };
        let json = decode(
            &kubectl_body("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &binding),
            CONTENT_TYPE,
        )
        .unwrap();
        assert_eq!(
            json["subjects"],
            json!([{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}])
        );
        assert_eq!(
            json["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"})
        );
    }

    #[test]
    fn hostile_lengths_and_nesting_end_in_400() {
        // A raw field that claims 2^62 bytes.
        let huge = [MAGIC.to_vec(), tag(2, 2), encode_varint(1 << 62)].concat();
        assert_eq!(decode(&huge, CONTENT_TYPE).unwrap_err().code, 400);
        // Unknown fields nested 200 deep inside a Namespace's metadata are skipped as bytes, never
        // recursed into (the known types nest a bounded number of levels; prost stops at 100 anyway).
        let mut nested = bytes_field(1, b"x");
        for _ in 0..200 {
            nested = bytes_field(99, &nested);
        }
        let body = envelope("v1", "Namespace", &bytes_field(1, &nested));
        assert_eq!(decode(&body, CONTENT_TYPE).unwrap()["metadata"], json!({}));
        // A Time out of chrono's range.
        let mut meta = object_meta("t");
        meta.creation_timestamp = Some(meta::Time {
            seconds: Some(i64::MAX),
            nanos: Some(0),
        });
        let namespace = core::Namespace {
            metadata: Some(meta),
            ..Default::default()
        };
        assert_eq!(
            decode(&kubectl_body("v1", "Namespace", &namespace), CONTENT_TYPE)
                .unwrap_err()
                .code,
            400
        );
    }

    proptest::proptest! {
        /// Any Secret data kubectl can send comes back as base64 of exactly its bytes, keys intact.
        #[test]
        fn secret_data_round_trips(data in proptest::collection::btree_map("[a-zA-Z0-9._-]{1,20}", proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8)) {
            let secret = core::Secret { metadata: Some(object_meta("s")), data: data.clone(), ..Default::default() };
            let json = decode(&kubectl_body("v1", "Secret", &secret), CONTENT_TYPE).unwrap();
            let decoded: BTreeMap<String, Vec<u8>> = json
                .get("data")
                .and_then(Value::as_object)
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            proptest::prop_assert_eq!(decoded, data);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let body = [MAGIC, &bytes].concat();
            let _ = decode(&body, CONTENT_TYPE);
            for (api_version, kind) in [("authorization.k8s.io/v1", "SubjectAccessReview"), ("apps/v1", "Deployment"),
                                        ("v1", "Pod"), ("v1", "Secret"), ("batch/v1", "Job")] {
                let _ = decode(&envelope(api_version, kind, &bytes), CONTENT_TYPE);
            }
        }
    }
}
