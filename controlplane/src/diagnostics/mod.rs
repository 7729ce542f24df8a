//! Start-up diagnostics (SPEC §7): can the gateway reach what the
//! configured cloud needs? Five checks, run side by side, each within
//! [`CHECK_TIMEOUT`]:
//!
//! - `dns`: the cloud's, the tunnel's, the NTP and STUN servers' names
//!   resolve (skipped when all are addresses);
//! - `ntp`: an NTP server answers (SNTP, UDP; `[cloud] ntp`, default the
//!   cloud's host, port 123) and how far our clock is from it;
//! - `https`: a TLS handshake with the management endpoint (the tunnel's,
//!   else the cloud's host on 443) whose certificate chains to the CA;
//! - `stun`: each STUN server answers a Binding (`[cloud] stun`, default
//!   the cloud's host on 3478 and 3479) and the address it saw;
//! - `sip-tls`: a TLS handshake with the cloud trunk's targets (port 5061
//!   for a domain).
//!
//! What is checked is a [`Plan`] made from the configuration; running it
//! gives one [`Checked`] per check. The admin side shows them, logs them
//! and raises an alarm for each failure (`admin::diagnostics`).

use crate::config::{CloudTargets, Config};
use pbxlink_sip::ntp;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpStream, UdpSocket};

/// The longest one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(4);

/// One thing to check.
#[derive(Debug, Clone)]
pub enum Probe {
    /// These names resolve.
    Dns(Vec<String>),
    /// This NTP server (`host:port`) answers.
    Ntp(String),
    /// A TLS handshake with this endpoint succeeds (the check's name:
    /// `https` or `sip-tls`).
    Tls {
        /// `https` or `sip-tls`.
        check: &'static str,
        /// `host:port`.
        endpoint: String,
        /// The name its certificate must carry.
        server_name: String,
        /// The CA it must chain to.
        ca: PathBuf,
    },
    /// This STUN server (`host:port`) answers a Binding.
    Stun(String),
}

impl Probe {
    /// The check's name.
    pub fn check(&self) -> &'static str {
        match self {
            Probe::Dns(_) => "dns",
            Probe::Ntp(_) => "ntp",
            Probe::Tls { check, .. } => check,
            Probe::Stun(_) => "stun",
        }
    }

    /// What it checks.
    pub fn target(&self) -> String {
        match self {
            Probe::Dns(names) => names.join(", "),
            Probe::Ntp(t) | Probe::Stun(t) | Probe::Tls { endpoint: t, .. } => t.clone(),
        }
    }
}

/// What is checked.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The checks, in the order shown.
    pub probes: Vec<Probe>,
}

/// How a check went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "detail")]
pub enum Outcome {
    /// It passed; what it found.
    Passed(String),
    /// It failed; why.
    Failed(String),
    /// Nothing to check; why.
    Skipped(String),
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// `dns`, `ntp`, `https`, `stun` or `sip-tls`.
    pub check: &'static str,
    /// What it checked.
    pub target: String,
    /// How it went.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it took.
    pub millis: u64,
}

fn host_of(endpoint: &str) -> &str {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn is_address(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

fn with_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Plan {
    /// The checks the configuration calls for.
    pub fn for_config(cfg: &Config) -> Plan {
        let (cloud_host, sip_targets) = match &cfg.cloud {
            CloudTargets::Domain(d) => (d.clone(), vec![with_port(d, 5061)]),
            CloudTargets::Static(targets) => (
                targets
                    .first()
                    .map_or_else(String::new, |t| t.addr.ip().to_string()),
                targets.iter().map(|t| t.addr.to_string()).collect(),
            ),
        };
        let name = |host: &str| {
            cfg.cloud_server_name
                .clone()
                .unwrap_or_else(|| host.to_owned())
        };
        let ntp = cfg
            .ntp
            .clone()
            .unwrap_or_else(|| with_port(&cloud_host, 123));
        let stun: Vec<String> = if cfg.stun.is_empty() {
            vec![with_port(&cloud_host, 3478), with_port(&cloud_host, 3479)]
        } else {
            cfg.stun.iter().map(SocketAddr::to_string).collect()
        };
        let https = match &cfg.tunnel {
            Some(t) => Probe::Tls {
                check: "https",
                endpoint: t.endpoint.clone(),
                server_name: t.server_name.clone(),
                ca: t.ca.clone(),
            },
            None => Probe::Tls {
                check: "https",
                endpoint: with_port(&cloud_host, 443),
                server_name: name(&cloud_host),
                ca: cfg.cloud_ca.clone(),
            },
        };
        let mut names: Vec<String> = std::iter::once(https.target())
            .chain(sip_targets.iter().cloned())
            .chain(std::iter::once(ntp.clone()))
            .chain(stun.iter().cloned())
            .map(|e| host_of(&e).to_owned())
            .filter(|h| !is_address(h))
            .collect();
        names.sort();
        names.dedup();
        let mut probes = vec![Probe::Dns(names), Probe::Ntp(ntp), https];
        probes.extend(stun.into_iter().map(Probe::Stun));
        probes.extend(sip_targets.into_iter().map(|t| Probe::Tls {
            check: "sip-tls",
            server_name: name(host_of(&t)),
            endpoint: t,
            ca: cfg.cloud_ca.clone(),
        }));
        Plan { probes }
    }

    /// Runs every check side by side.
    pub async fn run(&self) -> Vec<Checked> {
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in self.probes.iter().cloned().enumerate() {
            set.spawn(async move {
                let start = Instant::now();
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe(&p)).await {
                    Ok(o) => o,
                    Err(_) => {
                        Outcome::Failed(format!("no answer within {} s", CHECK_TIMEOUT.as_secs()))
                    }
                };
                let checked = Checked {
                    check: p.check(),
                    target: p.target(),
                    outcome,
                    millis: start.elapsed().as_millis() as u64,
                };
                (i, checked)
            });
        }
        let mut done: Vec<(usize, Checked)> = set.join_all().await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, c)| c).collect()
    }
}

