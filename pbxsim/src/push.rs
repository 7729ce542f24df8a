//! pbxsim's user-config pusher: sends the PBX's users and role table to
//! the gateway's user-config API over HTTPS (its own small client:
//! rustls, hyper), trusting only the certificate file it is given, with
//! HTTP Basic credentials.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Where and how to push.
#[derive(Debug, Clone)]
pub struct Target {
    /// The gateway's user-config API.
    pub addr: SocketAddr,
    /// The certificate (or CA) the gateway's must be, or chain to.
    pub ca: std::path::PathBuf,
    /// `user:password`.
    pub auth: String,
}

/// One HTTPS request; the status and the body.
pub async fn request(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let tls = tls_config(&target.ca)?;
    let tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    let name = ServerName::IpAddress(target.addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {}", target.addr))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(&target.auth);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", target.addr.to_string())
        .header("authorization", format!("Basic {auth}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn tls_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
