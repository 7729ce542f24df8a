//! cloudsim's certificates, made at its first start: a CA of its own and
//! one certificate for the tunnel and the SIP endpoint, naming
//! `cloud.test`, `localhost` and 127.0.0.1. The CA goes to a file the
//! gateway is told to trust; nothing else is ever trusted. The server's
//! certificate and key are kept beside it, so a cloudsim started again
//! with the same `--ca-out` is the same platform to the gateways that
//! trust it (as a real one restarting would be).

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

/// The server's TLS configuration; the CA written to `ca_out`, or the
/// identity kept there from an earlier start.
pub fn make(ca_out: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_file = ca_out.with_extension("server.pem");
    let key_file = ca_out.with_extension("server.key");
    if ca_out.exists() && cert_file.exists() && key_file.exists() {
        let cert = CertificateDer::from_pem_file(&cert_file)
            .with_context(|| format!("reading {}", cert_file.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        return server_config(cert, key);
    }
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
    std::fs::write(&cert_file, cert.pem())?;
    write_private(&key_file, &key.serialize_pem())?;
    server_config(
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn server_config(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(Arc::new(config))
}
