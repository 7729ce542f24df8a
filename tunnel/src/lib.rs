//! pbxlink's management tunnel to the cloud platform, sans-IO
//! (docs/protocols-tunnel.md): bytes and time in, bytes to send, acknowledgements
//! and commands out. The TLS connection and the outbox on disk belong to
//! the control plane.
//!
//! - [`frame`]: the 4-byte length before each JSON message.
//! - [`message`]: the versioned messages, and what an unknown or broken
//!   one is.
//! - [`client`]: the gateway's session.

pub mod client;
pub mod frame;
pub mod message;
