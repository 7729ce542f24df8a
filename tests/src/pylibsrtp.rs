//! Drives libsrtp through python3-pylibsrtp (Debian), via `peers/pylibsrtp_peer.py`.

use std::path::PathBuf;
use std::process::Command;

/// The Python that Debian's python3-pylibsrtp installs for.
const PYTHON: &str = "/usr/bin/python3";

/// What the peer should do with each packet.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// RTP → SRTP.
    Protect,
    /// SRTP → RTP.
    Unprotect,
    /// RTCP → SRTCP.
    ProtectRtcp,
    /// SRTCP → RTCP.
    UnprotectRtcp,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Protect => "protect",
            Op::Unprotect => "unprotect",
            Op::ProtectRtcp => "protect_rtcp",
            Op::UnprotectRtcp => "unprotect_rtcp",
        }
    }
}

fn encode(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn decode(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= data.len() {
        let n = u16::from_be_bytes([data[i], data[i + 1]]) as usize;
        out.push(data[i + 2..i + 2 + n].to_vec());
        i += 2 + n;
    }
    out
}

/// Runs `op` over `packets` in one libsrtp session keyed with `key_b64`.
/// A packet libsrtp refused comes back empty.
pub fn run(op: Op, suite: &str, key_b64: &str, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!(
        "pbxlink-pylibsrtp-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in"), dir.join("out"));
    std::fs::write(&input, encode(packets)).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/pylibsrtp_peer.py");
    let res = Command::new(PYTHON)
        .arg(&script)
        .args([op.name(), suite, key_b64])
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {PYTHON}: {e}; run ./tests/run to install the peers")
        });
    assert!(
        res.status.success(),
        "pylibsrtp peer failed (is python3-pylibsrtp installed? ./tests/run installs it):\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let out = decode(&std::fs::read(&output).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.len(), packets.len(), "peer answered every packet");
    out
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
