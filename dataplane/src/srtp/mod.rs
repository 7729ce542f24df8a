//! SRTP/SRTCP (RFC 3711, RFC 7714) for one direction of one leg.
//!
//! Owns keys, per-SSRC crypto state and the packet transforms; owns nothing
//! about sockets, time or relays. A context is created from an already-parsed
//! [`MasterKey`] and then only touches the packet buffer it is handed, in
//! place, with no allocation and no lock.
//!
//! Two engines share one contract:
//! - [`SrtpContext`], native (RustCrypto AES, GCM, HMAC-SHA1), is the packet
//!   path. It replaced libsrtp2 there because Debian's libsrtp2 (built on NSS)
//!   allocates and takes locks on every packet and is several times slower;
//!   `bench/` prints the ratio and `tests` prove the two produce the same bytes.
//! - [`LibsrtpContext`], Debian's libsrtp2 through FFI, is the reference the
//!   native engine is measured and cross-checked against.

mod context;
#[cfg(test)]
mod differential;
mod engine;
mod ffi;
#[cfg(test)]
mod hex;
#[cfg(test)]
mod kat;
mod kdf;
mod key;
mod libsrtp;
pub(crate) mod replay;
mod transform;

pub use context::SrtpContext;

pub use engine::{Role, SrtpError, TRAILER_ROOM};
pub use key::{KeyError, MasterKey, Suite};
pub use libsrtp::{LibsrtpContext, library_version};
