//! `sluice dashboard`: a web UI over the rollouts, served by the `sluice` binary. The page and its
//! assets are embedded (no Node build); the server keeps watches of Rollouts and what a rollout view
//! shows and pushes changes to open pages over Server-Sent Events. Reads reuse the CLI's views and
//! actions call the CLI's functions, so the page, `sluice get` and `sluice promote` agree.
//!
//! Local mode binds loopback only and authenticates with a login token printed with the URL
//! (see [`auth`]); the cluster is reached with the user's own kubeconfig. In-cluster mode
//! (`--in-cluster`) authenticates every request's bearer token and checks every read and action for
//! that user (see [`incluster`]).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::cli::{ClusterArgs, Error as CliError, Target, actions, get as cli_get};

pub mod auth;
pub mod incluster;
pub mod live;
pub mod model;

use auth::Auth;
use incluster::{Access, User};
use live::Live;

/// Pushes to a page at most this often, however fast the objects change.
const PUSH_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// Address to listen on (port 0 picks a free one). Local mode accepts only loopback addresses.
    #[arg(long, default_value = "127.0.0.1:3100")]
    pub addr: SocketAddr,
    /// Run as a Deployment: the pod's ServiceAccount reads; every request needs the user's bearer
    /// token (TokenReview), every read and action a SubjectAccessReview, and actions use that token.
    #[arg(long)]
    pub in_cluster: bool,
    /// The Prometheus the rollout view's "Backtest (last 24 h)" queries (every metric's address is
    /// replaced by it); without it the button says so.
    #[arg(long)]
    pub prometheus_address: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// A backtest covers this much history…
const BACKTEST_SPAN: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// …in at most this many instants…
const BACKTEST_INSTANTS: usize = 300;
/// …and gives up after this long (each query has its own timeout too).
const BACKTEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the dashboard until Ctrl-C or SIGTERM.
pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    if args.in_cluster {
        return run_in_cluster(args).await;
    }
    if !args.addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: the local dashboard acts with your kubeconfig, so it binds a \
             loopback address only (e.g. 127.0.0.1:3100)",
            args.addr
        );
    }
    let target = Target::connect(&args.cluster).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.addr))?;
    let stop = CancellationToken::new();
    let dashboard = Dashboard::start(target, args.cluster.namespace.clone(), stop.clone())?;
    dashboard.set_prometheus_address(args.prometheus_address.clone());
    let addr = listener.local_addr()?;
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", dashboard.login_url(addr))?;
        stdout.flush()?;
    }
    let shutdown = stop.clone();
    tokio::spawn(async move {
        crate::app::shutdown_signal().await;
        shutdown.cancel();
    });
    dashboard.serve(listener, stop).await
}

async fn run_in_cluster(args: DashboardArgs) -> anyhow::Result<()> {
    let mut config = kube::Config::incluster()
        .map_err(|e| anyhow::anyhow!("--in-cluster: reading the pod's ServiceAccount configuration: {e}"))?;
    config.connect_timeout = Some(args.cluster.request_timeout);
    let client = kube::Client::try_from(config.clone())?;
    let namespace = args.cluster.namespace.clone();
    let target = Target::new(
        client,
        namespace.as_deref().unwrap_or("default"),
        args.cluster.request_timeout,
    );
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.addr))?;
    let stop = CancellationToken::new();
    let dashboard = Dashboard::start_in_cluster(target, config, namespace, stop.clone());
    dashboard.set_prometheus_address(args.prometheus_address.clone());
    tracing::info!(addr = %listener.local_addr()?, "dashboard serving (in-cluster mode)");
    let shutdown = stop.clone();
    tokio::spawn(async move {
        crate::app::shutdown_signal().await;
        shutdown.cancel();
    });
    dashboard.serve(listener, stop).await
}

/// A started dashboard: its watches, its login token and what its handlers share.
#[derive(Clone)]
pub struct Dashboard {
    state: Arc<AppState>,
}

