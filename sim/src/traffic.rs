//! Simulated HTTP traffic: Services, HTTPRoutes, Istio VirtualServices and (stable) Ingresses annotated
//! with a request rate get requests each tick, split deterministically by the weights of the routing
//! objects a real data plane would follow (HTTPRoute backendRefs, the SMI TrafficSplit of a root
//! Service, VirtualService destinations and DestinationRule subsets, NGINX canary Ingresses) and by ready
//! pods, and counted as Prometheus metrics. A share of a source's requests may carry headers, which
//! header rules route, and mirrors copy requests (see `routing`). Routing kinds whose CRD is not
//! installed are simply absent.
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value};

use crate::api::{ApiServer, ListOptions};
use crate::gateway::{self, BackendRef};
use crate::routing::{self, Headers, Precedence, Rule};
use crate::workload::{annotation, is_ready, labels_match};

/// Requests per second a Service, HTTPRoute, VirtualService or Ingress receives.
pub const RPS_ANNOTATION: &str = "sim.sluice.dev/rps";
/// Fraction (0.0–1.0) of a pod's requests that fail with 500.
pub const ERROR_RATE_ANNOTATION: &str = "sim.sluice.dev/error-rate";
/// A pod's typical response time in milliseconds (±20% jitter).
pub const LATENCY_ANNOTATION: &str = "sim.sluice.dev/latency-ms";
const DEFAULT_LATENCY_MS: f64 = 20.0;
/// Latency of answers the gateway gives itself (no backend, no ready pod).
const GATEWAY_LATENCY_MS: f64 = 1.0;
/// A stalled tick does not turn into a burst larger than this much traffic.
const MAX_TICK: Duration = Duration::from_secs(5);
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Smooth weighted round-robin (as nginx does): over any `sum(weights)` consecutive picks each
/// index is chosen exactly `weight` times, and picks are spread evenly in between.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    weights: Vec<u64>,
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub fn new(weights: Vec<u64>) -> Self {
        let current = vec![0; weights.len()];
        SmoothWeighted { weights, current }
    }

    /// The next index, or None when every weight is zero.
    pub fn pick(&mut self) -> Option<usize> {
        let total: u64 = self.weights.iter().sum();
        if total == 0 {
            return None;
        }
        for (current, weight) in self.current.iter_mut().zip(&self.weights) {
            *current += *weight as i64;
        }
        let (best, _) = self
            .current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))?;
        self.current[best] -= total as i64;
        Some(best)
    }
}

/// Deterministic errors: a request fails each time the accumulated error rate crosses 1, so a rate
/// of 0.4 fails exactly 4 requests in every 10.
#[derive(Debug, Clone, Default)]
pub struct ErrorAccumulator(f64);

impl ErrorAccumulator {
    pub fn fails(&mut self, rate: f64) -> bool {
        self.0 += rate.clamp(0.0, 1.0);
        // The epsilon absorbs float drift (0.1 added ten times is 0.9999999999999999).
        if self.0 >= 1.0 - 1e-9 {
            self.0 -= 1.0;
            return true;
        }
        false
    }
}

/// The labels of one metric series (histograms use it without a code).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series {
    pub namespace: String,
    pub service: String,
    pub pod_template_hash: String,
    /// A mirrored copy (its answer discarded): labelled `mirrored="true"`, so queries can leave
    /// mirrored requests out (`mirrored!="true"`) or count only them.
    pub mirrored: bool,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; rendering accumulates them.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters of simulated requests. They only grow while the simulator lives, as Prometheus expects.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    requests: BTreeMap<(Series, u16), u64>,
    durations: BTreeMap<Series, Histogram>,
}

