//! One CSTA connection's application session, sans-IO: bytes and time in,
//! bytes to send, answers, events and the next timeout out.
//!
//! On connect it opens an ECMA-354 application session (with the CTI login
//! when configured), keeps it alive with `ResetApplicationSessionTimer` at
//! half its granted life, answers the PBX's `SystemStatus`, and starts a
//! monitor for every device it is given (a bounded number at a time, so
//! hundreds of users do not arrive at the PBX in one burst). Requests get
//! invoke ids `0001`–`9998`, never one still in use or just timed out; every
//! request ends in exactly one answer — the PBX's response, its
//! `CSTAErrorCode`, a timeout, or the connection's loss. It owns no socket
//! and reads no clock; [`crate::link`] drives one per CSTA server.

use crate::framing::{self, Decoder, FramingError, InvokeId};
use crate::message::{
    self, ConnectionId, CstaError, DeviceId, Edition, Event, Incoming, Outgoing, Service,
    SessionRefusal,
};
use crate::xml;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// A request's handle, chosen by whoever asks (unique among theirs).
pub type RequestId = u64;

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The application id sent in `StartApplicationSession`.
    pub application_id: String,
    /// CTI user and password (MiVoice Office 400), if the PBX wants them.
    pub login: Option<(String, String)>,
    /// Session life asked for; the PBX may grant another.
    pub duration: Duration,
    /// How long the PBX has to answer any request.
    pub request_timeout: Duration,
    /// The edition spoken until the PBX chooses one.
    pub edition: Edition,
    /// Most `MonitorStart` requests outstanding at once.
    pub monitor_window: usize,
    /// How long a device whose monitor the PBX refused waits before it is
    /// asked for again.
    pub monitor_retry: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            application_id: "pbxlink".into(),
            login: None,
            duration: Duration::from_secs(180),
            request_timeout: Duration::from_secs(5),
            edition: Edition::Ed3,
            monitor_window: 32,
            monitor_retry: Duration::from_secs(60),
        }
    }
}

/// What a completed service gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceResult {
    /// Done, nothing to report.
    Done,
    /// The call it made (MakeCall: the calling connection; consultation:
    /// the new call).
    Call(ConnectionId),
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The PBX refused it.
    #[error("the PBX refused: {0}")]
    Refused(CstaError),
    /// No answer in time.
    #[error("the PBX did not answer within {} s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The connection went before the answer came.
    #[error("the CSTA link was lost before the PBX answered ({0})")]
    ConnectionLost(String),
    /// No session serves the device now.
    #[error("no CSTA session is up for this device: {0}")]
    NotConnected(String),
    /// Every invoke id is in use.
    #[error("too many CSTA requests in flight: try again")]
    Busy,
    /// The answer could not be used.
    #[error("the PBX's answer could not be used: {0}")]
    BadAnswer(String),
    /// The device is not one the gateway serves.
    #[error("{0} is not a CTI or Softphone user of this gateway")]
    UnknownDevice(String),
}

/// Why a session closed its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The stream's framing is lost.
    Framing(FramingError),
    /// The PBX refused the application session.
    Refused(SessionRefusal),
    /// The PBX did not answer a request that keeps the session (start or
    /// reset) in time, or refused to reset it.
    Unanswered(&'static str),
    /// The PBX ended the session.
    StoppedByPbx,
    /// We ended it.
    Stopped,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Framing(e) => write!(f, "{e}"),
            CloseReason::Refused(r) => write!(f, "{r}"),
            CloseReason::Unanswered(what) => write!(f, "the PBX did not answer {what}"),
            CloseReason::StoppedByPbx => f.write_str("the PBX stopped the application session"),
            CloseReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// What the session asks its driver to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutput {
    /// Send these bytes.
    Transmit(Vec<u8>),
    /// The application session is open.
    Up {
        /// Its id.
        session_id: String,
        /// The edition in use.
        edition: Edition,
    },
    /// Close the connection: the session is over.
    Close(CloseReason),
    /// A request's one answer.
    Answer {
        /// The request.
        id: RequestId,
        /// Its outcome.
        result: Result<ServiceResult, RequestError>,
    },
    /// A device's monitor started, or could not.
    Monitoring {
        /// The device.
        device: DeviceId,
        /// Started, or why not.
        result: Result<(), RequestError>,
    },
    /// An event for a monitored device.
    Event {
        /// The monitored device it came to.
        device: DeviceId,
        /// The event.
        event: Box<Event>,
    },
}

