//! The HTTP face of the simulator: Kubernetes REST paths and content negotiation over the `api`
//! layer, plus `/sim/*` admin endpoints (faults, request log). Every failure is a `Status` answer.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::{ApiServer, DeleteOptions, FieldValidation, ListOptions, PatchBody, PatchKind, WriteOptions};
use crate::auth::{Attributes, ResourceAttributes};
use crate::auth::{AuthContext, Authenticator, Authorization, UserInfo, rbac};
use crate::discovery;
use crate::faults::{FaultRule, Faults};
use crate::openapi;
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::StoredObject;
use crate::table::{self, IncludeObject};
use crate::watch::{self as watching, Frame, WatchRequest};

/// Largest request body accepted (the API server's limit is 3 MiB for objects).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Everything the HTTP handlers share.
pub struct HttpState {
    pub api: Arc<ApiServer>,
    pub faults: Arc<Faults>,
    pub requests: RequestLog,
    pub drop_watches: watch::Sender<u64>,
    pub bookmark_interval: Duration,
    /// Extra routes (e.g. traffic metrics) are merged by the caller.
    pub server_address: String,
    /// Knows the admin token and the issued service-account tokens.
    pub authenticator: Authenticator,
    pub authorization: Authorization,
}

/// One API request as seen by the simulator, for least-privilege checks and write counting.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub user_agent: String,
    /// The `Impersonate-User` header, when the client acts as another user (empty otherwise).
    pub impersonate_user: String,
    /// The user the credentials prove (empty when authentication failed).
    pub authenticated_user: String,
    /// Whom the request acted as: the authenticated user, or the impersonated one.
    pub user: String,
    /// The groups of `user`.
    pub groups: Vec<String>,
    /// The authorization decision: `allow`, `deny`, or empty when the request was refused before
    /// authorization (bad credentials, malformed impersonation).
    pub decision: String,
    /// `?fieldManager=` of a write (empty otherwise): tells one writer's applies from another's.
    pub field_manager: String,
    /// `?dryRun=All`: validated, nothing stored.
    pub dry_run: bool,
    pub code: u16,
    /// The answer was an injected fault (`/sim/faults`), not the API's own.
    pub injected: bool,
    /// When the answer was ready, in milliseconds since the Unix epoch: orders writes of different
    /// clients in time (sharding tests check no two replicas write one object in overlapping windows).
    pub at_ms: u64,
}

/// A bounded log of API requests.
#[derive(Debug)]
pub struct RequestLog {
    records: Mutex<VecDeque<RequestRecord>>,
    capacity: usize,
}

