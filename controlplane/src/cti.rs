//! The CSTA link's tokio driver: one task owns the sans-IO [`CstaLink`]
//! (pbxlink-csta) and carries its bytes over one TCP connection per CSTA
//! server; callers (the admin API today, the cloud tunnel later) ask for
//! services through a bounded queue and each gets its one answer. It also
//! keeps what the admin page shows: the servers' state, a log of recent
//! events with sequence numbers, and each user's call history.
//!
//! Which users are monitored follows the user directory (every onboarded
//! CTI or Softphone user), as it changes.

use pbxlink_csta::history::{CallHistory, CallRecord};
use pbxlink_csta::link::{CstaLink, LinkConfig, LinkOutput, ServerState, ServerStatus};
use pbxlink_csta::message::{Event, Service};
use pbxlink_csta::session::{RequestError, RequestId, ServiceResult, SessionConfig};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Requests waiting for the driver; past this callers are told to retry.
const COMMAND_QUEUE: usize = 256;

/// Frames waiting to be written to one server; a PBX that stops reading
/// this long is treated as gone.
const WRITE_QUEUE: usize = 1024;

/// Reads and connection changes waiting for the driver (the readers wait
/// when it is full: back-pressure onto the sockets, nothing dropped).
const CONN_QUEUE: usize = 1024;

/// Events kept for `GET /api/cti/events`.
const EVENT_LOG: usize = 10_000;

/// How the link runs.
#[derive(Debug, Clone)]
pub struct CtiConfig {
    /// The CSTA servers, in order.
    pub servers: Vec<SocketAddr>,
    /// Their sessions.
    pub session: SessionConfig,
    /// Calls kept per user.
    pub history: usize,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
}

/// A page of the event log (`GET /api/cti/events`).
#[derive(Debug, Clone)]
pub struct EventsPage {
    /// The events, oldest first.
    pub events: Vec<LoggedEvent>,
    /// Where the next page starts (`after=next`).
    pub next: u64,
    /// The newest sequence number logged (0: none yet).
    pub last: u64,
    /// The oldest sequence number still kept (older ones are gone).
    pub oldest: Option<u64>,
}

/// One CSTA event as the log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedEvent {
    /// Its place in the log (increasing, never reused).
    pub seq: u64,
    /// When it came (Unix ms).
    pub at_ms: u64,
    /// The monitored user it came to.
    pub device: String,
    /// What happened.
    pub event: String,
    /// The call.
    pub call: Option<String>,
    /// The connection's device.
    pub connection_device: Option<String>,
    /// The device that acted.
    pub subject: Option<String>,
    /// Calling device.
    pub calling: Option<String>,
    /// Called device.
    pub called: Option<String>,
    /// The PBX's cause.
    pub cause: Option<String>,
    /// A transfer's destination.
    pub transferred_to: Option<String>,
    /// A transfer's secondary call.
    pub secondary_call: Option<String>,
    /// A message-waiting lamp.
    pub message_waiting: Option<bool>,
}

/// What the driver counted.
#[derive(Debug, Default)]
pub struct CtiCounters {
    /// Service requests taken.
    pub requests: AtomicU64,
    /// Of those, answered with success.
    pub requests_ok: AtomicU64,
    /// Of those, answered with an error.
    pub requests_failed: AtomicU64,
    /// Requests refused because the queue was full.
    pub requests_busy: AtomicU64,
    /// Events received for monitored users.
    pub events: AtomicU64,
    /// Connections closed because the PBX stopped reading.
    pub write_queue_full: AtomicU64,
    /// How long service requests took (sent to answered).
    pub request_time: crate::latency::Latency,
}

#[derive(Debug)]
struct View {
    /// The link was stopped (shutdown, or the PBX connection deleted).
    stopped: bool,
    servers: Vec<ServerStatus>,
    wanted: usize,
    monitored: usize,
    events: VecDeque<LoggedEvent>,
    next_seq: u64,
    history: CallHistory,
    monitor_refusals: BTreeMap<String, String>,
}

impl View {
    fn new(history: usize) -> View {
        View {
            stopped: false,
            servers: Vec::new(),
            wanted: 0,
            monitored: 0,
            events: VecDeque::new(),
            next_seq: 1,
            history: CallHistory::new(history),
            monitor_refusals: BTreeMap::new(),
        }
    }