struct AppState {
    target: Target,
    /// Set with -n: the only namespace shown and acted in.
    namespace: Option<String>,
    live: Live,
    mode: Mode,
    /// `--prometheus-address`, for backtests.
    prometheus: std::sync::OnceLock<String>,
    /// One backtest at a time for the whole dashboard (so at most one per session): each may send
    /// hundreds of queries.
    backtest_slot: tokio::sync::Semaphore,
}

enum Mode {
    /// `sluice dashboard`: a login token, sessions, the user's kubeconfig.
    Local(Auth),
    /// `--in-cluster`: users' bearer tokens; `base` is the cluster connection their clients reuse.
    InCluster { base: Box<kube::Config> },
}

/// Who made a request, as the authentication middleware found.
#[derive(Clone)]
enum Caller {
    /// The local user, with the session's CSRF token.
    Local {
        csrf: String,
    },
    User(User),
}

impl Dashboard {
    /// Starts the watches (they stop with `stop`) and makes a login token.
    pub fn start(target: Target, namespace: Option<String>, stop: CancellationToken) -> anyhow::Result<Dashboard> {
        let live = Live::start(&target.client, namespace.as_deref(), stop);
        let auth = Auth::new(auth::random_token().map_err(|e| anyhow::anyhow!("making a login token: {e}"))?);
        Ok(Dashboard {
            state: Arc::new(AppState {
                target,
                namespace,
                live,
                mode: Mode::Local(auth),
                prometheus: std::sync::OnceLock::new(),
                backtest_slot: tokio::sync::Semaphore::new(1),
            }),
        })
    }

    /// In-cluster mode: `target` is the dashboard's own (read-only) identity, `base` the connection
    /// each user's client is built on.
    pub fn start_in_cluster(
        target: Target,
        base: kube::Config,
        namespace: Option<String>,
        stop: CancellationToken,
    ) -> Dashboard {
        let live = Live::start(&target.client, namespace.as_deref(), stop);
        Dashboard {
            state: Arc::new(AppState {
                target,
                namespace,
                live,
                mode: Mode::InCluster { base: Box::new(base) },
                prometheus: std::sync::OnceLock::new(),
                backtest_slot: tokio::sync::Semaphore::new(1),
            }),
        }
    }

    /// The Prometheus backtests query (`--prometheus-address`); the first address set stays.
    pub fn set_prometheus_address(&self, address: Option<String>) {
        if let Some(address) = address {
            let _ = self.state.prometheus.set(address);
        }
    }

    /// The line `sluice dashboard` prints: where to open it, with the login token.
    pub fn login_url(&self, addr: SocketAddr) -> String {
        match &self.state.mode {
            Mode::Local(auth) => format!("Sluice dashboard: http://{addr}/?token={}", auth.login_token()),
            Mode::InCluster { .. } => format!("Sluice dashboard: http://{addr}/"),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/assets/app.js", get(script))
            .route("/assets/app.css", get(stylesheet))
            .route("/api/session", get(session))
            .route("/api/rollouts", get(list))
            .route("/api/stream", get(list_stream))
            .route("/api/rollouts/{namespace}/{name}", get(detail))
            .route("/api/rollouts/{namespace}/{name}/stream", get(detail_stream))
            .route("/api/rollouts/{namespace}/{name}/backtest", get(backtest))
            .route("/api/rollouts/{namespace}/{name}/{action}", post(act))
            .layer(middleware::from_fn_with_state(self.state.clone(), authenticate))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.state.clone())
    }

    /// Serves until `stop`.
    pub async fn serve(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .map_err(|e| anyhow::anyhow!("serving the dashboard: {e}"))
    }
}

type Shared = Arc<AppState>;

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_string(),
    )
        .into_response()
}

