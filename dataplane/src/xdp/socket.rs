//! An AF_XDP socket and its UMEM: one memory area of fixed-size frames
//! shared with the kernel, and four single-producer/single-consumer rings
//! (fill and completion for the UMEM, RX and TX for the socket). Frames
//! travel fill → RX → (rewritten in place) → TX → completion → fill; a
//! frame is only ever touched by whoever holds it. Raw socket calls and the
//! ring memory live here (`unsafe` as in an FFI module); each block says
//! why it holds.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per UMEM frame.
pub const FRAME: usize = 2048;
/// Entries per ring (a power of two). Sized for a burst: at 260,000
/// datagrams a second (500 calls under a 200,000/s flood) the RX and fill
/// rings absorb a 30 ms stall of the worker; at 2,048 they overflowed
/// (`kernel_drops`) and calls lost 0.14-0.34 % (`capacity --flood`, 5 s).
/// The UMEM (twice this many 2 KiB frames: 32 MiB) is populated at open.
pub const RING: u32 = 8192;
/// Frames in the UMEM: the fill ring's worth plus as many in flight on TX.
pub const FRAMES: u32 = 2 * RING;
/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17): frames one copy-mode send may
/// take from the TX ring (32 by default).
const XDP_MAX_TX_SKB_BUDGET: i32 = 9;
/// How long a queue or interface another process just let go of is
/// waited for.
pub const BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(3);
/// The budget asked for: a whole turn's frames in one system call.
const TX_BUDGET: u32 = 1024;

/// A mapped ring: producer and consumer indices, flags, and `size` entries
/// of `T` (a frame address for fill/completion, a descriptor for RX/TX).
struct Ring<T> {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
}

impl<T: Copy> Ring<T> {
    /// Maps ring `offset` of the socket (layout from XDP_MMAP_OFFSETS).
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, pgoff: u64) -> io::Result<Self> {
        let map_len = off.desc as usize + RING as usize * std::mem::size_of::<T>();
        // SAFETY: a shared mapping of the kernel's ring for this socket, of
        // the length the kernel's offsets describe; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |o: u64| map.cast::<u8>().wrapping_add(o as usize);
        Ok(Self {
            map,
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            mask: RING - 1,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, 4-byte aligned per the ABI.
        unsafe { &*self.producer }
    }
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer.
        unsafe { &*self.consumer }
    }
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for producer.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
    fn read(&self, index: u32) -> T {
        // SAFETY: index is masked into the ring's RING entries.
        unsafe { self.entries.add((index & self.mask) as usize).read() }
    }
    fn write(&self, index: u32, v: T) {
        // SAFETY: as for read; the slot belongs to the producer (us).
        unsafe { self.entries.add((index & self.mask) as usize).write(v) }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// Our side of a ring we consume (RX, completion): entries taken so far.
struct Consumer<T> {
    ring: Ring<T>,
    cached_cons: u32,
}

impl<T: Copy> Consumer<T> {
    fn new(ring: Ring<T>) -> Self {
        let cached_cons = ring.consumer().load(Ordering::Relaxed);
        Self { ring, cached_cons }
    }
    /// Entries ready to take.
    fn ready(&self) -> u32 {
        self.ring
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }
    fn take(&mut self) -> T {
        let v = self.ring.read(self.cached_cons);
        self.cached_cons = self.cached_cons.wrapping_add(1);
        v
    }
    /// Hands the taken entries' slots back to the kernel.
    fn release(&self) {
        self.ring
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

/// Our side of a ring we produce (fill, TX).
struct Producer<T> {
    ring: Ring<T>,
    cached_prod: u32,
}

impl<T: Copy> Producer<T> {
    fn new(ring: Ring<T>) -> Self {
        let cached_prod = ring.producer().load(Ordering::Relaxed);
        Self { ring, cached_prod }
    }
    /// Free slots.
    fn room(&self) -> u32 {
        RING - self
            .cached_prod
            .wrapping_sub(self.ring.consumer().load(Ordering::Acquire))
    }
    fn put(&mut self, v: T) {
        self.ring.write(self.cached_prod, v);
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }
    /// Publishes what was put.
    fn submit(&self) {
        self.ring
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }
    /// Entries put and not yet consumed by the kernel.
    fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.ring.consumer().load(Ordering::Acquire))
    }
}

/// The frame memory.
struct Umem {
    area: *mut u8,
    len: usize,
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: unmaps the area mapped in `XskSocket::open`, once, after
        // the socket (declared before it) has been closed.
        unsafe { libc::munmap(self.area.cast(), self.len) };
    }
}

/// Kernel counters of the socket (XDP_STATISTICS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Dropped for any other reason.
    pub rx_dropped: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame was needed.
    pub rx_fill_ring_empty: u64,
    /// TX descriptors the kernel refused.
    pub tx_invalid: u64,
}

/// An AF_XDP socket bound to one interface queue, in copy mode.
pub struct XskSocket {
    rx: Consumer<libc::xdp_desc>,
    tx: Producer<libc::xdp_desc>,
    fill: Producer<u64>,
    completion: Consumer<u64>,
    fd: OwnedFd,
    umem: Umem,
    /// Frames neither in the kernel's hands nor in ours: ready to fill.
    spare: Vec<u64>,
}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd)
            .field("spare", &self.spare.len())
            .finish_non_exhaustive()
    }
}