    /// See [`Cti::events_after`].
    fn page(&self, after: u64, limit: usize) -> EventsPage {
        let events: Vec<LoggedEvent> = self
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect();
        EventsPage {
            next: events.last().map_or(after, |e| e.seq),
            last: self.next_seq.saturating_sub(1),
            oldest: self.events.front().map(|e| e.seq),
            events,
        }
    }
}

enum Command {
    Request(
        Service,
        oneshot::Sender<Result<ServiceResult, RequestError>>,
    ),
    Stop(oneshot::Sender<()>),
}

/// The running link, as callers hold it.
#[derive(Clone)]
pub struct Cti {
    commands: mpsc::Sender<Command>,
    view: Arc<Mutex<View>>,
    /// What it counted.
    pub counters: Arc<CtiCounters>,
    timeout: Duration,
}

impl Cti {
    /// Starts the driver (inside a tokio runtime); it monitors `devices`
    /// as they change.
    pub fn start(
        config: CtiConfig,
        devices: watch::Receiver<Vec<String>>,
        sink: Option<crate::events::EventSink>,
    ) -> Cti {
        let names: Vec<String> = config.servers.iter().map(ToString::to_string).collect();
        let view = Arc::new(Mutex::new(View::new(config.history)));
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let counters = Arc::new(CtiCounters::default());
        let timeout = config.session.request_timeout;
        tracing::info!(
            "csta: CSTA server(s) {}; {} user(s) to monitor",
            names.join(", "),
            devices.borrow().len()
        );
        tokio::spawn(drive(
            config,
            rx,
            devices,
            view.clone(),
            counters.clone(),
            sink,
        ));
        Cti {
            commands,
            view,
            counters,
            timeout,
        }
    }

    /// Asks the PBX for `service` on a user's behalf.
    pub async fn request(&self, service: Service) -> Result<ServiceResult, RequestError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let sent = Instant::now();
        match self.commands.try_send(Command::Request(service, tx)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.requests_busy.fetch_add(1, Ordering::Relaxed);
                return Err(RequestError::Busy);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(RequestError::NotConnected("the CSTA link is closed".into()));
            }
        }
        // The link answers every request (at the latest when its own
        // timeout fires); this bound only guards against the driver
        // having stopped.
        let answer = match tokio::time::timeout(self.timeout * 2 + Duration::from_secs(1), rx).await
        {
            Ok(Ok(a)) => a,
            _ => Err(RequestError::ConnectionLost(
                "the CSTA driver stopped".into(),
            )),
        };
        self.counters.request_time.observe(sent.elapsed());
        let c = if answer.is_ok() {
            &self.counters.requests_ok
        } else {
            &self.counters.requests_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
        answer
    }

    /// Ends every session politely (at shutdown).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }

    /// `Connected` while any CSTA server's session is open, otherwise
    /// `Lost connection` (with the reason when the PBX refused the login).
    pub fn status_word(&self) -> String {
        let v = self.view.lock().expect("cti view");
        status_word(&v)
    }

    /// The link as the admin API shows it.
    pub fn status_json(&self) -> Value {
        let v = self.view.lock().expect("cti view");
        let now = Instant::now();
        let word = status_word(&v);
        json!({
            "status": word,
            "result": if word == "Connected" { "Connection successful" } else { "" },
            "users_to_monitor": v.wanted,
            "monitored": v.monitored,
            "monitor_refusals": v.monitor_refusals,
            "servers": v.servers.iter().map(|s| {
                let (state, edition, reason, retry_in_ms) = match &s.state {
                    ServerState::Connecting => ("connecting", None, None, None),
                    ServerState::Up { edition } => ("up", Some(edition.name()), None, None),
                    ServerState::Down { reason, retry_at } => (
                        "down",
                        None,
                        Some(reason.clone()),
                        Some(retry_at.saturating_duration_since(now).as_millis() as u64),
                    ),
                };
                json!({
                    "server": s.name,
                    "state": state,
                    "edition": edition,
                    "reason": reason,
                    "retry_in_ms": retry_in_ms,
                    "monitored": s.monitored,
                    "devices": s.devices,
                    "sessions": s.sessions,
                    "counters": {
                        "frames_in": s.counters.frames_in,
                        "frames_out": s.counters.frames_out,
                        "events": s.counters.events,
                        "events_unmatched": s.counters.events_unmatched,
                        "invalid_xml": s.counters.invalid_xml,
                        "unusable": s.counters.unusable,
                        "late_answers": s.counters.late_answers,
                        "unexpected_answers": s.counters.unexpected_answers,
                        "timeouts": s.counters.timeouts,
                        "system_status": s.counters.system_status,
                        "requests_refused": s.counters.requests_refused,
                    },
                })
            }).collect::<Vec<_>>(),
            "counters": {
                "requests": self.counters.requests.load(Ordering::Relaxed),
                "requests_ok": self.counters.requests_ok.load(Ordering::Relaxed),
                "requests_failed": self.counters.requests_failed.load(Ordering::Relaxed),
                "requests_busy": self.counters.requests_busy.load(Ordering::Relaxed),
                "events": self.counters.events.load(Ordering::Relaxed),
                "write_queue_full": self.counters.write_queue_full.load(Ordering::Relaxed),
            },
        })
    }

    /// Events logged after `after` (at most `limit`, oldest first) as a
    /// page: the cursor to ask from next — the last sequence number in
    /// the page, or `after` when it is empty — the newest sequence number
    /// logged (0: none yet), and the oldest still kept.
    pub fn events_after(&self, after: u64, limit: usize) -> EventsPage {
        self.view.lock().expect("cti view").page(after, limit)
    }

    /// A user's call history, newest first.
    pub fn history(&self, device: &str) -> Vec<CallRecord> {
        self.view.lock().expect("cti view").history.calls(device)
    }
}