impl RequestLog {
    pub fn new(capacity: usize) -> Self {
        RequestLog {
            records: Mutex::new(VecDeque::new()),
            capacity,
        }
    }
    fn push(&self, record: RequestRecord) {
        if self.capacity == 0 {
            return;
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= self.capacity {
            records.pop_front();
        }
        records.push_back(record);
    }
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
    pub fn clear(&self) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    let guard = axum::middleware::from_fn_with_state(state.clone(), guard);
    Router::new()
        .route("/version", get(|| async { json_ok(discovery::version()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .route("/sim/faults", get(get_faults).put(put_faults))
        .route("/sim/faults/drop-watches", post(drop_watches))
        .route("/sim/faults/compact", post(compact))
        .route("/sim/requests", get(get_requests).delete(clear_requests))
        .route("/sim/stats", get(stats))
        .fallback(api_request)
        .layer(guard)
        .with_state(state)
}

/// Whether a path belongs to the simulator's own control plane (`/sim/*`: faults, request log,
/// traffic metrics). Those endpoints are not the Kubernetes API and are served unauthenticated, so
/// tests and benchmarks can steer and inspect the simulator whatever the RBAC policy in force.
fn is_sim_path(path: &str) -> bool {
    path == "/sim" || path.starts_with("/sim/")
}

/// A list or watch pinned to one name by `fieldSelector=metadata.name=x` is authorized (and logged) as a
/// request for that object (so resourceNames rules allow watching it), as the API server does.
fn pinned_name(verb: Verb, query: &Query) -> Option<String> {
    matches!(verb, Verb::List | Verb::Watch)
        .then(|| query.get("fieldSelector"))
        .flatten()
        .and_then(|s| FieldSelector::parse(s).ok())
        .and_then(|selector| selector.pinned_name().map(str::to_string))
}

/// What a request asks to do, as the authorizer sees it: a resource request for paths under `/api/`
/// and `/apis/` that name a resource, a non-resource request (verb from the method) otherwise.
fn attributes_of(method: &Method, path: &str, query: &Query) -> (Attributes, Option<(Target, Verb)>) {
    if let Some(Route::Resource(target)) = parse_path(path) {
        let verb = Verb::of(method, &target, query);
        let pinned = pinned_name(verb, query);
        let attributes = Attributes::Resource(ResourceAttributes {
            verb: verb.as_str().to_string(),
            group: target.group.clone(),
            version: target.version.clone(),
            resource: target.plural.clone(),
            subresource: target.subresource.clone().unwrap_or_default(),
            namespace: target.namespace.clone().unwrap_or_default(),
            name: target.name.clone().or(pinned).unwrap_or_default(),
        });
        return (attributes, Some((target, verb)));
    }
    let verb = match *method {
        Method::GET | Method::HEAD => "get".to_string(),
        ref other => other.as_str().to_ascii_lowercase(),
    };
    (
        Attributes::NonResource {
            verb,
            path: path.to_string(),
        },
        None,
    )
}

/// Authentication, impersonation and authorization of every Kubernetes API request, in the API
/// server's order; a refused request is answered here (401, 400, 403) and logged if it addressed a
/// resource. The handlers find the outcome as an [`AuthContext`] in the request's extensions.
async fn guard(State(state): State<Arc<HttpState>>, mut request: Request, next: Next) -> Response {
    if is_sim_path(request.uri().path()) {
        return next.run(request).await;
    }
    let query = Query::parse(request.uri().query());
    let (attributes, resource) = attributes_of(request.method(), request.uri().path(), &query);
    let headers = request.headers();
    let refuse = |error: ApiError, context: AuthContext| {
        let response = error_response(&error);
        if let Some((target, verb)) = &resource {
            state.requests.push(record(
                target,
                *verb,
                &query,
                headers,
                &context,
                response.status().as_u16(),
                false,
            ));
        }
        response
    };
    let authenticated = match state
        .authenticator
        .authenticate(headers, &state.api.store, chrono::Utc::now())
    {
        Ok(user) => user,
        Err(error) => {
            let context = AuthContext {
                authenticated: UserInfo::default(),
                user: UserInfo::default(),
                decision: "",
            };
            return refuse(error, context);
        }
    };
    let mode = state.authorization;
    let store = &state.api.store;
    let user = match crate::auth::authn::impersonate(&authenticated, headers, |a| mode.decide(&authenticated, a, store))
    {
        Ok(Some(user)) => user,
        Ok(None) => authenticated.clone(),
        Err(error) => {
            let decision = if error.code == 403 { "deny" } else { "" };
            let context = AuthContext {
                user: authenticated.clone(),
                authenticated,
                decision,
            };
            return refuse(error, context);
        }
    };
    let decision = mode.decide(&user, &attributes, store);
    if !decision.allowed {
        let error = rbac::forbidden(&user.name, &attributes, &decision.reason);
        let context = AuthContext {
            authenticated,
            user,
            decision: "deny",
        };
        return refuse(error, context);
    }
    request.extensions_mut().insert(AuthContext {
        authenticated,
        user,
        decision: "allow",
    });
    next.run(request).await
}

/// The request-log record of a resource request.
fn record(
    target: &Target,
    verb: Verb,
    query: &Query,
    headers: &HeaderMap,
    context: &AuthContext,
    code: u16,
    injected: bool,
) -> RequestRecord {
    RequestRecord {
        verb: verb.as_str().to_string(),
        group: target.group.clone(),
        resource: target.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target
            .name
            .clone()
            .or_else(|| pinned_name(verb, query))
            .unwrap_or_default(),
        user_agent: header_str(headers, header::USER_AGENT).unwrap_or("").to_string(),
        impersonate_user: headers
            .get("impersonate-user")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default(),
        authenticated_user: context.authenticated.name.clone(),
        user: context.user.name.clone(),
        groups: context.user.groups.clone(),
        decision: context.decision.to_string(),
        field_manager: query.get("fieldManager").unwrap_or_default().to_string(),
        dry_run: query.get("dryRun") == Some("All"),
        code,
        injected,
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn json_ok(value: Value) -> Response {
    json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&value).expect("JSON values serialize")),
        &[],
    )
}

/// An update or patch answer: 201 when it created the object (apply, PUT of a missing one), else 200.
fn written_response(written: crate::api::Written) -> Response {
    let code = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(code, to_bytes(&written.object), &written.warnings)
}

fn json_response(code: StatusCode, body: Bytes, warnings: &[String]) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, Bytes::from(error.to_status().to_string()), &[]);
    if let Some(secs) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn openapi_index(State(state): State<Arc<HttpState>>) -> Response {
    json_ok(openapi::v3_index(&state.api.registry()))
}

async fn openapi_document(
    State(state): State<Arc<HttpState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let segments: Vec<&str> = path.split('/').collect();
    let document = match segments.as_slice() {
        ["api", version] => openapi::v3_document(&state.api.registry(), "", version),
        ["apis", group, version] => openapi::v3_document(&state.api.registry(), group, version),
        _ => None,
    };
    match document {
        Some(doc) => json_ok(doc),
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

async fn get_faults(State(state): State<Arc<HttpState>>) -> Response {
    json_ok(json!({ "rules": state.faults.rules() }))
}

async fn put_faults(State(state): State<Arc<HttpState>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Body {
        rules: Vec<FaultRule>,
    }
    let parsed: Result<Body, _> = serde_json::from_slice(&body);
    match parsed
        .map_err(|e| e.to_string())
        .and_then(|b| state.faults.set(b.rules))
    {
        Ok(()) => json_ok(json!({ "rules": state.faults.rules() })),
        Err(e) => error_response(&ApiError::bad_request(format!("invalid fault rules: {e}"))),
    }
}

async fn drop_watches(State(state): State<Arc<HttpState>>) -> Response {
    state.drop_watches.send_modify(|n| *n += 1);
    json_ok(json!({"dropped": true}))
}

async fn compact(State(state): State<Arc<HttpState>>) -> Response {
    state.api.store.compact();
    // Open watches end too, so their clients resume from an old resourceVersion and must relist.
    state.drop_watches.send_modify(|n| *n += 1);
    json_ok(json!({"compactedThrough": state.api.store.current_resource_version()}))
}

async fn get_requests(State(state): State<Arc<HttpState>>) -> Response {
    json_ok(json!({ "requests": state.requests.snapshot() }))
}

async fn clear_requests(State(state): State<Arc<HttpState>>) -> Response {
    state.requests.clear();
    json_ok(json!({}))
}

async fn stats(State(state): State<Arc<HttpState>>) -> Response {
    json_ok(json!({
        "objects": state.api.store.object_count(),
        "history": state.api.store.history_len(),
        "resourceVersion": state.api.store.current_resource_version(),
    }))
}

/// What a request addresses, parsed from its path.
#[derive(Debug, Default, Clone, PartialEq)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Discovery(DiscoveryPath),
    Resource(Target),
}

enum DiscoveryPath {
    Core,
    CoreVersion,
    Groups,
    Group(String),
    GroupVersion(String, String),
}

fn parse_path(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Some(Route::Discovery(DiscoveryPath::Core)),
        ["api", "v1"] => return Some(Route::Discovery(DiscoveryPath::CoreVersion)),
        ["apis"] => return Some(Route::Discovery(DiscoveryPath::Groups)),
        ["apis", group] => return Some(Route::Discovery(DiscoveryPath::Group(group.to_string()))),
        ["apis", group, version] => {
            return Some(Route::Discovery(DiscoveryPath::GroupVersion(
                group.to_string(),
                version.to_string(),
            )));
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let mut target = Target {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let owned = |s: &&str| Some(s.to_string());
    match rest {
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            target.plural = "namespaces".into();
            target.name = owned(name);
            target.subresource = owned(sub);
        }
        ["namespaces", ns, plural, tail @ ..] => {
            target.namespace = owned(ns);
            target.plural = plural.to_string();
            match tail {
                [] => {}
                [name] => target.name = owned(name),
                [name, sub] => {
                    target.name = owned(name);
                    target.subresource = owned(sub);
                }
                _ => return None,
            }
        }
        [plural] => target.plural = plural.to_string(),
        [plural, name] => {
            target.plural = plural.to_string();
            target.name = owned(name);
        }
        [plural, name, sub] => {
            target.plural = plural.to_string();
            target.name = owned(name);
            target.subresource = owned(sub);
        }
        _ => return None,
    }
    Some(Route::Resource(target))
}

/// Query parameters, last value wins (`?&limit=500` parses).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

/// The representation a client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Representation {
    Json,
    Table,
    Metadata,
}

fn negotiate(accept: Option<&str>) -> ApiResult<Representation> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Representation::Json);
    };
    for candidate in accept.split(',') {
        let mut parts = candidate.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        if !matches!(media, "application/json" | "*/*" | "application/*") {
            continue;
        }
        match (param("as"), param("g"), param("v")) {
            (None, _, _) => return Ok(Representation::Json),
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => return Ok(Representation::Table),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io"), Some("v1")) => {
                return Ok(Representation::Metadata);
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io (got {accept:?})"
    )))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every Kubernetes REST request lands here.
async fn api_request(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let user_agent = header_str(&parts.headers, header::USER_AGENT).unwrap_or("").to_string();
    let Some(auth) = parts.extensions.get::<AuthContext>().cloned() else {
        // Only reachable if the router were built without its guard: refuse rather than serve.
        return error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    };
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let route = match parse_path(&path) {
        Some(route) => route,
        None => {
            return error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let target = match route {
        Route::Discovery(which) => return discovery_response(&state, which, &parts.headers),
        Route::Resource(target) => target,
    };
    let verb = Verb::of(&parts.method, &target, &query);
    let resource_name = if target.group.is_empty() {
        target.plural.clone()
    } else {
        format!("{}.{}", target.plural, target.group)
    };
    let verdict = state.faults.judge(verb.as_str(), &resource_name, state.faults.roll());
    let injected = verdict.error.is_some();
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    let response = match verdict.error {
        Some(error) => error_response(&error),
        None => match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => {
                let request = ResourceRequest {
                    state: &state,
                    target: &target,
                    query: &query,
                    headers: &parts.headers,
                    user_agent: &user_agent,
                    auth: &auth,
                };
                match request.serve(verb, bytes).await {
                    Ok(response) => response,
                    Err(error) => error_response(&error),
                }
            }
            Err(_) => error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            )),
        },
    };
    let code = response.status().as_u16();
    state
        .requests
        .push(record(&target, verb, &query, &parts.headers, &auth, code, injected));
    response
}

