//! The composition root: the one place that reads the typed
//! configuration, builds each service (data plane, SIP trunk and
//! subscriber side, calls, the CSTA link, the user-config API, the tunnel,
//! the admin page), wires their channels, and owns start, drain and
//! restart. Nothing below it starts another service; services publish
//! through small types defined below them ([`crate::events::EventSink`],
//! [`crate::signalling::Counters`]) rather than through each other.
//!
//! - [`run`]: `pbxlink run` — the configuration read, the data plane
//!   started, then [`services`] (or [`setup`] while not onboarded), again
//!   after each restart the admin page asks for.
//! - [`services`]: the services wired and run until a stop or restart,
//!   then drained in order.
//! - [`setup`]: the admin page and its wizard alone, before onboarding.

pub mod run;
pub mod services;
pub mod setup;