async fn probe(p: &Probe) -> Outcome {
    let result = match p {
        Probe::Dns(names) if names.is_empty() => {
            return Outcome::Skipped(
                "the cloud is configured by address: nothing to resolve".into(),
            );
        }
        Probe::Dns(names) => dns(names).await,
        Probe::Ntp(server) => ntp_check(server).await,
        Probe::Tls {
            endpoint,
            server_name,
            ca,
            ..
        } => tls(endpoint, server_name, ca).await,
        Probe::Stun(server) => stun(server).await,
    };
    match result {
        Ok(found) => Outcome::Passed(found),
        Err(why) => Outcome::Failed(why),
    }
}

async fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint}: no address"))
}

async fn dns(names: &[String]) -> Result<String, String> {
    let mut found = Vec::new();
    for n in names {
        let addr = resolve(&with_port(n, 0)).await?;
        found.push(format!("{n} → {}", addr.ip()));
    }
    Ok(found.join(", "))
}

/// A UDP socket connected to `server` (so ICMP refusals are seen).
async fn udp_to(server: &str) -> Result<(UdpSocket, SocketAddr), String> {
    let to = resolve(server).await?;
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).await.map_err(|e| e.to_string())?;
    s.connect(to).await.map_err(|e| format!("{to}: {e}"))?;
    Ok((s, to))
}

/// Sends `request` and waits for what `accept` takes, sending again
/// after 0.5 and 1 s.
async fn ask_udp<T>(
    socket: &UdpSocket,
    to: SocketAddr,
    request: &[u8],
    mut accept: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, String> {
    let mut buf = [0u8; 1500];
    for wait in [500u64, 1000, 2000] {
        socket
            .send(request)
            .await
            .map_err(|e| format!("{to}: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(format!("{to}: {e}")),
                Ok(Ok(n)) => {
                    if let Some(t) = accept(&buf[..n]) {
                        return Ok(t);
                    }
                }
            }
        }
    }
    Err(format!("{to}: no answer"))
}

fn ntp_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        + ntp::UNIX_TO_NTP
}

async fn ntp_check(server: &str) -> Result<String, String> {
    let (socket, to) = udp_to(server).await?;
    let sent = ntp_now();
    let (request, stamp) = ntp::request(sent);
    let mut last_error = None;
    let answer = ask_udp(&socket, to, &request, |reply| {
        match ntp::answer(reply, stamp, sent, ntp_now()) {
            Ok(a) => Some(a),
            Err(e) => {
                last_error = Some(e);
                None
            }
        }
    })
    .await
    .map_err(|e| match &last_error {
        Some(why) => format!("{to}: {why}"),
        None => e,
    })?;
    Ok(format!(
        "{to}: stratum {}, our clock is {:+.3} s from it",
        answer.stratum, -answer.offset
    ))
}

async fn stun(server: &str) -> Result<String, String> {
    use pbxlink_sip::stun;
    let (socket, to) = udp_to(server).await?;
    let id: [u8; 12] = crate::random::random();
    let request = stun::binding_request(id);
    let mapped = ask_udp(&socket, to, &request, |reply| {
        stun::mapped_address(reply, id).ok()
    })
    .await?;
    Ok(format!("{to} sees the gateway as {mapped}"))
}

async fn tls(endpoint: &str, server_name: &str, ca: &std::path::Path) -> Result<String, String> {
    let config = crate::tls::client(ca).map_err(|e| format!("{e:#}"))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("{server_name:?} is not a server name"))?;
    let to = resolve(endpoint).await?;
    let tcp = TcpStream::connect(to)
        .await
        .map_err(|e| format!("{to}: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{to}: TLS: {e}"))?;
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
    // Closed politely (close_notify), having sent nothing: the platform
    // sees a handshake and a clean close, no hello (docs/protocols-tunnel.md).
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::io::AsyncWriteExt::shutdown(&mut tls),
    )
    .await;
    Ok(format!(
        "{to}: {version}, certificate for {server_name} trusted"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_are_split_and_joined() {
        assert_eq!(host_of("cloud.example:443"), "cloud.example");
        assert_eq!(host_of("[2001:db8::1]:5061"), "2001:db8::1");
        assert_eq!(with_port("2001:db8::1", 123), "[2001:db8::1]:123");
        assert_eq!(with_port("cloud.example", 3478), "cloud.example:3478");
        assert!(is_address("198.51.100.10") && !is_address("cloud.example"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_fails_with_why_and_dns_without_names_is_skipped() {
        // A port nobody listens on: the kernel refuses at once.
        let probes = Plan {
            probes: vec![
                Probe::Dns(Vec::new()),
                Probe::Stun("127.0.0.1:9".into()),
                Probe::Ntp("127.0.0.1:9".into()),
            ],
        };
        let got = probes.run().await;
        assert!(matches!(got[0].outcome, Outcome::Skipped(_)), "{got:?}");
        for c in &got[1..] {
            let Outcome::Failed(why) = &c.outcome else {
                panic!("{c:?}")
            };
            assert!(why.contains("127.0.0.1:9"), "{why}");
        }
    }
}
