//! The data plane as the control plane sees it: workers started per the
//! performance profile, pinned inside the process's CPU set, each with its
//! channel; relays placed on the least-loaded worker; events gathered.

use crate::backlog::{Backlog, Backpressure};
use crate::control::{BoundRelay, Channel, Command, Event, QueueFull};
use crate::profile::{Profile, Resources};
use crate::relay::{RelayId, RelaySpec};
use crate::worker::{self, Core, WorkerConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Which I/O backend the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring with multishot receive and a provided-buffer ring.
    Uring,
    /// epoll with recvmmsg/sendmmsg.
    Epoll,
    /// AF_XDP: an XDP program diverts relay traffic on one interface to
    /// the worker, past the kernel's socket path (see `worker::xdp`).
    Xdp,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
            Backend::Xdp => "xdp",
        })
    }
}

/// How to start the data plane.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Performance profile.
    pub profile: Profile,
    /// Backend; `None` picks io_uring when the kernel allows it.
    pub backend: Option<Backend>,
    /// Most relays per worker.
    pub max_relays_per_worker: usize,
    /// Receive buffers per worker (power of two).
    pub buffers_per_worker: u16,
    /// DSCP of RTP sockets (46 = EF).
    pub dscp: u8,
    /// The interface the xdp backend diverts relay traffic on (the one
    /// holding the relays' address).
    pub xdp_interface: String,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            profile: Profile::Small,
            backend: None,
            max_relays_per_worker: 4096,
            buffers_per_worker: 4096,
            dscp: 46,
            xdp_interface: "lo".to_string(),
        }
    }
}

/// Errors starting the data plane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A worker could not be set up.
    #[error("data-plane worker {worker} failed to start: {source}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// Why.
        source: std::io::Error,
    },
    /// io_uring was asked for but is not usable here.
    #[error(
        "io_uring is not usable here ({0}); run with the epoll backend (--backend epoll) or allow io_uring"
    )]
    UringUnavailable(std::io::Error),
    /// The xdp backend cannot run here.
    #[error(
        "the xdp backend cannot divert traffic on {interface:?} ({source}); it needs root (CAP_NET_ADMIN, CAP_BPF) and the interface, or use --backend uring"
    )]
    XdpUnavailable {
        /// The interface asked for.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// More workers than the xdp backend can give receive queues.
    #[error(
        "the xdp backend runs one worker per receive queue of {interface:?}; the profile asks for {workers} (use the small profile or --backend uring)"
    )]
    XdpWorkers {
        /// The interface.
        interface: String,
        /// Workers the profile asks for.
        workers: usize,
    },
}

/// The running data plane.
#[derive(Debug)]
pub struct DataPlane {
    channels: Vec<Arc<Channel>>,
    /// Per worker: commands its full queue could not take yet.
    backlogs: Vec<Backlog>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    load: Vec<usize>,
    placement: HashMap<RelayId, usize>,
    /// Per worker: commands were queued since its doorbell last rang.
    owed: Vec<bool>,
    /// Doorbells wait for [`DataPlane::ring_doorbells`].
    held: bool,
    backend: Backend,
    /// DSCP of the relays' RTP sockets.
    dscp: u8,
    /// What features of its backend the workers use (empty for epoll).
    pub features: Vec<&'static str>,
}

impl DataPlane {
    /// Starts one worker per profile core, pinned to the CPUs this process
    /// may use (the last ones first, leaving CPU 0 to the control plane when
    /// there is a choice).
    pub fn start(config: &DataPlaneConfig, resources: &Resources) -> Result<DataPlane, StartError> {
        let spec = config.profile.spec(resources.cpus.len());
        let workers = spec.workers.max(1);
        // The backend and, from its probe, the features it uses.
        let (backend, features) = match config.backend {
            Some(Backend::Uring) => (
                Backend::Uring,
                worker::uring::probe().map_err(StartError::UringUnavailable)?,
            ),
            Some(Backend::Epoll) => (Backend::Epoll, Vec::new()),
            Some(Backend::Xdp) => {
                if workers > 1 {
                    return Err(StartError::XdpWorkers {
                        interface: config.xdp_interface.clone(),
                        workers,
                    });
                }
                let features = worker::xdp::probe(&config.xdp_interface).map_err(|source| {
                    StartError::XdpUnavailable {
                        interface: config.xdp_interface.clone(),
                        source,
                    }
                })?;
                (Backend::Xdp, features)
            }
            None => match worker::uring::probe() {
                Ok(features) => (Backend::Uring, features),
                Err(_) => (Backend::Epoll, Vec::new()),
            },
        };
        // Four sockets per relay, plus slack for the process.
        let _ =
            crate::sys::raise_nofile((workers * config.max_relays_per_worker * 4 + 1024) as u64);
        let mut channels = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        let cpus = &resources.cpus;
        for index in 0..workers {
            let room = crate::control::event_room(config.max_relays_per_worker);
            let channel = Channel::with_event_room(room).map_err(|source| StartError::Worker {
                worker: index,
                source,
            })?;
            // Spread over the allowed CPUs from the top; wrap when the
            // profile asks for more workers than CPUs.
            let cpu = (!cpus.is_empty())
                .then(|| cpus[(cpus.len() - 1 - index % cpus.len()) % cpus.len()]);
            let wc = WorkerConfig {
                index,
                cpu,
                max_relays: config.max_relays_per_worker,
                buffers: config.buffers_per_worker,
                dscp: config.dscp,
            };
            let ch = channel.clone();
            let interface = config.xdp_interface.clone();
            let thread = std::thread::Builder::new()
                .name(format!("pbxlink-dp{index}"))
                .spawn(move || {
                    if let Some(cpu) = wc.cpu {
                        crate::sys::pin_to_cpu(cpu)?;
                    }
                    let core = Core::new(wc, ch.clone());
                    let r = match backend {
                        Backend::Uring => worker::uring::run(core),
                        Backend::Epoll => worker::epoll::run(core),
                        Backend::Xdp => worker::xdp::run(core, &interface),
                    };
                    let _ = ch.events.push(Event::Stopped { worker: index });
                    r
                })
                .map_err(|source| StartError::Worker {
                    worker: index,
                    source,
                })?;
            channels.push(channel);
            threads.push(thread);
        }
        Ok(DataPlane {
            load: vec![0; workers],
            backlogs: (0..workers).map(|_| Backlog::default()).collect(),
            channels,
            threads,
            placement: HashMap::new(),
            owed: vec![false; workers],
            held: false,
            backend,
            dscp: config.dscp,
            features,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.channels.len()
    }

    /// The start-up line naming workers, backend and io_uring features.
    pub fn describe(&self) -> String {
        let features = if self.features.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.features.join(", "))
        };
        format!(
            "data plane: {} worker(s), backend {}{features}",
            self.workers(),
            self.backend
        )
    }

