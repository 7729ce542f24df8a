//! cloudsim's SIP-TLS endpoint: what the cloud platform's SBC is to the
//! gateway. The gateway dials it (its cloud trunk) and keeps the
//! connection; cloudsim answers its OPTIONS and its calls (200 with an
//! RTP/SAVP answer and a fresh SDES key, then echoes the media it
//! decrypts, re-encrypted with its own key), and places calls toward the
//! PBX over the same connection (an RTP/SAVP offer, then a 1 kHz tone).
//! Every SRTP packet is checked with libsrtp2 and counted: decrypted, or
//! refused; sequence gaps in what decrypts are counted as lost. The last
//! 1,000 ended calls are kept for the control API; outcomes and media
//! totals count every call.

use pbxlink_dataplane::srtp::{LibsrtpContext, MasterKey, Role, Suite};
use serde_json::{Value, json};
use simsip::{Message, RtpPorts, TONE, random_bytes, sdp_audio, tag_of, token, uri_in, user_of};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

/// The SDES suite cloudsim speaks.
const SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// Ended calls kept for the control API.
const ENDED_KEPT: usize = 1000;

#[derive(Debug, Default)]
struct Media {
    decrypted: AtomicU64,
    refused: AtomicU64,
    sent: AtomicU64,
    lost: AtomicU64,
}

impl Media {
    fn counts(&self) -> [u64; 4] {
        [
            self.decrypted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        ]
    }
}

#[derive(Debug)]
struct Call {
    direction: &'static str,
    from: String,
    to: String,
    state: String,
    media: Arc<Media>,
    stop: Option<watch::Sender<bool>>,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    remote_target: String,
    cseq: u32,
    /// Our offer's key and port (calls cloudsim places).
    offer: Option<(MasterKey, u16)>,
    /// The last description cloudsim sent (answers re-INVITEs).
    sdp: String,
    invite: String,
    /// Ended (its outcome counted).
    over: bool,
}

#[derive(Default)]
struct Sbc {
    calls: BTreeMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    next: u64,
    link: Option<mpsc::UnboundedSender<Vec<u8>>>,
    link_peer: Option<SocketAddr>,
    next_rtp: u16,
    /// Every ended call by how it ended.
    outcomes: BTreeMap<String, u64>,
    /// Ended calls, oldest first (pruned beyond ENDED_KEPT).
    ended: VecDeque<u64>,
    /// Media counts of the calls pruned.
    pruned: [u64; 4],
}

impl Call {
    fn json(&self, id: u64) -> Value {
        json!({
            "id": id,
            "direction": self.direction,
            "from": self.from,
            "to": self.to,
            "state": self.state,
            "over": self.over,
            "srtp_decrypted": self.media.decrypted.load(Ordering::Relaxed),
            "srtp_refused": self.media.refused.load(Ordering::Relaxed),
            "srtp_sent": self.media.sent.load(Ordering::Relaxed),
            "rtp_lost": self.media.lost.load(Ordering::Relaxed),
        })
    }
}

impl Sbc {
    /// Keeps `call`; its id.
    fn add(&mut self, call: Call) -> u64 {
        let id = self.next;
        self.next += 1;
        self.by_call_id.insert(call.call_id.clone(), id);
        self.calls.insert(id, call);
        id
    }

    /// Call `id` is over (`how`): its media stops, its outcome is
    /// counted once, and the oldest ended calls beyond the kept number go.
    fn finish(&mut self, id: u64, how: String) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.stop = None;
        if c.over {
            return;
        }
        c.over = true;
        *self.outcomes.entry(how.clone()).or_default() += 1;
        c.state = how;
        self.ended.push_back(id);
        while self.ended.len() > ENDED_KEPT {
            let Some(old) = self.ended.pop_front() else {
                break;
            };
            if let Some(c) = self.calls.remove(&old) {
                self.by_call_id.remove(&c.call_id);
                for (sum, n) in self.pruned.iter_mut().zip(c.media.counts()) {
                    *sum += n;
                }
            }
        }
    }
}

/// The endpoint, shared by its tasks and the control API.
#[derive(Clone)]
pub struct SipEndpoint {
    sbc: Arc<Mutex<Sbc>>,
    listen: SocketAddr,
    media_ip: IpAddr,
    rtp: RtpPorts,
}

