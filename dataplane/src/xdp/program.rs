//! The XDP program that diverts relay traffic to the worker's AF_XDP
//! socket, its two maps, and its attachment to an interface. The program is
//! a few dozen eBPF instructions, assembled here (no compiler, no libbpf):
//!
//! ```text
//! IPv4, no options, not a fragment, UDP, and ports[dst port] == dst address
//!     → redirect to xsks[rx queue] (XDP_PASS when no socket is there)
//! anything else → XDP_PASS (the kernel's stack, as without the program)
//! ```
//!
//! `ports` is an array indexed by the destination port as the program
//! loads it (network byte order read little-endian); its value is the
//! relay's bound IPv4 address (network order), 0 when the port is not a
//! relay's. The attachment is a BPF link owned by this process: it goes
//! away with the process, so a crash never leaves traffic diverted.
//! Raw `bpf(2)` calls live here (`unsafe` as in an FFI module); each block
//! says why it holds.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const MAP_ARRAY: u32 = 2;
const MAP_XSKMAP: u32 = 17;
const PROG_XDP: u32 = 6;
const ATTACH_XDP: u32 = 37;
const XDP_PASS: i32 = 2;
const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;
/// Entries in the port map: every UDP port.
const PORTS: u32 = 65_536;
/// Entries in the socket map: receive queues.
const QUEUES: u32 = 64;

/// `union bpf_attr`, as bytes: every command's fields are plain integers at
/// fixed offsets; the kernel wants the unused rest zeroed.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }
    fn u32(mut self, at: usize, v: u32) -> Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn call(&self, cmd: libc::c_long) -> io::Result<i64> {
        // SAFETY: the attribute block is 128 initialised bytes whose pointer
        // fields (if any) point at memory the caller keeps alive across
        // the call; the size passed is the block's.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_ptr(),
                std::mem::size_of::<Self>() as u32,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
    fn fd(&self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)? as RawFd;
        // SAFETY: the kernel just returned this new descriptor; we own it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn map(kind: u32, key: u32, value: u32, entries: u32) -> io::Result<OwnedFd> {
    Attr::new()
        .u32(0, kind)
        .u32(4, key)
        .u32(8, value)
        .u32(12, entries)
        .fd(BPF_MAP_CREATE)
}

fn update(map: &OwnedFd, key: u32, value: u32) -> io::Result<()> {
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &value as *const u32 as u64)
        .call(BPF_MAP_UPDATE_ELEM)
        .map(|_| ())
}

/// One eBPF instruction.
#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: src << 4 | dst,
        off,
        imm,
    }
}

// Opcodes (linux/bpf.h, bpf_common.h).
const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const ADD64_IMM: u8 = 0x07;
const AND64_IMM: u8 = 0x57;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const STX_W: u8 = 0x63;
const JGT_REG: u8 = 0x2d;
const JNE_IMM: u8 = 0x55;
const JNE_REG: u8 = 0x5d;
const JEQ_IMM: u8 = 0x15;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// The program, with the two maps' descriptors in place.
fn instructions(ports: RawFd, xsks: RawFd) -> Vec<Insn> {
    // Jumps name their target by label; offsets are resolved below.
    const PASS: i16 = i16::MIN;
    let p = vec![
        insn(MOV64_REG, 6, 1, 0, 0),  // r6 = ctx
        insn(LDX_W, 2, 6, 0, 0),      // r2 = ctx->data
        insn(LDX_W, 3, 6, 4, 0),      // r3 = ctx->data_end
        insn(MOV64_REG, 4, 2, 0, 0),  //
        insn(ADD64_IMM, 4, 0, 0, 42), // r4 = data + eth + ip + udp
        insn(JGT_REG, 4, 3, PASS, 0), // too short
        insn(LDX_H, 5, 2, 12, 0),     // ethertype
        insn(JNE_IMM, 5, 0, PASS, 8), //   != 0x0800 (read little-endian)
        insn(LDX_B, 5, 2, 14, 0),     // version, header length
        insn(JNE_IMM, 5, 0, PASS, 0x45),
        insn(LDX_B, 5, 2, 23, 0), // protocol
        insn(JNE_IMM, 5, 0, PASS, 17),
        insn(LDX_H, 5, 2, 20, 0),         // flags and fragment offset
        insn(AND64_IMM, 5, 0, 0, 0xff3f), // all but DF
        insn(JNE_IMM, 5, 0, PASS, 0),
        insn(LDX_W, 7, 2, 30, 0),  // r7 = destination address
        insn(LDX_H, 5, 2, 36, 0),  // destination port
        insn(STX_W, 10, 5, -4, 0), // key on the stack
        insn(MOV64_REG, 2, 10, 0, 0),
        insn(ADD64_IMM, 2, 0, 0, -4),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, ports),
        insn(0, 0, 0, 0, 0),
        insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP),
        insn(JEQ_IMM, 0, 0, PASS, 0),
        insn(LDX_W, 1, 0, 0, 0), // the relay's address, or 0
        insn(JNE_REG, 1, 7, PASS, 0),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, xsks),
        insn(0, 0, 0, 0, 0),
        insn(LDX_W, 2, 6, 16, 0),           // ctx->rx_queue_index
        insn(MOV64_IMM, 3, 0, 0, XDP_PASS), // no socket there: pass
        insn(CALL, 0, 0, 0, HELPER_REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
        // PASS:
        insn(MOV64_IMM, 0, 0, 0, XDP_PASS),
        insn(EXIT, 0, 0, 0, 0),
    ];
    let pass = p.len() as i16 - 2;
    p.iter()
        .enumerate()
        .map(|(pc, i)| {
            let mut i = *i;
            if i.off == PASS {
                i.off = pass - pc as i16 - 1;
            }
            i
        })
        .collect()
}

