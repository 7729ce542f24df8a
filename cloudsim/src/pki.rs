//! cloudsim's certificates, made at start: a CA of its own and one
//! certificate for the tunnel and the SIP endpoint, naming `cloud.test`,
//! `localhost` and 127.0.0.1. The CA goes to a file the gateway is told to
//! trust; nothing else is ever trusted.

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

/// The server's TLS configuration; the CA written to `ca_out`.
pub fn make(ca_out: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "cloudsim CA");
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(vec!["cloud.test".to_owned(), "localhost".to_owned()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.distinguished_name
        .push(DnType::CommonName, "cloud.test");
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;
    if let Some(dir) = ca_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(ca_out, issuer.pem())
        .with_context(|| format!("writing {}", ca_out.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    Ok(Arc::new(config))
}