/// The audio address and the AES-CM-80 key of an SDP body.
fn offer_of(sdp: &str) -> Option<(SocketAddr, u32, MasterKey)> {
    let audio = sdp_audio(sdp)?;
    let (tag, key) = sdp.lines().find_map(|l| {
        let c = l.trim().strip_prefix("a=crypto:")?;
        let mut f = c.split_whitespace();
        let tag: u32 = f.next()?.parse().ok()?;
        (f.next()? == SUITE.sdp_name()).then_some(())?;
        let key = MasterKey::from_sdes(SUITE, f.next()?).ok()?;
        Some((tag, key))
    })?;
    Some((audio, tag, key))
}

impl SipEndpoint {
    /// The endpoint on `listen`, media on `media_ip`'s `rtp` ports.
    pub fn new(listen: SocketAddr, media_ip: IpAddr, rtp: RtpPorts) -> Self {
        Self {
            sbc: Arc::new(Mutex::new(Sbc {
                next: 1,
                next_rtp: rtp.first(),
                ..Sbc::default()
            })),
            listen,
            media_ip,
            rtp,
        }
    }

    /// Every call kept with its media counts.
    pub fn calls(&self) -> Value {
        let s = self.sbc.lock().expect("sbc");
        json!(
            s.calls
                .iter()
                .map(|(id, c)| c.json(*id))
                .collect::<Vec<_>>()
        )
    }

    /// Call `id` with its media counts (none: never placed, or pruned).
    pub fn call(&self, id: u64) -> Option<Value> {
        self.sbc
            .lock()
            .expect("sbc")
            .calls
            .get(&id)
            .map(|c| c.json(id))
    }

    /// Media over every call and the calls by state (ended ones by how).
    pub fn stats(&self) -> Value {
        let s = self.sbc.lock().expect("sbc");
        let mut media = s.pruned;
        let mut calls: BTreeMap<String, u64> = s.outcomes.clone();
        for c in s.calls.values() {
            for (sum, n) in media.iter_mut().zip(c.media.counts()) {
                *sum += n;
            }
            if !c.over {
                *calls.entry(c.state.clone()).or_default() += 1;
            }
        }
        json!({
            "srtp_decrypted": media[0],
            "srtp_refused": media[1],
            "srtp_sent": media[2],
            "rtp_lost": media[3],
            "calls": calls,
        })
    }

    /// Whether the gateway's trunk is connected.
    pub fn linked(&self) -> bool {
        self.sbc.lock().expect("sbc").link.is_some()
    }

