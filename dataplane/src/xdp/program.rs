//! The XDP program that diverts relay traffic to the worker's AF_XDP
//! socket, its three maps, and its attachment to an interface. The program
//! is a few dozen eBPF instructions, assembled here (no compiler, no libbpf):
//!
//! ```text
//! IPv4, no options, not a fragment, UDP, and ports[dst port].local == dst address:
//!     no peer yet, or the source is the peer → redirect to xsks[rx queue]
//!                                              (XDP_PASS when no socket is there)
//!     another source on a LAN leg            → count, XDP_DROP
//!     another source on a cloud leg          → count, XDP_PASS (to the relay's socket)
//! anything else → XDP_PASS (the kernel's stack, as without the program)
//! ```
//!
//! So a flood from anywhere but a call's peers never costs the worker a
//! frame: a LAN leg accepts nothing but its peer (the relay would drop it
//! as an unexpected source), and a cloud leg, which may move to a source
//! whose packets authenticate, hears the others on its ordinary socket,
//! where the kernel's queue bounds them and the relay checks them.
//!
//! `ports` is an array indexed by the destination port as the program
//! loads it (network byte order read little-endian); its value says the
//! relay's bound IPv4 address (0 when the port is not a relay's), its
//! peer's address and port (0: not latched yet) and what to do with other
//! sources. `foreign` counts those others: [dropped, passed]. The
//! attachment is a BPF link owned by this process: it goes away with the
//! process, so a crash never leaves traffic diverted.
//! Raw `bpf(2)` calls live here (`unsafe` as in an FFI module); each block
//! says why it holds.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const MAP_ARRAY: u32 = 2;
const MAP_XSKMAP: u32 = 17;
const PROG_XDP: u32 = 6;
const ATTACH_XDP: u32 = 37;
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_REDIRECT_MAP: i32 = 51;
/// Entries in the port map: every UDP port.
const PORTS: u32 = 65_536;
/// Entries in the socket map: receive queues.
const QUEUES: u32 = 64;
/// A port's entry: local address, peer address, peer port, what to do
/// with other sources (all as the program loads them).
const ENTRY: u32 = 12;
/// Entries of the `foreign` counters: dropped (LAN), passed (cloud).
const FOREIGN: u32 = 2;

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

fn update(map: &OwnedFd, key: u32, value: &[u8]) -> io::Result<()> {
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, value.as_ptr() as u64)
        .call(BPF_MAP_UPDATE_ELEM)
        .map(|_| ())
}

fn lookup_u64(map: &OwnedFd, key: u32) -> io::Result<u64> {
    let mut value = 0u64;
    Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &mut value as *mut u64 as u64)
        .call(BPF_MAP_LOOKUP_ELEM)
        .map(|_| value)
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
/// `*(u64 *)(dst + off) += src`, atomically (BPF_STX | BPF_DW | BPF_ATOMIC, BPF_ADD).
const ATOMIC_ADD_DW: u8 = 0xdb;
const JGT_REG: u8 = 0x2d;
const JNE_IMM: u8 = 0x55;
const JNE_REG: u8 = 0x5d;
const JEQ_IMM: u8 = 0x15;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// Where a jump goes: written as a label, resolved to an offset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    /// Hand the redirect helper the frame.
    Redirect,
    /// Count a foreign source, then drop or pass it by the leg.
    Foreign,
    /// The leg says what: cloud passes, LAN drops.
    Verdict,
    /// XDP_PASS.
    Pass,
}

enum Step {
    Op(Insn),
    /// A jump whose offset is the label's.
    Jump(Insn, Label),
    At(Label),
}

/// What a port's entry says about sources other than its peer.
const LEG_LAN: u16 = 1;
const LEG_CLOUD: u16 = 2;

