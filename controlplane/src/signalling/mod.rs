//! `pbxlink sip-listen`: the SIP transports and transaction layer on their
//! own, until the B2BUA (issue 6) sits on them. Listeners on UDP, TCP and
//! TLS answer OPTIONS (the keep-alive PBX trunks and clouds send) with 200,
//! CANCEL per RFC 3261 §9.2, other requests with 501, and anything
//! malformed with the 400 the SIP core names, or a counted drop. With
//! `--trunk-target`, the node also dials the cloud trunk (see [`trunk`]).
//! Signalling packets carry DSCP CS3 unless told otherwise.
//!
//! Thin tokio loops around the sans-IO core in `pbxlink-sip`: [`core`]
//! decides, [`stream`] and the UDP loop here move bytes.

mod calls;
#[cfg(test)]
mod calls_bounded;
mod core;
mod counters;
mod dns;
mod dscp;
mod paths;
pub mod pbx_link;
mod peer;
mod reliability;
mod softphones;
mod stream;
mod subscriber;
mod trunk;
pub mod udp;

use anyhow::{Context, bail};
use core::{Core, Inbound, Peer};
pub use counters::Counters;
pub use dscp::set_dscp;
use pbxlink_b2bua::leg::Side;
use pbxlink_sip::framing::{self, Frame};
use pbxlink_sip::reject;
use pbxlink_sip::resolve::{Target, Transport as Wire};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stream::Shared;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

/// Options of `pbxlink sip-listen`.
#[derive(Debug, clap::Args)]
pub struct SipListenArgs {
    /// Which SPEC §3 ports the listeners default to: the PBX trunk
    /// (5060, TLS 5061), the subscriber side (5070/5071) or the embedded
    /// variants (19060/19061), on `--host`.
    #[arg(long, value_enum, default_value_t = Role::PbxTrunk)]
    role: Role,
    /// Address the role's default ports are bound on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// UDP address to listen on (default: the role's port).
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// TCP address to listen on (default: the role's port).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// TLS address to listen on (default with --cert/--key: the role's TLS port).
    #[arg(long)]
    tls: Option<SocketAddr>,
    /// Certificate chain (PEM) the TLS listener presents; with --key,
    /// turns the TLS listener on.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of that certificate.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// A cloud trunk target, `tls:ADDR:PORT` or `tcp:ADDR:PORT`; repeat
    /// for failover, in order of preference (RFC 3263 §4.3).
    #[arg(long = "trunk-target", conflicts_with = "trunk_domain")]
    trunk_targets: Vec<Target>,
    /// The cloud's SIP domain, resolved per RFC 3263 (NAPTR, SRV, A/AAAA)
    /// into TLS targets tried in order; the certificate must name it.
    #[arg(long)]
    trunk_domain: Option<String>,
    /// DNS server (ADDR:PORT) for --trunk-domain (default: the system's).
    #[arg(long)]
    dns_server: Option<SocketAddr>,
    /// CA certificates (PEM) the cloud's certificate must chain to.
    /// Required for TLS targets: certificates are always verified.
    #[arg(long)]
    trunk_ca: Option<PathBuf>,
    /// Name the cloud's certificate must carry (default: the target's IP).
    #[arg(long)]
    trunk_server_name: Option<String>,
    /// Seconds between OPTIONS keep-alives on the trunk.
    #[arg(long, default_value_t = 30)]
    trunk_ping: u64,
    /// Seconds a failed trunk target is set aside before it is tried again.
    #[arg(long, default_value_t = 30)]
    trunk_hold: u64,
    /// DSCP of signalling packets (CS3 = 24; 0 leaves them unmarked).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(0..64))]
    dscp: u8,
    /// Exit after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Most simultaneous accepted connections, TCP and TLS together.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a connection may stay silent.
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds a connection may take to finish a started message (and a
    /// TLS handshake).
    #[arg(long, default_value_t = 10)]
    partial_timeout: u64,
}

/// Whose SIP the listeners take (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The PBX's SIP trunk: 5060, TLS 5061.
    PbxTrunk,
    /// The subscriber side: 5070, TLS 5071.
    Subscriber,
    /// Embedded variants: 19060, TLS 19061.
    Embedded,
}