    /// Serves TLS on `listener`.
    pub async fn serve(self, listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let (me, acceptor) = (self.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                me.connection(tls, peer).await;
            });
        }
    }

    async fn connection(
        &self,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        peer: SocketAddr,
    ) {
        let (mut rd, mut wr) = tokio::io::split(tls);
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        // The connection becomes the trunk once the gateway speaks on it
        // (a ping or a request), not at the handshake: a probe that only
        // shakes hands (the gateway's diagnostics) takes nothing over.
        let mut adopted = false;
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            if !adopted {
                adopted = true;
                let mut s = self.sbc.lock().expect("sbc");
                s.link = Some(tx.clone());
                s.link_peer = Some(peer);
                println!("cloudsim: sip: the gateway's trunk connected from {peer}");
            }
            loop {
                // Keep-alive pings (RFC 5626): a pong each.
                while buf.starts_with(b"\r\n\r\n") {
                    buf.drain(..4);
                    let _ = tx.send(b"\r\n".to_vec());
                }
                let Some((m, used)) = Message::from_stream(&buf) else {
                    break;
                };
                buf.drain(..used);
                self.handle(m, &tx).await;
            }
        }
        writer.abort();
        if !adopted {
            return;
        }
        let mut s = self.sbc.lock().expect("sbc");
        if s.link_peer == Some(peer) {
            s.link = None;
            s.link_peer = None;
        }
        println!("cloudsim: sip: the gateway's trunk from {peer} closed");
    }

    fn response(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        tag: &str,
        body: Option<&str>,
    ) -> Vec<u8> {
        let contact = format!("sip:cloud@{};transport=tls", self.listen);
        simsip::response(req, code, reason, tag, Some(&contact), body).into_bytes()
    }

    fn sdp(&self, port: u16, tag: u32, key: &MasterKey) -> String {
        let ip = self.media_ip;
        format!(
            "v=0\r\no=cloudsim 1 1 IN IP4 {ip}\r\ns=cloudsim\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=crypto:{tag} {} {}\r\na=sendrecv\r\n",
            SUITE.sdp_name(),
            key.to_sdes_inline()
        )
    }

    /// The next media port free on the host (one another process holds,
    /// the gateway's among them, is passed over; after 64 such, the next).
    fn port(&self) -> u16 {
        let mut s = self.sbc.lock().expect("sbc");
        let free = |p: u16| std::net::UdpSocket::bind(SocketAddr::new(self.media_ip, p)).is_ok();
        for _ in 0..64 {
            let p = s.next_rtp;
            s.next_rtp = self.rtp.next(p);
            if free(p) {
                return p;
            }
        }
        s.next_rtp
    }

    async fn handle(&self, m: Message, tx: &mpsc::UnboundedSender<Vec<u8>>) {
        let method = (!m.first.starts_with("SIP/"))
            .then(|| m.first.split(' ').next().unwrap_or("").to_owned());
        let call_id = m.get("Call-ID").unwrap_or_default().to_owned();
        let known = self
            .sbc
            .lock()
            .expect("sbc")
            .by_call_id
            .get(&call_id)
            .copied();
        match method.as_deref() {
            Some("OPTIONS") => {
                let _ = tx.send(self.response(&m, 200, "OK", "", None));
            }
            Some("INVITE") if known.is_some() => {
                // A re-INVITE (hold, refresh): the same description back.
                let id = known.expect("checked");
                let (tag, sdp) = {
                    let s = self.sbc.lock().expect("sbc");
                    let c = &s.calls[&id];
                    (c.local_tag.clone(), c.sdp.clone())
                };
                let _ = tx.send(self.response(&m, 200, "OK", &tag, Some(&sdp)));
            }
            Some("INVITE") => {
                let _ = tx.send(self.response(&m, 100, "Trying", "", None));
                let Some((remote, tag, their_key)) = offer_of(&m.body) else {
                    let _ = tx.send(self.response(&m, 488, "Not Acceptable Here", &token(), None));
                    return;
                };
                let port = self.port();
                let our_key =
                    MasterKey::from_bytes(SUITE, &random_bytes::<30>()).expect("30 bytes");
                let sdp = self.sdp(port, tag, &our_key);
                let local_tag = token();
                let media = Arc::new(Media::default());
                let (stop_tx, stop_rx) = watch::channel(false);
                let to = user_of(m.first.split(' ').nth(1).unwrap_or_default());
                let from = user_of(m.get("From").unwrap_or_default());
                {
                    let id = self.sbc.lock().expect("sbc").add(Call {
                        direction: "from gateway",
                        from: from.clone(),
                        to: to.clone(),
                        state: "connected".into(),
                        media: media.clone(),
                        stop: Some(stop_tx),
                        call_id: call_id.clone(),
                        local_tag: local_tag.clone(),
                        remote_tag: tag_of(m.get("From").unwrap_or_default()),
                        remote_target: uri_in(m.get("Contact").unwrap_or_default()),
                        cseq: 0,
                        offer: None,
                        sdp: sdp.clone(),
                        invite: String::new(),
                        over: false,
                    });
                    println!(
                        "cloudsim: sip: call {id} from {from} to {to}: answered, echoing its media"
                    );
                }
                match UdpSocket::bind(SocketAddr::new(self.media_ip, port)).await {
                    Ok(socket) => {
                        tokio::spawn(media_loop(
                            socket, remote, their_key, our_key, media, stop_rx, false,
                        ));
                    }
                    Err(e) => println!("cloudsim: sip: media port {port}: {e}"),
                }
                let _ = tx.send(self.response(&m, 180, "Ringing", &local_tag, None));
                let _ = tx.send(self.response(&m, 200, "OK", &local_tag, Some(&sdp)));
            }
            Some("ACK") => {}
            Some("BYE") | Some("CANCEL") => {
                let _ = tx.send(self.response(&m, 200, "OK", "", None));
                if let Some(id) = known {
                    self.sbc
                        .lock()
                        .expect("sbc")
                        .finish(id, "ended by the gateway".into());
                }
            }
            Some(_) => {
                let _ = tx.send(self.response(&m, 200, "OK", "", None));
            }
            None => self.on_response(m, known, tx).await,
        }
    }

    async fn on_response(&self, m: Message, id: Option<u64>, tx: &mpsc::UnboundedSender<Vec<u8>>) {
        let Some(id) = id else { return };
        let code: u16 = m
            .first
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let is_invite = m.get("CSeq").is_some_and(|c| c.ends_with("INVITE"));
        if !is_invite || code < 200 {
            return;
        }
        let start = {
            let mut s = self.sbc.lock().expect("sbc");
            let listen = self.listen;
            let Some(c) = s.calls.get_mut(&id) else {
                return;
            };
            if c.state != "calling" {
                // A retransmitted 2xx: ACK it again.
                if code < 300 {
                    let ack = format!(
                        "ACK {} SIP/2.0\r\nVia: SIP/2.0/TLS {listen};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@cloud.test>;tag={}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        c.remote_target,
                        token(),
                        c.from,
                        c.local_tag,
                        m.get("To").unwrap_or_default(),
                        c.call_id
                    );
                    let _ = tx.send(ack.into_bytes());
                }
                return;
            }
            c.remote_tag = tag_of(m.get("To").unwrap_or_default());
            if let Some(contact) = m.get("Contact") {
                c.remote_target = uri_in(contact);
            }
            let ack = if code < 300 {
                format!(
                    "ACK {} SIP/2.0\r\nVia: SIP/2.0/TLS {listen};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@cloud.test>;tag={}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    c.remote_target,
                    token(),
                    c.from,
                    c.local_tag,
                    m.get("To").unwrap_or_default(),
                    c.call_id
                )
            } else {
                // A non-2xx is acknowledged in the INVITE's transaction.
                let via = m.get("Via").unwrap_or_default();
                format!(
                    "ACK {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@cloud.test>;tag={}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    c.invite,
                    c.from,
                    c.local_tag,
                    m.get("To").unwrap_or_default(),
                    c.call_id
                )
            };
            let _ = tx.send(ack.into_bytes());
            if code >= 300 {
                s.finish(id, format!("refused: {code}"));
                None
            } else {
                c.state = "connected".into();
                Some((c.offer.clone(), c.media.clone()))
            }
        };
        let Some((Some((our_key, port)), media)) = start else {
            return;
        };
        let Some((remote, _, their_key)) = offer_of(&m.body) else {
            println!("cloudsim: sip: call {id}: the answer has no usable SRTP key");
            return;
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Some(c) = self.sbc.lock().expect("sbc").calls.get_mut(&id) {
            c.stop = Some(stop_tx);
        }
        match UdpSocket::bind(SocketAddr::new(self.media_ip, port)).await {
            Ok(socket) => {
                tokio::spawn(media_loop(
                    socket, remote, their_key, our_key, media, stop_rx, true,
                ));
            }
            Err(e) => println!("cloudsim: sip: media port {port}: {e}"),
        }
    }

    /// Calls `to` (through the gateway, toward the PBX) as `from`, hung up
    /// after `seconds`.
    pub fn place(&self, from: &str, to: &str, seconds: u64) -> Result<u64, String> {
        let (link, peer) = {
            let s = self.sbc.lock().expect("sbc");
            (s.link.clone(), s.link_peer)
        };
        let (Some(link), Some(peer)) = (link, peer) else {
            return Err("the gateway's trunk is not connected".into());
        };
        let port = self.port();
        let key = MasterKey::from_bytes(SUITE, &random_bytes::<30>()).expect("30 bytes");
        let sdp = self.sdp(port, 1, &key);
        let (call_id, tag) = (format!("{}@cloudsim", token()), token());
        let listen = self.listen;
        let uri = format!("sip:{to}@{peer};transport=tls");
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {listen};branch=z9hG4bK{};alias\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@cloud.test>;tag={tag}\r\nTo: <sip:{to}@{peer}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@{listen};transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            token(),
            sdp.len()
        );
        let id = self.sbc.lock().expect("sbc").add(Call {
            direction: "to gateway",
            from: from.into(),
            to: to.into(),
            state: "calling".into(),
            media: Arc::default(),
            stop: None,
            call_id,
            local_tag: tag,
            remote_tag: String::new(),
            remote_target: uri.clone(),
            cseq: 1,
            offer: Some((key, port)),
            sdp,
            invite: uri,
            over: false,
        });
        let _ = link.send(invite.into_bytes());
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            me.hang_up(id);
        });
        Ok(id)
    }

    fn hang_up(&self, id: u64) {
        let mut s = self.sbc.lock().expect("sbc");
        let link = s.link.clone();
        let listen = self.listen;
        let Some(c) = s.calls.get_mut(&id) else {
            return;
        };
        if c.state != "connected" {
            return;
        }
        c.cseq += 1;
        let bye = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/TLS {listen};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@cloud.test>;tag={}\r\nTo: <sip:{}@gateway>;tag={}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
            c.remote_target,
            token(),
            c.from,
            c.local_tag,
            c.to,
            c.remote_tag,
            c.call_id,
            c.cseq
        );
        s.finish(id, "ended by cloudsim".into());
        if let Some(link) = link {
            let _ = link.send(bye.into_bytes());
        }
    }
}

