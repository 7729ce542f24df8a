//! The local admin (SPEC §1 "Local admin", §4, §7): the REST API an
//! operator's browser, automation or monitoring reads, the page over it
//! (login, the onboarding wizard, operations), and `/metrics`. It owns no
//! calls: it reads the node's counters, the trunks, the users and the CSTA
//! link, passes commands to them, and keeps only its own parts
//! ([`AdminSetup`]: the account, the wizard's settings, downloads). Where
//! it listens: `listeners`; who may do what: `auth`; the page's endpoints:
//! `wizard`, `console`, `metrics`; the operator's guide: docs/operations/admin-page.md.
//!
//! Reading:
//! - `GET /api/status`: the status word (SPEC §7: `Connected`, or
//!   `Lost trunk connection to PBX` while the PBX does not answer its
//!   keep-alives), the PBX and cloud trunks, the CSTA link's word, calls
//!   in progress, relays.
//! - `GET /api/counters`: every counter of the node by name (calls by
//!   outcome, refusals by reason, trust and authentication, keep-alives,
//!   CSTA requests and events, user pushes).
//! - `GET /api/users`, `GET /api/users/{extension}`: the PBX's users, each
//!   onboarded with its role or not with the reason; one user with its
//!   call history.
//! - `GET /api/softphones`: the Softphone users the gateway registers to
//!   the PBX, each `registered (N s left)`, `failed: 403 (next try in N s)`,
//!   `waiting`, …, and whether the registrar answers.
//! - `GET /api/cti`: the CSTA link — `Connected` and `Connection
//!   successful`, or `Lost connection` and why — per server.
//! - `GET /api/cti/events?after=N&limit=M`: events from the users'
//!   monitors, in order, with sequence numbers.
//!
//! Commands (the page's session with its CSRF token, or `Authorization:
//! Bearer <[admin] api_token>`; over plain HTTP without a token configured
//! they are refused 403):
//! - `POST /api/cti/{make-call|answer|clear|hold|retrieve|consult|transfer|message-waiting}`
//!   with JSON naming the user (`device`) and the call(s): the CSTA
//!   service on that user's behalf (SPEC §6), answered with its result or
//!   the PBX's refusal.
//! - `POST /api/sync`: a user sync toward the cloud platform now; its
//!   report (`GET /api/tunnel`: the tunnel's state, backlog, counters).
//! - `DELETE /api/pbx`: deletes the PBX connection (closes the CSTA link,
//!   forgets the PBX's users) — refused 409 while a user holds the CTI or
//!   Softphone role or a user sync runs (SPEC §5).

pub(crate) mod access;
mod api;
mod auth;
mod console;
pub mod diagnostics;
mod listeners;
pub(crate) mod mdns;
mod metrics;
mod page;
mod relink;
mod wizard;

pub(crate) use crate::operations::state::{AdminSetup, AdminState, Watch};
pub use listeners::start;
