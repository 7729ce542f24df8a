//! RFC 3261 §17 transactions (with RFC 6026's Accepted states), as sans-IO
//! state machines: `handle_*(now, ...)` feeds them, `poll_output()` drains
//! what to send and what happened, `poll_timeout()` says when to call
//! `handle_timeout(now)` next. No socket, no clock: time is an input, and
//! the tests drive a fake one.

mod invite;
mod key;
mod non_invite;

pub use invite::{InviteClient, InviteServer};
pub use key::{ClientKey, ServerKey, cancel_target, client_key, server_key};
pub use non_invite::{NonInviteClient, NonInviteServer};

use std::time::{Duration, Instant};

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Whether the transport retransmits by itself (TCP, TLS) or not (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the transaction retransmits.
    Unreliable,
    /// TCP/TLS: no retransmission; wait timers are zero.
    Reliable,
}

/// Transaction states (RFC 3261 §17, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE client: request sent, nothing back.
    Calling,
    /// Non-INVITE: request sent (client) or received (server), no response.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response was received or sent; absorbing retransmissions.
    Completed,
    /// INVITE server: ACK received for a non-2xx final.
    Confirmed,
    /// INVITE (RFC 6026): a 2xx was received or sent; absorbing retransmissions.
    Accepted,
    /// Done; the transaction can be dropped.
    Terminated,
}

/// What a transaction reports to its user (the transaction user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response passed up (client), with its status code.
    Response(u16),
    /// A request retransmission was absorbed (server).
    Absorbed,
    /// Timer B/F: no final response in time (client), or Timer H: no ACK (server).
    Timeout,
    /// The ACK for a non-2xx final arrived (INVITE server).
    Acked,
    /// The transaction ended.
    Terminated,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes on the transaction's transport.
    Transmit(Vec<u8>),
    /// Tell the transaction user.
    Event(Event),
}

/// A retransmission timer that doubles up to a cap (Timers A, E, G).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub at: Instant,
    pub interval: Duration,
    pub cap: Option<Duration>,
}

impl Backoff {
    pub(crate) fn new(now: Instant, first: Duration, cap: Option<Duration>) -> Self {
        Self {
            at: now + first,
            interval: first,
            cap,
        }
    }

    /// Advances after firing at `now`.
    pub(crate) fn next(&mut self, now: Instant) {
        self.interval = match self.cap {
            Some(cap) => (self.interval * 2).min(cap),
            None => self.interval * 2,
        };
        self.at = now + self.interval;
    }
}

pub(crate) fn earliest(times: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    times.into_iter().flatten().min()
}