fn status_word(v: &View) -> String {
    if v.stopped {
        return "Stopped".into();
    }
    let servers = &v.servers;
    if servers.is_empty() || servers.iter().all(|s| s.state == ServerState::Connecting) {
        return "Connecting".into();
    }
    if servers
        .iter()
        .any(|s| matches!(s.state, ServerState::Up { .. }))
    {
        return "Connected".into();
    }
    let refused = servers.iter().find_map(|s| match &s.state {
        ServerState::Down { reason, .. } if reason == "wrong credential" => Some(reason.clone()),
        _ => None,
    });
    match refused {
        Some(r) => format!("Lost connection: {r}"),
        None => "Lost connection".into(),
    }
}

enum ConnEvent {
    Up(mpsc::Sender<Vec<u8>>),
    Bytes(Vec<u8>),
    Closed(String),
}

/// One server's connection as the driver holds it.
struct Conn {
    generation: u64,
    writer: Option<mpsc::Sender<Vec<u8>>>,
    /// Dropped to end the connection's tasks.
    stop: Option<oneshot::Sender<()>>,
}

async fn drive(
    config: CtiConfig,
    mut commands: mpsc::Receiver<Command>,
    mut devices: watch::Receiver<Vec<String>>,
    view: Arc<Mutex<View>>,
    counters: Arc<CtiCounters>,
    sink: Option<crate::events::EventSink>,
) {
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let mut link = CstaLink::new(LinkConfig {
        servers: config.servers.iter().map(ToString::to_string).collect(),
        session: config.session.clone(),
        seed: u64::from_le_bytes(seed),
        ..LinkConfig::default()
    });
    let (conn_tx, mut conn_rx) = mpsc::channel::<(usize, u64, ConnEvent)>(CONN_QUEUE);
    let mut conns: Vec<Conn> = (0..config.servers.len())
        .map(|_| Conn {
            generation: 0,
            writer: None,
            stop: None,
        })
        .collect();
    let mut waiting: HashMap<RequestId, oneshot::Sender<Result<ServiceResult, RequestError>>> =
        HashMap::new();
    let mut stopping: Option<oneshot::Sender<()>> = None;
    link.set_devices(Instant::now(), devices.borrow_and_update().clone());
    loop {
        while let Some(o) = link.poll_output() {
            match o {
                LinkOutput::Connect(i) => {
                    let c = &mut conns[i];
                    c.generation += 1;
                    let (stop_tx, stop_rx) = oneshot::channel();
                    c.stop = Some(stop_tx);
                    c.writer = None;
                    tokio::spawn(connection(
                        i,
                        c.generation,
                        config.servers[i],
                        config.connect_timeout,
                        conn_tx.clone(),
                        stop_rx,
                    ));
                }
                LinkOutput::Transmit(i, bytes) => {
                    let full = conns[i]
                        .writer
                        .as_ref()
                        .is_some_and(|w| w.try_send(bytes).is_err());
                    if full {
                        counters.write_queue_full.fetch_add(1, Ordering::Relaxed);
                        close(&mut conns[i]);
                        link.handle_closed(
                            Instant::now(),
                            i,
                            "the PBX does not read what is sent (write queue full)",
                        );
                    }
                }
                LinkOutput::Close(i) => close(&mut conns[i]),
                LinkOutput::Answer { id, result } => {
                    if let Some(tx) = waiting.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                LinkOutput::Event { device, event } => {
                    counters.events.fetch_add(1, Ordering::Relaxed);
                    log_event(&view, &device, &event, sink.as_ref());
                }
                LinkOutput::ServerChanged(i, state) => {
                    let name = &config.servers[i];
                    match &state {
                        ServerState::Connecting => {}
                        ServerState::Up { edition } => tracing::info!(
                            "csta: {name}: session up ({}); monitoring its share of {} user(s)",
                            edition.name(),
                            link.wanted()
                        ),
                        ServerState::Down { reason, retry_at } => tracing::info!(
                            "csta: {name}: down: {reason}; next try in {:.1} s",
                            retry_at
                                .saturating_duration_since(Instant::now())
                                .as_secs_f32()
                        ),
                    }
                }
                LinkOutput::Monitoring {
                    device,
                    server,
                    result,
                } => {
                    let mut v = view.lock().expect("cti view");
                    match result {
                        Ok(()) => {
                            v.monitor_refusals.remove(&device);
                        }
                        Err(e) => {
                            if v.monitor_refusals.len() < 1000 {
                                tracing::info!(
                                    "csta: {}: monitoring {device} failed: {e}",
                                    config.servers[server]
                                );
                            }
                            v.monitor_refusals.insert(device, e.to_string());
                        }
                    }
                }
            }
        }
        {
            let mut v = view.lock().expect("cti view");
            v.servers = link.status();
            v.wanted = link.wanted();
            v.monitored = link.monitored();
        }
        if let Some(ack) = stopping.take() {
            // The StopApplicationSession frames are queued: give the
            // writers a moment, then report.
            tokio::time::sleep(Duration::from_millis(100)).await;
            view.lock().expect("cti view").stopped = true;
            let _ = ack.send(());
            return;
        }
        let next = link
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            Some(cmd) = commands.recv() => match cmd {
                Command::Request(service, tx) => {
                    let id = link.request(Instant::now(), service);
                    waiting.insert(id, tx);
                }
                Command::Stop(ack) => {
                    link.stop(Instant::now());
                    stopping = Some(ack);
                }
            },
            Some((i, generation, ev)) = conn_rx.recv() => {
                if conns[i].generation != generation {
                    continue; // a connection the link already gave up on
                }
                let now = Instant::now();
                match ev {
                    ConnEvent::Up(writer) => {
                        conns[i].writer = Some(writer);
                        link.handle_connected(now, i);
                    }
                    ConnEvent::Bytes(b) => link.handle_input(now, i, &b),
                    ConnEvent::Closed(why) => {
                        close(&mut conns[i]);
                        link.handle_closed(now, i, &why);
                    }
                }
            },
            Ok(()) = devices.changed() => {
                let list = devices.borrow_and_update().clone();
                tracing::info!("csta: {} user(s) to monitor", list.len());
                let now = Instant::now();
                {
                    let mut v = view.lock().expect("cti view");
                    let keep: std::collections::HashSet<&String> = list.iter().collect();
                    v.monitor_refusals.retain(|d, _| keep.contains(d));
                }
                link.set_devices(now, list);
            },
            _ = tokio::time::sleep_until(next) => link.handle_timeout(Instant::now()),
        }
    }
}

