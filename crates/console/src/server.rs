//! The HTTPS listener: TLS (rustls, ring) in front of the router, HTTP/1.1, bounded
//! handshakes and header reads, a replaceable certificate, and a graceful stop.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use palisade_control::ListenerRole;
use palisade_store::{Config, ConfigStore, DataDir};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::state::{AppState, Settings};
use crate::{ConsoleError, ConsoleOptions};

/// The client's address, as a request extension (tests insert it themselves).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The IP, with IPv4-mapped IPv6 shown as IPv4.
    pub fn ip(&self) -> std::net::IpAddr {
        match self.0.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(std::net::IpAddr::V4)
                .unwrap_or(std::net::IpAddr::V6(v6)),
            v4 => v4,
        }
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_CONNECTIONS: usize = 256;

/// Loads the console's certificate and key into a server configuration.
pub fn load_tls(data: &DataDir, cfg: &Config) -> Result<ServerConfig, ConsoleError> {
    let cert = data.resolve(&cfg.console.cert);
    let key = data.resolve(&cfg.console.key);
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConsoleError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| ConsoleError::Tls(format!("{}: {e}", key.display())))?;
    server_config(certs, key)
}

pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, ConsoleError> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConsoleError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ConsoleError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn listeners(cfg: &Config) -> Result<Vec<TcpListener>, ConsoleError> {
    let inherited = palisade_control::inherited_listeners(&[ListenerRole::Console])
        .map_err(|e| ConsoleError::Listener(e.to_string()))?;
    if let Some(l) = inherited {
        return Ok(l.into_iter().map(|(_, l)| l).collect());
    }
    cfg.console
        .listen
        .iter()
        .map(|addr| {
            let l = TcpListener::bind(addr).map_err(|e| ConsoleError::Io {
                context: format!("bind {addr}"),
                source: e,
            })?;
            l.set_nonblocking(true).map_err(|e| ConsoleError::Io {
                context: format!("listener {addr}"),
                source: e,
            })?;
            Ok(l)
        })
        .collect()
}

pub(crate) async fn run(opts: ConsoleOptions) -> Result<(), ConsoleError> {
    let data = DataDir::new(&opts.data);
    let cfg = ConfigStore::open(&data.config_db())?
        .current()?
        .ok_or_else(|| ConsoleError::NoConfig(opts.data.clone()))?
        .config;
    let tls = Arc::new(ArcSwap::from_pointee(load_tls(&data, &cfg)?));
    let listeners = listeners(&cfg)?;
    if listeners.is_empty() {
        return Err(ConsoleError::Listener("no console listener".into()));
    }
    let state = AppState::open(&data, Settings::default())?;
    {
        let (tls, data) = (tls.clone(), data.clone());
        state.set_tls_reload(Box::new(move || {
            let cfg = ConfigStore::open(&data.config_db())
                .and_then(|s| s.current())
                .map_err(|e| e.to_string())?
                .ok_or("no configuration")?
                .config;
            tls.store(Arc::new(load_tls(&data, &cfg).map_err(|e| e.to_string())?));
            tracing::info!(event = "console.certificate_reloaded");
            Ok(())
        }));
    }
    let app = crate::router(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let addr = l.local_addr();
        let l = tokio::net::TcpListener::from_std(l).map_err(|e| ConsoleError::Io {
            context: "listener".into(),
            source: e,
        })?;
        match addr {
            Ok(addr) => tracing::info!(event = "console.listening", addr = %addr),
            Err(e) => tracing::info!(event = "console.listening", addr = "unknown", error = %e),
        }
        tasks.spawn(accept_loop(
            l,
            tls.clone(),
            app.clone(),
            stop_rx.clone(),
            limit.clone(),
        ));
    }
    // Housekeeping: expired sessions go away even if nobody presents them again.
    let housekeeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                let policy = state.settings().sessions;
                let _ = state
                    .db(move |s| Ok(s.accounts.purge_sessions(&policy)?))
                    .await;
            }
        })
    };
    palisade_control::notify_ready();
    tracing::info!(event = "console.ready");
    wait_for_shutdown().await;
    tracing::info!(event = "console.stopping");
    housekeeping.abort();
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(opts.drain_grace, drain).await;
    tracing::info!(event = "console.stopped");
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Arc<ArcSwap<ServerConfig>>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limit: Arc<tokio::sync::Semaphore>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(event = "console.accept_failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let app = app.clone();
        let mut stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            let tls_stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(event = "console.handshake_failed", peer = %peer, error = %e);
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(event = "console.connection_error", peer = %peer, error = %e);
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    while conns.join_next().await.is_some() {}
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