/// The program, with the maps' descriptors in place.
fn instructions(ports: RawFd, xsks: RawFd, foreign: RawFd) -> Vec<Insn> {
    use Label::*;
    use Step::{At, Jump, Op};
    let steps = [
        Op(insn(MOV64_REG, 6, 1, 0, 0)), // r6 = ctx
        Op(insn(LDX_W, 2, 6, 0, 0)),     // r2 = ctx->data
        Op(insn(LDX_W, 3, 6, 4, 0)),     // r3 = ctx->data_end
        Op(insn(MOV64_REG, 9, 2, 0, 0)), // r9 = data, kept across calls
        Op(insn(MOV64_REG, 4, 2, 0, 0)),
        Op(insn(ADD64_IMM, 4, 0, 0, 42)), // r4 = data + eth + ip + udp
        Jump(insn(JGT_REG, 4, 3, 0, 0), Pass), // too short
        Op(insn(LDX_H, 5, 9, 12, 0)),     // ethertype
        Jump(insn(JNE_IMM, 5, 0, 0, 8), Pass), //   != 0x0800 (read little-endian)
        Op(insn(LDX_B, 5, 9, 14, 0)),     // version, header length
        Jump(insn(JNE_IMM, 5, 0, 0, 0x45), Pass),
        Op(insn(LDX_B, 5, 9, 23, 0)), // protocol
        Jump(insn(JNE_IMM, 5, 0, 0, 17), Pass),
        Op(insn(LDX_H, 5, 9, 20, 0)), // flags and fragment offset
        Op(insn(AND64_IMM, 5, 0, 0, 0xff3f)), // all but DF
        Jump(insn(JNE_IMM, 5, 0, 0, 0), Pass),
        Op(insn(LDX_W, 7, 9, 30, 0)),  // r7 = destination address
        Op(insn(LDX_H, 5, 9, 36, 0)),  // destination port
        Op(insn(STX_W, 10, 5, -4, 0)), // key on the stack
        Op(insn(MOV64_REG, 2, 10, 0, 0)),
        Op(insn(ADD64_IMM, 2, 0, 0, -4)),
        Op(insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, ports)),
        Op(insn(0, 0, 0, 0, 0)),
        Op(insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP)),
        Jump(insn(JEQ_IMM, 0, 0, 0, 0), Pass),
        Op(insn(MOV64_REG, 8, 0, 0, 0)), // r8 = the port's entry
        Op(insn(LDX_W, 1, 8, 0, 0)),     // the relay's address, or 0
        Jump(insn(JNE_REG, 1, 7, 0, 0), Pass),
        Op(insn(LDX_W, 1, 8, 4, 0)), // the peer's address, 0 until latched
        Jump(insn(JEQ_IMM, 1, 0, 0, 0), Redirect),
        Op(insn(LDX_W, 2, 9, 26, 0)), // source address
        Jump(insn(JNE_REG, 1, 2, 0, 0), Foreign),
        Op(insn(LDX_H, 1, 8, 8, 0)),  // the peer's port
        Op(insn(LDX_H, 2, 9, 34, 0)), // source port
        Jump(insn(JNE_REG, 1, 2, 0, 0), Foreign),
        At(Redirect),
        Op(insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, xsks)),
        Op(insn(0, 0, 0, 0, 0)),
        Op(insn(LDX_W, 2, 6, 16, 0)),           // ctx->rx_queue_index
        Op(insn(MOV64_IMM, 3, 0, 0, XDP_PASS)), // no socket there: pass
        Op(insn(CALL, 0, 0, 0, HELPER_REDIRECT_MAP)),
        Op(insn(EXIT, 0, 0, 0, 0)),
        At(Foreign),
        Op(insn(LDX_H, 8, 8, 10, 0)), // r8 = the leg: 1 LAN, 2 cloud
        Op(insn(MOV64_REG, 1, 8, 0, 0)),
        Op(insn(ADD64_IMM, 1, 0, 0, -1)), // counter: 0 dropped, 1 passed
        Op(insn(STX_W, 10, 1, -8, 0)),
        Op(insn(MOV64_REG, 2, 10, 0, 0)),
        Op(insn(ADD64_IMM, 2, 0, 0, -8)),
        Op(insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, foreign)),
        Op(insn(0, 0, 0, 0, 0)),
        Op(insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP)),
        Jump(insn(JEQ_IMM, 0, 0, 0, 0), Verdict),
        Op(insn(MOV64_IMM, 1, 0, 0, 1)),
        Op(insn(ATOMIC_ADD_DW, 0, 1, 0, 0)),
        At(Verdict),
        Jump(insn(JEQ_IMM, 8, 0, 0, LEG_CLOUD as i32), Pass),
        Op(insn(MOV64_IMM, 0, 0, 0, XDP_DROP)),
        Op(insn(EXIT, 0, 0, 0, 0)),
        At(Pass),
        Op(insn(MOV64_IMM, 0, 0, 0, XDP_PASS)),
        Op(insn(EXIT, 0, 0, 0, 0)),
    ];
    // Labels name the index of the next instruction.
    let mut at = Vec::new();
    let mut pc = 0i16;
    for s in &steps {
        match s {
            At(l) => at.push((*l, pc)),
            _ => pc += 1,
        }
    }
    let target = |l: Label| at.iter().find(|(m, _)| *m == l).map(|(_, pc)| *pc);
    let mut out = Vec::with_capacity(pc as usize);
    for s in &steps {
        match s {
            Op(i) => out.push(*i),
            Jump(i, l) => {
                let here = out.len() as i16;
                let to = target(*l).expect("every label is placed");
                out.push(Insn {
                    off: to - here - 1,
                    ..*i
                });
            }
            At(_) => {}
        }
    }
    out
}