impl Role {
    /// (UDP/TCP port, TLS port).
    pub fn ports(self) -> (u16, u16) {
        match self {
            Role::PbxTrunk => (5060, 5061),
            Role::Subscriber => (5070, 5071),
            Role::Embedded => (19060, 19061),
        }
    }
}

async fn serve_udp(
    socket: UdpSocket,
    core: Arc<Mutex<Core>>,
    c: Arc<Counters>,
    mut outgoing: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    out: udp::UdpOut,
    capture: Option<crate::capture::Capture>,
) {
    let mut buf = vec![0u8; 65_536];
    let local = socket.local_addr().ok();
    // A copy of each message for the capture server, both ways.
    let copy = |src: SocketAddr, dst: SocketAddr, msg: &[u8]| {
        if let Some(c) = &capture {
            c.sip(src, dst, pbxlink_hep::Transport::Udp, msg);
        }
    };
    // The core's timers run when it says (`Core::next_tick`): every tick
    // while anything is in flight, at the PBX watch's next OPTIONS when
    // quiet; a message that turns it busy elsewhere (the cloud's trunk)
    // kicks this loop awake.
    let kick = core.lock().expect("core lock").kick();
    let mut due = Some(Instant::now());
    loop {
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {
                due = None;
                let sends = {
                    let mut core = core.lock().expect("core lock");
                    core.tick(Instant::now());
                    core.timeouts(Instant::now())
                };
                for (to, bytes) in sends {
                    if to.from == udp::Listener::Trunk {
                        if let Some(l) = local {
                            copy(l, to.to, &bytes);
                        }
                        let _ = socket.send_to(&bytes, to.to).await;
                    } else {
                        out.send(to, bytes);
                    }
                }
            }
            Some((to, bytes)) = outgoing.recv() => {
                if let Some(l) = local {
                    copy(l, to, &bytes);
                }
                let _ = socket.send_to(&bytes, to).await;
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let replies = match framing::datagram(&buf[..n]) {
                    Ok(Frame::Message(msg)) => {
                        if let Some(l) = local {
                            copy(from, l, &msg);
                        }
                        match core.lock().expect("core lock").receive(Instant::now(), &msg, Peer::Udp(from), Side::Pbx) {
                            Inbound::Reply(r) => r,
                            Inbound::Response(_) => {
                                c.responses_ignored.fetch_add(1, Ordering::Relaxed);
                                Vec::new()
                            }
                        }
                    }
                    Ok(_) => {
                        c.keepalives.fetch_add(1, Ordering::Relaxed);
                        Vec::new()
                    }
                    Err(e) => match reject::response(&buf[..n], &e.into()) {
                        Some(r) => {
                            c.rejected.fetch_add(1, Ordering::Relaxed);
                            vec![r]
                        }
                        None => {
                            c.dropped.fetch_add(1, Ordering::Relaxed);
                            Vec::new()
                        }
                    },
                };
                for r in replies {
                    if let Some(l) = local {
                        copy(l, from, &r);
                    }
                    let _ = socket.send_to(&r, from).await;
                }
            }
            () = kick.notified() => {}
        }
        // A tick already due stays due: a stream of messages must not
        // push it back.
        let want = core.lock().expect("core lock").next_tick(Instant::now());
        due = match (due, want) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Accepts connections on `listener`, TLS-wrapped when `tls` is given.
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Shared,
    slots: Arc<Semaphore>,
) {
    let c = shared.counters.clone();
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        if !shared.core.lock().expect("core lock").trusts(peer.ip()) {
            continue; // not the PBX: closed at once
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            c.connections_refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropping the stream closes it
        };
        c.connections.fetch_add(1, Ordering::Relaxed);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let ends = stream::ends(&tcp);
            let conn = match tls {
                None => stream::spawn(tcp, ends, shared.clone(), None),
                Some(acceptor) => {
                    match tokio::time::timeout(shared.partial, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => stream::spawn(tls, ends, shared.clone(), None),
                        _ => {
                            shared
                                .counters
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("tls: handshake with {peer} failed");
                            return;
                        }
                    }
                }
            };
            drop(conn.out);
            let _ = conn.reader.await;
            drop(permit);
        });
    }
}

