//! pbxlink's SIP core, sans-IO: bytes in, messages or precise rejections
//! out; no sockets, no clock.
//!
//! - [`framing`]: where one message ends on a stream (Content-Length) or in
//!   a datagram; CRLF keep-alives (RFC 5626); size limits.
//! - [`error`]: why a message was rejected (framing and parse reasons).
//! - [`normalize`]: what `rsip` (the message model) does not handle: header
//!   folding, compact header names, header and line limits.
//! - [`grammar`]: RFC 3261 grammar of the fields the stack acts on.
//! - [`message`]: the whole parse, plus the RFC 3261 checks a message must
//!   pass before anything acts on it.
//! - [`reject`]: the `400 Bad Request` a rejected request gets, naming why.
//! - [`transaction`]: RFC 3261 transactions and how messages match them.
//! - [`resolve`]: RFC 3263 target ordering and failover.
//! - [`sdp`]: session descriptions, rewritten per leg; keys redacted.
//! - [`stun`]: the STUN Binding that learns the public address (RFC 5389).
//! - [`ntp`]: the SNTP exchange the start-up diagnostics use (RFC 4330);
//!   like STUN, a question the gateway asks of the cloud's servers.
//! - [`digest`]: digest authentication of the PBX trunk (RFC 3261 §22.4).
//! - [`keepalive`]: OPTIONS keep-alives and whether the peer answers.
//! - [`register`]: users registered to a registrar, with digest and refresh.

pub mod digest;
pub mod error;
pub mod framing;
pub mod grammar;
pub mod keepalive;
pub mod limits;
pub mod message;
pub mod normalize;
pub mod ntp;
pub mod register;
pub mod reject;
pub mod resolve;
pub mod sdp;
pub mod stun;
pub mod transaction;

pub use message::{ParseError, parse};

/// This crate's version, as its build (Cargo) sets it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
