//! The gateway's CSTA link to one PBX, sans-IO: one [`CstaSession`] per
//! CSTA server (`3211;3212` is two), the users spread across them, and
//! what happens when one goes.
//!
//! - **Spreading.** Each device has a home server (a stable hash of its
//!   id over the configured servers); it is monitored there while that
//!   server's session is up, otherwise on the next one up in order. When a
//!   server drops, its devices move to the others and are monitored again
//!   there; when it comes back, they move home.
//! - **Requests** go to the session holding the device; every request gets
//!   exactly one answer (see [`crate::session`]), and one for a device no
//!   session holds is answered at once.
//! - **Reconnecting.** A server whose connection failed or closed is tried
//!   again after a back-off that doubles from `backoff_initial` to
//!   `backoff_max`, each wait drawn between half and all of its value
//!   (jitter, so a PBX restart is not met by every gateway at once); a
//!   refused login waits `backoff_max` straight away, so a wrong password
//!   does not lock the CTI account.
//!
//! The driver opens and closes connections when told ([`LinkOutput`]) and
//! reports what happened to them; it owns the sockets, this owns the rest.

use crate::message::{DeviceId, Edition, Event, Service, SessionRefusal};
use crate::session::{
    CloseReason, CstaSession, RequestError, RequestId, ServiceResult, SessionConfig,
    SessionCounters, SessionOutput,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How the link behaves.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The CSTA servers, by name (`192.168.1.10:3211`), in order.
    pub servers: Vec<String>,
    /// Each server's session.
    pub session: SessionConfig,
    /// First wait before reconnecting.
    pub backoff_initial: Duration,
    /// Longest wait.
    pub backoff_max: Duration,
    /// Seeds the jitter (any value; the driver gives a random one).
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            session: SessionConfig::default(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            seed: 1,
        }
    }
}

/// Where a server's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Connecting, or the session starting.
    Connecting,
    /// The application session is open.
    Up {
        /// The edition in use.
        edition: Edition,
    },
    /// Down; tried again at `retry_at`.
    Down {
        /// Why it went down.
        reason: String,
        /// Next attempt.
        retry_at: Instant,
    },
}

/// One server as the admin page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: ServerState,
    /// Devices monitored on it now.
    pub monitored: usize,
    /// Devices it holds (monitored or being started).
    pub devices: usize,
    /// Times its session came up.
    pub sessions: u64,
    /// Its session's counters.
    pub counters: SessionCounters,
}

/// What the driver must do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutput {
    /// Open a connection to server `i`, then report
    /// [`CstaLink::handle_connected`] or [`CstaLink::handle_closed`].
    Connect(usize),
    /// Send bytes on server `i`'s connection.
    Transmit(usize, Vec<u8>),
    /// Close server `i`'s connection (after sending what is queued).
    Close(usize),
    /// A request's one answer.
    Answer {
        /// The request.
        id: RequestId,
        /// Its outcome.
        result: Result<ServiceResult, RequestError>,
    },
    /// An event for a monitored device.
    Event {
        /// The device.
        device: DeviceId,
        /// The event.
        event: Box<Event>,
    },
    /// A server's state changed (for the log and status).
    ServerChanged(usize, ServerState),
    /// A device's monitor started or failed.
    Monitoring {
        /// The device.
        device: DeviceId,
        /// The server.
        server: usize,
        /// Started, or why not.
        result: Result<(), RequestError>,
    },
}

#[derive(Debug)]
struct Server {
    name: String,
    session: CstaSession,
    state: ServerState,
    failures: u32,
    sessions: u64,
    /// Whether a connection is open (or being opened) for it.
    connected: bool,
}

/// The link to one PBX's CSTA servers.
#[derive(Debug)]
pub struct CstaLink {
    servers: Vec<Server>,
    wanted: BTreeSet<DeviceId>,
    placement: HashMap<DeviceId, usize>,
    next_request: RequestId,
    config: LinkConfig,
    rng: u64,
    out: VecDeque<LinkOutput>,
}

impl CstaLink {
    /// A link; every server is connected to at once.
    pub fn new(config: LinkConfig) -> Self {
        let servers = config
            .servers
            .iter()
            .map(|name| Server {
                name: name.clone(),
                session: CstaSession::new(config.session.clone()),
                state: ServerState::Connecting,
                failures: 0,
                sessions: 0,
                connected: true,
            })
            .collect::<Vec<_>>();
        let out = (0..servers.len()).map(LinkOutput::Connect).collect();
        Self {
            servers,
            wanted: BTreeSet::new(),
            placement: HashMap::new(),
            next_request: 1,
            rng: config.seed | 1,
            config,
            out,
        }
    }

