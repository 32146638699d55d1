//! Request bodies in Kubernetes' protobuf encoding, for the few create-only kinds whose typed clients
//! send nothing else: kubectl's `create token` (TokenRequest), `auth can-i` (SelfSubjectAccessReview,
//! SelfSubjectRulesReview) and `auth whoami` (SelfSubjectReview), plus the other access reviews.
//! A body is the 4-byte magic `k8s\0` and a `runtime.Unknown` whose `raw` is the object; it is
//! decoded into the JSON the rest of the simulator reads, by the field numbers of the Kubernetes
//! `generated.proto` files. Every other kind stays 415 Unsupported Media Type, as before.
//!
//! The decoder is bounded by the fixed schemas below (no recursion of its own making) and checks
//! every length against the bytes it has, so hostile bodies end in 400, never a panic.
use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Kind {
    String,
    Int64,
    Message(&'static [Field]),
    /// `map<string, ExtraValue>` (ExtraValue: `repeated string items = 1`), as a map of string lists.
    ExtraMap,
}

#[derive(Clone, Copy)]
struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn field(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
    }
}

const fn repeated(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: true,
    }
}

const TYPE_META: &[Field] = &[field(1, "apiVersion", Kind::String), field(2, "kind", Kind::String)];
const UNKNOWN: &[Field] = &[
    field(1, "typeMeta", Kind::Message(TYPE_META)),
    field(4, "contentType", Kind::String),
];
/// The parts of ObjectMeta a review or token request can use.
const OBJECT_META: &[Field] = &[
    field(1, "name", Kind::String),
    field(2, "generateName", Kind::String),
    field(3, "namespace", Kind::String),
];
const BOUND_OBJECT_REFERENCE: &[Field] = &[
    field(1, "kind", Kind::String),
    field(2, "apiVersion", Kind::String),
    field(3, "name", Kind::String),
    field(4, "uid", Kind::String),
];
const TOKEN_REQUEST_SPEC: &[Field] = &[
    repeated(1, "audiences", Kind::String),
    field(3, "boundObjectRef", Kind::Message(BOUND_OBJECT_REFERENCE)),
    field(4, "expirationSeconds", Kind::Int64),
];
const RESOURCE_ATTRIBUTES: &[Field] = &[
    field(1, "namespace", Kind::String),
    field(2, "verb", Kind::String),
    field(3, "group", Kind::String),
    field(4, "version", Kind::String),
    field(5, "resource", Kind::String),
    field(6, "subresource", Kind::String),
    field(7, "name", Kind::String),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[field(1, "path", Kind::String), field(2, "verb", Kind::String)];
const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    field(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
    field(2, "nonResourceAttributes", Kind::Message(NON_RESOURCE_ATTRIBUTES)),
];
const SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    field(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
    field(2, "nonResourceAttributes", Kind::Message(NON_RESOURCE_ATTRIBUTES)),
    field(3, "user", Kind::String),
    repeated(4, "groups", Kind::String),
    field(5, "extra", Kind::ExtraMap),
    field(6, "uid", Kind::String),
];
const SELF_SUBJECT_RULES_REVIEW_SPEC: &[Field] = &[field(1, "namespace", Kind::String)];
const EMPTY: &[Field] = &[];

/// The top-level schema of each kind this module decodes: metadata, then spec.
fn object_schema(kind: &str) -> Option<[Field; 2]> {
    let spec = match kind {
        "TokenRequest" => TOKEN_REQUEST_SPEC,
        "SelfSubjectAccessReview" => SELF_SUBJECT_ACCESS_REVIEW_SPEC,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => SUBJECT_ACCESS_REVIEW_SPEC,
        "SelfSubjectRulesReview" => SELF_SUBJECT_RULES_REVIEW_SPEC,
        // SelfSubjectReview has no spec: its field 2 is the status, which a request leaves empty.
        "SelfSubjectReview" => EMPTY,
        _ => return None,
    };
    Some([
        field(1, "metadata", Kind::Message(OBJECT_META)),
        field(2, "spec", Kind::Message(spec)),
    ])
}

/// The JSON form of a protobuf-encoded request body, or 415 for a kind this module does not know
/// (the simulator otherwise speaks JSON and YAML only), or 400 for a body that does not decode.
pub fn decode(body: &[u8], content_type: &str) -> ApiResult<Value> {
    let unsupported = || ApiError::unsupported_media_type(content_type);
    let bad = |why: &str| ApiError::bad_request(format!("error decoding protobuf body: {why}"));
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s magic prefix"))?;
    // Unknown's field 2 (raw) is bytes: read it apart from the typed fields.
    let mut raw: &[u8] = &[];
    let envelope = decode_message(rest, UNKNOWN, &mut |number, bytes| {
        if number == 2 {
            raw = bytes;
        }
    })
    .map_err(bad)?;
    let type_meta = envelope.get("typeMeta").cloned().unwrap_or(Value::Null);
    let kind = type_meta.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = type_meta.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let schema = object_schema(kind).ok_or_else(unsupported)?;
    let mut object = decode_message(raw, &schema, &mut |_, _| {}).map_err(bad)?;
    object.insert("apiVersion".into(), Value::String(api_version.to_string()));
    object.insert("kind".into(), Value::String(kind.to_string()));
    Ok(Value::Object(object))
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes")
}

fn length_delimited<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8], &'static str> {
    let len = usize::try_from(varint(bytes, at)?).map_err(|_| "length out of range")?;
    let end = at
        .checked_add(len)
        .filter(|end| *end <= bytes.len())
        .ok_or("truncated field")?;
    let slice = &bytes[*at..end];
    *at = end;
    Ok(slice)
}

