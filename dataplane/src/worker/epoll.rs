//! The fallback backend, for hosts where io_uring is unavailable (container
//! seccomp profiles, `kernel.io_uring_disabled`): level-triggered epoll, and
//! batches of `recvmmsg`/`sendmmsg` on each ready socket. All buffers and
//! message headers are allocated once at start. Raw syscalls live here
//! (`unsafe` as in an FFI module); each block says why it holds.
#![allow(unsafe_code)]

use super::{BUF_SIZE, Core, Origin, Registry};
use crate::relay::{Socket, Verdict};
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 32;
/// Batches read from one ready socket before moving on, so one busy relay
/// cannot starve the others (level-triggered epoll brings it back).
const BATCHES_PER_SOCKET: usize = 4;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// Longest sleep: the timer granularity for sweeps and stats.
const WAIT: Duration = Duration::from_millis(20);
const DOORBELL: u64 = u64::MAX;
const CONTROL_LEN: usize = 64;

fn token(slot: usize, generation: u32, socket: usize) -> u64 {
    (generation as u64) << 40 | (slot as u64) << 2 | socket as u64
}

pub(super) struct Epoll {
    fd: RawFd,
}

impl Epoll {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the fd is checked and then owned by Epoll.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { fd })
    }

    fn add(&self, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: ev is a valid event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: closes the epoll fd this struct owns, once.
        unsafe { libc::close(self.fd) };
    }
}

impl Registry for Epoll {
    fn register(
        &mut self,
        slot: usize,
        generation: u32,
        sockets: &[UdpSocket; 4],
    ) -> io::Result<()> {
        for (i, s) in sockets.iter().enumerate() {
            self.add(s.as_raw_fd(), token(slot, generation, i))?;
        }
        Ok(())
    }

    fn deregister(&mut self, _slot: usize, _generation: u32, sockets: &[UdpSocket; 4]) {
        for s in sockets {
            // SAFETY: removing a registered fd; a null event is allowed for DEL.
            unsafe {
                libc::epoll_ctl(
                    self.fd,
                    libc::EPOLL_CTL_DEL,
                    s.as_raw_fd(),
                    std::ptr::null_mut(),
                )
            };
        }
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// Message headers and buffers for one batch, allocated once.
pub(super) struct Batch {
    bufs: Vec<[u8; BUF_SIZE]>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<[u8; CONTROL_LEN]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    out_names: Vec<libc::sockaddr_storage>,
    out_iovs: Vec<libc::iovec>,
    out_msgs: Vec<libc::mmsghdr>,
}

impl Batch {
    pub(super) fn new() -> Box<Self> {
        // SAFETY: a plain C struct for which all-zero is a valid value.
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Box::new(Self {
            bufs: vec![[0; BUF_SIZE]; BATCH],
            names: vec![zero_name; BATCH],
            controls: vec![[0; CONTROL_LEN]; BATCH],
            iovs: vec![iov; BATCH],
            msgs: vec![zero_msg; BATCH],
            out_names: vec![zero_name; BATCH],
            out_iovs: vec![iov; BATCH],
            out_msgs: vec![zero_msg; BATCH],
        })
    }

    /// Re-points every receive header at its buffers (the kernel rewrites
    /// the lengths on each call).
    fn arm_receive(&mut self) {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                // Leave room to protect in place.
                iov_len: BUF_SIZE - crate::srtp::TRAILER_ROOM,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_controllen = CONTROL_LEN;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
    }
}

/// The relays' sockets served by readiness: the whole of this backend,
/// and the xdp backend's path for what its program does not divert.
pub(super) struct SocketPath {
    pub(super) epoll: Epoll,
    batch: Box<Batch>,
    events: Vec<libc::epoll_event>,
}

impl SocketPath {
    pub(super) fn new() -> io::Result<Self> {
        Ok(Self {
            epoll: Epoll::new()?,
            batch: Batch::new(),
            // SAFETY: epoll_event is plain data.
            events: vec![unsafe { std::mem::zeroed() }; EVENTS],
        })
    }

    /// Waits up to `wait` (`Duration::MAX`: with no timeout) for ready sockets (or the doorbell, when it is
    /// registered) and serves them: each ready socket a few batches of
    /// `recvmmsg` through its relay and `sendmmsg`, until `budget`
    /// datagrams are read (the rest wait in their sockets: epoll is
    /// level-triggered). Returns whether the doorbell rang.
    pub(super) fn serve(&mut self, core: &mut Core, wait: Duration, budget: usize) -> bool {
        // SAFETY: events has EVENTS writable entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.fd,
                self.events.as_mut_ptr(),
                EVENTS as i32,
                crate::sys::timeout_ms(wait),
            )
        };
        let now = Instant::now();
        let mut doorbell = false;
        let mut read = 0;
        for ev in self.events.iter().take(n.max(0) as usize) {
            if read >= budget {
                break;
            }
            let data = ev.u64;
            if data == DOORBELL {
                doorbell = true;
                continue;
            }
            let (generation, slot, socket) = (
                (data >> 40) as u32,
                ((data >> 2) & 0x3f_ffff_ffff) as usize,
                (data & 3) as usize,
            );
            if core.generations.get(slot) != Some(&generation) {
                continue;
            }
            for _ in 0..BATCHES_PER_SOCKET {
                let socket = Socket::from_index(socket);
                let got = drain_once(core, &mut self.batch, now, slot, socket);
                read += got;
                if got < BATCH || read >= budget {
                    break;
                }
            }
        }
        doorbell
    }
}