/// One call's media: what arrives is decrypted (counted) and, when
/// answering, echoed back re-encrypted; when calling, a tone is sent.
async fn media_loop(
    socket: UdpSocket,
    remote: SocketAddr,
    their_key: MasterKey,
    our_key: MasterKey,
    media: Arc<Media>,
    mut stop: watch::Receiver<bool>,
    send_tone: bool,
) {
    let (Ok(mut rx), Ok(mut tx)) = (
        LibsrtpContext::new(SUITE, &their_key, Role::Unprotect),
        LibsrtpContext::new(SUITE, &our_key, Role::Protect),
    ) else {
        println!("cloudsim: libsrtp2 refused the keys");
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut ts, ssrc) = (1u16, 0u32, u32::from_be_bytes(random_bytes::<4>()));
    let mut buf = vec![0u8; 2048];
    let mut last_seq: Option<u16> = None;
    loop {
        tokio::select! {
            _ = tick.tick(), if send_tone => {
                let mut p = vec![0u8; 2048];
                p[0] = 0x80;
                p[1] = 8;
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                p[4..8].copy_from_slice(&ts.to_be_bytes());
                p[8..12].copy_from_slice(&ssrc.to_be_bytes());
                p[12..172].copy_from_slice(&TONE);
                if let Ok(n) = tx.protect_rtp(&mut p, 172)
                    && socket.send_to(&p[..n], remote).await.is_ok()
                {
                    media.sent.fetch_add(1, Ordering::Relaxed);
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { continue };
                // RTCP (SRTCP) has payload types 200–204: counted as media
                // only when it decrypts as such; here only RTP is echoed.
                if n < 12 || (200..=204).contains(&buf[1]) {
                    continue;
                }
                match rx.unprotect_rtp(&mut buf, n) {
                    Ok(len) => {
                        media.decrypted.fetch_add(1, Ordering::Relaxed);
                        let seq = u16::from_be_bytes([buf[2], buf[3]]);
                        if let Some(l) = last_seq {
                            let gap = seq.wrapping_sub(l);
                            if (2..1000).contains(&gap) {
                                media.lost.fetch_add(u64::from(gap - 1), Ordering::Relaxed);
                            }
                        }
                        if last_seq.is_none_or(|l| seq.wrapping_sub(l) < 1000) {
                            last_seq = Some(seq);
                        }
                        if !send_tone {
                            let mut out = buf[..len].to_vec();
                            out.resize(2048, 0);
                            if let Ok(m) = tx.protect_rtp(&mut out, len)
                                && socket.send_to(&out[..m], remote).await.is_ok()
                            {
                                media.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(_) => {
                        media.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_gives_its_address_and_key() {
        let key = MasterKey::from_bytes(SUITE, &[7; 30]).unwrap();
        let sdp = format!(
            "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/SAVP 8\r\na=crypto:1 AEAD_AES_128_GCM inline:x\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 {}\r\n",
            key.to_sdes_inline()
        );
        let (addr, tag, k) = offer_of(&sdp).unwrap();
        assert_eq!((addr, tag), ("127.0.0.1:30000".parse().unwrap(), 2));
        assert_eq!(k.as_bytes(), key.as_bytes());
    }
}
