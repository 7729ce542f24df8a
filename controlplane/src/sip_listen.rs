//! `pbxlink sip-listen`: the SIP transports on their own, answering OPTIONS
//! (the keep-alive a PBX trunk and a cloud send) with 200, other requests
//! with 501 until the B2BUA lands, and anything malformed with the 400 the
//! SIP core names, or a counted drop. UDP and TCP, with the stream limits
//! (idle and partial-message timeouts, connection cap). A thin tokio loop
//! around the sans-IO core in `pbxlink-sip`.

use anyhow::Context;
use pbxlink_sip::framing::{self, Frame, StreamFramer};
use pbxlink_sip::normalize::Head;
use pbxlink_sip::transaction::{
    InviteServer, NonInviteServer, Output, ServerKey, State, Timers, Transport, server_key,
};
use pbxlink_sip::{parse, reject};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// Options of `pbxlink sip-listen`.
#[derive(Debug, clap::Args)]
pub struct SipListenArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:5060")]
    udp: SocketAddr,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:5060")]
    tcp: SocketAddr,
    /// Exit after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Most simultaneous TCP connections.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a TCP connection may stay silent.
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds a TCP connection may take to finish a started message.
    #[arg(long, default_value_t = 10)]
    partial_timeout: u64,
}

/// What the listener saw, by outcome.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    not_implemented: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    responses_ignored: AtomicU64,
    retransmissions: AtomicU64,
    stateless: AtomicU64,
    keepalives: AtomicU64,
    connections: AtomicU64,
    connections_refused: AtomicU64,
    closed_on_error: AtomicU64,
}

impl Counters {
    fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "requests={} ok={} not_implemented={} rejected={} dropped={} responses_ignored={} retransmissions={} stateless={} keepalives={} connections={} connections_refused={} closed_on_error={}",
            g(&self.requests),
            g(&self.ok),
            g(&self.not_implemented),
            g(&self.rejected),
            g(&self.dropped),
            g(&self.responses_ignored),
            g(&self.retransmissions),
            g(&self.stateless),
            g(&self.keepalives),
            g(&self.connections),
            g(&self.connections_refused),
            g(&self.closed_on_error)
        )
    }
}

/// A response to a parsed request: 200 for OPTIONS, 501 otherwise; none for ACK.
fn answer(head: &Head, method: &str) -> Option<(u16, Vec<u8>)> {
    if method == "ACK" {
        return None;
    }
    let (code, phrase) = if method == "OPTIONS" {
        (200, "OK")
    } else {
        (501, "Not Implemented")
    };
    let mut out = format!("SIP/2.0 {code} {phrase}\r\n");
    for via in head.all("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    let to = head.get("To")?;
    let call_id = head.get("Call-ID")?;
    let to = if to.contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=pbxlink-{:08x}", call_id.len() as u32 ^ 0x5eed)
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {}\r\nAllow: OPTIONS\r\nAccept: application/sdp\r\nSupported: \r\nContent-Length: 0\r\n\r\n",
        head.get("From")?,
        head.get("CSeq")?
    ));
    Some((code, out.into_bytes()))
}