/// Runs the worker loop until `Shutdown`.
pub fn run(mut core: Core) -> io::Result<()> {
    let mut path = SocketPath::new()?;
    path.epoll
        .add(core.channel.doorbell.as_raw_fd(), DOORBELL)?;
    while !core.stopping {
        let wait = if core.may_sleep() {
            Duration::MAX
        } else {
            WAIT
        };
        let rang = path.serve(&mut core, wait, usize::MAX);
        let now = Instant::now();
        if rang {
            crate::sys::eventfd_drain(&core.channel.doorbell);
        }
        if rang || !core.channel.commands.is_empty() {
            core.commands(now, &mut path.epoll);
        }
        core.tick(now);
    }
    core.publish();
    Ok(())
}

/// One `recvmmsg` on a socket, the relay's verdicts, one `sendmmsg`.
/// Returns how many datagrams were read.
fn drain_once(core: &mut Core, b: &mut Batch, now: Instant, slot: usize, socket: Socket) -> usize {
    let Some(fd) = core.slots[slot]
        .as_ref()
        .map(|s| s.sockets[socket as usize].as_raw_fd())
    else {
        return 0;
    };
    b.arm_receive();
    // SAFETY: msgs points at BATCH headers whose buffers live in `b`.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            b.msgs.as_mut_ptr(),
            BATCH as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got <= 0 {
        return 0;
    }
    let got = got as usize;
    let mut out = 0;
    let mut out_fd = -1;
    for i in 0..got {
        let len = b.msgs[i].msg_len as usize;
        let h = &b.msgs[i].msg_hdr;
        let Some(src) = crate::sys::sockaddr_to_std(&b.names[i], h.msg_namelen as usize) else {
            continue;
        };
        let control_len = h.msg_controllen.min(CONTROL_LEN);
        let (controls, bufs) = (&b.controls[i][..control_len], &mut b.bufs[i]);
        match core.process(now, Origin { slot, socket, src }, controls, bufs, len) {
            Some(Verdict::Send {
                socket: to_socket,
                to,
                len,
            }) => {
                let Some(fd) = core.slots[slot]
                    .as_ref()
                    .map(|s| s.sockets[to_socket as usize].as_raw_fd())
                else {
                    continue;
                };
                if out_fd != -1 && out_fd != fd {
                    flush(core, b, slot, out_fd, out);
                    out = 0;
                }
                out_fd = fd;
                let connected = core.slots[slot]
                    .as_ref()
                    .is_some_and(|s| s.connected_to(to_socket, to));
                let name_len = if connected {
                    0
                } else {
                    crate::sys::std_to_sockaddr(to, &mut b.out_names[out])
                };
                b.out_iovs[out] = libc::iovec {
                    iov_base: b.bufs[i].as_mut_ptr().cast(),
                    iov_len: len,
                };
                let h = &mut b.out_msgs[out].msg_hdr;
                h.msg_name = if connected {
                    std::ptr::null_mut()
                } else {
                    (&mut b.out_names[out] as *mut libc::sockaddr_storage).cast()
                };
                h.msg_namelen = name_len;
                h.msg_iov = &mut b.out_iovs[out];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                out += 1;
            }
            Some(Verdict::Drop(_)) | None => {}
        }
    }
    if out > 0 {
        flush(core, b, slot, out_fd, out);
    }
    got
}

fn flush(core: &mut Core, b: &mut Batch, slot: usize, fd: RawFd, n: usize) {
    let mut done = 0;
    while done < n {
        // SAFETY: out_msgs[done..n] are filled and point into `b`.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                b.out_msgs[done..].as_mut_ptr(),
                (n - done) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if sent <= 0 {
            // The first unsent datagram failed; count it and go on.
            core.send_failed(slot);
            done += 1;
            continue;
        }
        core.stats.sent += sent as u64;
        done += sent as usize;
    }
}
