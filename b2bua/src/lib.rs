//! pbxlink's B2BUA core (issue 6), sans-IO: a call is the PBX leg and the
//! cloud leg bridged — SIP messages in; SIP messages, relay actions and the
//! call's end out. No sockets, no clock, no randomness: the caller supplies
//! identifiers and SRTP keys in a [`call::Plan`].
//!
//! - [`leg`]: one dialog and the messages the gateway writes on it.
//! - [`call`]: the bridge state machine.
//! - [`digits`]: the numbers calls are carried to.
//!
//! Wiring to the transports, the transaction layer and the data plane
//! (`pbxlink run`) follows.

pub mod call;
pub mod digits;
pub mod leg;