/// Handles one framed message; returns what to send back, if anything.
fn handle(msg: &[u8], c: &Counters) -> Option<Vec<u8>> {
    match parse(msg) {
        Ok(p) => {
            let Some(method) = pbxlink_sip::message::request_method(&p.head.start_line) else {
                c.responses_ignored.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            c.requests.fetch_add(1, Ordering::Relaxed);
            match answer(&p.head, method) {
                Some((200, r)) => {
                    c.ok.fetch_add(1, Ordering::Relaxed);
                    Some(r)
                }
                Some((_, r)) => {
                    c.not_implemented.fetch_add(1, Ordering::Relaxed);
                    Some(r)
                }
                None => None,
            }
        }
        Err(e) => match reject::response(msg, &e) {
            Some(r) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            None => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        },
    }
}

/// Server transactions of the UDP transport. Bounded: past the cap,
/// requests are answered statelessly (and counted).
const UDP_TRANSACTIONS: usize = 65_536;

enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ServerTx {
    fn poll_output(&mut self) -> Option<Output> {
        match self {
            ServerTx::Invite(t) => t.poll_output(),
            ServerTx::NonInvite(t) => t.poll_output(),
        }
    }
    fn state(&self) -> State {
        match self {
            ServerTx::Invite(t) => t.state(),
            ServerTx::NonInvite(t) => t.state(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            ServerTx::Invite(t) => t.handle_timeout(now),
            ServerTx::NonInvite(t) => t.handle_timeout(now),
        }
    }
}

async fn flush(socket: &UdpSocket, tx: &mut ServerTx, to: SocketAddr) {
    while let Some(o) = tx.poll_output() {
        if let Output::Transmit(bytes) = o {
            let _ = socket.send_to(&bytes, to).await;
        }
    }
}

/// A UDP request: matched to its server transaction (retransmissions get
/// the last response again; an ACK completes an INVITE's), or answered in a
/// new one.
async fn udp_request(
    socket: &UdpSocket,
    table: &mut HashMap<ServerKey, (ServerTx, SocketAddr)>,
    msg: &[u8],
    from: SocketAddr,
    c: &Counters,
) {
    let now = Instant::now();
    let parsed = parse(msg);
    let key = parsed.as_ref().ok().and_then(|p| server_key(&p.head));
    if let Some((tx, to)) = key.as_ref().and_then(|k| table.get_mut(k)) {
        let is_ack = parsed
            .as_ref()
            .ok()
            .and_then(|p| pbxlink_sip::message::request_method(&p.head.start_line))
            == Some("ACK");
        match tx {
            ServerTx::Invite(t) if is_ack => t.handle_ack(now),
            ServerTx::Invite(t) => t.handle_retransmission(),
            ServerTx::NonInvite(t) => t.handle_retransmission(),
        }
        if !is_ack {
            c.retransmissions.fetch_add(1, Ordering::Relaxed);
        }
        let to = *to;
        flush(socket, tx, to).await;
        return;
    }
    let Some(reply) = handle(msg, c) else { return };
    let (Ok(p), Some(key)) = (parsed, key) else {
        let _ = socket.send_to(&reply, from).await;
        return;
    };
    let code = std::str::from_utf8(&reply[8..11])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    if table.len() >= UDP_TRANSACTIONS {
        c.stateless.fetch_add(1, Ordering::Relaxed);
        let _ = socket.send_to(&reply, from).await;
        return;
    }
    let mut tx = if pbxlink_sip::message::request_method(&p.head.start_line) == Some("INVITE") {
        ServerTx::Invite(InviteServer::new(Transport::Unreliable, Timers::default()))
    } else {
        ServerTx::NonInvite(NonInviteServer::new(
            Transport::Unreliable,
            Timers::default(),
        ))
    };
    match &mut tx {
        ServerTx::Invite(t) => t.send_response(now, code, reply),
        ServerTx::NonInvite(t) => t.send_response(now, code, reply),
    }
    flush(socket, &mut tx, from).await;
    table.insert(key, (tx, from));
}

async fn serve_udp(socket: UdpSocket, c: Arc<Counters>) {
    let mut buf = vec![0u8; 65_536];
    let mut table: HashMap<ServerKey, (ServerTx, SocketAddr)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                for (tx, to) in table.values_mut() {
                    tx.handle_timeout(now);
                    let to = *to;
                    flush(&socket, tx, to).await;
                }
                table.retain(|_, (tx, _)| tx.state() != State::Terminated);
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                match framing::datagram(&buf[..n]) {
                    Ok(Frame::Message(msg)) => udp_request(&socket, &mut table, &msg, from, &c).await,
                    Ok(_) => {
                        c.keepalives.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let r = reject::response(&buf[..n], &e.into());
                        let counter = if r.is_some() { &c.rejected } else { &c.dropped };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if let Some(r) = r {
                            let _ = socket.send_to(&r, from).await;
                        }
                    }
                }
            }
        }
    }
}

async fn serve_tcp(mut stream: TcpStream, c: Arc<Counters>, idle: Duration, partial: Duration) {
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let limit = if framer.pending() > 0 { partial } else { idle };
        let n = match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                c.closed_on_error.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if framer.push(&buf[..n]).is_err() {
            c.closed_on_error.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while let Some(frame) = framer.next_frame() {
            let reply = match frame {
                Ok(Frame::Message(msg)) => handle(&msg, &c),
                Ok(Frame::Ping) => {
                    c.keepalives.fetch_add(1, Ordering::Relaxed);
                    Some(b"\r\n".to_vec())
                }
                Ok(Frame::Pong) => {
                    c.keepalives.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(_) => {
                    // Framing is lost on this stream: it cannot resume.
                    c.closed_on_error.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            if let Some(r) = reply {
                if stream.write_all(&r).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `pbxlink sip-listen`.
pub fn run(args: &SipListenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = Arc::new(Counters::default());
        let udp = UdpSocket::bind(args.udp)
            .await
            .with_context(|| format!("binding UDP {}", args.udp))?;
        let tcp = TcpListener::bind(args.tcp)
            .await
            .with_context(|| format!("binding TCP {}", args.tcp))?;
        println!(
            "sip-listen: UDP {} TCP {}",
            udp.local_addr()?,
            tcp.local_addr()?
        );
        tokio::spawn(serve_udp(udp, c.clone()));
        let slots = Arc::new(Semaphore::new(args.max_connections));
        let (idle, partial) = (
            Duration::from_secs(args.idle_timeout),
            Duration::from_secs(args.partial_timeout),
        );
        let cc = c.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    cc.connections_refused.fetch_add(1, Ordering::Relaxed);
                    continue; // dropping the stream closes it
                };
                cc.connections.fetch_add(1, Ordering::Relaxed);
                let c = cc.clone();
                tokio::spawn(async move {
                    serve_tcp(stream, c, idle, partial).await;
                    drop(permit);
                });
            }
        });
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = async {
                    match args.seconds {
                        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            anyhow::Ok(())
        };
        stop.await?;
        println!("final: {}", c.line());
        anyhow::Ok(())
    })
}
