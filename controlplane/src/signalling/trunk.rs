//! The trunk to the cloud: the gateway dials out (the cloud cannot dial in
//! through NAT), over TLS with the cloud's certificate verified against the
//! configured CA (or TCP, for tests of the plumbing), and keeps the
//! connection: OPTIONS keep-alives in client transactions (RFC 3261
//! §17.1.2, matched per §17.1.3), the cloud's own requests answered over
//! the same connection (RFC 5923-style reuse; the Via carries `alias`).
//!
//! Targets come in order (a static list, or RFC 3263 resolution —
//! [`pbxlink_sip::resolve`]); a target that refuses the connection, fails
//! the handshake, answers a keep-alive with 503, lets one time out, or
//! drops the connection is held back and the next one is tried (§4.3).

use super::counters::{Counters, bump};
use super::dscp::set_dscp;
use super::stream::{self, Shared};
use pbxlink_sip::message::Parsed;
use pbxlink_sip::resolve::{Failover, Target, Transport as Wire};
use pbxlink_sip::transaction::{
    ClientKey, Event, NonInviteClient, Output, Timers, Transport, client_key,
};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

/// How the trunk dials and keeps its connection.
#[derive(Debug)]
pub struct TrunkConfig {
    /// Where the targets come from.
    pub targets: Targets,
    /// How long a failed target is held back.
    pub hold: Duration,
    /// Trust anchors for TLS targets.
    pub tls: Option<Arc<ClientConfig>>,
    /// Name the cloud's certificate must carry (default: the target's IP).
    pub server_name: Option<String>,
    /// Interval between OPTIONS keep-alives.
    pub ping: Duration,
    /// Longest a connect plus handshake may take.
    pub connect_timeout: Duration,
    /// DSCP for the connection.
    pub dscp: u8,
    /// Where the calls find the current connection.
    pub path: super::paths::CloudPath,
}

/// Where the trunk's targets come from.
#[derive(Debug)]
pub enum Targets {
    /// A static list, in order.
    Static(Vec<Target>),
    /// RFC 3263 resolution of the cloud's domain.
    Dns {
        /// The resolver asked.
        resolver: Box<hickory_resolver::TokioResolver>,
        /// The cloud's SIP domain.
        domain: String,
        /// Transports the gateway will use, by preference.
        transports: Vec<Wire>,
    },
}

