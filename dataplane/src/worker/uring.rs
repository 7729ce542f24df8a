//! io_uring backend (in progress).

use super::Core;
use std::io;

/// Checks io_uring is usable and lists the features the backend needs.
pub fn probe() -> io::Result<Vec<&'static str>> {
    Err(io::Error::other("not built yet"))
}

/// Runs the worker loop.
pub fn run(_core: Core) -> io::Result<()> {
    Err(io::Error::other("not built yet"))
}