fn close(c: &mut Conn) {
    c.generation += 1;
    c.writer = None;
    c.stop = None;
}

fn log_event(
    view: &Mutex<View>,
    device: &str,
    event: &Event,
    sink: Option<&crate::events::EventSink>,
) {
    let at_ms = crate::events::unix_ms();
    let mut v = view.lock().expect("cti view");
    let ended = v.history.handle_event(at_ms, device, event);
    let seq = v.next_seq;
    v.next_seq += 1;
    if v.events.len() >= EVENT_LOG {
        v.events.pop_front();
    }
    let logged = LoggedEvent {
        seq,
        at_ms,
        device: device.to_owned(),
        event: event.kind.name().to_owned(),
        call: event.connection.as_ref().map(|c| c.call.clone()),
        connection_device: event.connection.as_ref().map(|c| c.device.clone()),
        subject: event.subject.clone(),
        calling: event.calling.clone(),
        called: event.called.clone(),
        cause: event.cause.clone(),
        transferred_to: event.transferred_to.clone(),
        secondary_call: event.secondary.as_ref().map(|c| c.call.clone()),
        message_waiting: event.message_waiting,
    };
    if let Some(sink) = sink {
        // For the cloud platform: the event, and each call it ended.
        sink.emit(
            "cti_event",
            serde_json::to_value(&logged).unwrap_or_default(),
        );
        for r in ended {
            sink.emit(
                "call_history",
                json!({
                    "user": device,
                    "call_id": r.call_id,
                    "direction": r.direction.name(),
                    "peer": r.peer,
                    "started_ms": r.started_ms,
                    "duration_s": r.duration_s(),
                    "outcome": r.outcome.name(),
                }),
            );
        }
    }
    v.events.push_back(logged);
}