impl Targets {
    /// The current targets; for DNS, retried until some are found.
    async fn get(&self, c: &Counters) -> Vec<Target> {
        let (resolver, domain, transports) = match self {
            Targets::Static(list) => return list.clone(),
            Targets::Dns {
                resolver,
                domain,
                transports,
            } => (resolver, domain, transports),
        };
        loop {
            match super::dns::targets(resolver, domain, transports).await {
                Ok((list, how)) => {
                    let names: Vec<String> = list.iter().map(ToString::to_string).collect();
                    tracing::info!("trunk: {domain} resolved by {how}: {}", names.join(", "));
                    return list;
                }
                Err(e) => {
                    bump(&c.trunk_failures);
                    tracing::warn!("trunk: resolving {domain} failed: {e:#}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }
}

/// Why a connection to a target ended.
#[derive(Debug)]
enum Ended {
    Closed,
    KeepAliveTimeout,
    Unavailable,
}

/// Dials targets in turn and serves the connection; runs until the node stops.
pub async fn run(cfg: TrunkConfig, shared: Shared) {
    let c = shared.counters.clone();
    let mut failover = Failover::new(cfg.targets.get(&c).await, cfg.hold);
    loop {
        let now = Instant::now();
        let Some((i, target)) = failover.next(now).map(|(i, t)| (i, t.clone())) else {
            // Nothing to try (an empty list): ask again later.
            tokio::time::sleep(Duration::from_secs(5)).await;
            failover = Failover::new(cfg.targets.get(&c).await, cfg.hold);
            continue;
        };
        // Every target held back: look again (DNS may have moved the
        // cloud), then wait for the first to come free.
        if let Some(until) = failover.held_until(i).filter(|&u| u > now) {
            if matches!(cfg.targets, Targets::Dns { .. }) {
                let fresh = cfg.targets.get(&c).await;
                if fresh != failover.targets() {
                    failover = Failover::new(fresh, cfg.hold);
                    continue;
                }
            }
            tokio::time::sleep_until(until.into()).await;
        }
        match connect(&cfg, &target, &shared).await {
            Err(e) => {
                bump(&c.trunk_failures);
                tracing::warn!("trunk: target {target} failed: {e}");
                failover.failed(Instant::now(), i);
            }
            Ok((conn, responses, local)) => {
                bump(&c.trunk_connects);
                failover.succeeded(i);
                tracing::info!("trunk: connected to {target} from {local}");
                *cfg.path.lock().expect("cloud path") = Some(super::paths::CloudConn {
                    out: conn.out.clone(),
                    local,
                    public: None,
                });
                let ended = keep(&cfg, &target, local, conn, responses, &c).await;
                *cfg.path.lock().expect("cloud path") = None;
                tracing::info!("trunk: connection to {target} ended: {ended:?}");
                bump(&c.trunk_failures);
                failover.failed(Instant::now(), i);
            }
        }
    }
}

type Dialled = (stream::Connection, mpsc::Receiver<Box<Parsed>>, SocketAddr);

async fn connect(cfg: &TrunkConfig, target: &Target, shared: &Shared) -> anyhow::Result<Dialled> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    set_dscp(&socket, target.addr.is_ipv6(), cfg.dscp)?;
    let tcp = tokio::time::timeout(cfg.connect_timeout, socket.connect(target.addr))
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))??;
    let local = tcp.local_addr()?;
    let ends = stream::ends(&tcp);
    let (tx, rx) = mpsc::channel(64);
    let conn = match target.transport {
        Wire::Tcp => stream::spawn(tcp, ends, shared.clone(), Some(tx)),
        Wire::Tls => {
            let config = cfg
                .tls
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no CA for a TLS target"))?;
            let name = match &cfg.server_name {
                Some(n) => ServerName::try_from(n.clone())?,
                None => ServerName::IpAddress(target.addr.ip().into()),
            };
            let tls = tokio::time::timeout(
                cfg.connect_timeout,
                TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| anyhow::anyhow!("TLS handshake timed out"))?
            .map_err(|e| {
                bump(&shared.counters.tls_handshake_failures);
                anyhow::anyhow!("TLS handshake failed: {e}")
            })?;
            stream::spawn(tls, ends, shared.clone(), Some(tx))
        }
        Wire::Udp => anyhow::bail!("the cloud trunk runs over TCP or TLS"),
    };
    Ok((conn, rx, local))
}

/// An OPTIONS keep-alive from `local` to `target`.
fn options(target: &Target, local: SocketAddr, cseq: u32, branch: &str) -> Vec<u8> {
    let (scheme, via) = match target.transport {
        Wire::Tls => ("sips", "TLS"),
        _ => ("sip", "TCP"),
    };
    format!(
        "OPTIONS {scheme}:{addr} SIP/2.0\r\nVia: SIP/2.0/{via} {local};branch={branch};rport;alias\r\nMax-Forwards: 70\r\n\
         From: <{scheme}:pbxlink@{local}>;tag=trunk\r\nTo: <{scheme}:{addr}>\r\nCall-ID: trunk-keepalive-{local}\r\n\
         CSeq: {cseq} OPTIONS\r\nUser-Agent: pbxlink\r\nContent-Length: 0\r\n\r\n",
        addr = target.addr
    )
    .into_bytes()
}

/// Where the top Via of a response to our request says the peer saw it
/// come from (RFC 3581 `received` and `rport`), if it says.
fn seen_from(via: &str, local: SocketAddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for param in via.split(';').skip(1) {
        match param.trim().split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("received") => {
                ip = v.trim().trim_matches(['[', ']']).parse().ok();
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("rport") => {
                port = v.trim().parse().ok();
            }
            _ => {}
        }
    }
    if ip.is_none() && port.is_none() {
        return None;
    }
    Some(SocketAddr::new(
        ip.unwrap_or(local.ip()),
        port.unwrap_or(local.port()),
    ))
}

/// Serves one connection: keep-alives out, their responses matched.
async fn keep(
    cfg: &TrunkConfig,
    target: &Target,
    local: SocketAddr,
    mut conn: stream::Connection,
    mut responses: mpsc::Receiver<Box<Parsed>>,
    c: &Counters,
) -> Ended {
    let mut pending: HashMap<ClientKey, NonInviteClient> = HashMap::new();
    let mut tick = tokio::time::interval(cfg.ping);
    let mut cseq = 0u32;
    let matched = |p: Box<Parsed>, pending: &mut HashMap<ClientKey, NonInviteClient>| {
        let code = pbxlink_sip::message::status_code(&p.head.start_line);
        let Some(tx) = client_key(&p.head).and_then(|k| pending.get_mut(&k)) else {
            bump(&c.responses_unmatched);
            return code;
        };
        // Behind NAT the cloud sees another address: calls must name it.
        let seen = p.head.get("Via").and_then(|v| seen_from(v, local));
        if let Some(seen) = seen {
            if let Some(conn) = cfg.path.lock().expect("cloud path").as_mut() {
                if conn.seen_as() != seen {
                    tracing::info!("trunk: the cloud sees this connection as {seen}");
                    conn.public = (seen != local).then_some(seen);
                }
            }
        }
        tx.handle_response(Instant::now(), code);
        while let Some(o) = tx.poll_output() {
            if let Output::Event(Event::Response(200..=299)) = o {
                bump(&c.trunk_pings_ok);
            }
        }
        code
    };
    loop {
        // The keep-alives' retransmissions and time-outs when they are due
        // (over TLS only Timer F: 32 s), not on a fixed tick.
        let due = pending
            .values()
            .filter_map(NonInviteClient::poll_timeout)
            .min();
        let timers = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut conn.reader => {
                // Responses read before the close still count.
                while let Ok(p) = responses.try_recv() {
                    matched(p, &mut pending);
                }
                return Ended::Closed;
            }
            _ = tick.tick() => {
                cseq += 1;
                let branch = format!("z9hG4bK-pbxlink-{:x}-{cseq}", local.port());
                let now = Instant::now();
                let mut tx = NonInviteClient::new(now, Transport::Reliable, Timers::default(), options(target, local, cseq, &branch));
                while let Some(o) = tx.poll_output() {
                    if let Output::Transmit(b) = o {
                        if !stream::queue(&conn.out, b, c) {
                            return Ended::Closed;
                        }
                        bump(&c.trunk_pings_sent);
                    }
                }
                pending.insert(ClientKey { branch, method: "OPTIONS".into() }, tx);
            }
            Some(p) = responses.recv() => {
                if matched(p, &mut pending) == 503 {
                    return Ended::Unavailable;
                }
            }
            () = timers => {
                let now = Instant::now();
                for tx in pending.values_mut() {
                    tx.handle_timeout(now);
                    while let Some(o) = tx.poll_output() {
                        if let Output::Event(Event::Timeout) = o {
                            return Ended::KeepAliveTimeout;
                        }
                    }
                }
                pending.retain(|_, tx| tx.state() != pbxlink_sip::transaction::State::Terminated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_the_cloud_saw_comes_from_received_and_rport() {
        let local: SocketAddr = "10.77.1.2:40000".parse().unwrap();
        let seen = |via: &str| seen_from(via, local);
        assert_eq!(
            seen(
                "SIP/2.0/TLS 10.77.1.2:40000;branch=z9hG4bK1;received=10.77.2.1;rport=61000;alias"
            ),
            Some("10.77.2.1:61000".parse().unwrap())
        );
        assert_eq!(
            seen("SIP/2.0/TLS 10.77.1.2:40000;rport=40000;branch=z9hG4bK1"),
            Some(local),
            "same address: no NAT"
        );
        assert_eq!(
            seen("SIP/2.0/TLS [2001:db8::1]:5061;received=[2001:db8::9];rport=5062"),
            Some("[2001:db8::9]:5062".parse().unwrap())
        );
        assert_eq!(
            seen("SIP/2.0/TLS 10.77.1.2:40000;branch=z9hG4bK1;rport"),
            None
        );
        assert_eq!(seen("SIP/2.0/TLS 10.77.1.2:40000;received=nonsense"), None);
    }
}
