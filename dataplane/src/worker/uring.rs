//! The io_uring backend: one ring per worker, set up single-issuer with
//! deferred task running; sockets as registered files; one multishot
//! `RecvMsg` per socket drawing from a provided-buffer ring; packets
//! rewritten in place in the buffer they arrived in and sent from it with
//! `SendMsg`, all of a turn's sends submitted in one `io_uring_enter`. The
//! buffer goes back to the ring when its send completes (or at once when the
//! packet is dropped). This is one of the two places `unsafe` is allowed;
//! each block says why it holds.
#![allow(unsafe_code)]

use super::{BUF_SIZE, Core, Origin, Registry};
use crate::relay::{Socket, Verdict};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Completion queue entries per submission queue entry: receives, sends
/// and control together. The submission queue has an entry per receive
/// buffer (each received packet may add one send), at least 256.
const CQ_PER_SQ: u32 = 4;
/// Completions handled per turn, so commands and timers are never starved
/// for more than one batch (about 4 ms of packets at a full ring).
const CQES_PER_TURN: usize = 4096;
/// Longest wait for a completion while relays run: the timer granularity
/// for sweeps and stats. With none (and the counters published) the wait
/// has no timeout ([`Core::may_sleep`]).
const WAIT: Duration = Duration::from_millis(20);
/// Completions to gather per `io_uring_enter` while packets flow: one
/// system call then serves dozens of packets.
const BATCH_WANT: usize = 64;
/// Longest a flowing worker waits to fill a batch: bounds the latency the
/// batching adds (0.25 ms, well inside a 20 ms packet interval).
const BATCH_WAIT: Duration = Duration::from_micros(250);
/// Buffer group of the provided-buffer ring.
const BGID: u16 = 0;
/// Address room in each received buffer (a sockaddr_in6).
const NAME_LEN: u32 = std::mem::size_of::<libc::sockaddr_in6>() as u32;
/// Control room: one SO_RXQ_OVFL message (CMSG_SPACE(4)).
const CONTROL_LEN: usize = 24;

/// `struct io_uring_recvmsg_out`: name, control and payload lengths, flags.
const RECVMSG_OUT: usize = 16;

const OP_RECV: u64 = 0;
const OP_SEND: u64 = 1;
const OP_DOORBELL: u64 = 2;
const OP_CANCEL: u64 = 3;

fn recv_token(slot: usize, generation: u32, socket: usize) -> u64 {
    OP_RECV << 62 | ((generation as u64) & 0x3fff_ffff) << 32 | (slot as u64 * 4 + socket as u64)
}

fn send_token(slot: usize, bid: u16) -> u64 {
    OP_SEND << 62 | (slot as u64) << 16 | bid as u64
}

/// Checks io_uring is usable here with everything the backend relies on,
/// and names those features for the start-up log.
pub fn probe() -> io::Result<Vec<&'static str>> {
    let ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::other("kernel lacks IORING_FEAT_EXT_ARG"));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "recvmsg"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::PollAdd::CODE, "poll"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::other(format!("kernel lacks io_uring {name}")));
        }
    }
    ring.submitter().register_files_sparse(4)?;
    let pool = BufferPool::new(8)?;
    // SAFETY: the ring memory is page-aligned, sized for 8 entries and
    // outlives the registration, which is removed before it is freed.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(pool.ring as u64, 8, BGID, 0)?
    };
    ring.submitter().unregister_buf_ring(BGID)?;
    Ok(vec![
        "single-issuer",
        "defer-taskrun",
        "registered files",
        "provided-buffer ring",
        "multishot recvmsg",
        "batched sendmsg",
    ])
}

/// Receive buffers and the ring that lends them to the kernel. The
/// buffers are an anonymous mapping: their pages cost memory only once a
/// datagram has landed in them (an idle worker's stay unbacked), where a
/// zeroed heap allocation of this alignment is written through at once.
struct BufferPool {
    ring: *mut u8,
    ring_layout: Layout,
    data: *mut u8,
    data_len: usize,
    entries: u16,
    tail: u16,
}