/// One connection to server `i`: connects, reports, reads until the PBX
/// or the driver ends it.
async fn connection(
    i: usize,
    generation: u64,
    addr: SocketAddr,
    connect_timeout: Duration,
    up: mpsc::Sender<(usize, u64, ConnEvent)>,
    mut stop: oneshot::Receiver<()>,
) {
    let report = |ev| {
        let up = up.clone();
        async move {
            let _ = up.send((i, generation, ev)).await;
        }
    };
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return report(ConnEvent::Closed(format!("cannot connect: {e}"))).await,
        Err(_) => {
            return report(ConnEvent::Closed(format!(
                "no answer to the connection within {} s",
                connect_timeout.as_secs()
            )))
            .await;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    report(ConnEvent::Up(wtx)).await;
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    let why = loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => break "the PBX closed the connection".to_owned(),
                Ok(n) => report(ConnEvent::Bytes(buf[..n].to_vec())).await,
                Err(e) => break format!("connection error: {e}"),
            },
            _ = &mut stop => {
                // The driver let go: finish writing what it queued.
                let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
                return;
            }
        }
    };
    writer.abort();
    report(ConnEvent::Closed(why)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbxlink_csta::message::{ConnectionId, EventKind};

    fn event(n: u64) -> Event {
        Event {
            kind: EventKind::Delivered,
            cross_ref: "m1".into(),
            connection: Some(ConnectionId {
                call: format!("c{n}"),
                device: "1000".into(),
            }),
            subject: None,
            calling: None,
            called: None,
            cause: None,
            secondary: None,
            transferred_to: None,
            new_connections: Vec::new(),
            message_waiting: None,
        }
    }

    #[test]
    fn paging_by_the_cursor_reads_every_event_once() {
        let view = Mutex::new(View::new(20));
        assert_eq!(view.lock().unwrap().page(0, 7).next, 0, "empty: stay");
        for n in 1..=1000 {
            log_event(&view, "1000", &event(n), None);
        }
        let mut after = 0;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = view.lock().unwrap().page(after, 7);
            assert_eq!(page.last, 1000);
            if page.events.is_empty() {
                assert_eq!(page.next, after, "an empty page keeps the cursor");
                break;
            }
            assert!(page.events.len() <= 7);
            seen.extend(page.events.iter().map(|e| e.seq));
            after = page.next;
            pages += 1;
        }
        assert_eq!(seen, (1..=1000).collect::<Vec<u64>>());
        assert_eq!(pages, 143);
        // Without a limit, after=next misses nothing that comes later.
        let all = view.lock().unwrap().page(0, 10_000);
        log_event(&view, "1000", &event(1001), None);
        let more = view.lock().unwrap().page(all.next, 10_000);
        assert_eq!(
            more.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1001]
        );
    }
}