    /// The servers as they stand.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers
            .iter()
            .map(|s| ServerStatus {
                name: s.name.clone(),
                state: s.state.clone(),
                monitored: s.session.monitored(),
                devices: s.session.devices().count(),
                sessions: s.sessions,
                counters: s.session.counters(),
            })
            .collect()
    }

    /// Whether any server's session is open.
    pub fn is_up(&self) -> bool {
        self.servers.iter().any(|s| s.session.is_up())
    }

    /// Devices to monitor.
    pub fn wanted(&self) -> usize {
        self.wanted.len()
    }

    /// Devices monitored on some server now.
    pub fn monitored(&self) -> usize {
        self.servers.iter().map(|s| s.session.monitored()).sum()
    }

    /// Which server holds `device`, if any.
    pub fn server_of(&self, device: &str) -> Option<usize> {
        self.placement.get(device).copied()
    }

    /// The devices to monitor (the CTI and Softphone users): the new set
    /// replaces the old; monitors start and stop to match.
    pub fn set_devices(&mut self, now: Instant, devices: impl IntoIterator<Item = DeviceId>) {
        let new: BTreeSet<DeviceId> = devices.into_iter().collect();
        let gone: Vec<DeviceId> = self.wanted.difference(&new).cloned().collect();
        for d in gone {
            if let Some(i) = self.placement.remove(&d) {
                self.servers[i].session.unmonitor(now, &d);
            }
        }
        self.wanted = new;
        self.place(now);
        self.drain(now);
    }

    /// Asks for `service`; the answer comes as [`LinkOutput::Answer`].
    pub fn request(&mut self, now: Instant, service: Service) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        let device = service.device().to_owned();
        match self.placement.get(&device) {
            Some(&i) if self.servers[i].session.is_up() => {
                self.servers[i].session.request(now, id, service);
                self.drain(now);
            }
            Some(_) => self.out.push_back(LinkOutput::Answer {
                id,
                result: Err(RequestError::NotConnected(
                    "every CSTA server is down".into(),
                )),
            }),
            None => self.out.push_back(LinkOutput::Answer {
                id,
                result: Err(RequestError::UnknownDevice(device)),
            }),
        }
        id
    }

    /// Server `i`'s connection is open.
    pub fn handle_connected(&mut self, now: Instant, i: usize) {
        let Some(s) = self.servers.get_mut(i) else {
            return;
        };
        s.connected = true;
        s.session.handle_connected(now);
        self.drain(now);
    }

    /// Bytes from server `i`.
    pub fn handle_input(&mut self, now: Instant, i: usize, bytes: &[u8]) {
        let Some(s) = self.servers.get_mut(i) else {
            return;
        };
        s.session.handle_input(now, bytes);
        self.drain(now);
    }

    /// Server `i`'s connection closed or could not be opened.
    pub fn handle_closed(&mut self, now: Instant, i: usize, why: &str) {
        let Some(s) = self.servers.get_mut(i) else {
            return;
        };
        if !s.connected {
            return;
        }
        s.connected = false;
        s.session.handle_disconnected(now, why);
        self.down(now, i, why.to_owned(), false);
        self.drain(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for s in &mut self.servers {
            s.session.handle_timeout(now);
        }
        self.drain(now);
        for i in 0..self.servers.len() {
            let s = &mut self.servers[i];
            if let ServerState::Down { retry_at, .. } = s.state
                && retry_at <= now
                && !s.connected
            {
                s.connected = true;
                s.state = ServerState::Connecting;
                self.out
                    .push_back(LinkOutput::ServerChanged(i, ServerState::Connecting));
                self.out.push_back(LinkOutput::Connect(i));
            }
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.servers
            .iter()
            .filter_map(|s| {
                let retry = match &s.state {
                    ServerState::Down { retry_at, .. } if !s.connected => Some(*retry_at),
                    _ => None,
                };
                [s.session.poll_timeout(), retry]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<LinkOutput> {
        self.out.pop_front()
    }

    /// Stops every session politely (the driver then closes).
    pub fn stop(&mut self, now: Instant) {
        for i in 0..self.servers.len() {
            if self.servers[i].session.is_up() {
                self.servers[i].session.stop(now);
            }
        }
        self.drain(now);
    }

    /// Carries every session's outputs up until none has more, acting on
    /// sessions opening and closing (which moves devices).
    fn drain(&mut self, now: Instant) {
        loop {
            let mut any = false;
            for i in 0..self.servers.len() {
                while let Some(o) = self.servers[i].session.poll_output() {
                    any = true;
                    self.handle_session_output(now, i, o);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn handle_session_output(&mut self, now: Instant, i: usize, o: SessionOutput) {
        match o {
            SessionOutput::Transmit(b) => self.out.push_back(LinkOutput::Transmit(i, b)),
            SessionOutput::Up { edition, .. } => {
                let s = &mut self.servers[i];
                s.failures = 0;
                s.sessions += 1;
                s.state = ServerState::Up { edition };
                self.out
                    .push_back(LinkOutput::ServerChanged(i, s.state.clone()));
                self.place(now);
            }
            SessionOutput::Close(reason) => {
                self.servers[i].connected = false;
                self.out.push_back(LinkOutput::Close(i));
                let refused = matches!(
                    reason,
                    CloseReason::Refused(SessionRefusal::WrongCredential)
                );
                self.down(now, i, reason.to_string(), refused);
            }
            SessionOutput::Answer { id, result } => {
                self.out.push_back(LinkOutput::Answer { id, result });
            }
            SessionOutput::Monitoring { device, result } => {
                self.out.push_back(LinkOutput::Monitoring {
                    device,
                    server: i,
                    result,
                });
            }
            SessionOutput::Event { device, event } => {
                self.out.push_back(LinkOutput::Event { device, event });
            }
        }
    }

    fn down(&mut self, now: Instant, i: usize, reason: String, long: bool) {
        let wait = if long {
            self.config.backoff_max
        } else {
            let s = &mut self.servers[i];
            s.failures = s.failures.saturating_add(1);
            let doubled = self
                .config
                .backoff_initial
                .saturating_mul(1u32 << (s.failures - 1).min(16));
            doubled.min(self.config.backoff_max)
        };
        let wait = self.jitter(wait);
        let s = &mut self.servers[i];
        s.state = ServerState::Down {
            reason,
            retry_at: now + wait,
        };
        self.out
            .push_back(LinkOutput::ServerChanged(i, s.state.clone()));
        self.place(now);
    }

    /// Between half and all of `d` (xorshift64*; quality is not the point,
    /// spreading reconnects is).
    fn jitter(&mut self, d: Duration) -> Duration {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        let frac = r as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + frac / 2.0)
    }

    /// Puts every wanted device on its server: home when its session is
    /// up; otherwise where it is served now, if it is; otherwise home
    /// again while home is still connecting (so a start, when every server
    /// connects at once, does not move half the users twice); otherwise
    /// the next server up in order. With none up, devices wait where they
    /// are (requests for them are answered "down", not "unknown").
    fn place(&mut self, now: Instant) {
        let n = self.servers.len();
        if n == 0 {
            return;
        }
        let up: Vec<bool> = self.servers.iter().map(|s| s.session.is_up()).collect();
        let connecting: Vec<bool> = self
            .servers
            .iter()
            .map(|s| s.state == ServerState::Connecting)
            .collect();
        let moves: Vec<(DeviceId, Option<usize>, usize)> = self
            .wanted
            .iter()
            .filter_map(|d| {
                let h = home(d, n);
                let current = self.placement.get(d).copied();
                let target = if up[h] {
                    h
                } else if let Some(c) = current.filter(|&c| up[c]) {
                    c
                } else if connecting[h] {
                    h
                } else {
                    (1..n)
                        .map(|k| (h + k) % n)
                        .find(|&i| up[i])
                        .unwrap_or(current.unwrap_or(h))
                };
                (current != Some(target)).then(|| (d.clone(), current, target))
            })
            .collect();
        for (d, from, to) in moves {
            if let Some(f) = from {
                self.servers[f].session.unmonitor(now, &d);
            }
            self.servers[to].session.monitor(now, &d);
            self.placement.insert(d, to);
        }
    }
}

/// A device's home server among `n`: FNV-1a of its id (stable across
/// restarts and builds, unlike the standard hasher).
fn home(device: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}