impl Metrics {
    pub fn record(&mut self, series: &Series, code: u16, seconds: f64) {
        *self.requests.entry((series.clone(), code)).or_default() += 1;
        let histogram = self.durations.entry(series.clone()).or_default();
        if let Some(i) = BUCKETS.iter().position(|le| seconds <= *le) {
            histogram.buckets[i] += 1;
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    pub fn requests(&self, series: &Series, code: u16) -> u64 {
        self.requests.get(&(series.clone(), code)).copied().unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP sim_http_requests_total Simulated HTTP requests by backend Service, pod template and code.\n",
        );
        out.push_str("# TYPE sim_http_requests_total counter\n");
        for ((series, code), count) in &self.requests {
            let _ = writeln!(
                out,
                "sim_http_requests_total{{{},code=\"{code}\"}} {count}",
                series_labels(series)
            );
        }
        out.push_str("# HELP sim_http_request_duration_seconds Simulated HTTP request latency.\n");
        out.push_str("# TYPE sim_http_request_duration_seconds histogram\n");
        for (series, histogram) in &self.durations {
            render_histogram(&mut out, &series_labels(series), histogram);
        }
        out
    }
}

fn render_histogram(out: &mut String, labels: &str, histogram: &Histogram) {
    let name = "sim_http_request_duration_seconds";
    let mut cumulative = 0;
    for (le, count) in BUCKETS.iter().zip(histogram.buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", histogram.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
}

fn series_labels(series: &Series) -> String {
    format!(
        "namespace=\"{}\",service=\"{}\",pod_template_hash=\"{}\"{}",
        escape(&series.namespace),
        escape(&series.service),
        escape(&series.pod_template_hash),
        if series.mirrored { ",mirrored=\"true\"" } else { "" }
    )
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Where a source's requests go: one Service, or the rules of a routing object.
enum Target {
    Service(BackendRef),
    Route(Route),
}

/// The rules of a routing object and how a request is matched to one (see `routing`).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub rules: Vec<Rule>,
    pub precedence: Precedence,
}

impl Route {
    /// Weighted backends in one rule every request takes (SMI TrafficSplit).
    fn split(backends: Vec<BackendRef>) -> Self {
        Route {
            rules: vec![Rule::plain(backends)],
            precedence: Precedence::MostSpecific,
        }
    }
}

/// Something receiving traffic, with its rate and the headers a share of its requests carry.
struct Source {
    key: String,
    rps: f64,
    target: Target,
    headers: Headers,
    /// Share (0–1) of the requests carrying `headers`.
    header_fraction: f64,
}

/// Per-route split state; reset whenever the route's rules change.
struct RouteSplit {
    route: Route,
    /// Plain traffic: evenly across the plain rules with weight (Gateway API), or all to the first
    /// plain rule (Istio, NGINX: first match).
    rule_picker: SmoothWeighted,
    ref_pickers: Vec<SmoothWeighted>,
}

impl RouteSplit {
    fn new(route: Route) -> Self {
        let rules = &route.rules;
        let first_plain = rules.iter().position(Rule::is_plain).unwrap_or(0);
        // Rules whose backends all weigh zero take no share.
        let rule_weights = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let takes_plain = match route.precedence {
                    Precedence::MostSpecific => r.is_plain(),
                    Precedence::FirstMatch => i == first_plain,
                };
                u64::from(takes_plain && r.backends.iter().any(|b| b.weight > 0))
            })
            .collect();
        let ref_pickers = rules
            .iter()
            .map(|r| SmoothWeighted::new(r.backends.iter().map(|b| b.weight).collect()))
            .collect();
        RouteSplit {
            rule_picker: SmoothWeighted::new(rule_weights),
            ref_pickers,
            route,
        }
    }

    /// The rule (by index) and backend a request with `headers` goes to.
    fn pick(&mut self, headers: &Headers) -> Option<(usize, &BackendRef)> {
        let rule = match routing::header_rule(&self.route.rules, headers, self.route.precedence) {
            Some(rule) => rule,
            None => self.rule_picker.pick()?,
        };
        let backend = self.ref_pickers[rule].pick()?;
        Some((rule, &self.route.rules[rule].backends[backend]))
    }
}

/// What the traffic generator remembers between ticks, so splits stay exact over time.
#[derive(Default)]
struct TrafficState {
    /// Fractional requests carried to the next tick, per source.
    carry: HashMap<String, f64>,
    splits: HashMap<String, RouteSplit>,
    /// Which requests carry the source's headers, per source (exact over time, like errors).
    header_shares: HashMap<String, ErrorAccumulator>,
    /// Which requests are mirrored, per (source, rule, mirror).
    mirror_shares: HashMap<(String, usize, usize), ErrorAccumulator>,
    /// Round-robin position per Service and subset.
    cursors: HashMap<EndpointsKey, usize>,
    errors: HashMap<Series, ErrorAccumulator>,
}

/// (namespace, service, subset labels): the endpoints one round-robin cycles through.
type EndpointsKey = (String, String, Option<BTreeMap<String, String>>);

/// A pod able to serve, as the traffic generator sees it.
struct Endpoint {
    pod_template_hash: String,
    /// The pod's labels, for Istio subsets.
    labels: Map<String, Value>,
    error_rate: f64,
    latency_ms: f64,
}

/// The cluster as one tick sees it: Services and their ready endpoints.
struct Snapshot {
    /// (namespace, name) → ready endpoints, sorted by pod name.
    services: HashMap<(String, String), Vec<Endpoint>>,
}

/// The traffic generator and the metrics it produces.
pub struct Traffic {
    api: Arc<ApiServer>,
    state: Mutex<TrafficState>,
    pub metrics: Mutex<Metrics>,
}

