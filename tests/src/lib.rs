//! Shared helpers for pbxlink's interop tests: packet corpora that exercise
//! every RTP feature, and drivers for the real peers (python3-pylibsrtp,
//! rtpengine). The peers are installed by `tests/run`; when one is missing
//! the test fails and says so instead of passing vacuously.

pub mod baresip;
pub mod bencode;
pub mod browser;
pub mod capture;
pub mod cloudsim;
pub mod corpus;
pub mod coturn;
pub mod counting_alloc;
pub mod dnsmasq;
pub mod gateway;
pub mod http;
pub mod kamailio;
pub mod lines;
pub mod lossy;
pub mod netns;
pub mod pbxsim;
pub mod pki;
pub mod proxy;
pub mod pylibsrtp;
pub mod rig;
pub mod rtpengine;
pub mod site;

use pbxlink_dataplane::MasterKey;
use pbxlink_dataplane::srtp::Suite;

/// A deterministic master key for `suite` (tests must be repeatable).
pub fn test_key(suite: Suite, seed: u8) -> MasterKey {
    let m: Vec<u8> = (0..suite.master_len() as u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed) ^ 0x5a)
        .collect();
    MasterKey::from_bytes(suite, &m).expect("length matches suite")
}

/// The SDES inline key without the `inline:` prefix.
pub fn key_b64(key: &MasterKey) -> String {
    key.to_sdes_inline()
        .trim_start_matches("inline:")
        .to_owned()
}

/// Runs `f` over `p` in a buffer with SRTP trailer room; returns the output.
pub fn transform<E>(
    p: &[u8],
    f: impl FnOnce(&mut [u8], usize) -> Result<usize, E>,
) -> Result<Vec<u8>, E> {
    let mut buf = vec![0u8; 2048];
    buf[..p.len()].copy_from_slice(p);
    let n = f(&mut buf, p.len())?;
    Ok(buf[..n].to_vec())
}

/// Lets loopback accept the frames the xdp backend writes (it refuses to
/// start on loopback otherwise): they reach its receive path without the
/// route a socket's packets carry, and the kernel drops 127.0.0.0/8
/// arriving that way unless told. Needs root; says which setting failed.
pub fn loopback_accepts_xdp_frames() -> std::io::Result<()> {
    for name in ["route_localnet", "accept_local"] {
        let path = format!("/proc/sys/net/ipv4/conf/lo/{name}");
        if std::fs::read_to_string(&path)?.trim() != "1" {
            std::fs::write(&path, "1").map_err(|e| {
                std::io::Error::new(e.kind(), format!("setting net.ipv4.conf.lo.{name}=1: {e}"))
            })?;
        }
    }
    Ok(())
}

/// Waits until `n` relays added to `plane` report up; panics on one that
/// failed, or when not all are up within `within`.
pub fn wait_relays_up(
    plane: &mut pbxlink_dataplane::engine::DataPlane,
    n: u16,
    within: std::time::Duration,
) {
    use pbxlink_dataplane::control::Event;
    let mut up = 0;
    let deadline = std::time::Instant::now() + within;
    while up < n && std::time::Instant::now() < deadline {
        plane.drain_events(|e| match e {
            Event::Added { .. } => up += 1,
            Event::AddFailed { id, reason } => panic!("relay {id}: {reason:?}"),
            _ => {}
        });
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(up, n, "relays up");
}