/// The Kubernetes verb of a resource request, as authorization, audit and fault rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// A method the API does not serve on resources (answered 405).
    Unsupported,
}

impl Verb {
    /// The verb of `method` on `target`, as the API server derives it.
    fn of(method: &Method, target: &Target, query: &Query) -> Verb {
        let item = target.name.is_some();
        match *method {
            Method::GET if query.flag("watch") => Verb::Watch,
            Method::GET if item => Verb::Get,
            Method::GET => Verb::List,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE if item => Verb::Delete,
            Method::DELETE => Verb::DeleteCollection,
            _ => Verb::Unsupported,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Unsupported => "unknown",
        }
    }

    fn reads(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn discovery_response(state: &HttpState, which: DiscoveryPath, headers: &HeaderMap) -> Response {
    let registry = state.api.registry();
    let accept = header_str(headers, header::ACCEPT).unwrap_or("");
    let aggregated = discovery::wants_aggregated(accept);
    let root = matches!(which, DiscoveryPath::Core | DiscoveryPath::Groups);
    let document = match which {
        DiscoveryPath::Core if aggregated => Some(discovery::aggregated(&registry, true)),
        DiscoveryPath::Groups if aggregated => Some(discovery::aggregated(&registry, false)),
        DiscoveryPath::Core => Some(discovery::legacy_api_versions(&state.server_address)),
        DiscoveryPath::Groups => Some(discovery::legacy_api_group_list(&registry)),
        DiscoveryPath::CoreVersion => discovery::api_resource_list(&registry, "", "v1"),
        DiscoveryPath::Group(group) => discovery::api_group(&registry, &group),
        DiscoveryPath::GroupVersion(group, version) => discovery::api_resource_list(&registry, &group, &version),
    };
    match document {
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
        Some(doc) => {
            let mut response = json_ok(doc);
            if aggregated && root {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
                );
            }
            response
        }
    }
}

struct ResourceRequest<'a> {
    state: &'a Arc<HttpState>,
    target: &'a Target,
    query: &'a Query,
    headers: &'a HeaderMap,
    user_agent: &'a str,
    auth: &'a AuthContext,
}