fn setsockopt<T>(fd: RawFd, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: v lives across the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt<T: Copy>(fd: RawFd, name: i32, v: &mut T) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes; the kernel writes at most that.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_XDP, name, (v as *mut T).cast(), &mut len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl XskSocket {
    /// Opens a socket on `ifindex`/`queue` in copy mode with its own UMEM.
    pub fn open(ifindex: u32, queue: u32) -> io::Result<Self> {
        let len = FRAMES as usize * FRAME;
        // SAFETY: a private anonymous mapping; checked below.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let umem = Umem {
            area: area.cast(),
            len,
        };
        // SAFETY: plain socket(2); the result is checked and then owned.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();
        // SAFETY: all-zero is a valid xdp_umem_reg; fields set below.
        let mut reg: libc::xdp_umem_reg = unsafe { std::mem::zeroed() };
        reg.addr = umem.area as u64;
        reg.len = len as u64;
        reg.chunk_size = FRAME as u32;
        setsockopt(raw, libc::XDP_UMEM_REG, &reg)?;
        for ring in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(raw, ring, &RING)?;
        }
        // SAFETY: plain data, filled by the kernel.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        getsockopt(raw, libc::XDP_MMAP_OFFSETS, &mut off)?;
        let rx = Ring::map(raw, &off.rx, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(raw, &off.tx, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = Ring::map(raw, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let completion = Ring::map(raw, &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let mut s = Self {
            rx: Consumer::new(rx),
            tx: Producer::new(tx),
            fill: Producer::new(fill),
            completion: Consumer::new(completion),
            fd,
            umem,
            spare: (0..FRAMES as u64).rev().map(|i| i * FRAME as u64).collect(),
        };
        s.refill();
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // The queue stays taken for a moment after its last socket closed
        // (the kernel releases it after a grace period): busy is retried.
        let deadline = std::time::Instant::now() + BUSY_FOR;
        loop {
            // SAFETY: addr is a valid sockaddr_xdp of the size passed.
            let rc = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() >= deadline {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "binding an AF_XDP socket to queue {queue}: {e} (another AF_XDP socket on it?)"
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Older kernels keep 32 per send: more sends, same frames.
        let _ = setsockopt(raw, XDP_MAX_TX_SKB_BUDGET, &TX_BUDGET);
        Ok(s)
    }

    /// Gives spare frames to the kernel to receive into.
    pub fn refill(&mut self) {
        let n = self.fill.room().min(self.spare.len() as u32);
        for _ in 0..n {
            if let Some(addr) = self.spare.pop() {
                self.fill.put(addr);
            }
        }
        if n > 0 {
            self.fill.submit();
        }
    }

    /// Takes the frames the kernel has finished sending back as spare.
    pub fn reclaim(&mut self) {
        let n = self.completion.ready();
        for _ in 0..n {
            let addr = self.completion.take();
            self.spare.push(addr & !(FRAME as u64 - 1));
        }
        if n > 0 {
            self.completion.release();
        }
    }

    /// Received frames waiting.
    pub fn received(&self) -> u32 {
        self.rx.ready()
    }

    /// Takes the next received frame: its UMEM address and length.
    pub fn take_received(&mut self) -> (u64, usize) {
        let d = self.rx.take();
        (d.addr, d.len as usize)
    }

    /// Hands the taken RX slots back to the kernel.
    pub fn release_received(&self) {
        self.rx.release();
    }

    /// The frame holding UMEM address `addr`, from `addr` to the frame's
    /// end. `addr` must come from this socket's rings.
    pub fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        let start = (addr as usize).min(self.umem.len);
        let end = (start & !(FRAME - 1)) + FRAME;
        let end = end.min(self.umem.len);
        // SAFETY: [start, end) lies inside the UMEM area, within one frame;
        // the frame is ours (taken from RX, not yet on TX or fill) and the
        // &mut self borrow keeps it unaliased for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.umem.area.add(start), end - start) }
    }

    /// Gives a frame we will not send back as spare.
    pub fn recycle(&mut self, addr: u64) {
        self.spare.push(addr & !(FRAME as u64 - 1));
    }

    /// Room on the TX ring.
    pub fn tx_room(&self) -> u32 {
        self.tx.room()
    }

    /// Queues `len` bytes at `addr` for sending (call `flush` after).
    pub fn send(&mut self, addr: u64, len: usize) {
        self.tx.put(libc::xdp_desc {
            addr,
            len: len as u32,
            options: 0,
        });
    }

    /// Frames queued or published and not yet taken by the kernel.
    pub fn tx_pending(&self) -> u32 {
        self.tx.outstanding()
    }

    /// Publishes queued frames and has the kernel send them. In copy mode
    /// each `sendto` sends a bounded batch, so it is repeated while the
    /// kernel makes progress; what it leaves stays queued for the next
    /// call. Fails only when the kick itself fails (the interface is gone).
    pub fn flush(&mut self) -> io::Result<()> {
        self.tx.submit();
        let mut last = u32::MAX;
        loop {
            let left = self.tx.outstanding();
            if left == 0 || left == last {
                return Ok(());
            }
            last = left;
            if !self.tx.ring.needs_wakeup() {
                return Ok(());
            }
            // SAFETY: a zero-length send with no buffer: the AF_XDP kick.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {}
                    _ => return Err(e),
                }
            }
        }
    }

    /// The kernel's counters.
    pub fn stats(&self) -> io::Result<XskStats> {
        // SAFETY: plain data, filled by the kernel.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS, &mut s)?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_invalid: s.tx_invalid_descs,
        })
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
