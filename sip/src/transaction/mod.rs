//! RFC 3261 §17 transactions (with RFC 6026's Accepted states), as sans-IO
//! state machines: `handle_*(now, ...)` feeds them, `poll_output()` drains
//! what to send and what happened, `poll_timeout()` says when to call
//! `handle_timeout(now)` next. No socket, no clock: time is an input, and
//! the tests drive a fake one.

mod invite;
mod key;
mod non_invite;
mod state;
mod timers;

pub use invite::{InviteClient, InviteServer};
pub use key::{ClientKey, ServerKey, cancel_target, client_key, server_key};
pub use non_invite::{NonInviteClient, NonInviteServer};
pub use state::{Event, Output, State, Transport};
pub use timers::Timers;
