//! One SIP connection (TCP or TLS, accepted or opened by the gateway): the
//! read side frames messages by Content-Length (RFC 3261 §18.3), answers
//! CRLF keep-alives (RFC 5626), hands messages to the [`Core`] and responses
//! to whoever asked for them; the write side drains a bounded queue. A
//! connection opened to the cloud carries the cloud's requests back the
//! same way (RFC 5923-style reuse): the read side does not care who dialled.
//!
//! Limits: a silent connection closes after the idle time (`closed_idle`),
//! a started message must finish within the partial time counted from its
//! first byte, however slowly the rest trickles in (`closed_slow`), lost
//! framing closes the connection (`closed_on_error`), and a peer that does
//! not read its responses (the queue fills) is disconnected
//! (`write_queue_full`).

use super::core::{Core, Inbound, Peer};
use super::counters::{Counters, bump};
use pbxlink_b2bua::leg::Side;
use pbxlink_sip::framing::{Frame, StreamFramer};
use pbxlink_sip::message::Parsed;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages queued for a connection's writer before it counts as stuck.
const WRITE_QUEUE: usize = 256;

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Transactions and answers.
    pub core: Arc<Mutex<Core>>,
    /// Outcome counters.
    pub counters: Arc<Counters>,
    /// Longest silence.
    pub idle: Duration,
    /// Longest time to finish a started message.
    pub partial: Duration,
    /// Whose connections these are.
    pub side: Side,
    /// Where copies of the messages go (none: capture off).
    pub capture: Option<crate::capture::Capture>,
}

/// A connection's local and far ends (for capture).
pub type Ends = Option<(SocketAddr, SocketAddr)>;

/// `tcp`'s ends, before TLS wraps it.
pub fn ends(tcp: &tokio::net::TcpStream) -> Ends {
    tcp.local_addr().ok().zip(tcp.peer_addr().ok())
}

/// A running connection.
#[derive(Debug)]
pub struct Connection {
    /// Queue to the writer (the trunk sends its requests here).
    pub out: mpsc::Sender<Vec<u8>>,
    /// Ends when the connection closes.
    pub reader: JoinHandle<()>,
}

/// Queues `bytes`; false when the peer is not keeping up.
pub fn queue(out: &mpsc::Sender<Vec<u8>>, bytes: Vec<u8>, c: &Counters) -> bool {
    match out.try_send(bytes) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            bump(&c.write_queue_full);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Starts serving `stream`; responses go to `responses` when given (a
/// trunk), else are counted and ignored.
pub fn spawn<S>(
    stream: S,
    ends: Ends,
    shared: Shared,
    responses: Option<mpsc::Sender<Box<Parsed>>>,
) -> Connection
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let (out, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let capture = shared.capture.clone().zip(ends);
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if let Some((c, (local, far))) = &capture {
                c.sip(*local, *far, pbxlink_hep::Transport::Tcp, &bytes);
            }
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let reader = tokio::spawn(read_loop(reader, ends, out.clone(), shared, responses));
    Connection { out, reader }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    ends: Ends,
    out: mpsc::Sender<Vec<u8>>,
    shared: Shared,
    responses: Option<mpsc::Sender<Box<Parsed>>>,
) {
    let c = &shared.counters;
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    // When the message still pending began arriving.
    let mut started: Option<tokio::time::Instant> = None;
    loop {
        let (deadline, slow) = match started {
            Some(t) => (t + shared.partial, true),
            None => (tokio::time::Instant::now() + shared.idle, false),
        };
        let n = match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                bump(if slow { &c.closed_slow } else { &c.closed_idle });
                return;
            }
        };
        let read_at = tokio::time::Instant::now();
        if framer.push(&buf[..n]).is_err() {
            bump(&c.closed_on_error);
            return;
        }
        let mut completed = false;
        while let Some(frame) = framer.next_frame() {
            completed = true;
            let replies = match frame {
                Ok(Frame::Message(msg)) => {
                    if let (Some(c), Some((local, far))) = (&shared.capture, ends) {
                        c.sip(far, local, pbxlink_hep::Transport::Tcp, &msg);
                    }
                    let inbound = shared.core.lock().expect("core lock").receive(
                        Instant::now(),
                        &msg,
                        Peer::Stream(Some(out.clone())),
                        shared.side,
                    );
                    match inbound {
                        Inbound::Reply(r) => r,
                        Inbound::Response(p) => {
                            match &responses {
                                Some(tx) => {
                                    if tx.try_send(p).is_err() {
                                        bump(&c.responses_unmatched);
                                    }
                                }
                                None => bump(&c.responses_ignored),
                            }
                            Vec::new()
                        }
                    }
                }
                Ok(Frame::Ping) => {
                    bump(&c.keepalives);
                    vec![b"\r\n".to_vec()]
                }
                Ok(Frame::Pong) => {
                    bump(&c.keepalives);
                    Vec::new()
                }
                Err(_) => {
                    // Framing is lost on this stream: it cannot resume.
                    bump(&c.closed_on_error);
                    return;
                }
            };
            for r in replies {
                if !queue(&out, r, c) {
                    return;
                }
            }
        }
        // A message under way keeps the time it started; the rest of a
        // read that completed one starts the next.
        started = match (framer.pending() > 0, started) {
            (false, _) => None,
            (true, Some(t)) if !completed => Some(t),
            (true, _) => Some(read_at),
        };
    }
}