/// Every route but /healthz: a login (`?token=`) becomes a session cookie and a redirect without the
/// token; otherwise the session cookie must be valid, and an action must also carry the session's
/// CSRF token and come from this origin.
async fn authenticate(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let caller = match &state.mode {
        Mode::Local(auth) => match local_caller(auth, &request) {
            Ok(caller) => caller,
            Err(response) => return response,
        },
        Mode::InCluster { .. } => {
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let Some(token) = incluster::bearer(header) else {
                return unauthorized_bearer();
            };
            match incluster::review_token(&state.target.client, token, state.target.timeout).await {
                Ok(Some(user)) => Caller::User(user),
                Ok(None) => return unauthorized_bearer(),
                Err(e) => return text(StatusCode::BAD_GATEWAY, &e),
            }
        }
    };
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

fn unauthorized_bearer() -> Response {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: send your Kubernetes bearer token (Authorization: Bearer …)",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Local mode: a login becomes a session, anything else needs one (and an action its CSRF token).
fn local_caller(auth: &Auth, request: &Request) -> Result<Caller, Response> {
    let state_auth = auth;
    let query = request.uri().query().unwrap_or_default();
    if let Some(token) = auth::query_token(query) {
        return Err(match state_auth.login(&token) {
            Ok(Some(session)) => {
                let cookie = format!("{}={}; Path=/; HttpOnly; SameSite=Strict", auth::COOKIE, session.id);
                let mut response = Response::new(axum::body::Body::empty());
                *response.status_mut() = StatusCode::SEE_OTHER;
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, HeaderValue::from_static("/"));
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    headers.insert(header::SET_COOKIE, value);
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Ok(None) => text(StatusCode::UNAUTHORIZED, "401 Unauthorized: the login token is wrong"),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("making a session: {e}")),
        });
    }
    let headers = request.headers();
    let session = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|cookies| auth::cookie(cookies, auth::COOKIE))
        .and_then(|id| state_auth.session(id));
    let Some(session) = session else {
        return Err(text(
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized: open the URL `sluice dashboard` printed (it carries the login token)",
        ));
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !auth::same_origin(origin, host) {
            return Err(text(StatusCode::FORBIDDEN, "403 Forbidden: cross-origin request"));
        }
        let csrf = headers
            .get(auth::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !auth::constant_time_eq(csrf.as_bytes(), session.csrf.as_bytes()) {
            return Err(text(
                StatusCode::FORBIDDEN,
                "403 Forbidden: missing or wrong CSRF token",
            ));
        }
    }
    Ok(Caller::Local { csrf: session.csrf })
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("assets/index.html"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/app.css"),
    )
        .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    csrf: String,
    /// The namespace the dashboard was started for (-n), when only one.
    namespace: Option<String>,
}

async fn session(State(state): State<Shared>, axum::Extension(caller): axum::Extension<Caller>) -> Response {
    axum::Json(SessionView {
        csrf: match caller {
            Caller::Local { csrf } => csrf,
            // Bearer tokens are not sent by the browser on its own: there is nothing to forge.
            Caller::User(_) => String::new(),
        },
        namespace: state.namespace.clone(),
    })
    .into_response()
}

/// A Kubernetes object name or namespace as the API server accepts it (DNS-1123 subdomain): anything
/// else in a URL is refused before it reaches a request path.
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

#[derive(Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

#[derive(Serialize)]
struct ListView {
    /// Why the list may be incomplete: the Rollout watch is failing (e.g. no grant to list).
    error: Option<String>,
    namespaces: Vec<String>,
    rollouts: Vec<model::RolloutRow>,
}

fn list_view(state: &AppState, namespace: Option<&str>) -> ListView {
    let rollouts = state.live.rollouts();
    let mut namespaces: Vec<String> = rollouts.iter().filter_map(|r| r.metadata.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    ListView {
        error: state.live.watch_error().map(|e| {
            let hint = if state.namespace.is_none() {
                " (without -n the dashboard watches every namespace; pass -n NAMESPACE if you may only read one)"
            } else {
                ""
            };
            format!("watching rollouts: {e}{hint}")
        }),
        namespaces,
        rollouts: model::rows(&rollouts, namespace, chrono::Utc::now()),
    }
}

fn namespace_filter(query: &NamespaceQuery) -> Result<Option<&str>, Response> {
    match query.namespace.as_deref() {
        None | Some("") => Ok(None),
        Some(ns) if valid_name(ns, 63) => Ok(Some(ns)),
        Some(_) => Err(error(StatusCode::BAD_REQUEST, "invalid namespace")),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// At most this many namespaces are access-checked for one in-cluster list; rollouts of the rest are
/// not shown (a filter by namespace shows them).
const MAX_CHECKED_NAMESPACES: usize = 200;

/// The namespaces whose rollouts the caller may list; None: all (local mode acts as the kubeconfig).
async fn listable(state: &AppState, caller: &Caller, namespace: Option<&str>) -> Result<Option<Vec<String>>, Response> {
    let Caller::User(user) = caller else {
        return Ok(None);
    };
    let candidates = match namespace {
        Some(ns) => vec![ns.to_string()],
        None => list_view(state, None).namespaces,
    };
    let mut allowed = Vec::new();
    for ns in candidates.into_iter().take(MAX_CHECKED_NAMESPACES) {
        let access = Access {
            verb: "list",
            resource: "rollouts",
            subresource: None,
            namespace: &ns,
            name: None,
        };
        match incluster::allowed(&state.target.client, user, &access, state.target.timeout).await {
            Ok(true) => allowed.push(ns),
            Ok(false) => {}
            Err(e) => return Err(error(StatusCode::BAD_GATEWAY, &e)),
        }
    }
    Ok(Some(allowed))
}

fn visible_list(state: &AppState, namespace: Option<&str>, allowed: Option<&[String]>) -> ListView {
    let mut view = list_view(state, namespace);
    if let Some(allowed) = allowed {
        view.rollouts.retain(|r| allowed.contains(&r.namespace));
        view.namespaces.retain(|ns| allowed.contains(ns));
    }
    view
}

/// In-cluster: 403 unless the caller may do `access`; local mode: the kubeconfig decides.
async fn check(state: &AppState, caller: &Caller, access: Access<'_>) -> Result<(), Response> {
    let Caller::User(user) = caller else {
        return Ok(());
    };
    match incluster::allowed(&state.target.client, user, &access, state.target.timeout).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not {} {}{} in namespace {}",
                user.username,
                access.verb,
                access.resource,
                access.subresource.map(|s| format!("/{s}")).unwrap_or_default(),
                access.namespace
            ),
        )),
        Err(e) => Err(error(StatusCode::BAD_GATEWAY, &e)),
    }
}