/// The loaded program and maps, attached to one interface.
#[derive(Debug)]
pub struct Program {
    ports: OwnedFd,
    xsks: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// The name of the interface holding `addr` (where relays bound to it
/// receive), if any.
pub fn interface_holding(addr: std::net::IpAddr) -> Option<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, alive
        // until freeifaddrs; its address, when set, is a sockaddr of the
        // family it names, and its name a NUL-terminated string.
        let (sa, name, next) = unsafe { ((*at).ifa_addr, (*at).ifa_name, (*at).ifa_next) };
        at = next;
        if sa.is_null() {
            continue;
        }
        // SAFETY: as above; the family says which sockaddr it is.
        let ip: Option<std::net::IpAddr> = unsafe {
            match (*sa).sa_family as i32 {
                libc::AF_INET => {
                    let a = &*(sa as *const libc::sockaddr_in);
                    Some(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into())
                }
                libc::AF_INET6 => {
                    let a = &*(sa as *const libc::sockaddr_in6);
                    Some(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into())
                }
                _ => None,
            }
        };
        if ip == Some(addr) {
            // SAFETY: a NUL-terminated name owned by the list.
            found = Some(
                unsafe { std::ffi::CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned(),
            );
            break;
        }
    }
    // SAFETY: frees the list getifaddrs returned, once.
    unsafe { libc::freeifaddrs(list) };
    found
}

impl Program {
    /// Loads the program and attaches it to `ifindex` (native XDP where
    /// the driver has it, generic otherwise: every interface, loopback
    /// included).
    pub fn attach(ifindex: u32) -> io::Result<Self> {
        let ports = map(MAP_ARRAY, 4, 4, PORTS)?;
        let xsks = map(MAP_XSKMAP, 4, 4, QUEUES)?;
        let insns = instructions(ports.as_raw_fd(), xsks.as_raw_fd());
        let license = c"Apache-2.0";
        let mut log = vec![0u8; 64 * 1024];
        let load = Attr::new()
            .u32(0, PROG_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64)
            .u32(68, ATTACH_XDP);
        let prog = load.fd(BPF_PROG_LOAD).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            io::Error::new(
                e.kind(),
                format!(
                    "the kernel refused the XDP program ({e}): {}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
            )
        })?;
        let link = Self::link(&prog, ifindex).map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => io::Error::new(
                    e.kind(),
                    "another XDP program is attached to the interface (another pbxlink with the xdp backend? see `ip link show`)",
                ),
                _ => e,
            })?;
        Ok(Self {
            ports,
            xsks,
            _prog: prog,
            _link: link,
        })
    }

    /// Attaches `prog`: natively where the driver has XDP, generic (skb)
    /// mode otherwise. A program just detached — a process that has just
    /// exited — lets go of the interface a moment later: busy is retried
    /// for a while.
    fn link(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
        let deadline = std::time::Instant::now() + super::socket::BUSY_FOR;
        loop {
            let r = Attr::new()
                .u32(0, prog.as_raw_fd() as u32)
                .u32(4, ifindex)
                .u32(8, ATTACH_XDP)
                .fd(BPF_LINK_CREATE);
            match r {
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// Diverts datagrams to `addr:port` to the socket (`None`: stops).
    pub fn divert(&self, port: u16, addr: Option<Ipv4Addr>) -> io::Result<()> {
        let key = u16::from_le_bytes(port.to_be_bytes()) as u32;
        let value = addr.map_or(0, |a| u32::from_ne_bytes(a.octets()));
        update(&self.ports, key, value)
    }

    /// Puts an AF_XDP socket behind receive queue `queue`.
    pub fn bind_socket(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        update(&self.xsks, queue, xsk as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_early_exit_lands_on_pass() {
        let p = instructions(3, 4);
        let pass = p.len() - 2;
        assert_eq!((p[pass].code, p[pass].imm), (MOV64_IMM, XDP_PASS));
        let jumps = [JGT_REG, JNE_IMM, JNE_REG, JEQ_IMM];
        let mut n = 0;
        for (pc, i) in p.iter().enumerate() {
            if jumps.contains(&i.code) {
                assert_eq!(pc as i64 + i.off as i64 + 1, pass as i64, "jump at {pc}");
                n += 1;
            }
        }
        assert_eq!(n, 7, "each of the seven checks can pass the packet on");
        // Both maps are referenced by descriptor, in order.
        let maps: Vec<i32> = p
            .iter()
            .filter(|i| i.code == LD_IMM64)
            .map(|i| i.imm)
            .collect();
        assert_eq!(maps, [3, 4]);
    }

    #[test]
    fn loopback_holds_127_0_0_1() {
        assert_eq!(
            interface_holding("127.0.0.1".parse().unwrap()).as_deref(),
            Some("lo")
        );
        assert_eq!(interface_holding("192.0.2.123".parse().unwrap()), None);
    }
}