/// What the session counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Events delivered for monitored devices.
    pub events: u64,
    /// Events for a monitor we do not know (dropped).
    pub events_unmatched: u64,
    /// Frames whose XML was not well-formed.
    pub invalid_xml: u64,
    /// Well-formed messages missing what they must carry.
    pub unusable: u64,
    /// Answers that came after their request timed out.
    pub late_answers: u64,
    /// Answers to no request of ours.
    pub unexpected_answers: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// `SystemStatus` requests answered.
    pub system_status: u64,
    /// Requests from the PBX we do not serve (answered with an error).
    pub requests_refused: u64,
}

#[derive(Debug)]
enum State {
    /// No connection.
    Idle,
    /// `StartApplicationSession` sent.
    Starting,
    /// Open.
    Up {
        session_id: String,
        edition: Edition,
        reset_at: Instant,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Start,
    Reset,
    Stop,
    Monitor(DeviceId),
    Unmonitor,
    Service { id: RequestId, name: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Monitor {
    Wanted,
    Starting,
    Active(String),
    /// Refused; asked for again at this time.
    Failed(Instant),
}

/// One connection's CSTA session.
#[derive(Debug)]
pub struct CstaSession {
    config: SessionConfig,
    state: State,
    decoder: Decoder,
    pending: HashMap<InvokeId, (Pending, Instant)>,
    /// Ids of requests that timed out, held until a late answer is no
    /// longer plausible.
    late: HashMap<InvokeId, Instant>,
    next_invoke: u16,
    monitors: BTreeMap<DeviceId, Monitor>,
    by_cross_ref: HashMap<String, DeviceId>,
    /// Monitors being started whose device is no longer wanted: stopped
    /// as soon as their cross reference arrives.
    abandoned: usize,
    out: VecDeque<SessionOutput>,
    counters: SessionCounters,
}

impl CstaSession {
    /// A session, not connected.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            decoder: Decoder::new(),
            pending: HashMap::new(),
            late: HashMap::new(),
            next_invoke: 1,
            monitors: BTreeMap::new(),
            by_cross_ref: HashMap::new(),
            abandoned: 0,
            out: VecDeque::new(),
            counters: SessionCounters::default(),
        }
    }

    /// Whether the application session is open.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// What it counted.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Devices it was given to monitor.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceId> {
        self.monitors.keys()
    }

    /// Devices whose monitor is running.
    pub fn monitored(&self) -> usize {
        self.monitors
            .values()
            .filter(|m| matches!(m, Monitor::Active(_)))
            .count()
    }

    /// Whether `device` is given to this session.
    pub fn has_device(&self, device: &str) -> bool {
        self.monitors.contains_key(device)
    }

    /// The connection is open: the session starts.
    pub fn handle_connected(&mut self, now: Instant) {
        self.reset_connection(now, "reconnected");
        self.state = State::Starting;
        let start = Outgoing::StartApplicationSession {
            application_id: self.config.application_id.clone(),
            login: self.config.login.clone(),
            duration_s: secs(self.config.duration),
            editions: vec![self.config.edition],
        };
        let _ = self.send(now, &start, Pending::Start);
    }

    /// The connection closed (or never opened): every request in flight is
    /// answered, every monitor will be started again on the next session.
    pub fn handle_disconnected(&mut self, now: Instant, why: &str) {
        self.reset_connection(now, why);
    }

    fn reset_connection(&mut self, now: Instant, why: &str) {
        let pending: Vec<_> = self.pending.drain().collect();
        for (invoke, (p, _)) in pending {
            match p {
                Pending::Service { id, .. } => self.out.push_back(SessionOutput::Answer {
                    id,
                    result: Err(RequestError::ConnectionLost(why.to_owned())),
                }),
                _ => {
                    // Its answer can no longer come on this connection, but
                    // keep the id out of use a moment all the same.
                    self.late.insert(invoke, now + self.config.request_timeout);
                }
            }
        }
        for m in self.monitors.values_mut() {
            *m = Monitor::Wanted;
        }
        self.by_cross_ref.clear();
        self.abandoned = 0;
        self.decoder = Decoder::new();
        self.state = State::Idle;
    }