impl ResourceRequest<'_> {
    async fn serve(&self, verb: Verb, body: Bytes) -> ApiResult<Response> {
        let target = self.target;
        let rt = self.resource_type()?;
        let namespace = target.namespace.clone().unwrap_or_default();
        let name = target.name.clone().unwrap_or_default();
        let representation = if verb.reads() {
            negotiate(header_str(self.headers, header::ACCEPT))?
        } else {
            Representation::Json
        };
        if target.subresource.as_deref() == Some("scale") {
            return self.scale(&rt, verb, &namespace, &name, body);
        }
        if rt.create_only || target.subresource.as_deref() == Some("token") {
            return self.create_only(&rt, verb, &namespace, &name, &body);
        }
        match verb {
            Verb::Get => {
                let object = self.state.api.get(&rt, &namespace, &name)?;
                Ok(self.objects_response(&rt, representation, &[object], None))
            }
            Verb::List => self.list(&rt, representation),
            Verb::Watch => self.watch(rt.clone(), representation),
            Verb::Create => self.create(&rt, &namespace, &body),
            Verb::Update => {
                let object = self.parse_body(&body)?;
                let written = self
                    .state
                    .api
                    .update(&rt, &namespace, &name, object, &self.write_options()?)?;
                Ok(written_response(written))
            }
            Verb::Patch => self.patch(&rt, &namespace, &name, &body),
            Verb::Delete => {
                let options = DeleteOptions::parse(&body, self.query.get("propagationPolicy"), self.dry_run())?;
                let version = target.version.as_str();
                let (object, gone) = self.state.api.delete(&rt, version, &namespace, &name, &options)?;
                let code = if gone { StatusCode::OK } else { StatusCode::ACCEPTED };
                Ok(json_response(code, to_bytes(&object), &[]))
            }
            Verb::DeleteCollection => self.delete_collection(&rt, &body),
            Verb::Unsupported => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
        }
    }

    /// The resource type the path names, if it is served there (namespaced or not, the subresource).
    fn resource_type(&self) -> ApiResult<Arc<ResourceType>> {
        let target = self.target;
        let rt = self
            .state
            .api
            .registry()
            .lookup(&target.group, &target.version, &target.plural)?;
        if target.namespace.is_some() && !rt.namespaced {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        let serves_scale = rt.version(&target.version).is_some_and(|v| v.scale.is_some());
        if let Some(sub) = &target.subresource
            && !((sub == "status" && rt.has_status_subresource())
                || (sub == "scale" && serves_scale)
                || (sub == "token" && rt.serves_token() && target.version == "v1"))
        {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({sub})"),
            ));
        }
        Ok(rt)
    }

    /// A create of a review kind or of a ServiceAccount's token: answered, nothing stored; every other
    /// verb is 405 as on the API server.
    fn create_only(
        &self,
        rt: &ResourceType,
        verb: Verb,
        namespace: &str,
        name: &str,
        body: &Bytes,
    ) -> ApiResult<Response> {
        let not_allowed =
            || ApiError::method_not_allowed("the server does not allow this method on the requested resource");
        if verb != Verb::Create {
            return Err(not_allowed());
        }
        let object = self.parse_body(body)?;
        if self.target.subresource.as_deref() == Some("token") {
            let answer = self.state.authenticator.request_token(
                &self.state.api.store,
                namespace,
                name,
                &object,
                self.dry_run(),
                chrono::Utc::now(),
            )?;
            return Ok(json_response(StatusCode::CREATED, to_bytes(&answer), &[]));
        }
        if self.target.name.is_some() {
            return Err(not_allowed());
        }
        if (rt.group.as_str(), rt.plural.as_str()) == ("authentication.k8s.io", "tokenreviews") {
            let answer = self
                .state
                .authenticator
                .token_review(&self.state.api.store, &object, chrono::Utc::now())?;
            return Ok(json_response(StatusCode::CREATED, to_bytes(&answer), &[]));
        }
        let answer = crate::auth::reviews::review(
            self.state.authorization,
            &self.state.api.store,
            &self.auth.user,
            &rt.group,
            &rt.plural,
            namespace,
            &object,
        )?;
        Ok(json_response(StatusCode::CREATED, to_bytes(&answer), &[]))
    }

    fn list(&self, rt: &ResourceType, representation: Representation) -> ApiResult<Response> {
        let result = self
            .state
            .api
            .list(rt, self.target.namespace.as_deref(), &self.list_options()?)?;
        let list_meta = list_metadata(
            result.resource_version,
            result.continue_token.as_deref(),
            result.remaining,
        );
        Ok(self.objects_response(rt, representation, &result.items, Some(list_meta)))
    }

    fn create(&self, rt: &ResourceType, namespace: &str, body: &Bytes) -> ApiResult<Response> {
        if self.target.name.is_some() && self.target.subresource.is_none() {
            return Err(ApiError::method_not_allowed("POST is not allowed on a named object"));
        }
        let object = self.parse_body(body)?;
        let written = self.state.api.create(rt, namespace, object, &self.write_options()?)?;
        Ok(json_response(
            StatusCode::CREATED,
            to_bytes(&written.object),
            &written.warnings,
        ))
    }

    fn patch(&self, rt: &ResourceType, namespace: &str, name: &str, body: &Bytes) -> ApiResult<Response> {
        let content_type = header_str(self.headers, header::CONTENT_TYPE).unwrap_or("");
        let kind = PatchKind::from_content_type(content_type)?;
        let options = self.write_options()?;
        let version = self.target.version.as_str();
        let written = self
            .state
            .api
            .patch(rt, version, namespace, name, PatchBody::new(kind, body), &options)?;
        Ok(written_response(written))
    }

    fn delete_collection(&self, rt: &ResourceType, body: &Bytes) -> ApiResult<Response> {
        let options = DeleteOptions::parse(body, self.query.get("propagationPolicy"), self.dry_run())?;
        let version = self.target.version.as_str();
        let deleted = self.state.api.delete_collection(
            rt,
            version,
            self.target.namespace.as_deref(),
            &self.list_options()?,
            &options,
        )?;
        let list = json!({
            "kind": rt.list_kind, "apiVersion": rt.api_version(version),
            "metadata": {"resourceVersion": self.state.api.store.current_resource_version().to_string()},
            "items": deleted,
        });
        Ok(json_ok(list))
    }

    /// The `scale` subresource: GET, PUT and PATCH of an autoscaling/v1 Scale.
    fn scale(&self, rt: &ResourceType, verb: Verb, namespace: &str, name: &str, body: Bytes) -> ApiResult<Response> {
        let api = &self.state.api;
        let scale = match verb {
            Verb::Get => api.scale(rt, namespace, name)?,
            Verb::Update => {
                let desired = self.parse_body(&body)?;
                api.write_scale(rt, namespace, name, &self.write_options()?, |_| Ok(desired))?
            }
            Verb::Patch => {
                let content_type = header_str(self.headers, header::CONTENT_TYPE).unwrap_or("");
                let kind = PatchKind::from_content_type(content_type)?;
                let patch: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                api.write_scale(rt, namespace, name, &self.write_options()?, |current| match kind {
                    PatchKind::Merge => crate::patch::merge_patch(&current, &patch),
                    PatchKind::Json => crate::patch::json_patch(&current, &patch),
                    PatchKind::Strategic => {
                        crate::patch::strategic_merge_patch(&current, &patch, &crate::structure::BuiltinStructure)
                    }
                    PatchKind::Apply => Err(ApiError::unsupported_media_type(content_type)),
                })?
            }
            _ => {
                return Err(ApiError::method_not_allowed(format!(
                    "{verb} is not supported on the scale subresource"
                )));
            }
        };
        Ok(json_ok(scale))
    }

    fn dry_run(&self) -> bool {
        self.query.0.iter().any(|(k, v)| k == "dryRun" && v == "All")
    }

    fn write_options(&self) -> ApiResult<WriteOptions> {
        if let Some(dry) = self.query.get("dryRun")
            && dry != "All"
        {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {dry:?}: supported values: \"All\""
            )));
        }
        let field_manager = match self.query.get("fieldManager") {
            Some(manager) if manager.len() > 128 => {
                return Err(ApiError::bad_request(
                    "fieldManager: Too long: may not be longer than 128",
                ));
            }
            Some(manager) => manager.to_string(),
            // As the API server does: the user agent up to its first '/'.
            None => self.user_agent.split('/').next().unwrap_or("").to_string(),
        };
        Ok(WriteOptions {
            field_manager,
            dry_run: self.dry_run(),
            field_validation: FieldValidation::parse(self.query.get("fieldValidation"))?,
            force: self.query.flag("force"),
            subresource: self.target.subresource.clone(),
            admission: self.escalation_check(),
        })
    }

    /// Writes of Roles, ClusterRoles and their bindings must not grant more than the writer holds
    /// (unless it may `escalate` or `bind`), judged against the RBAC objects before the write.
    fn escalation_check(&self) -> Option<crate::api::Admission> {
        let rbac_write = self.target.group == "rbac.authorization.k8s.io"
            && matches!(
                self.target.plural.as_str(),
                "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings"
            )
            && self.target.subresource.is_none();
        if !rbac_write || self.state.authorization != Authorization::Rbac || rbac::is_superuser(&self.auth.user) {
            return None;
        }
        let snapshot = crate::auth::RbacSnapshot::read(&self.state.api.store);
        let user = self.auth.user.clone();
        let plural = self.target.plural.clone();
        let request_name = self.target.name.clone().unwrap_or_default();
        Some(crate::api::Admission(Arc::new(move |_, namespace, object| {
            crate::auth::escalation::check(&user, &snapshot, &plural, namespace, &request_name, object)
        })))
    }

    fn list_options(&self) -> ApiResult<ListOptions> {
        let labels = self
            .query
            .get("labelSelector")
            .filter(|s| !s.is_empty())
            .map(LabelSelector::parse)
            .transpose()?;
        let fields = self
            .query
            .get("fieldSelector")
            .filter(|s| !s.is_empty())
            .map(FieldSelector::parse)
            .transpose()?;
        let limit = match self.query.get("limit") {
            None | Some("") => None,
            Some(l) => Some(
                l.parse::<usize>()
                    .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
            ),
        };
        Ok(ListOptions {
            labels,
            fields,
            limit,
            continue_token: self.query.get("continue").filter(|c| !c.is_empty()).map(str::to_string),
        })
    }

    fn parse_body(&self, body: &[u8]) -> ApiResult<Value> {
        let content_type = header_str(self.headers, header::CONTENT_TYPE).unwrap_or("application/json");
        let media = content_type.split(';').next().unwrap_or("").trim();
        let value: Value = match media {
            "application/json" | "" => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?,
            "application/yaml" => {
                let text =
                    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
                serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?
            }
            // The kinds kubectl's typed commands create (see protobuf.rs); others stay 415.
            crate::protobuf::CONTENT_TYPE => crate::protobuf::decode(body, content_type)?,
            _ => return Err(ApiError::unsupported_media_type(content_type)),
        };
        if !value.is_object() {
            return Err(ApiError::bad_request("the body of the request must be an object"));
        }
        Ok(value)
    }

    /// A single object (`list_meta` None) or a list, in the negotiated representation.
    fn objects_response(
        &self,
        rt: &ResourceType,
        representation: Representation,
        objects: &[Arc<StoredObject>],
        list_meta: Option<Value>,
    ) -> Response {
        let version = self.target.version.as_str();
        let preferred = version == rt.preferred_version().name;
        match representation {
            Representation::Json => match list_meta {
                None => json_response(StatusCode::OK, present_bytes(rt, version, preferred, &objects[0]), &[]),
                Some(meta) => {
                    // Concatenate stored JSON: lists never re-serialize their items.
                    let mut out = Vec::with_capacity(objects.iter().map(|o| o.json.len() + 1).sum::<usize>() + 256);
                    out.extend_from_slice(
                        format!(
                            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
                            json!(rt.list_kind),
                            json!(rt.api_version(version)),
                            meta
                        )
                        .as_bytes(),
                    );
                    for (i, object) in objects.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&present_bytes(rt, version, preferred, object));
                    }
                    out.extend_from_slice(b"]}");
                    json_response(StatusCode::OK, Bytes::from(out), &[])
                }
            },
            Representation::Metadata => match list_meta {
                None => json_ok(partial_metadata(&objects[0])),
                Some(meta) => json_ok(json!({
                    "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                    "items": objects.iter().map(|o| partial_metadata(o)).collect::<Vec<_>>(),
                })),
            },
            Representation::Table => {
                let values: Vec<Value> = objects
                    .iter()
                    .map(|o| ApiServer::present(rt, version, o.to_value()))
                    .collect();
                let columns = (!rt.builtin).then(|| {
                    rt.version(version)
                        .map(|v| v.printer_columns.clone())
                        .unwrap_or_default()
                });
                let include = include_object(self.query.get("includeObject"));
                let meta =
                    list_meta.unwrap_or_else(|| json!({"resourceVersion": objects[0].resource_version.to_string()}));
                json_ok(table::table(
                    &rt.plural,
                    columns.as_deref(),
                    &values,
                    include,
                    meta,
                    chrono::Utc::now(),
                ))
            }
        }
    }

    fn watch(&self, rt: Arc<ResourceType>, representation: Representation) -> ApiResult<Response> {
        let list = self.list_options()?;
        let timeout = match self.query.get("timeoutSeconds") {
            Some(s) => Duration::from_secs(
                s.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s:?}")))?,
            ),
            None => Duration::from_secs(1800),
        };
        let request = WatchRequest {
            resource: rt.storage_resource(),
            namespace: self.target.namespace.clone(),
            labels: list.labels,
            fields: list.fields,
            resource_version: self.query.get("resourceVersion").map(str::to_string),
            send_initial_events: self.query.flag("sendInitialEvents"),
            allow_bookmarks: self.query.flag("allowWatchBookmarks"),
            timeout,
            bookmark_interval: self.state.bookmark_interval,
        };
        let frames = watching::start(self.state.api.clone(), request, self.state.drop_watches.subscribe())?;
        let version = self.target.version.clone();
        let include = self.query.get("includeObject").map(str::to_string);
        let lines = frames.map(move |frame| {
            Ok::<_, std::convert::Infallible>(watch_line(&rt, &version, representation, include.as_deref(), frame))
        });
        let mut response = Response::new(Body::from_stream(lines));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
        Ok(response)
    }
}