/// What the program does with a relay port's datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divert {
    /// The relay's bound address.
    pub local: Ipv4Addr,
    /// The one source it takes (configured or latched); until then every
    /// source goes to the socket.
    pub peer: Option<SocketAddrV4>,
    /// Whether other sources go to the relay's ordinary socket (a cloud
    /// leg, which may move to a source whose packets authenticate) or are
    /// dropped (a LAN leg, which never moves).
    pub others_to_socket: bool,
}

impl Divert {
    fn entry(&self) -> [u8; ENTRY as usize] {
        let mut e = [0u8; ENTRY as usize];
        e[0..4].copy_from_slice(&self.local.octets());
        if let Some(p) = self.peer {
            e[4..8].copy_from_slice(&p.ip().octets());
            e[8..10].copy_from_slice(&p.port().to_be_bytes());
        }
        let leg = if self.others_to_socket {
            LEG_CLOUD
        } else {
            LEG_LAN
        };
        e[10..12].copy_from_slice(&leg.to_ne_bytes());
        e
    }
}

/// What the program did with sources other than a relay's peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Foreign {
    /// Dropped before they cost a frame (LAN legs).
    pub dropped: u64,
    /// Handed to the relay's socket (cloud legs).
    pub passed: u64,
}

/// The loaded program and maps, attached to one interface.
#[derive(Debug)]
pub struct Program {
    ports: OwnedFd,
    xsks: OwnedFd,
    foreign: OwnedFd,
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
        let ports = map(MAP_ARRAY, 4, ENTRY, PORTS)?;
        let xsks = map(MAP_XSKMAP, 4, 4, QUEUES)?;
        let foreign = map(MAP_ARRAY, 4, 8, FOREIGN)?;
        let insns = instructions(ports.as_raw_fd(), xsks.as_raw_fd(), foreign.as_raw_fd());
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
            foreign,
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

    /// Diverts datagrams to `port` as `how` says (`None`: stops).
    pub fn divert(&self, port: u16, how: Option<Divert>) -> io::Result<()> {
        let key = u16::from_le_bytes(port.to_be_bytes()) as u32;
        let value = how.map_or([0; ENTRY as usize], |d| d.entry());
        update(&self.ports, key, &value)
    }

    /// Puts an AF_XDP socket behind receive queue `queue`.
    pub fn bind_socket(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        update(&self.xsks, queue, &(xsk as u32).to_ne_bytes())
    }

    /// What the program has done with foreign sources since it loaded.
    pub fn foreign(&self) -> io::Result<Foreign> {
        Ok(Foreign {
            dropped: lookup_u64(&self.foreign, 0)?,
            passed: lookup_u64(&self.foreign, 1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUMPS: [u8; 4] = [JGT_REG, JNE_IMM, JNE_REG, JEQ_IMM];

    #[test]
    fn every_jump_lands_on_its_label() {
        let p = instructions(3, 4, 5);
        let exits: Vec<usize> = (0..p.len()).filter(|&i| p[i].code == EXIT).collect();
        let pass = p.len() - 2;
        assert_eq!((p[pass].code, p[pass].imm), (MOV64_IMM, XDP_PASS));
        let mut to_pass = 0;
        for (pc, i) in p.iter().enumerate() {
            if JUMPS.contains(&i.code) {
                let to = pc as i64 + i.off as i64 + 1;
                assert!(to > pc as i64 && (to as usize) < p.len(), "jump at {pc}");
                to_pass += usize::from(to as usize == pass);
            }
        }
        assert_eq!(
            to_pass, 8,
            "seven checks and a cloud leg's verdict pass the packet on"
        );
        assert_eq!(exits.len(), 3, "redirect, drop, pass");
        // The maps are referenced by descriptor, in order.
        let maps: Vec<i32> = p
            .iter()
            .filter(|i| i.code == LD_IMM64)
            .map(|i| i.imm)
            .collect();
        assert_eq!(maps, [3, 4, 5]);
    }

    #[test]
    fn an_entry_holds_what_the_program_compares() {
        let d = Divert {
            local: Ipv4Addr::new(127, 0, 0, 1),
            peer: Some("127.0.0.2:40000".parse().unwrap()),
            others_to_socket: false,
        };
        let e = d.entry();
        assert_eq!(&e[0..4], &[127, 0, 0, 1]);
        assert_eq!(&e[4..8], &[127, 0, 0, 2], "as the frame carries it");
        assert_eq!(&e[8..10], &40000u16.to_be_bytes());
        assert_eq!(u16::from_ne_bytes([e[10], e[11]]), LEG_LAN);
        let none = Divert {
            peer: None,
            others_to_socket: true,
            ..d
        }
        .entry();
        assert_eq!(
            &none[4..10],
            &[0; 6],
            "no peer: everything goes to the socket"
        );
        assert_eq!(u16::from_ne_bytes([none[10], none[11]]), LEG_CLOUD);
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
