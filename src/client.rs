//! The controller's Kubernetes client: a client-side rate limit (QPS with a burst, as client-go's
//! `--kube-api-qps`/`--kube-api-burst`), a User-Agent naming the instance (so audit logs and the
//! simulator's request log tell replicas apart), and a write gate that refuses every mutating request
//! while this instance is not the leader — fencing in the client, so no write leaves the process after
//! the lease is lost, whatever a reconcile was in the middle of.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request};
use kube::client::ClientBuilder;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// How the controller's client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sustained requests per second (0: unlimited).
    pub qps: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Sent as User-Agent on every request.
    pub user_agent: String,
    /// When given, mutating requests fail unless the gate is open.
    pub write_gate: Option<WriteGate>,
}

/// Builds a client from `config` with the rate limit, User-Agent and write gate of `options`.
pub fn build(mut config: kube::Config, options: &ClientOptions) -> anyhow::Result<kube::Client> {
    let user_agent = http::HeaderValue::from_str(&options.user_agent)
        .map_err(|e| anyhow::anyhow!("user agent {:?}: {e}", options.user_agent))?;
    config.headers.retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((http::header::USER_AGENT, user_agent));
    let builder = ClientBuilder::try_from(config)?;
    let gate = options.write_gate.clone().unwrap_or_else(WriteGate::open);
    let builder = builder
        .with_layer(&WriteGateLayer { gate })
        .with_layer(&RateLimitLayer::new(options.qps, options.burst));
    Ok(builder.build())
}

/// Shared switch: open while this instance may write.
#[derive(Debug, Clone)]
pub struct WriteGate(Arc<AtomicBool>);

impl WriteGate {
    pub fn open() -> Self {
        WriteGate(Arc::new(AtomicBool::new(true)))
    }
    pub fn closed() -> Self {
        WriteGate(Arc::new(AtomicBool::new(false)))
    }
    pub fn set_open(&self, open: bool) {
        self.0.store(open, Ordering::SeqCst);
    }
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The error a gated write returns.
#[derive(Debug, thiserror::Error)]
#[error("refusing {method} {path}: this instance is not the leader (the lease was lost or not yet acquired)")]
pub struct NotLeader {
    method: Method,
    path: String,
}

#[derive(Clone)]
pub struct WriteGateLayer {
    gate: WriteGate,
}

impl<S> Layer<S> for WriteGateLayer {
    type Service = WriteGateService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WriteGateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WriteGateService<S> {
    inner: S,
    gate: WriteGate,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for WriteGateService<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = BoxFuture<Result<S::Response, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let read_only = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        // Checked when the request is sent, not when it was planned: a reconcile that began as leader
        // cannot finish its writes after the lease is gone.
        if !read_only && !self.gate.is_open() {
            let error = NotLeader {
                method: request.method().clone(),
                path: request.uri().path().to_string(),
            };
            return Box::pin(async move { Err(error.into()) });
        }
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// A token bucket: `burst` tokens, refilled at `qps` per second; each request takes one. Also the
/// GitSync webhook's rate limit.
#[derive(Debug)]
pub(crate) struct Bucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// A full bucket; `qps` must be positive.
    pub(crate) fn new(qps: f64, burst: f64) -> Self {
        Bucket {
            qps,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Takes a token now, or returns how long until one is available.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // A qps so small the wait is not a Duration waits an hour and looks again, not a panic.
            Err(Duration::try_from_secs_f64((1.0 - self.tokens) / self.qps).unwrap_or(Duration::from_secs(3600)))
        }
    }
}

#[derive(Clone)]
pub struct RateLimitLayer {
    bucket: Option<Arc<Mutex<Bucket>>>,
}

impl RateLimitLayer {
    /// `qps <= 0` disables the limit, as does a qps that is not a finite number.
    pub fn new(qps: f64, burst: u32) -> Self {
        let bucket =
            (qps.is_finite() && qps > 0.0).then(|| Arc::new(Mutex::new(Bucket::new(qps, f64::from(burst.max(1))))));
        RateLimitLayer { bucket }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            bucket: self.bucket.clone(),
            sleep: None,
            has_token: false,
        }
    }
}

/// Waits in `poll_ready` until the bucket has a token (kube's Client buffers requests in front of the
/// stack, so callers queue rather than fail).
pub struct RateLimitService<S> {
    inner: S,
    bucket: Option<Arc<Mutex<Bucket>>>,
    sleep: Option<Pin<Box<Sleep>>>,
    has_token: bool,
}

impl<S, B> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(bucket) = &self.bucket {
            while !self.has_token {
                if let Some(sleep) = self.sleep.as_mut() {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.sleep = None;
                }
                let taken = bucket.lock().unwrap_or_else(|p| p.into_inner()).take(Instant::now());
                match taken {
                    Ok(()) => self.has_token = true,
                    Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.has_token = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = Bucket {
            qps: 10.0,
            burst: 3.0,
            tokens: 3.0,
            updated: start,
        };
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).expect_err("burst used up");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
        // Idle time refills at most `burst` tokens.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn a_hostile_qps_never_panics() {
        for qps in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0] {
            assert!(RateLimitLayer::new(qps, 10).bucket.is_none(), "{qps}: no limit");
        }
        let start = Instant::now();
        let mut bucket = Bucket::new(f64::MIN_POSITIVE, 1.0);
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.take(start), Err(Duration::from_secs(3600)));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_service_spaces_requests() {
        use tower::ServiceExt;
        let service = tower::service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(Instant::now()) });
        let mut service = RateLimitLayer::new(2.0, 2).layer(service);
        let start = Instant::now();
        let mut times = vec![];
        for _ in 0..4 {
            let at = service.ready().await.unwrap().call(Request::new(())).await.unwrap();
            times.push(at.duration_since(start));
        }
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[1], Duration::ZERO);
        assert_eq!(times[2], Duration::from_millis(500));
        assert_eq!(times[3], Duration::from_millis(1000));
    }

    #[tokio::test]
    async fn closed_gate_refuses_writes_but_not_reads() {
        use tower::ServiceExt;
        let gate = WriteGate::closed();
        let service = tower::service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(()) });
        let mut service = WriteGateLayer { gate: gate.clone() }.layer(service);
        let get = Request::get("/api/v1/pods").body(()).unwrap();
        assert!(service.ready().await.unwrap().call(get).await.is_ok());
        let patch = Request::patch("/api/v1/namespaces/a/pods/b").body(()).unwrap();
        let error = service.ready().await.unwrap().call(patch).await.unwrap_err();
        assert!(error.to_string().contains("not the leader"), "{error}");
        gate.set_open(true);
        let post = Request::post("/api/v1/namespaces/a/pods").body(()).unwrap();
        assert!(service.ready().await.unwrap().call(post).await.is_ok());
    }
}