/// The `includeObject` query parameter of Table requests (default: metadata only).
fn include_object(param: Option<&str>) -> IncludeObject {
    match param {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"))
}

/// The object's JSON as the client asked for it; stored bytes are reused when nothing changes.
fn present_bytes(rt: &ResourceType, version: &str, preferred: bool, object: &StoredObject) -> Bytes {
    if preferred && !rt.is_events_v1_view() {
        object.json.clone()
    } else {
        to_bytes(&ApiServer::present(rt, version, object.to_value()))
    }
}

fn partial_metadata(object: &StoredObject) -> Value {
    let value = object.value();
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": value.get("metadata").cloned().unwrap_or(json!({}))})
}

fn list_metadata(resource_version: u64, continue_token: Option<&str>, remaining: Option<usize>) -> Value {
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    if let Some(remaining) = remaining {
        meta["remainingItemCount"] = json!(remaining);
    }
    meta
}

/// One newline-terminated watch event.
fn watch_line(
    rt: &ResourceType,
    version: &str,
    representation: Representation,
    include: Option<&str>,
    frame: Frame,
) -> Bytes {
    let mut out = Vec::new();
    match frame {
        Frame::Event(event, object) => {
            out.extend_from_slice(format!("{{\"type\":\"{}\",\"object\":", event.as_str()).as_bytes());
            match representation {
                Representation::Json => {
                    let preferred = version == rt.preferred_version().name;
                    out.extend_from_slice(&present_bytes(rt, version, preferred, &object));
                }
                Representation::Metadata => out.extend_from_slice(&to_bytes(&partial_metadata(&object))),
                Representation::Table => {
                    let value = ApiServer::present(rt, version, object.to_value());
                    let columns = (!rt.builtin).then(|| {
                        rt.version(version)
                            .map(|v| v.printer_columns.clone())
                            .unwrap_or_default()
                    });
                    let meta = json!({"resourceVersion": object.resource_version.to_string()});
                    let table = table::table(
                        &rt.plural,
                        columns.as_deref(),
                        &[value],
                        include_object(include),
                        meta,
                        chrono::Utc::now(),
                    );
                    out.extend_from_slice(&to_bytes(&table));
                }
            }
            out.push(b'}');
        }
        Frame::Bookmark {
            resource_version,
            initial_events_end,
        } => {
            let (kind, api_version) = match representation {
                Representation::Metadata => ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string()),
                _ => (rt.kind.clone(), rt.api_version(version)),
            };
            let mut metadata = json!({"resourceVersion": resource_version.to_string()});
            if initial_events_end {
                metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            let event =
                json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}});
            out.extend_from_slice(&to_bytes(&event));
        }
        Frame::Error(error) => out.extend_from_slice(&to_bytes(&json!({"type": "ERROR", "object": error.to_status()}))),
    }
    out.push(b'\n');
    Bytes::from(out)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> Target {
        match parse_path(path) {
            Some(Route::Resource(t)) => t,
            _ => panic!("{path} is not a resource path"),
        }
    }

    #[test]
    fn paths_map_to_resources_namespaces_and_subresources() {
        let t = resource("/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/checkout/status");
        assert_eq!(
            (
                t.group.as_str(),
                t.plural.as_str(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("sluice.dev", "rollouts", Some("shop"), Some("checkout"), Some("status"))
        );
        let t = resource("/api/v1/namespaces/shop");
        assert_eq!(
            (t.plural.as_str(), t.namespace.as_deref(), t.name.as_deref()),
            ("namespaces", None, Some("shop"))
        );
        let t = resource("/api/v1/namespaces/shop/status");
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("shop"), Some("status"))
        );
        let t = resource("/api/v1/pods");
        assert_eq!((t.plural.as_str(), t.namespace.as_deref()), ("pods", None));
        assert!(parse_path("/apis/apps/v1/namespaces/a/b/c/d/e").is_none());
    }

    #[test]
    fn accept_headers_choose_the_representation() {
        assert_eq!(negotiate(None).unwrap(), Representation::Json);
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).unwrap(), Representation::Table);
        let meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(Some(meta)).unwrap(), Representation::Metadata);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,*/*")).unwrap(),
            Representation::Json
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf")).unwrap_err().code,
            406
        );
    }

    #[test]
    fn query_parses_leading_ampersands_and_encoded_values() {
        let q = Query::parse(Some("&limit=500&labelSelector=app%3Dweb%2Ctier%20in%20(a)"));
        assert_eq!(q.get("limit"), Some("500"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
    }
}