async fn listen_tcp(addr: SocketAddr, dscp: u8) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding TCP {addr}"))?;
    // Accepted connections inherit the marking.
    set_dscp(&l, addr.is_ipv6(), dscp)?;
    Ok(l)
}

pub use calls::{CallsConfig, SubscriberCalls};
pub use core::Trust;
pub use paths::CloudPath;
pub use softphones::Softphones;
pub use subscriber::SubscriberSetup;

/// The (UDP/TCP, TLS) ports of a listener role named in a configuration.
pub fn role_ports(role: &str) -> (u16, u16) {
    match role {
        "subscriber" => Role::Subscriber.ports(),
        "embedded" => Role::Embedded.ports(),
        _ => Role::PbxTrunk.ports(),
    }
}

impl SipListenArgs {
    /// The listeners and trunk of `pbxlink run`, from its configuration.
    pub fn for_gateway(cfg: &crate::config::Config, lan: SocketAddr, seconds: Option<u64>) -> Self {
        let (trunk_targets, trunk_domain) = match &cfg.cloud {
            crate::config::CloudTargets::Domain(d) => (Vec::new(), Some(d.clone())),
            crate::config::CloudTargets::Static(t) => (t.clone(), None),
        };
        SipListenArgs {
            role: Role::PbxTrunk,
            host: lan.ip(),
            udp: Some(lan),
            tcp: Some(lan),
            tls: None,
            cert: None,
            key: None,
            trunk_targets,
            trunk_domain,
            dns_server: None,
            trunk_ca: Some(cfg.cloud_ca.clone()),
            trunk_server_name: cfg.cloud_server_name.clone(),
            trunk_ping: cfg.keepalive_seconds,
            trunk_hold: 30,
            dscp: cfg.dscp,
            seconds,
            max_connections: cfg.sip_max_connections,
            idle_timeout: cfg.sip_idle_timeout,
            partial_timeout: cfg.sip_partial_timeout,
        }
    }
}

/// What the call driver runs with (none: `sip-listen` answers requests
/// without calls).
pub struct CallsSetup {
    /// The running data plane.
    pub plane: pbxlink_dataplane::engine::DataPlane,
    /// Relay ports.
    pub ports: pbxlink_dataplane::ports::PortPool,
    /// Addresses and identities of the calls.
    pub config: calls::CallsConfig,
    /// Who may use the PBX trunk.
    pub trust: Option<core::Trust>,
    /// Where call records go.
    pub cdrs: Option<PathBuf>,
    /// Where events for the cloud platform go (none: no tunnel).
    pub events: Option<crate::events::EventSink>,
    /// The gateway's alarms (none: no admin page keeps them).
    pub alarms: Option<Arc<crate::alarms::Alarms>>,
    /// Where HEP3 copies go (none: capture off).
    pub capture: Option<crate::config::CaptureSettings>,
    /// The admin page's live view (none: no admin page).
    pub live: Option<Arc<crate::live_calls::LiveCalls>>,
}

/// The SIP side, running: what the node drains when it stops.
pub struct Sip {
    core: Arc<Mutex<Core>>,
}

impl Sip {
    /// Drains the calls (see [`shut_down`]).
    pub async fn drain(&self, drain: Duration, term: &mut tokio::signal::unix::Signal) {
        shut_down(&self.core, drain, term).await;
    }
}