impl Traffic {
    pub fn new(api: Arc<ApiServer>) -> Self {
        Traffic {
            api,
            state: Mutex::new(TrafficState::default()),
            metrics: Mutex::new(Metrics::default()),
        }
    }

    /// `GET /sim/metrics`.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/sim/metrics", get(serve_metrics))
            .with_state(self.clone())
    }

    /// Generates the traffic of `elapsed` time for every annotated Service and HTTPRoute.
    pub fn tick(&self, elapsed: Duration) {
        let seconds = elapsed.min(MAX_TICK).as_secs_f64();
        let (snapshot, sources) = self.observe();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut metrics = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        let live: Vec<&str> = sources.iter().map(|s| s.key.as_str()).collect();
        state.carry.retain(|k, _| live.contains(&k.as_str()));
        state.splits.retain(|k, _| live.contains(&k.as_str()));
        state.header_shares.retain(|k, _| live.contains(&k.as_str()));
        state.mirror_shares.retain(|(k, _, _), _| live.contains(&k.as_str()));
        let no_headers = Headers::new();
        for source in sources {
            let carry = state.carry.entry(source.key.clone()).or_default();
            *carry += source.rps * seconds;
            let count = carry.floor();
            *carry -= count;
            for _ in 0..count as u64 {
                let carries_headers = !source.headers.is_empty()
                    && state
                        .header_shares
                        .entry(source.key.clone())
                        .or_default()
                        .fails(source.header_fraction);
                let headers = if carries_headers { &source.headers } else { &no_headers };
                let Some((rule, backend, mirrors)) = state.route(&source, headers) else {
                    break;
                };
                state.serve(&snapshot, &backend, false, &mut metrics);
                for (index, mirror) in mirrors.iter().enumerate() {
                    let share = state
                        .mirror_shares
                        .entry((source.key.clone(), rule, index))
                        .or_default();
                    if share.fails(mirror.percent / 100.0) {
                        state.serve(&snapshot, &mirror.backend, true, &mut metrics);
                    }
                }
            }
        }
    }

    fn observe(&self) -> (Snapshot, Vec<Source>) {
        let list = |group: &str, plural: &str| {
            let Some(rt) = self.api.resource(group, plural) else {
                return Vec::new();
            };
            let items = self
                .api
                .list(&rt, None, &ListOptions::default())
                .map(|l| l.items)
                .unwrap_or_default();
            items
                .iter()
                .filter(|o| !o.deleting)
                .map(|o| o.to_value())
                .collect::<Vec<Value>>()
        };
        let services = list("", "services");
        let routes = list(gateway::GATEWAY_GROUP, gateway::HTTPROUTES);
        let mut splits = list(gateway::SMI_GROUP, gateway::TRAFFICSPLITS);
        // The first TrafficSplit by name wins when several claim the same root Service.
        splits.sort_by_key(namespaced_name);
        let virtual_services = list(gateway::ISTIO_GROUP, gateway::VIRTUALSERVICES);
        let destination_rules = list(gateway::ISTIO_GROUP, gateway::DESTINATIONRULES);
        let ingresses = list(gateway::INGRESS_GROUP, gateway::INGRESSES);
        let mut sources = Vec::new();
        let mut endpoints = HashMap::new();
        let mut add = |kind: &str, object: &Value, target: Target| {
            if let Some(rps) = rps(object) {
                let (ns, name) = namespaced_name(object);
                sources.push(Source {
                    key: format!("{kind}/{ns}/{name}"),
                    rps,
                    target,
                    headers: annotation(object, routing::REQUEST_HEADERS_ANNOTATION)
                        .map(routing::parse_headers)
                        .unwrap_or_default(),
                    header_fraction: annotation(object, routing::REQUEST_HEADERS_FRACTION_ANNOTATION)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|f| f.is_finite())
                        .map_or(1.0, |f| f.clamp(0.0, 1.0)),
                });
            }
        };
        for service in &services {
            let key = namespaced_name(service);
            // SMI: requests to a root Service are split by the TrafficSplit naming it.
            let split = splits.iter().find(|s| {
                namespaced_name(s).0 == key.0 && s.pointer("/spec/service").and_then(Value::as_str) == Some(&key.1)
            });
            let target = match split {
                Some(split) => Target::Route(Route::split(gateway::split_backends(split))),
                None => Target::Service(BackendRef::service(&key.0, &key.1)),
            };
            add("svc", service, target);
        }
        let route = |rules, precedence| Target::Route(Route { rules, precedence });
        for http_route in &routes {
            let rules = gateway::http_route(http_route);
            add("route", http_route, route(rules, Precedence::MostSpecific));
        }
        for vs in &virtual_services {
            let rules = gateway::virtual_service_rules(vs, &destination_rules);
            add("vs", vs, route(rules, Precedence::FirstMatch));
        }
        // NGINX: only stable Ingresses are entry points; canary ones take their share of a stable's host.
        for ingress in ingresses.iter().filter(|i| gateway::ingress_canary_weight(i).is_none()) {
            if let Some(rules) = gateway::ingress_rules(ingress, &ingresses) {
                add("ingress", ingress, route(rules, Precedence::FirstMatch));
            }
        }
        // Endpoints only matter when traffic flows; pods are read per Service namespace, parsed
        // forms shared, so a tick with no traffic source reads no pod at all.
        if !sources.is_empty() {
            let mut pods_by_namespace: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
            for service in &services {
                let key = namespaced_name(service);
                let pods = pods_by_namespace
                    .entry(key.0.clone())
                    .or_insert_with(|| self.pods_in(&key.0));
                endpoints.insert(key, ready_endpoints(service, pods));
            }
        }
        (Snapshot { services: endpoints }, sources)
    }

    fn pods_in(&self, namespace: &str) -> Vec<Arc<Value>> {
        let Some(rt) = self.api.resource("", "pods") else {
            return Vec::new();
        };
        let items = self
            .api
            .list(&rt, Some(namespace), &ListOptions::default())
            .map(|l| l.items)
            .unwrap_or_default();
        items.iter().filter(|o| !o.deleting).map(|o| o.value()).collect()
    }
}

