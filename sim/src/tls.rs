//! HTTPS and plain HTTP on the simulator's one port. kubectl (client-go) never sends credentials to
//! an `http://` server, so the kubeconfig names `https://` with the simulator's self-signed
//! certificate; in-process clients, tests and the `/sim/*` endpoints keep plain HTTP. Each connection
//! is told apart by its first byte: a TLS handshake starts with 0x16, an HTTP request never does.
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a connection may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The simulator's server certificate (self-signed, for its loopback address and `localhost`).
pub struct ServerTls {
    /// The certificate in PEM: what a kubeconfig's `certificate-authority-data` carries.
    pub certificate_pem: String,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// A new key pair and self-signed certificate for `ip` and `localhost`.
    pub fn self_signed(ip: IpAddr) -> anyhow::Result<ServerTls> {
        let names = vec![ip.to_string(), "localhost".to_string()];
        let certified = rcgen::generate_simple_self_signed(names)?;
        let certificate_pem = certified.cert.pem();
        let certificate = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("the generated key: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            certificate_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Serves `router` on `listener` (HTTPS and plain HTTP) until `stop` is cancelled; open connections
/// are then asked to finish and dropped after a grace period.
pub async fn serve(listener: TcpListener, router: Router, tls: Arc<ServerTls>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let router = router.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            connection(stream, router, tls, stop).await;
        });
    }
}

async fn connection(stream: TcpStream, router: Router, tls: Arc<ServerTls>, stop: CancellationToken) {
    let mut first = [0u8; 1];
    let is_tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == TLS_HANDSHAKE,
        // Closed, failed or silent: nothing to serve.
        _ => return,
    };
    let service = TowerToHyperService::new(router);
    if is_tls {
        let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await else {
            return;
        };
        run(TokioIo::new(stream), service, stop).await;
    } else {
        run(TokioIo::new(stream), service, stop).await;
    }
}

async fn run<I>(io: I, service: TowerToHyperService<Router>, stop: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}