/// Starts the SIP side on the runtime it is called from: the listeners
/// (UDP, TCP, TLS), the subscriber side, the TCP link to the PBX and the
/// cloud trunk, and the call driver when `calls` is given. `counters` and
/// `cloud_path` are the node's, so the admin page and the tunnel read
/// the same ones.
pub async fn start(
    args: &SipListenArgs,
    c: Arc<Counters>,
    cloud_path: CloudPath,
    calls: Option<CallsSetup>,
    sub: Option<SubscriberSetup>,
) -> anyhow::Result<Sip> {
    let trunk_tls =
        args.trunk_domain.is_some() || args.trunk_targets.iter().any(|t| t.transport == Wire::Tls);
    if trunk_tls && args.trunk_ca.is_none() {
        bail!("a TLS trunk target needs --trunk-ca: the cloud's certificate is always verified");
    }
    if args.trunk_targets.iter().any(|t| t.transport == Wire::Udp) {
        bail!("trunk targets run over tcp: or tls:, not udp:");
    }
    let (plain_port, tls_port) = args.role.ports();
    let udp_addr = args.udp.unwrap_or(SocketAddr::new(args.host, plain_port));
    let tcp_addr = args.tcp.unwrap_or(SocketAddr::new(args.host, plain_port));
    let server_tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some((
            args.tls.unwrap_or(SocketAddr::new(args.host, tls_port)),
            TlsAcceptor::from(crate::tls::server(cert, key)?),
        )),
        _ if args.tls.is_some() => bail!("--tls needs --cert and --key"),
        _ => None,
    };
    let client_tls = args
        .trunk_ca
        .as_deref()
        .map(crate::tls::client)
        .transpose()?;
    let (udp_out, udp_outgoing) = mpsc::unbounded_channel();
    let (sub_out, sub_outgoing) = mpsc::unbounded_channel();
    let sub_socket = match &sub {
        Some(s) => Some(
            subscriber::bind(&s.config, args.dscp)
                .await
                .with_context(|| {
                    format!(
                        "binding the subscriber side on UDP {} ([subscriber] listen, or \"off\")",
                        s.config.listen
                    )
                })?,
        ),
        None => None,
    };
    let udp_out = udp::UdpOut::new(udp_out, sub_socket.is_some().then_some(sub_out));
    let pbx_link = calls
        .as_ref()
        .and_then(|b| b.config.pbx_tcp.clone().map(|p| (b.config.pbx_addr, p)));
    let keepalive = calls.as_ref().map(|b| b.config.pbx_keepalive);
    let capture = match calls.as_ref().and_then(|b| b.capture) {
        Some(s) => Some(
            crate::capture::Capture::start(s.hep, s.capture_id, c.capture.clone())
                .context("starting the HEP3 capture ([capture] hep)")?,
        ),
        None => None,
    };
    let core = Arc::new(Mutex::new(match calls {
        Some(b) => Core::with_calls(
            c.clone(),
            calls::Calls::new(
                b.plane,
                b.ports,
                b.config,
                udp_out.clone(),
                cloud_path.clone(),
                c.clone(),
                calls::RecordSinks {
                    cdrs: b.cdrs,
                    events: b.events,
                    alarms: b.alarms,
                    capture: capture.clone(),
                    live: b.live,
                },
            ),
            b.trust,
        ),
        None => Core::new(c.clone()),
    }));
    let shared = Shared {
        core: core.clone(),
        counters: c.clone(),
        idle: Duration::from_secs(args.idle_timeout),
        partial: Duration::from_secs(args.partial_timeout),
        side: Side::Pbx,
        capture: capture.clone(),
    };
    let udp = UdpSocket::bind(udp_addr)
        .await
        .with_context(|| format!("binding UDP {udp_addr}"))?;
    set_dscp(&udp, udp_addr.is_ipv6(), args.dscp)?;
    let tcp = listen_tcp(tcp_addr, args.dscp).await?;
    // One cap over TCP and TLS together.
    let slots = Arc::new(Semaphore::new(args.max_connections));
    let mut line = format!(
        "sip-listen: UDP {} TCP {}",
        udp.local_addr()?,
        tcp.local_addr()?
    );
    if let Some((addr, acceptor)) = server_tls {
        let l = listen_tcp(addr, args.dscp).await?;
        line.push_str(&format!(" TLS {}", l.local_addr()?));
        tokio::spawn(accept(l, Some(acceptor), shared.clone(), slots.clone()));
    }
    tracing::info!("{line} dscp {}", args.dscp);
    tokio::spawn(serve_udp(
        udp,
        core.clone(),
        c.clone(),
        udp_outgoing,
        udp_out,
        capture,
    ));
    if let (Some(setup), Some(socket)) = (sub, sub_socket) {
        tracing::info!(
            "subscriber: UDP {} (Softphone users registering to {})",
            socket.local_addr()?,
            setup.config.registrar
        );
        tokio::spawn(subscriber::run(
            socket,
            setup,
            core.clone(),
            c.clone(),
            sub_outgoing,
        ));
    }
    tokio::spawn(accept(tcp, None, shared.clone(), slots));
    if let Some((pbx, path)) = pbx_link {
        // Dialled by the gateway, like the cloud trunk: the PBX watch's
        // OPTIONS keep it, not the idle limit of accepted connections.
        let keepalive = keepalive.unwrap_or(Duration::ZERO);
        tokio::spawn(pbx_link::run(
            pbx,
            Shared {
                idle: shared.idle.max(3 * keepalive),
                ..shared.clone()
            },
            path,
            args.dscp,
            c.clone(),
        ));
    }
    let targets = match &args.trunk_domain {
        Some(domain) => Some(trunk::Targets::Dns {
            resolver: Box::new(dns::resolver(args.dns_server)?),
            domain: domain.clone(),
            transports: vec![Wire::Tls],
        }),
        None if !args.trunk_targets.is_empty() => {
            Some(trunk::Targets::Static(args.trunk_targets.clone()))
        }
        None => None,
    };
    if let Some(targets) = targets {
        let cfg = trunk::TrunkConfig {
            targets,
            hold: Duration::from_secs(args.trunk_hold),
            tls: client_tls,
            // RFC 5922: a resolved domain is what the certificate names.
            server_name: args
                .trunk_server_name
                .clone()
                .or_else(|| args.trunk_domain.clone()),
            ping: Duration::from_secs(args.trunk_ping.max(1)),
            connect_timeout: Duration::from_secs(args.partial_timeout),
            dscp: args.dscp,
            path: cloud_path.clone(),
        };
        // `[sip] idle_timeout` is for connections peers open to the
        // gateway; the trunk it dialled is kept alive by its own pings
        // and judged dead by their missing answers, so a short idle
        // limit must not cut it between two pings.
        let cloud_side = Shared {
            side: Side::Cloud,
            idle: shared.idle.max(3 * cfg.ping),
            ..shared.clone()
        };
        tokio::spawn(trunk::run(cfg, cloud_side));
    }
    Ok(Sip { core })
}

