//! Serving the application: HTTPS by default (rustls with the `ring` provider via axum-server),
//! with a self-signed certificate generated into the data directory on first start unless a
//! certificate is configured; plain HTTP only when explicitly configured. Also runs the
//! commit-confirm ticker, so an unconfirmed commit reverts on time while the API is up.
//!
//! Never: write the private key readable by others (0600, written atomically), fall back to
//! plain HTTP when TLS material fails to load.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ApiError, AppState, app};
use crate::durable;

/// How the listener speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// HTTPS with `DATA_DIR/tls/cert.pem` and `key.pem`, generated (self-signed) if absent.
    SelfSigned,
    /// HTTPS with the configured PEM files.
    Files {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
    /// Plain HTTP. Only when explicitly configured (e.g. behind a TLS-terminating proxy or for
    /// the loopback-only lab); session cookies are `Secure` regardless.
    PlainHttp,
}

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS mode.
    pub tls: TlsMode,
    /// Data directory (holds `tls/` for the self-signed certificate).
    pub data_dir: PathBuf,
    /// Names the self-signed certificate is issued for.
    pub cert_names: Vec<String>,
    /// How often pending commit-confirms are checked.
    pub tick_interval: Duration,
    /// How long in-flight requests get at shutdown.
    pub grace: Duration,
    /// How often the aggregated unauthenticated `access.denied` records are written (one per
    /// source per interval).
    pub denial_interval: Duration,
}

impl ServeConfig {
    /// HTTPS with a self-signed certificate for `localhost`, ticking every second.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            listen,
            tls: TlsMode::SelfSigned,
            data_dir: data_dir.into(),
            cert_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            tick_interval: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            denial_interval: Duration::from_secs(10),
        }
    }
}

/// Returns `DATA_DIR/tls/{cert,key}.pem`, generating a self-signed pair first if either is
/// missing.
pub fn ensure_self_signed(
    data_dir: &Path,
    names: &[String],
) -> Result<(PathBuf, PathBuf), ApiError> {
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir)?;
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| ApiError::Tls(format!("generating a certificate: {e}")))?;
    durable::write_atomic(&key, ck.signing_key.serialize_pem().as_bytes(), 0o600)?;
    durable::write_atomic(&cert, ck.cert.pem().as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, HTTP/1.1) from PEM files.
pub fn rustls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ApiError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ApiError::Tls(format!("{}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ApiError::Tls(format!("{}: {e}", key.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ApiError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ApiError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Checks pending commit-confirms every `interval` until the process ends.
pub fn spawn_ticker(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            match state.core.run(|svc| svc.tick()).await {
                Ok(Ok(Some(rev))) => {
                    tracing::warn!(
                        revision = rev.id,
                        "commit-confirm deadline passed: reverted"
                    );
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "commit-confirm revert failed"),
                Err(p) => tracing::error!(detail = %p.detail, "commit-confirm ticker"),
            }
        }
    })
}

/// Writes the aggregated unauthenticated denials every `interval` until the process ends.
pub fn spawn_denial_flusher(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t.tick().await;
        loop {
            t.tick().await;
            if let Err(p) = state.flush_denials().await {
                tracing::error!(detail = %p.detail, "could not audit access denials");
            }
        }
    })
}

/// The rustls configuration `cfg.tls` asks for (`None` for plain HTTP), generating the
/// self-signed certificate first if needed.
pub fn tls_config(cfg: &ServeConfig) -> Result<Option<Arc<rustls::ServerConfig>>, ApiError> {
    Ok(match &cfg.tls {
        TlsMode::PlainHttp => None,
        TlsMode::SelfSigned => {
            let (c, k) = ensure_self_signed(&cfg.data_dir, &cfg.cert_names)?;
            Some(rustls_config(&c, &k)?)
        }
        TlsMode::Files { cert, key } => Some(rustls_config(cert, key)?),
    })
}

/// Serves [`app`] until `shutdown` completes, then drains for `cfg.grace`.
pub async fn serve(
    cfg: ServeConfig,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let tls = tls_config(&cfg)?;
    let listener = std::net::TcpListener::bind(cfg.listen)?;
    serve_listener(listener, tls, &cfg, state, shutdown).await
}

/// [`serve`] on a listener the caller bound (so a busy address is reported before anything
/// starts) with TLS material it loaded ([`tls_config`]; `None`: plain HTTP).
pub async fn serve_listener(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cfg: &ServeConfig,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let ticker = spawn_ticker(state.clone(), cfg.tick_interval);
    let flusher = spawn_denial_flusher(state.clone(), cfg.denial_interval);
    let last = state.clone();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let grace = cfg.grace;
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(grace));
    });
    // The peer address feeds the login throttle and the per-source denial records.
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))?
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await
        }
    };
    ticker.abort();
    flusher.abort();
    // Denials counted since the last interval are still audited.
    if let Err(p) = last.flush_denials().await {
        tracing::error!(detail = %p.detail, "could not audit access denials");
    }
    result.map_err(ApiError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_material_is_created_once_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let (c, k) = ensure_self_signed(tmp.path(), &names).unwrap();
        let first = std::fs::read(&c).unwrap();
        rustls_config(&c, &k).unwrap();
        let (c2, _) = ensure_self_signed(tmp.path(), &names).unwrap();
        assert_eq!(std::fs::read(c2).unwrap(), first, "not regenerated");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn bad_tls_material_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("c.pem");
        std::fs::write(&c, "not pem").unwrap();
        assert!(matches!(rustls_config(&c, &c), Err(ApiError::Tls(_))));
    }
}