/// Decodes one message by `schema`; fields it does not list are skipped, and length-delimited
/// ones among those are also handed to `other` (for bytes fields read apart).
fn decode_message<'a>(
    bytes: &'a [u8],
    schema: &[Field],
    other: &mut dyn FnMut(u64, &'a [u8]),
) -> Result<Map<String, Value>, &'static str> {
    let mut out = Map::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let (number, wire) = (key >> 3, key & 7);
        let known = schema.iter().find(|f| f.number == number);
        let value = match (wire, known) {
            (0, Some(f)) => {
                let v = varint(bytes, &mut at)?;
                match f.kind {
                    // Two's complement, as protobuf encodes negative int64s.
                    Kind::Int64 => Value::from(v as i64),
                    _ => return Err("a varint where a length-delimited field belongs"),
                }
            }
            (2, Some(f)) => {
                let field_bytes = length_delimited(bytes, &mut at)?;
                match f.kind {
                    Kind::String => Value::String(
                        std::str::from_utf8(field_bytes)
                            .map_err(|_| "a string that is not UTF-8")?
                            .to_string(),
                    ),
                    Kind::Message(inner) => Value::Object(decode_message(field_bytes, inner, &mut |_, _| {})?),
                    Kind::ExtraMap => {
                        let (key, values) = extra_entry(field_bytes)?;
                        let map = out
                            .entry(f.name)
                            .or_insert_with(|| Value::Object(Map::new()))
                            .as_object_mut()
                            .ok_or("extra is not a map")?;
                        map.insert(key, values);
                        continue;
                    }
                    _ => return Err("a length-delimited field where a varint belongs"),
                }
            }
            (0, None) => {
                varint(bytes, &mut at)?;
                continue;
            }
            (2, None) => {
                let field_bytes = length_delimited(bytes, &mut at)?;
                other(number, field_bytes);
                continue;
            }
            (1, _) => {
                at = at
                    .checked_add(8)
                    .filter(|a| *a <= bytes.len())
                    .ok_or("truncated fixed64")?;
                continue;
            }
            (5, _) => {
                at = at
                    .checked_add(4)
                    .filter(|a| *a <= bytes.len())
                    .ok_or("truncated fixed32")?;
                continue;
            }
            _ => return Err("unsupported wire type"),
        };
        let f = known.ok_or("unreachable: known field")?;
        if f.repeated {
            let list = out.entry(f.name).or_insert_with(|| Value::Array(vec![]));
            if let Value::Array(items) = list {
                items.push(value);
            }
        } else {
            out.insert(f.name.into(), value);
        }
    }
    Ok(out)
}

/// One `map<string, ExtraValue>` entry: key = 1, value = 2 (ExtraValue: `repeated string items = 1`).
fn extra_entry(bytes: &[u8]) -> Result<(String, Value), &'static str> {
    const ITEMS: &[Field] = &[repeated(1, "items", Kind::String)];
    const ENTRY: &[Field] = &[field(1, "key", Kind::String), field(2, "value", Kind::Message(ITEMS))];
    let entry = decode_message(bytes, ENTRY, &mut |_, _| {})?;
    let key = entry.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
    let items = entry
        .get("value")
        .and_then(|v| v.get("items"))
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    Ok((key, items))
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
            json!({"metadata": {"name": "", "namespace": ""},
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
        let namespace = envelope("v1", "Namespace", &bytes_field(1, &bytes_field(1, b"x")));
        assert_eq!(decode(&namespace, CONTENT_TYPE).unwrap_err().code, 415);
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

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let body = [MAGIC, &bytes].concat();
            let _ = decode(&body, CONTENT_TYPE);
            let wrapped = envelope("authorization.k8s.io/v1", "SubjectAccessReview", &bytes);
            let _ = decode(&wrapped, CONTENT_TYPE);
        }
    }
}
