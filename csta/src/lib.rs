//! pbxlink's CSTA client core, sans-IO: the gateway's computer-telephony
//! link to the PBX (ECMA-269 services in ECMA-323 XML over TCP). Bytes and
//! time in; bytes to send, answers, events and timeouts out; no socket, no
//! clock. The tokio driver lives in the control plane.
//!
//! - [`framing`]: the 8-byte header (length, invoke id) and stream
//!   reassembly.
//! - [`xml`]: the XML as an element tree, namespace edition ignored.
//! - [`message`]: typed requests, responses, errors and events.
//! - [`session`]: one connection's application session, invoke ids,
//!   timeouts, keep-alive and monitors.
//! - [`link`]: several CSTA servers for one PBX, users spread across them,
//!   failover and reconnection with back-off.
//! - [`history`]: each user's recent calls, from their monitor's events.

pub mod framing;
pub mod history;
pub mod link;
pub mod message;
pub mod session;
pub mod xml;

/// This crate's version, as its build (Cargo) sets it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
