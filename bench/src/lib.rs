//! Load harnesses live here (issue 4); the criterion benches are in `benches/`.

pub mod flood;
pub mod host;
pub mod impair;
pub mod sites;
pub mod wire;

/// Sets the calling thread's nice value (Linux: per thread). The
/// generator runs its load at -20 so that other tasks waking on its core
/// (kernel threads, other processes) get short slices there instead of
/// milliseconds that put it behind its schedule; it goes back to 0 before
/// starting anything, since children inherit it.
#[allow(unsafe_code)]
pub fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls on the calling thread's id.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