    /// Stops the session politely; the driver closes the connection after
    /// sending what is queued.
    pub fn stop(&mut self, now: Instant) {
        if let State::Up { session_id, .. } = &self.state {
            let stop = Outgoing::StopApplicationSession {
                session_id: session_id.clone(),
            };
            let _ = self.send(now, &stop, Pending::Stop);
        }
        self.close(now, CloseReason::Stopped);
    }

    /// Monitors `device` (now, or once the session is up).
    pub fn monitor(&mut self, now: Instant, device: &str) {
        if !self.monitors.contains_key(device) {
            self.monitors.insert(device.to_owned(), Monitor::Wanted);
            self.pump_monitors(now);
        }
    }

    /// Stops monitoring `device`.
    pub fn unmonitor(&mut self, now: Instant, device: &str) {
        match self.monitors.remove(device) {
            Some(Monitor::Active(cross_ref)) => {
                self.by_cross_ref.remove(&cross_ref);
                let _ = self.send(
                    now,
                    &Outgoing::MonitorStop { cross_ref },
                    Pending::Unmonitor,
                );
            }
            Some(Monitor::Starting) => self.abandoned += 1,
            _ => {}
        }
    }

    /// Asks the PBX for `service`; its answer comes as
    /// [`SessionOutput::Answer`] with `id` — at once if it cannot be sent.
    pub fn request(&mut self, now: Instant, id: RequestId, service: Service) {
        let State::Up { .. } = self.state else {
            self.out.push_back(SessionOutput::Answer {
                id,
                result: Err(RequestError::NotConnected("the session is not open".into())),
            });
            return;
        };
        let name = service.name();
        if self
            .send(
                now,
                &Outgoing::Service(service),
                Pending::Service { id, name },
            )
            .is_err()
        {
            self.out.push_back(SessionOutput::Answer {
                id,
                result: Err(RequestError::Busy),
            });
        }
    }