async fn list(
    State(state): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<NamespaceQuery>,
) -> Response {
    let namespace = match namespace_filter(&query) {
        Ok(namespace) => namespace,
        Err(response) => return response,
    };
    match listable(&state, &caller, namespace).await {
        Ok(allowed) => axum::Json(visible_list(&state, namespace, allowed.as_deref())).into_response(),
        Err(response) => response,
    }
}

/// A stream that yields `render()` at once and then after each change `relevant` accepts, at most
/// every [`PUSH_INTERVAL`].
fn pushes<F, Fut>(
    state: &AppState,
    relevant: impl Fn(&live::Change) -> bool + Send + 'static,
    render: F,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<SseEvent>> + Send,
{
    let changes = state.live.subscribe();
    futures::stream::unfold(
        (changes, render, relevant, true),
        |(mut changes, render, relevant, first)| async move {
            if !first {
                loop {
                    match changes.recv().await {
                        Ok(change) if relevant(&change) => break,
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return None,
                    }
                }
                tokio::time::sleep(PUSH_INTERVAL).await;
                // Everything that arrived meanwhile is covered by this push.
                while changes.try_recv().is_ok() {}
            }
            let event = render().await?;
            Some((Ok(event), (changes, render, relevant, false)))
        },
    )
}

fn sse(stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn list_stream(
    State(state): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<NamespaceQuery>,
) -> Response {
    let namespace = match namespace_filter(&query) {
        Ok(namespace) => namespace.map(str::to_string),
        Err(response) => return response,
    };
    // Checked when the stream opens (an EventSource reconnects, and is checked again, on any error).
    let allowed = match listable(&state, &caller, namespace.as_deref()).await {
        Ok(allowed) => allowed,
        Err(response) => return response,
    };
    let render_state = state.clone();
    let stream = pushes(
        &state,
        |_| true,
        move || {
            let view = visible_list(&render_state, namespace.as_deref(), allowed.as_deref());
            async move { SseEvent::default().event("rollouts").json_data(view).ok() }
        },
    );
    sse(stream)
}

/// Checks the path's namespace and name and gives the target for that namespace.
fn target_for(state: &AppState, namespace: &str, name: &str) -> Result<Target, Response> {
    if !valid_name(namespace, 63) || !valid_name(name, 253) {
        return Err(error(StatusCode::BAD_REQUEST, "invalid namespace or name"));
    }
    if state.namespace.as_deref().is_some_and(|only| only != namespace) {
        return Err(error(StatusCode::NOT_FOUND, "this dashboard serves another namespace"));
    }
    Ok(state.target.in_namespace(namespace))
}

fn cli_status(e: &CliError) -> StatusCode {
    match e {
        CliError::RolloutNotFound { .. } | CliError::NamespaceNotFound(_) | CliError::CrdMissing => {
            StatusCode::NOT_FOUND
        }
        CliError::Refused(_) | CliError::Invalid(_) => StatusCode::CONFLICT,
        CliError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        CliError::Api { code: Some(code), .. } => StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY),
        CliError::Api { code: None, .. } | CliError::Config(_) | CliError::Output(_) | CliError::Exit { .. } => {
            StatusCode::BAD_GATEWAY
        }
    }
}

async fn read_detail(state: &AppState, target: &Target, name: &str) -> Result<model::RolloutDetail, CliError> {
    let snapshot = cli_get::snapshot(target, name).await?;
    let gitsync = model::owning_gitsync(&snapshot.rollout).and_then(|(ns, name)| state.live.gitsync(&ns, &name));
    let weights = state.live.weights(&target.namespace, name);
    Ok(model::detail(&snapshot, gitsync.as_ref(), weights, chrono::Utc::now()))
}

fn read_access<'a>(namespace: &'a str, name: &'a str) -> Access<'a> {
    Access {
        verb: "get",
        resource: "rollouts",
        subresource: None,
        namespace,
        name: Some(name),
    }
}

/// The target for one rollout the caller may read (a valid name in a namespace this dashboard serves).
async fn readable_target(state: &AppState, caller: &Caller, namespace: &str, name: &str) -> Result<Target, Response> {
    let target = target_for(state, namespace, name)?;
    check(state, caller, read_access(namespace, name)).await?;
    Ok(target)
}

async fn detail(
    State(state): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, Response> {
    let target = readable_target(&state, &caller, &namespace, &name).await?;
    match read_detail(&state, &target, &name).await {
        Ok(view) => Ok(axum::Json(view).into_response()),
        Err(e) => Err(error(cli_status(&e), &e.to_string())),
    }
}

async fn detail_stream(
    State(state): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, Response> {
    let target = readable_target(&state, &caller, &namespace, &name).await?;
    let render_state = state.clone();
    let name = Arc::new(name);
    let ns = namespace.clone();
    let stream = pushes(
        &state,
        move |change| change.namespace == ns || change.namespace.is_empty(),
        move || {
            let state = render_state.clone();
            let target = target.clone();
            let name = name.clone();
            async move {
                // A failed read is shown on the page (and retried at the next change), not a closed stream.
                let event = match read_detail(&state, &target, &name).await {
                    Ok(view) => SseEvent::default().event("rollout").json_data(view),
                    Err(e) => SseEvent::default()
                        .event("failure")
                        .json_data(serde_json::json!({ "error": e.to_string() })),
                };
                event.ok()
            }
        },
    );
    Ok(sse(stream))
}

/// The rollout's analysis templates backtested over the last day (`sluice analysis backtest` with the
/// Rollout's templates and arguments, at most [`BACKTEST_INSTANTS`] instants): the report as JSON.
async fn backtest(
    State(state): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, Response> {
    let target = readable_target(&state, &caller, &namespace, &name).await?;
    let templates = Access {
        verb: "get",
        resource: "analysistemplates",
        subresource: None,
        namespace: &namespace,
        name: None,
    };
    check(&state, &caller, templates).await?;
    let address = state.prometheus.get().ok_or_else(|| {
        error(
            StatusCode::CONFLICT,
            "no Prometheus to backtest against: start the dashboard with --prometheus-address URL",
        )
    })?;
    let _slot = state.backtest_slot.try_acquire().map_err(|_| {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "a backtest is already running; try again when it ends",
        )
    })?;
    let run =
        crate::cli::analysis::revisions::backtest_rollout(&target, &name, address, BACKTEST_SPAN, BACKTEST_INSTANTS);
    match tokio::time::timeout(BACKTEST_TIMEOUT, run).await {
        Ok(Ok(report)) => Ok(axum::Json(report).into_response()),
        Ok(Err(e)) => Err(error(cli_status(&e), &e.to_string())),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("the backtest did not finish within {}s", BACKTEST_TIMEOUT.as_secs()),
        )),
    }
}

/// The actions the page offers, each the CLI command of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Pause,
    Resume,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "promote" => Action::Promote,
            "promote-full" => Action::PromoteFull,
            "abort" => Action::Abort,
            "retry" => Action::Retry,
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            _ => return None,
        })
    }

    /// The write the CLI's command makes: a status patch for promote/abort/retry, a spec patch for
    /// pause/resume (see `cli::actions`).
    pub fn access<'a>(self, namespace: &'a str, name: &'a str) -> Access<'a> {
        let subresource = match self {
            Action::Promote | Action::PromoteFull | Action::Abort | Action::Retry => Some("status"),
            Action::Pause | Action::Resume => None,
        };
        Access {
            verb: "patch",
            resource: "rollouts",
            subresource,
            namespace,
            name: Some(name),
        }
    }

    async fn run(self, target: &Target, name: &str) -> crate::cli::Result<String> {
        match self {
            Action::Promote => actions::promote(target, name, false).await,
            Action::PromoteFull => actions::promote(target, name, true).await,
            Action::Abort => actions::abort(target, name).await,
            Action::Retry => actions::retry(target, name).await,
            Action::Pause => actions::pause(target, name).await,
            Action::Resume => actions::resume(target, name).await,
        }
    }
}