    /// Adds a relay on the least-loaded worker; returns that worker. Its
    /// sockets are bound here, before this returns, so media that comes
    /// before the worker takes the relay waits in them (a port that could
    /// not be bound is left to the worker, which reports it). The outcome
    /// arrives as `Added` or `AddFailed`. Refused while that worker's queue
    /// is full or commands wait for it (see `backlog`).
    pub fn add_relay(&mut self, spec: RelaySpec) -> Result<usize, QueueFull> {
        let worker = (0..self.load.len())
            .min_by_key(|&w| self.load[w])
            .unwrap_or(0);
        let id = spec.id;
        let cmd = match crate::worker::bind(&spec, self.dscp) {
            Ok(sockets) => Command::AddBound(Box::new(BoundRelay { spec, sockets })),
            Err(_) => Command::Add(Box::new(spec)),
        };
        self.backlogs[worker].add(&self.channels[worker], worker, cmd)?;
        self.owe(worker);
        self.load[worker] += 1;
        self.placement.insert(id, worker);
        Ok(worker)
    }

    /// Sends a command about relay `id` to its worker, or keeps it
    /// waiting, in order, while the worker's queue is full (refused only
    /// when the backlog is full too). `Remove` frees its place in the load
    /// count.
    pub fn command(&mut self, id: RelayId, cmd: Command) -> Result<(), QueueFull> {
        let Some(&worker) = self.placement.get(&id) else {
            return Ok(());
        };
        let removing = matches!(cmd, Command::Remove { .. });
        self.backlogs[worker].send(&self.channels[worker], worker, cmd)?;
        self.owe(worker);
        if removing {
            self.placement.remove(&id);
            self.load[worker] = self.load[worker].saturating_sub(1);
        }
        Ok(())
    }

    /// Holds the workers' doorbells: commands queued from now on wake
    /// their worker at [`DataPlane::ring_doorbells`], once a worker, not
    /// one by one. The control plane holds them while it handles a
    /// message, so the answer it forwards is on its way before a worker
    /// (maybe on the same CPU) wakes to set the call's relay up.
    pub fn hold_doorbells(&mut self) {
        self.held = true;
    }

    /// Rings the doorbell of every worker given commands since they were
    /// held, and stops holding them.
    pub fn ring_doorbells(&mut self) {
        self.held = false;
        for (owed, ch) in self.owed.iter_mut().zip(&self.channels) {
            if std::mem::take(owed) {
                ch.ring();
            }
        }
    }

    /// A command went to `worker`: ring now, or owe it while held.
    fn owe(&mut self, worker: usize) {
        if self.held {
            self.owed[worker] = true;
        } else {
            self.channels[worker].ring();
        }
    }

    /// What back-pressure on the command queues has done so far.
    pub fn backpressure(&self) -> Backpressure {
        let mut sum = Backpressure::default();
        for b in &self.backlogs {
            b.count_into(&mut sum);
        }
        sum
    }

    /// Sends waiting commands the workers have made room for, then takes
    /// every event waiting from every worker.
    pub fn drain_events(&mut self, mut f: impl FnMut(Event)) {
        for (w, (b, ch)) in self.backlogs.iter_mut().zip(&self.channels).enumerate() {
            if b.flush(ch) > 0 {
                self.owed[w] = true;
            }
        }
        self.ring_doorbells();
        for ch in &self.channels {
            while let Some(e) = ch.events.pop() {
                f(e);
            }
        }
    }

    /// Asks every worker to remove its relays and stop, then waits for them.
    /// Events emitted on the way out stay readable with `drain_events`.
    pub fn shutdown(&mut self) -> std::io::Result<()> {
        self.ring_doorbells();
        for (b, ch) in self.backlogs.iter_mut().zip(&self.channels) {
            while !b.is_empty() {
                if b.flush(ch) > 0 {
                    ch.ring();
                }
                std::thread::yield_now();
            }
        }
        for (w, ch) in self.channels.iter().enumerate() {
            while ch.send(w, Command::Shutdown).is_err() {
                std::thread::yield_now();
            }
        }
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(std::io::Error::other("data-plane worker panicked")),
            }
        }
        result
    }
}