impl TrafficState {
    /// Where the next request of `source` (carrying `headers`) goes: the rule taken (by index), the
    /// Service, and the mirrors of that rule.
    fn route(&mut self, source: &Source, headers: &Headers) -> Option<(usize, BackendRef, Vec<routing::Mirror>)> {
        match &source.target {
            Target::Service(backend) => Some((0, backend.clone(), Vec::new())),
            Target::Route(route) => {
                let split = self
                    .splits
                    .entry(source.key.clone())
                    .or_insert_with(|| RouteSplit::new(route.clone()));
                if split.route != *route {
                    *split = RouteSplit::new(route.clone());
                }
                let (rule, backend) = split.pick(headers)?;
                let backend = backend.clone();
                Some((rule, backend, split.route.rules[rule].mirrors.clone()))
            }
        }
    }

    /// One request to a backend Service: picks a ready pod round-robin and records the outcome.
    fn serve(&mut self, snapshot: &Snapshot, backend: &BackendRef, mirrored: bool, metrics: &mut Metrics) {
        let mut series = Series {
            namespace: backend.namespace.clone(),
            service: backend.name.clone(),
            pod_template_hash: String::new(),
            mirrored,
        };
        let key = (backend.namespace.clone(), backend.name.clone());
        let endpoints = snapshot.services.get(&key).filter(|_| backend.is_service);
        let Some(endpoints) = endpoints else {
            // Gateway API: requests to an invalid backendRef get 500.
            metrics.record(&series, 500, GATEWAY_LATENCY_MS / 1000.0);
            return;
        };
        // An Istio subset narrows the Service's endpoints to the pods carrying its labels.
        let endpoints: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| {
                let subset = backend.subset.iter().flatten();
                subset
                    .into_iter()
                    .all(|(k, v)| e.labels.get(k).and_then(Value::as_str) == Some(v))
            })
            .collect();
        if endpoints.is_empty() {
            metrics.record(&series, 503, GATEWAY_LATENCY_MS / 1000.0);
            return;
        }
        let cursor = self.cursors.entry((key.0, key.1, backend.subset.clone())).or_default();
        let endpoint = &endpoints[*cursor % endpoints.len()];
        *cursor = cursor.wrapping_add(1);
        series.pod_template_hash = endpoint.pod_template_hash.clone();
        let failed = self
            .errors
            .entry(series.clone())
            .or_default()
            .fails(endpoint.error_rate);
        let jitter = 1.0 + (fastrand::f64() * 0.4 - 0.2);
        metrics.record(
            &series,
            if failed { 500 } else { 200 },
            endpoint.latency_ms * jitter / 1000.0,
        );
    }
}

/// The ready pods a Service selects, in name order (the order round-robin follows).
fn ready_endpoints(service: &Value, pods: &[Arc<Value>]) -> Vec<Endpoint> {
    let (namespace, _) = namespaced_name(service);
    // A Service without a selector has no endpoints the simulator manages.
    let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut selected: Vec<&Value> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(&namespace))
        .filter(|p| labels_match(selector, pod_labels(p)) && is_ready(p))
        .collect();
    selected.sort_by_key(|p| {
        p.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    });
    selected.into_iter().map(endpoint).collect()
}

