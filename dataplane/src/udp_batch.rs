//! Batched UDP I/O (`sendmmsg`/`recvmmsg`) behind a safe interface, for
//! load generators and tools that are not data-plane workers. All headers
//! and buffers are allocated once, at construction. Raw syscalls live here
//! (`unsafe` as in an FFI module); each block says why it holds.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

type Headers = (
    Vec<libc::sockaddr_storage>,
    Vec<libc::iovec>,
    Vec<libc::mmsghdr>,
);

/// `capacity` empty address slots, iovecs and message headers.
fn headers(capacity: usize) -> Headers {
    // SAFETY: plain C structs for which all-zero is a valid value.
    let (name, msg) = unsafe {
        (
            std::mem::zeroed::<libc::sockaddr_storage>(),
            std::mem::zeroed::<libc::mmsghdr>(),
        )
    };
    let iov = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    (
        vec![name; capacity],
        vec![iov; capacity],
        vec![msg; capacity],
    )
}

/// Sends many datagrams, each to its own address, in one system call.
/// Datagrams are copied in on `push`, so the batch owns what it sends.
pub struct SendBatch {
    bufs: Vec<[u8; 2048]>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: the headers' raw pointers point only into the batch's own heap
// buffers (`bufs`, `names`, `iovs`), which move with it and which nothing
// else shares; a batch sent to another thread takes all it points at along.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SendBatch({} queued)", self.len)
    }
}

impl SendBatch {
    /// Room for `capacity` datagrams per call.
    pub fn new(capacity: usize) -> Self {
        let (names, iovs, msgs) = headers(capacity);
        Self {
            bufs: vec![[0; 2048]; capacity],
            names,
            iovs,
            msgs,
            len: 0,
        }
    }

    /// Whether no more datagrams fit before [`send`](Self::send).
    pub fn is_full(&self) -> bool {
        self.len == self.msgs.len()
    }

    /// Queues a copy of `data` for `to`; false when full or `data` is
    /// over 2 KiB.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) -> bool {
        if self.is_full() || data.len() > 2048 {
            return false;
        }
        let i = self.len;
        self.bufs[i][..data.len()].copy_from_slice(data);
        let name_len = crate::sys::std_to_sockaddr(to, &mut self.names[i]);
        self.iovs[i] = libc::iovec {
            iov_base: self.bufs[i].as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let h = &mut self.msgs[i].msg_hdr;
        h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = name_len;
        h.msg_iov = &mut self.iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        self.len += 1;
        true
    }

    /// Sends what is queued from `socket`; returns how many the kernel
    /// accepted. A datagram it refuses (a full non-blocking socket, an
    /// unreachable address) is skipped and not counted.
    pub fn send(&mut self, socket: &UdpSocket) -> usize {
        let mut done = 0;
        let mut accepted = 0;
        while done < self.len {
            // SAFETY: msgs[done..len] are filled and point into `self`.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.msgs[done..].as_mut_ptr(),
                    (self.len - done) as u32,
                    0,
                )
            };
            if n <= 0 {
                done += 1;
                continue;
            }
            done += n as usize;
            accepted += n as usize;
        }
        self.len = 0;
        accepted
    }
}

/// Receives many datagrams in one system call.
pub struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecvBatch({})", self.msgs.len())
    }
}

impl RecvBatch {
    /// Room for `capacity` datagrams per call.
    pub fn new(capacity: usize) -> Self {
        let (names, iovs, msgs) = headers(capacity);
        Self {
            bufs: vec![[0; 2048]; capacity],
            names,
            iovs,
            msgs,
        }
    }

    /// Reads what is waiting on `socket` (non-blocking) and hands each
    /// datagram to `f` with its sender; returns how many were read.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        mut f: impl FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<usize> {
        for i in 0..self.msgs.len() {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: 2048,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
        // SAFETY: every header points at buffers owned by `self`.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        for i in 0..n as usize {
            let len = self.msgs[i].msg_len as usize;
            let name_len = self.msgs[i].msg_hdr.msg_namelen as usize;
            if let Some(from) = crate::sys::sockaddr_to_std(&self.names[i], name_len) {
                f(from, &mut self.bufs[i][..len]);
            }
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::SendBatch;
    use std::net::UdpSocket;

    #[test]
    fn send_counts_what_the_kernel_accepted_not_what_was_queued() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sink.local_addr().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = SendBatch::new(8);
        assert!(b.push(b"one", to));
        // An IPv6 destination from an IPv4 socket: the kernel refuses it.
        assert!(b.push(b"refused", "[::1]:9".parse().unwrap()));
        assert!(b.push(b"two", to));
        assert_eq!(b.send(&socket), 2);
        let mut buf = [0u8; 16];
        sink.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        while let Ok(n) = sink.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(b.send(&socket), 0, "emptied");
    }
}