impl BufferPool {
    fn new(entries: u16) -> io::Result<Self> {
        assert!(
            entries.is_power_of_two(),
            "buffer count must be a power of two"
        );
        let ring_layout =
            Layout::from_size_align(entries as usize * 16, 4096).map_err(io::Error::other)?;
        let data_len = entries as usize * BUF_SIZE;
        // SAFETY: an anonymous private mapping of non-zero length, not tied
        // to any existing memory; the result is checked below.
        let data = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if data == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the layout has non-zero size.
        let ring = unsafe { alloc_zeroed(ring_layout) };
        if ring.is_null() {
            // SAFETY: mapped just above with this length, not yet shared.
            unsafe { libc::munmap(data, data_len) };
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(Self {
            ring,
            ring_layout,
            data: data.cast(),
            data_len,
            entries,
            tail: 0,
        })
    }

    /// Lends buffer `bid` to the kernel (published by [`publish`](Self::publish)).
    fn give(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries, so the 16-byte io_uring_buf entry is inside
        // the ring; bid < entries, so the address is inside `data`.
        unsafe {
            let e = self.ring.add(idx * 16);
            (e as *mut u64).write_unaligned(self.data.add(bid as usize * BUF_SIZE) as u64);
            (e.add(8) as *mut u32).write_unaligned(BUF_SIZE as u32);
            (e.add(12) as *mut u16).write_unaligned(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail lives at byte 14 of the ring (the first entry's
        // `resv` field), 2-byte aligned in page-aligned memory; the kernel
        // reads it, so it is written with release ordering.
        let tail = unsafe { &*(self.ring.add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Buffer `bid`.
    fn buf(&mut self, bid: u16) -> &mut [u8] {
        // SAFETY: bid < entries, so the buffer is inside `data`; the kernel
        // has handed it back (its completion arrived), so we own it now.
        unsafe { std::slice::from_raw_parts_mut(self.data.add(bid as usize * BUF_SIZE), BUF_SIZE) }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: the ring allocated and the data mapped in new() with
        // these layout and length; the ring that used
        // them is dropped first (field order in Uring).
        unsafe {
            dealloc(self.ring, self.ring_layout);
            libc::munmap(self.data.cast(), self.data_len);
        }
    }
}

/// A send's message header, one per buffer: the buffer is the payload, so a
/// buffer has at most one send in flight.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
}

struct Uring {
    // Dropped first: the kernel must let go of the buffers before they go.
    ring: IoUring,
    pool: BufferPool,
    sends: Vec<SendSlot>,
    recv_hdr: Box<libc::msghdr>,
    files: u32,
    multishot: u64,
    provided: u64,
}

impl Uring {
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every pointer an entry carries (msghdrs, buffers)
            // lives in `self` until its completion arrives.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                break;
            }
            // Queue full: hand what is queued to the kernel and retry.
            let _ = self.ring.submit();
        }
    }

    fn arm_recv(&mut self, slot: usize, generation: u32, socket: usize) {
        let e = opcode::RecvMsgMulti::new(
            types::Fixed((slot * 4 + socket) as u32),
            &*self.recv_hdr,
            BGID,
        )
        .build()
        .user_data(recv_token(slot, generation, socket));
        self.push(&e);
    }
}

impl Registry for Uring {
    fn register(
        &mut self,
        slot: usize,
        generation: u32,
        sockets: &[UdpSocket; 4],
    ) -> io::Result<()> {
        if (slot as u32 + 1) * 4 > self.files {
            return Err(io::Error::other("file table full"));
        }
        let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
        self.ring
            .submitter()
            .register_files_update((slot * 4) as u32, &fds)?;
        for socket in 0..4 {
            self.arm_recv(slot, generation, socket);
        }
        Ok(())
    }

    fn deregister(&mut self, slot: usize, generation: u32, _sockets: &[UdpSocket; 4]) {
        for socket in 0..4 {
            let e = opcode::AsyncCancel::new(recv_token(slot, generation, socket))
                .build()
                .user_data(OP_CANCEL << 62);
            self.push(&e);
        }
        let _ = self.ring.submit();
        let _ = self
            .ring
            .submitter()
            .register_files_update((slot * 4) as u32, &[-1; 4]);
    }
}

fn sq_entries(buffers: u16) -> u32 {
    u32::from(buffers).clamp(256, 4096)
}

/// Runs the worker loop until `Shutdown`.
pub fn run(mut core: Core) -> io::Result<()> {
    let ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_PER_SQ * sq_entries(core.config.buffers))
        .build(sq_entries(core.config.buffers))?;
    let files = (core.config.max_relays * 4) as u32;
    ring.submitter().register_files_sparse(files)?;
    let entries = core.config.buffers;
    let mut pool = BufferPool::new(entries)?;
    // SAFETY: ring memory is page-aligned, sized for `entries`, and freed
    // only after the ring (field order in Uring).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(pool.ring as u64, entries, BGID, 0)?
    };
    for bid in 0..entries {
        pool.give(bid);
    }
    pool.publish();
    // SAFETY: msghdr and sockaddr_storage are plain C structs; all-zero is valid.
    let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    recv_hdr.msg_namelen = NAME_LEN;
    recv_hdr.msg_controllen = CONTROL_LEN;
    let sends = (0..entries)
        .map(|_| SendSlot {
            // SAFETY: as above.
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: as above.
            name: unsafe { std::mem::zeroed() },
        })
        .collect();
    let mut u = Uring {
        ring,
        pool,
        sends,
        recv_hdr,
        files,
        multishot: 0,
        provided: 0,
    };
    let doorbell = opcode::PollAdd::new(
        types::Fd(core.channel.doorbell.as_raw_fd()),
        libc::POLLIN as u32,
    )
    .multi(true)
    .build()
    .user_data(OP_DOORBELL << 62);
    u.push(&doorbell);
    let idle_wait = types::Timespec::from(WAIT);
    let idle = types::SubmitArgs::new().timespec(&idle_wait);
    let busy_wait = types::Timespec::from(BATCH_WAIT);
    let busy = types::SubmitArgs::new().timespec(&busy_wait);
    let mut flowing = false;
    let payload_at = RECVMSG_OUT + NAME_LEN as usize + CONTROL_LEN;
    while !core.stopping {
        let entered = if flowing {
            u.ring.submitter().submit_with_args(BATCH_WANT, &busy)
        } else if core.may_sleep() {
            u.ring.submitter().submit_and_wait(1)
        } else {
            u.ring.submitter().submit_with_args(1, &idle)
        };
        match entered {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let mut handled = 0;
        for _ in 0..CQES_PER_TURN {
            let Some(cqe) = u.ring.completion().next() else {
                break;
            };
            handled += 1;
            let (data, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            match data >> 62 {
                OP_RECV => on_recv(&mut core, &mut u, now, data, res, flags, payload_at),
                OP_SEND => {
                    let bid = data as u16;
                    let slot = ((data >> 16) & 0x3fff_ffff_ffff) as usize;
                    if res < 0 {
                        core.send_failed(slot);
                    } else {
                        core.stats.sent += 1;
                    }
                    u.pool.give(bid);
                }
                OP_DOORBELL => {
                    crate::sys::eventfd_drain(&core.channel.doorbell);
                    core.commands(now, &mut u);
                    if !cqueue::more(flags) {
                        u.push(&doorbell);
                    }
                }
                _ => {}
            }
        }
        // Commands left over from a burst (the doorbell rang once for all).
        if !core.channel.commands.is_empty() {
            core.commands(now, &mut u);
            handled += 2;
        }
        flowing = handled > 1;
        u.pool.publish();
        core.stats.multishot_completions = u.multishot;
        core.stats.provided_buffer_completions = u.provided;
        core.tick(now);
    }
    core.stats.multishot_completions = u.multishot;
    core.stats.provided_buffer_completions = u.provided;
    core.publish();
    Ok(())
}

fn on_recv(
    core: &mut Core,
    u: &mut Uring,
    now: Instant,
    data: u64,
    res: i32,
    flags: u32,
    payload_at: usize,
) {
    let generation = ((data >> 32) & 0x3fff_ffff) as u32;
    let index = (data & 0xffff_ffff) as usize;
    let (slot, socket) = (index / 4, index % 4);
    let live = core
        .generations
        .get(slot)
        .is_some_and(|g| g & 0x3fff_ffff == generation)
        && core.slots[slot].is_some();
    let more = cqueue::more(flags);
    if more {
        u.multishot += 1;
    }
    if res < 0 {
        if res == -libc::ENOBUFS {
            core.stats.enobufs += 1;
        }
        if live && !more {
            u.arm_recv(slot, generation, socket);
        }
        return;
    }
    let Some(bid) = cqueue::buffer_select(flags) else {
        if live && !more {
            u.arm_recv(slot, generation, socket);
        }
        return;
    };
    u.provided += 1;
    if !live {
        u.pool.give(bid);
        return;
    }
    if !more {
        u.arm_recv(slot, generation, socket);
    }
    let hdr_ptr: *const libc::msghdr = &*u.recv_hdr;
    let buf = u.pool.buf(bid);
    // SAFETY: recv_hdr is the template the receive was armed with.
    let parsed = types::RecvMsgOut::parse(&buf[..res as usize], unsafe { &*hdr_ptr });
    let (src, control, len, truncated) = match &parsed {
        Ok(m) => (
            crate::sys::sockaddr_bytes_to_std(m.name_data()),
            {
                let mut c = [0u8; CONTROL_LEN];
                let d = m.control_data();
                c[..d.len()].copy_from_slice(d);
                (c, d.len())
            },
            m.payload_data().len(),
            m.is_payload_truncated(),
        ),
        Err(()) => (None, ([0u8; CONTROL_LEN], 0), 0, true),
    };
    let Some(src) = src.filter(|_| !truncated) else {
        core.stats.received += 1;
        u.pool.give(bid);
        return;
    };
    let payload = &mut u.pool.buf(bid)[payload_at..];
    let from = Origin {
        slot,
        socket: Socket::from_index(socket),
        src,
    };
    match core.process(now, from, &control.0[..control.1], payload, len) {
        Some(Verdict::Send {
            socket: out,
            to,
            len,
        }) => {
            let connected = core.slots[slot]
                .as_ref()
                .is_some_and(|sl| sl.connected_to(out, to));
            let s = &mut u.sends[bid as usize];
            let name_len = if connected {
                0
            } else {
                crate::sys::std_to_sockaddr(to, &mut s.name)
            };
            s.iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: len,
            };
            s.hdr.msg_name = if connected {
                std::ptr::null_mut()
            } else {
                (&mut s.name as *mut libc::sockaddr_storage).cast()
            };
            s.hdr.msg_namelen = name_len;
            s.hdr.msg_iov = &mut s.iov;
            s.hdr.msg_iovlen = 1;
            s.hdr.msg_control = std::ptr::null_mut();
            s.hdr.msg_controllen = 0;
            let e = opcode::SendMsg::new(types::Fixed((slot * 4 + out as usize) as u32), &s.hdr)
                .build()
                .user_data(send_token(slot, bid));
            u.push(&e);
        }
        Some(Verdict::Drop(_)) | None => u.pool.give(bid),
    }
}