fn endpoint(pod: &Value) -> Endpoint {
    let number = |key: &str| annotation(pod, key).and_then(|v| v.trim().parse::<f64>().ok());
    Endpoint {
        pod_template_hash: pod_template_hash(pod),
        labels: pod_labels(pod).clone(),
        error_rate: number(ERROR_RATE_ANNOTATION).unwrap_or(0.0),
        latency_ms: number(LATENCY_ANNOTATION)
            .filter(|l| *l >= 0.0)
            .unwrap_or(DEFAULT_LATENCY_MS),
    }
}

fn pod_labels(pod: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    pod.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Sluice's own hash label first, then the one Deployments use.
pub fn pod_template_hash(pod: &Value) -> String {
    let labels = pod_labels(pod);
    ["sluice.dev/pod-template-hash", "pod-template-hash"]
        .iter()
        .find_map(|k| labels.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

fn rps(object: &Value) -> Option<f64> {
    annotation(object, RPS_ANNOTATION)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r > 0.0)
}

fn namespaced_name(object: &Value) -> (String, String) {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("/metadata/namespace"), text("/metadata/name"))
}

async fn serve_metrics(State(traffic): State<Arc<Traffic>>) -> impl IntoResponse {
    let text = traffic.metrics.lock().unwrap_or_else(|p| p.into_inner()).render();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Simulator;
    use crate::gateway::install_httproute_crd;
    use crate::workload::tests::{create_rs, eventually, opts, pods_of, replicaset, start};

    fn picks(weights: Vec<u64>, n: usize) -> Vec<usize> {
        let mut split = SmoothWeighted::new(weights.clone());
        let mut counts = vec![0; weights.len()];
        for _ in 0..n {
            counts[split.pick().unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn weighted_split_is_exact() {
        assert_eq!(picks(vec![30, 70], 1000), vec![300, 700]);
        assert_eq!(picks(vec![1, 1, 2], 400), vec![100, 100, 200]);
        assert_eq!(picks(vec![0, 5], 10), vec![0, 10]);
        assert_eq!(SmoothWeighted::new(vec![0, 0]).pick(), None);
    }

    #[test]
    fn weighted_split_is_exact_over_any_window_of_total_weight() {
        let mut split = SmoothWeighted::new(vec![30, 70]);
        let sequence: Vec<usize> = (0..250).map(|_| split.pick().unwrap()).collect();
        for window in sequence.windows(100).step_by(7) {
            assert_eq!(window.iter().filter(|i| **i == 0).count(), 30);
        }
    }

    #[test]
    fn error_accumulator_is_exact() {
        let mut errors = ErrorAccumulator::default();
        assert_eq!((0..1000).filter(|_| errors.fails(0.4)).count(), 400);
        let mut errors = ErrorAccumulator::default();
        assert_eq!((0..10).filter(|_| errors.fails(0.1)).count(), 1);
        let mut errors = ErrorAccumulator::default();
        assert_eq!((0..10).filter(|_| errors.fails(0.0)).count(), 0);
        assert_eq!((0..10).filter(|_| errors.fails(1.0)).count(), 10);
    }

    #[test]
    fn route_split_divides_rules_evenly_then_by_weight() {
        let backend = |name: &str, weight| BackendRef {
            namespace: "ns".into(),
            name: name.into(),
            weight,
            is_service: true,
            subset: None,
        };
        let rules = vec![
            Rule::plain(vec![backend("a", 1), backend("b", 3)]),
            Rule::plain(vec![backend("c", 1)]),
            Rule::plain(vec![backend("d", 0)]),
        ];
        let mut split = RouteSplit::new(Route {
            rules,
            precedence: Precedence::MostSpecific,
        });
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..800 {
            *counts
                .entry(split.pick(&Headers::new()).unwrap().1.name.clone())
                .or_default() += 1;
        }
        let expected: BTreeMap<String, usize> = [("a", 100), ("b", 300), ("c", 400)].map(|(k, v)| (k.into(), v)).into();
        assert_eq!(counts, expected);
    }

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let mut metrics = Metrics::default();
        let series = Series {
            namespace: "shop".into(),
            service: "web".into(),
            pod_template_hash: "abc".into(),
            mirrored: false,
        };
        metrics.record(&series, 200, 0.02);
        metrics.record(&series, 200, 0.3);
        metrics.record(&series, 500, 20.0);
        let text = metrics.render();
        let labels = r#"namespace="shop",service="web",pod_template_hash="abc""#;
        for line in [
            "# TYPE sim_http_requests_total counter".to_string(),
            "# TYPE sim_http_request_duration_seconds histogram".to_string(),
            format!("sim_http_requests_total{{{labels},code=\"200\"}} 2"),
            format!("sim_http_requests_total{{{labels},code=\"500\"}} 1"),
            format!("sim_http_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 0"),
            format!("sim_http_request_duration_seconds_bucket{{{labels},le=\"0.025\"}} 1"),
            format!("sim_http_request_duration_seconds_bucket{{{labels},le=\"10\"}} 2"),
            format!("sim_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("sim_http_request_duration_seconds_count{{{labels}}} 3"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("sim_http_request_duration_seconds_sum{{{labels}}} 20.32")))
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    fn create(sim: &Simulator, group: &str, plural: &str, body: Value) {
        let rt = sim.api.resource(group, plural).unwrap();
        sim.api.create(&rt, "default", body, &opts()).unwrap();
    }

    fn service(name: &str, selector: Value, rps: Option<&str>) -> Value {
        let annotations = rps.map_or(json!({}), |r| json!({RPS_ANNOTATION: r}));
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "annotations": annotations},
               "spec": {"selector": selector, "ports": [{"port": 80}]}})
    }

    fn route(name: &str, rps: &str, backends: Value) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": name, "annotations": {RPS_ANNOTATION: rps}},
               "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": backends}]}})
    }

    fn series(service: &str, hash: &str) -> Series {
        Series {
            namespace: "default".into(),
            service: service.into(),
            pod_template_hash: hash.into(),
            mirrored: false,
        }
    }

    /// Selects the pods of the ReplicaSet `hash` (the tests' ReplicaSets carry their name as hash).
    fn selecting(hash: &str) -> Value {
        json!({"sluice.dev/pod-template-hash": hash})
    }

    /// The tests' two revisions, `web-stable` (2 pods) and `web-canary` (1 pod, its template carrying
    /// `canary_annotations`), and, per name, a Service selecting `web-<role>`'s pods.
    fn two_revisions(sim: &Simulator, canary_annotations: Value, services: &[(&str, &str)]) {
        create_rs(sim, replicaset("web-stable", 2, json!({})));
        create_rs(sim, replicaset("web-canary", 1, canary_annotations));
        for (name, role) in services {
            let selector = selecting(&format!("web-{role}"));
            create(sim, "", "services", service(name, selector, None));
        }
    }

    /// Ten seconds of a Traffic of the test's own (explicit ticks), once the three pods are ready.
    async fn ten_seconds_of_traffic(sim: &Simulator) -> Traffic {
        eventually(Duration::from_secs(3), "ready pods", || {
            let pods = [pods_of(sim, "web-stable"), pods_of(sim, "web-canary")].concat();
            (pods.len() == 3 && pods.iter().all(is_ready)).then_some(())
        })
        .await;
        let traffic = Traffic::new(sim.api.clone());
        for _ in 0..10 {
            traffic.tick(Duration::from_secs(1));
        }
        traffic
    }

    /// Routes, Services and pods end to end, with a Traffic of the test's own driven by explicit ticks.
    #[tokio::test]
    async fn traffic_splits_by_weight_and_fails_by_error_rate() {
        let sim = start().await;
        install_httproute_crd(&sim.api);
        let canary_annotations = json!({ERROR_RATE_ANNOTATION: "0.4", LATENCY_ANNOTATION: "200"});
        two_revisions(
            &sim,
            canary_annotations,
            &[("web-stable", "stable"), ("web-canary", "canary")],
        );
        create(
            &sim,
            "",
            "services",
            service("web-empty", selecting("nothing"), Some("10")),
        );
        create(
            &sim,
            "",
            "services",
            service("web-all", json!({"app": "web"}), Some("3.5")),
        );
        let backends = json!([{"name": "web-stable", "weight": 70}, {"name": "web-canary", "weight": 30}]);
        create(
            &sim,
            "gateway.networking.k8s.io",
            "httproutes",
            route("web", "100", backends),
        );
        create(
            &sim,
            "gateway.networking.k8s.io",
            "httproutes",
            route("ghost", "10", json!([{"name": "nope"}])),
        );

        let traffic = ten_seconds_of_traffic(&sim).await;
        {
            let metrics = traffic.metrics.lock().unwrap();
            assert_eq!(metrics.requests(&series("web-stable", "web-stable"), 200), 700);
            assert_eq!(metrics.requests(&series("web-stable", "web-stable"), 500), 0);
            assert_eq!(metrics.requests(&series("web-canary", "web-canary"), 200), 180);
            assert_eq!(metrics.requests(&series("web-canary", "web-canary"), 500), 120);
            assert_eq!(metrics.requests(&series("web-empty", ""), 503), 100);
            assert_eq!(metrics.requests(&series("nope", ""), 500), 100);
            // 3.5 rps for 10 s, round-robin over the three pods: 2 of 3 requests go to stable pods.
            let all_stable = metrics.requests(&series("web-all", "web-stable"), 200);
            let all_canary = metrics.requests(&series("web-all", "web-canary"), 200)
                + metrics.requests(&series("web-all", "web-canary"), 500);
            assert_eq!((all_stable, all_canary), (23, 12));
            let canary = &metrics.durations[&series("web-canary", "web-canary")];
            assert_eq!(canary.count, 300);
            assert!(
                (0.16..=0.24).contains(&(canary.sum / 300.0)),
                "mean latency {}",
                canary.sum / 300.0
            );
        }
        sim.shutdown().await;
    }

    /// An Ingress spec sending shop.example.com/ to `service`.
    fn ingress_to(service: &str) -> Value {
        json!({"rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]})
    }

    fn object(api_version: &str, kind: &str, name: &str, annotations: Value, spec: Value) -> Value {
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"name": name, "annotations": annotations}, "spec": spec})
    }

    /// TrafficSplit, VirtualService with DestinationRule subsets, and NGINX canary Ingress each split
    /// their source's requests by the weights they carry.
    #[tokio::test]
    async fn traffic_follows_every_routers_objects() {
        let sim = start().await;
        for crd in [
            crate::crds::TRAFFICSPLIT,
            crate::crds::VIRTUALSERVICE,
            crate::crds::DESTINATIONRULE,
        ] {
            gateway::install_crd_yaml(&sim.api, crd);
        }
        let services = [
            ("web-stable", "stable"),
            ("web-canary", "canary"),
            ("shop-stable", "stable"),
            ("shop-canary", "canary"),
        ];
        two_revisions(&sim, json!({}), &services);
        // SMI: the root Service "web" is split 30/70.
        create(&sim, "", "services", service("web", json!({"app": "web"}), Some("100")));
        let split = json!({"service": "web", "backends": [
            {"service": "web-canary", "weight": 30}, {"service": "web-stable", "weight": 70}]});
        let split = object("split.smi-spec.io/v1alpha2", "TrafficSplit", "web", json!({}), split);
        create(&sim, "split.smi-spec.io", "trafficsplits", split);
        // Istio: the catch-all route sends 20% to the canary subset of "web".
        let subsets = json!({"host": "web", "subsets": [
            {"name": "stable", "labels": {"sluice.dev/pod-template-hash": "web-stable"}},
            {"name": "canary", "labels": {"sluice.dev/pod-template-hash": "web-canary"}}]});
        let rule = object(
            "networking.istio.io/v1beta1",
            "DestinationRule",
            "web",
            json!({}),
            subsets,
        );
        create(&sim, "networking.istio.io", "destinationrules", rule);
        let routes = json!({"hosts": ["web"], "http": [
            {"match": [{"headers": {"x-canary": {"exact": "1"}}}],
             "route": [{"destination": {"host": "web", "subset": "canary"}}]},
            {"route": [{"destination": {"host": "web", "subset": "stable"}, "weight": 80},
                       {"destination": {"host": "web", "subset": "canary"}, "weight": 20}]}]});
        let vs = object(
            "networking.istio.io/v1beta1",
            "VirtualService",
            "web",
            json!({RPS_ANNOTATION: "100"}),
            routes,
        );
        create(&sim, "networking.istio.io", "virtualservices", vs);
        // NGINX: a canary Ingress on the same host takes 25%.
        let stable = object(
            "networking.k8s.io/v1",
            "Ingress",
            "shop",
            json!({RPS_ANNOTATION: "100"}),
            ingress_to("shop-stable"),
        );
        let canary_annotations = json!({"nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "25"});
        let canary = object(
            "networking.k8s.io/v1",
            "Ingress",
            "shop-canary",
            canary_annotations,
            ingress_to("shop-canary"),
        );
        create(&sim, "networking.k8s.io", "ingresses", stable);
        create(&sim, "networking.k8s.io", "ingresses", canary);

        let traffic = ten_seconds_of_traffic(&sim).await;
        {
            let metrics = traffic.metrics.lock().unwrap();
            let count = |service: &str, hash: &str| metrics.requests(&series(service, hash), 200);
            assert_eq!(
                (count("web-canary", "web-canary"), count("web-stable", "web-stable")),
                (300, 700)
            );
            assert_eq!((count("web", "web-canary"), count("web", "web-stable")), (200, 800));
            assert_eq!(
                (count("shop-canary", "web-canary"), count("shop-stable", "web-stable")),
                (250, 750)
            );
            // The root Service itself serves nothing directly while its TrafficSplit exists.
            assert_eq!(count("web", ""), 0);
        }
        sim.shutdown().await;
    }

    /// A share of a source's requests carries headers: header rules take exactly those (weight 0 on the
    /// plain split notwithstanding), mirrors copy their share to another Service with
    /// `mirrored="true"`, on Gateway API, Istio and NGINX.
    #[tokio::test]
    async fn header_routes_take_their_share_and_mirrors_copy_requests() {
        let sim = start().await;
        install_httproute_crd(&sim.api);
        for crd in [crate::crds::VIRTUALSERVICE, crate::crds::DESTINATIONRULE] {
            gateway::install_crd_yaml(&sim.api, crd);
        }
        // One pair of Services per router, so each router's requests are counted apart.
        let services = [
            ("gw-stable", "stable"),
            ("gw-canary", "canary"),
            ("vs-stable", "stable"),
            ("vs-canary", "canary"),
            ("ng-stable", "stable"),
            ("ng-canary", "canary"),
        ];
        two_revisions(&sim, json!({}), &services);
        let headers = json!({RPS_ANNOTATION: "100", routing::REQUEST_HEADERS_ANNOTATION: "X-Canary: yes",
                             routing::REQUEST_HEADERS_FRACTION_ANNOTATION: "0.3"});
        // Gateway API: weight 0 on the canary, a header rule, and a 50% mirror on the plain rule.
        let http_route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "annotations": headers},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [
                {"backendRefs": [{"name": "gw-stable", "weight": 100}, {"name": "gw-canary", "weight": 0}],
                 "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "gw-canary"}, "percent": 50}}]},
                {"matches": [{"headers": [{"name": "x-canary", "value": "yes"}]}],
                 "backendRefs": [{"name": "gw-canary", "port": 80}]}]}});
        create(&sim, gateway::GATEWAY_GROUP, "httproutes", http_route);
        // Istio: the first route matching the header wins; the catch-all mirrors 10%.
        let routes = json!({"hosts": ["vs-stable"], "http": [
            {"match": [{"headers": {"x-canary": {"exact": "yes"}}}],
             "route": [{"destination": {"host": "vs-canary"}}]},
            {"route": [{"destination": {"host": "vs-stable"}, "weight": 100},
                       {"destination": {"host": "vs-canary"}, "weight": 0}],
             "mirror": {"host": "vs-canary"}, "mirrorPercentage": {"value": 10.0}}]});
        let vs = object(
            "networking.istio.io/v1beta1",
            "VirtualService",
            "web",
            headers.clone(),
            routes,
        );
        create(&sim, "networking.istio.io", "virtualservices", vs);
        // NGINX: canary-by-header sends the header's requests to the canary; the weight (0) the rest.
        let stable = object(
            "networking.k8s.io/v1",
            "Ingress",
            "shop",
            headers,
            ingress_to("ng-stable"),
        );
        let canary_annotations = json!({"nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": "0",
            "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
            "nginx.ingress.kubernetes.io/canary-by-header-pattern": "y.s"});
        let canary = object(
            "networking.k8s.io/v1",
            "Ingress",
            "shop-canary",
            canary_annotations,
            ingress_to("ng-canary"),
        );
        create(&sim, "networking.k8s.io", "ingresses", stable);
        create(&sim, "networking.k8s.io", "ingresses", canary);

        let traffic = ten_seconds_of_traffic(&sim).await;
        let metrics = traffic.metrics.lock().unwrap().clone();
        // (stable, canary, mirrored to the canary) of 1000 requests, 300 of which carry the header.
        let counts = |router: &str| {
            let count = |role: &str, mirrored| {
                let series = Series {
                    mirrored,
                    ..series(&format!("{router}-{role}"), &format!("web-{role}"))
                };
                metrics.requests(&series, 200)
            };
            (count("stable", false), count("canary", false), count("canary", true))
        };
        assert_eq!(
            counts("gw"),
            (700, 300, 350),
            "Gateway API: half the plain requests mirrored"
        );
        assert_eq!(
            counts("vs"),
            (700, 300, 70),
            "Istio: 10% of the plain requests mirrored"
        );
        assert_eq!(
            counts("ng"),
            (700, 300, 0),
            "NGINX: header pattern matched, no mirroring"
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"service="gw-canary",pod_template_hash="web-canary",mirrored="true",code="200"} 350"#),
            "{text}"
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn metrics_are_served_over_http() {
        let sim = start().await;
        create(
            &sim,
            "",
            "services",
            service("web-empty", json!({"app": "none"}), Some("50")),
        );
        let url = format!("{}/sim/metrics", sim.url());
        let line =
            r#"sim_http_requests_total{namespace="default",service="web-empty",pod_template_hash="",code="503"}"#;
        let mut text = String::new();
        for _ in 0..100 {
            let response = reqwest::get(&url).await.unwrap();
            let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
            assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
            text = response.text().await.unwrap();
            if text.contains(line) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(text.contains(line), "{text}");
        sim.shutdown().await;
    }
}