async fn act(
    State(state): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((namespace, name, action)): Path<(String, String, String)>,
) -> Response {
    let target = match target_for(&state, &namespace, &name) {
        Ok(target) => target,
        Err(response) => return response,
    };
    let Some(action) = Action::parse(&action) else {
        return error(StatusCode::NOT_FOUND, "unknown action");
    };
    if let Err(response) = check(&state, &caller, action.access(&namespace, &name)).await {
        return response;
    }
    // In-cluster, the write goes out with the user's own token: the API server checks it again.
    let target = match (&caller, &state.mode) {
        (Caller::User(user), Mode::InCluster { base }) => match incluster::user_client(base, &user.token) {
            Ok(client) => Target::new(client, &namespace, state.target.timeout),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("building a client: {e}")),
        },
        _ => target,
    };
    match action.run(&target, &name).await {
        Ok(message) => {
            let user = match &caller {
                Caller::User(user) => user.username.as_str(),
                Caller::Local { .. } => "local",
            };
            tracing::info!(%namespace, %name, ?action, %user, "dashboard action");
            axum::Json(serde_json::json!({ "message": message })).into_response()
        }
        Err(e) => error(cli_status(&e), &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls_are_dns_names_or_refused() {
        assert!(valid_name("web", 63));
        assert!(valid_name("my-app.v2", 253));
        for bad in ["", "Web", "a/b", "..", "-a", "a-", "a%2F", "a b", &"a".repeat(64)] {
            assert!(!valid_name(bad, 63), "{bad:?}");
        }
    }

    #[test]
    fn actions_are_the_cli_commands() {
        assert_eq!(Action::parse("promote-full"), Some(Action::PromoteFull));
        assert_eq!(Action::parse("delete"), None);
        assert_eq!(Action::parse("Abort"), None);
    }
}