/// Drains the calls: those up may go on for `drain` (new ones are refused
/// with Retry-After) or until a second SIGTERM/SIGINT; then the rest are
/// hung up, and their records wait (a bounded time) for the relays' final
/// counters. The UDP loop keeps ticking the core meanwhile.
async fn shut_down(core: &Mutex<Core>, drain: Duration, term: &mut tokio::signal::unix::Signal) {
    let in_progress = |core: &Mutex<Core>| {
        let mut core = core.lock().expect("core lock");
        core.calls()
            .map_or((0, false), |calls| (calls.len(), calls.records_pending()))
    };
    let (up, _) = in_progress(core);
    if let Some(calls) = core.lock().expect("core lock").calls() {
        calls.counters().draining.store(1, Ordering::Relaxed);
    }
    if up > 0 && !drain.is_zero() {
        let until = Instant::now() + drain;
        if let Some(calls) = core.lock().expect("core lock").calls() {
            calls.drain(until);
        }
        tracing::info!(
            "draining: {up} call(s) up may go on for {} s; new calls get 503 with Retry-After \
             (SIGTERM again: hang up now)",
            drain.as_secs()
        );
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
            if in_progress(core).0 == 0 || Instant::now() >= until {
                break;
            }
        }
    }
    let (up, _) = in_progress(core);
    if up > 0 {
        tracing::info!("shutdown: hanging up {up} call(s)");
        if let Some(calls) = core.lock().expect("core lock").calls() {
            calls.hang_up_all(Instant::now());
        }
        // The BYEs leave through the transports' loops.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // BYEs answered, relays' final counters in, records written: bounded.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let (up, pending) = in_progress(core);
        if up == 0 && !pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_marks_v4_and_v6_sockets() {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_dscp(&v4, false, 24).unwrap();
        assert_eq!(socket2::SockRef::from(&v4).tos_v4().unwrap(), 0x60);
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            set_dscp(&v6, true, 24).unwrap();
            assert_eq!(socket2::SockRef::from(&v6).tclass_v6().unwrap(), 0x60);
        }
    }
}
