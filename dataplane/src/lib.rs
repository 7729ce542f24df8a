//! pbxlink data plane: the media core every call's packets cross.
//!
//! This crate is sans-IO: it parses, checks, renumbers and (un)protects
//! packets in buffers it is handed, with time passed in. It owns no socket,
//! no thread and no clock; the io_uring workers that drive it live beside it
//! (see docs/architecture.md). Nothing here panics on packet bytes or allocates
//! per packet.

pub mod backlog;
pub mod continuity;

/// CPU affinity of the calling thread (safe wrappers).
pub mod cpu {
    pub use crate::sys::{allowed_cpus, pin_to_cpu};
}
pub mod control;
pub mod direction;
pub mod drops;
pub mod engine;
pub mod net;
pub mod ports;
pub mod profile;
pub mod ptmap;
pub mod quality;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod stats;
mod sys;
pub mod telephone_event;
pub mod udp_batch;
pub mod worker;
pub mod xdp;

pub use direction::{CloudToLan, DirectionConfig, DirectionCounters, LanToCloud};
pub use drops::{DropCounters, DropReason};
pub use srtp::{MasterKey, Suite};

/// This crate's version, as its build (Cargo) sets it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
