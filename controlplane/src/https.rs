//! HTTPS for the gateway's own APIs: a TLS listener in front of an axum
//! router, and the certificate it presents when the operator gives none
//! (made once with rcgen, kept in the state directory, its SHA-256
//! fingerprint printed so a PBX can pin it). Owns connections (who may
//! connect, how many, how long a handshake or a request head may take);
//! the routers own what is served.

use anyhow::Context;
use axum::Extension;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The peer of a request (an extension every request carries).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// How a listener admits connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub connections: usize,
    /// Longest TLS handshake, and longest wait for a request's head.
    pub handshake: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 64,
            handshake: Duration::from_secs(10),
        }
    }
}

/// The certificate and key (PEM files) this API presents: the operator's,
/// or one made at first start in `state_dir` under `name` and kept.
pub fn certificate(
    given: Option<(PathBuf, PathBuf)>,
    state_dir: &Path,
    name: &str,
    subject: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(pair) = given {
        return Ok(pair);
    }
    let cert = state_dir.join(format!("{name}.crt"));
    let key = state_dir.join(format!("{name}.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let made = rcgen::generate_simple_self_signed(subject.to_vec())
        .context("making a self-signed certificate")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)
        .with_context(|| format!("writing {}", key.display()))?;
    std::io::Write::write_all(&mut f, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    Ok((cert, key))
}

/// The SHA-256 fingerprint of the first certificate in a PEM file, as
/// `AB:CD:…` (what a browser or `openssl x509 -fingerprint -sha256` shows).
pub fn fingerprint(cert: &Path) -> anyhow::Result<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let der = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .next()
        .with_context(|| format!("no certificate in {}", cert.display()))?
        .with_context(|| format!("reading {}", cert.display()))?;
    Ok(sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Serves `router` over TLS on `listener` to peers `admit` allows (others
/// are closed at once), for as long as the gateway runs.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    admit: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        if !admit(peer.ip()) {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        let handshake = limits.handshake;
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(handshake, acceptor.accept(tcp)).await else {
                return;
            };
            let service =
                hyper_util::service::TowerToHyperService::new(router.layer(Extension(Peer(peer))));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(handshake)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            drop(permit);
        });
    }
}