    /// Bytes from the connection.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.state, State::Idle) {
            return;
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.counters.frames_in += 1;
                    self.handle_frame(now, frame.invoke, &frame.xml);
                    if matches!(self.state, State::Idle) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.close(now, CloseReason::Framing(e));
                    return;
                }
            }
        }
    }

    fn handle_frame(&mut self, now: Instant, invoke: InvokeId, bytes: &[u8]) {
        let decoded = match xml::parse(bytes) {
            Ok(root) => message::decode(&root).map_err(|e| {
                self.counters.unusable += 1;
                e.to_string()
            }),
            Err(e) => {
                self.counters.invalid_xml += 1;
                Err(e.to_string())
            }
        };
        let msg = match decoded {
            Ok(m) => m,
            Err(why) => {
                // An answer we cannot read still ends its request.
                if let Some((p, _)) = self.pending.remove(&invoke) {
                    self.fail_pending(now, p, RequestError::BadAnswer(why));
                }
                return;
            }
        };
        match msg {
            Incoming::Event(event) => self.handle_event(event),
            Incoming::SystemStatus { .. } => {
                self.counters.system_status += 1;
                let edition = self.edition();
                self.transmit(invoke, &Outgoing::SystemStatusResponse.to_xml(edition));
            }
            Incoming::SessionStopped if !self.pending.contains_key(&invoke) => {
                // The PBX ends the session: acknowledged, then closed.
                self.transmit(
                    invoke,
                    &format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><StopApplicationSessionPosResponse xmlns=\"{}\"/>",
                        message::SESSION_NAMESPACE
                    ),
                );
                self.close(now, CloseReason::StoppedByPbx);
            }
            Incoming::Unknown { .. }
                if !self.pending.contains_key(&invoke) && !invoke.is_event() =>
            {
                // A request of the PBX's that we do not serve: it gets an
                // answer, not silence.
                self.counters.requests_refused += 1;
                let ns = self.edition().namespace();
                self.transmit(
                    invoke,
                    &format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CSTAErrorCode xmlns=\"{ns}\"><operation>requestIncompatibleWithObject</operation></CSTAErrorCode>"
                    ),
                );
            }
            answer => match self.pending.remove(&invoke) {
                Some((p, _)) => self.handle_answer(now, p, answer),
                None if self.late.remove(&invoke).is_some() => self.counters.late_answers += 1,
                None => self.counters.unexpected_answers += 1,
            },
        }
    }

    fn handle_event(&mut self, event: Box<Event>) {
        match self.by_cross_ref.get(&event.cross_ref) {
            Some(device) => {
                self.counters.events += 1;
                self.out.push_back(SessionOutput::Event {
                    device: device.clone(),
                    event,
                });
            }
            None => self.counters.events_unmatched += 1,
        }
    }

    fn handle_answer(&mut self, now: Instant, pending: Pending, answer: Incoming) {
        match (pending, answer) {
            (
                Pending::Start,
                Incoming::SessionStarted {
                    session_id,
                    duration_s,
                    edition,
                },
            ) => {
                let edition = edition.unwrap_or(self.config.edition);
                let life =
                    duration_s.map_or(self.config.duration, |s| Duration::from_secs(s.into()));
                self.state = State::Up {
                    session_id: session_id.clone(),
                    edition,
                    reset_at: now + reset_interval(life),
                };
                self.out.push_back(SessionOutput::Up {
                    session_id,
                    edition,
                });
                self.pump_monitors(now);
            }
            (Pending::Start, Incoming::SessionRefused(r)) => {
                self.close(now, CloseReason::Refused(r))
            }
            (Pending::Start, Incoming::Error(e)) => self.close(
                now,
                CloseReason::Refused(SessionRefusal::Other(e.to_string())),
            ),
            (Pending::Reset, Incoming::TimerReset { duration_s }) => {
                if let State::Up { reset_at, .. } = &mut self.state {
                    let life =
                        duration_s.map_or(self.config.duration, |s| Duration::from_secs(s.into()));
                    *reset_at = now + reset_interval(life);
                }
            }
            (Pending::Reset, _) => {
                self.close(now, CloseReason::Unanswered("ResetApplicationSessionTimer"))
            }
            (Pending::Monitor(device), Incoming::MonitorStarted { cross_ref }) => {
                if self.monitors.get(&device) == Some(&Monitor::Starting) {
                    self.by_cross_ref.insert(cross_ref.clone(), device.clone());
                    self.monitors
                        .insert(device.clone(), Monitor::Active(cross_ref));
                    self.out.push_back(SessionOutput::Monitoring {
                        device,
                        result: Ok(()),
                    });
                } else {
                    // No longer wanted while it started.
                    self.abandoned = self.abandoned.saturating_sub(1);
                    let _ = self.send(
                        now,
                        &Outgoing::MonitorStop { cross_ref },
                        Pending::Unmonitor,
                    );
                }
                self.pump_monitors(now);
            }
            (Pending::Service { id, .. }, Incoming::Error(e)) => {
                self.out.push_back(SessionOutput::Answer {
                    id,
                    result: Err(RequestError::Refused(e)),
                })
            }
            (Pending::Service { id, name }, Incoming::Done { name: got, call })
                if got.strip_suffix("Response") == Some(name) =>
            {
                self.out.push_back(SessionOutput::Answer {
                    id,
                    result: Ok(call.map_or(ServiceResult::Done, ServiceResult::Call)),
                });
            }
            (Pending::Unmonitor | Pending::Stop, _) => {}
            (p, other) => {
                let what = match &other {
                    Incoming::Error(e) => RequestError::Refused(e.clone()),
                    other => RequestError::BadAnswer(format!("unexpected {}", describe(other))),
                };
                self.fail_pending(now, p, what);
            }
        }
    }

    fn fail_pending(&mut self, now: Instant, pending: Pending, error: RequestError) {
        match pending {
            Pending::Service { id, .. } => self.out.push_back(SessionOutput::Answer {
                id,
                result: Err(error),
            }),
            Pending::Monitor(device) => {
                if self.monitors.get(&device) == Some(&Monitor::Starting) {
                    self.monitors.insert(
                        device.clone(),
                        Monitor::Failed(now + self.config.monitor_retry),
                    );
                    self.out.push_back(SessionOutput::Monitoring {
                        device,
                        result: Err(error),
                    });
                } else {
                    self.abandoned = self.abandoned.saturating_sub(1);
                }
                self.pump_monitors(now);
            }
            Pending::Start => self.close(now, CloseReason::Unanswered("StartApplicationSession")),
            Pending::Reset => {
                self.close(now, CloseReason::Unanswered("ResetApplicationSessionTimer"))
            }
            Pending::Unmonitor | Pending::Stop => {}
        }
    }

    /// Time passed: timeouts, the session's keep-alive, monitors to retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.late.retain(|_, until| *until > now);
        let expired: Vec<InvokeId> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for invoke in expired {
            if let Some((p, _)) = self.pending.remove(&invoke) {
                self.counters.timeouts += 1;
                self.late
                    .insert(invoke, now + 2 * self.config.request_timeout);
                self.fail_pending(now, p, RequestError::Timeout(self.config.request_timeout));
            }
        }
        let mut retry = false;
        for m in self.monitors.values_mut() {
            if matches!(m, Monitor::Failed(at) if *at <= now) {
                *m = Monitor::Wanted;
                retry = true;
            }
        }
        if retry {
            self.pump_monitors(now);
        }
        if let State::Up {
            session_id,
            reset_at,
            ..
        } = &mut self.state
            && *reset_at <= now
        {
            // Not again until this one is answered (or times out).
            *reset_at = now + self.config.duration.max(Duration::from_secs(1)) * 4;
            let reset = Outgoing::ResetApplicationSessionTimer {
                session_id: session_id.clone(),
                duration_s: secs(self.config.duration),
            };
            let _ = self.send(now, &reset, Pending::Reset);
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|(_, d)| *d);
        let late = self.late.values().copied();
        let monitors = self.monitors.values().filter_map(|m| match m {
            Monitor::Failed(at) => Some(*at),
            _ => None,
        });
        let reset = match &self.state {
            State::Up { reset_at, .. } => Some(*reset_at),
            _ => None,
        };
        pending.chain(late).chain(monitors).chain(reset).min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        self.out.pop_front()
    }

    fn edition(&self) -> Edition {
        match &self.state {
            State::Up { edition, .. } => *edition,
            _ => self.config.edition,
        }
    }

    fn pump_monitors(&mut self, now: Instant) {
        if !self.is_up() {
            return;
        }
        let starting = self
            .monitors
            .values()
            .filter(|m| **m == Monitor::Starting)
            .count()
            + self.abandoned;
        let room = self.config.monitor_window.saturating_sub(starting);
        let next: Vec<DeviceId> = self
            .monitors
            .iter()
            .filter(|(_, m)| **m == Monitor::Wanted)
            .take(room)
            .map(|(d, _)| d.clone())
            .collect();
        for device in next {
            let start = Outgoing::MonitorStart {
                device: device.clone(),
            };
            if self
                .send(now, &start, Pending::Monitor(device.clone()))
                .is_err()
            {
                break;
            }
            self.monitors.insert(device, Monitor::Starting);
        }
    }

    fn close(&mut self, now: Instant, reason: CloseReason) {
        let why = reason.to_string();
        self.reset_connection(now, &why);
        self.out.push_back(SessionOutput::Close(reason));
    }

    /// Sends `msg` as a request under a fresh invoke id.
    fn send(&mut self, now: Instant, msg: &Outgoing, pending: Pending) -> Result<(), ()> {
        let invoke = self.allocate().ok_or(())?;
        let xml = msg.to_xml(self.edition());
        self.transmit(invoke, &xml);
        self.pending
            .insert(invoke, (pending, now + self.config.request_timeout));
        Ok(())
    }

    fn transmit(&mut self, invoke: InvokeId, xml: &str) {
        match framing::encode(invoke, xml.as_bytes()) {
            Ok(bytes) => {
                self.counters.frames_out += 1;
                self.out.push_back(SessionOutput::Transmit(bytes));
            }
            // Our requests are a few hundred bytes; a device id or number
            // long enough to overflow 64 KiB is refused by the caller's
            // checks long before this.
            Err(_) => self.counters.unusable += 1,
        }
    }

    fn allocate(&mut self) -> Option<InvokeId> {
        for _ in 0..9998 {
            let n = self.next_invoke;
            self.next_invoke = if n >= 9998 { 1 } else { n + 1 };
            let id = InvokeId::new(n).expect("below 9999");
            if !self.pending.contains_key(&id) && !self.late.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }
}

/// Resets at half the session's life, and never more often than every
/// 5 s however short a life the PBX grants.
fn reset_interval(life: Duration) -> Duration {
    (life / 2).max(Duration::from_secs(5))
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn describe(m: &Incoming) -> String {
    match m {
        Incoming::Done { name, .. } | Incoming::Unknown { name } => name.clone(),
        Incoming::MonitorStarted { .. } => "MonitorStartResponse".into(),
        Incoming::SessionStarted { .. } => "StartApplicationSessionPosResponse".into(),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}
