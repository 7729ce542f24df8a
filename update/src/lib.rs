//! pbxlink's software update, with no I/O: what the gateway decides, and
//! the caller does. The gateway (`controlplane/src/operations/update/`)
//! drives it; the platform's side is cloudsim's release store.
//!
//! - [`release`]: a release is one file (the gzip-compressed `pbxlink`
//!   executable) and its minisign signature (Ed25519), whose trusted
//!   comment names the version: `pbxlink VERSION`. Verified against the
//!   gateway's trusted key, and refused unless newer than what runs.
//! - [`transfer`]: the release arrives in pieces through the tunnel, in
//!   order, bounded in size.
//! - [`journal`]: what makes the critical phase safe. Each step is written
//!   before it is taken; at start the gateway reads it and knows which
//!   whole version to run, whether a health check is owed, and what to
//!   tell the operator.
//! - [`schedule`]: when an update is applied — the wizard's time of day,
//!   or at once.

pub mod journal;
pub mod release;
pub mod schedule;
pub mod transfer;

pub use semver::Version;
