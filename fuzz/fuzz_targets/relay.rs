//! The relay state machine on arbitrary packet sequences: any socket, any of
//! a few sources (inside and outside the networks), arbitrary time gaps, and
//! commands (direction, remote) in between. No panic; nothing is ever sent
//! outside the networks; sends come only from the right socket pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::net::Networks;
use pbxlink_dataplane::relay::{MediaDirection, Relay, RelaySpec, Socket, Verdict};
use pbxlink_dataplane::srtp::{MasterKey, Suite};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SOURCES: [&str; 4] = [
    "127.0.0.1:6000",
    "127.0.0.1:5000",
    "127.0.0.2:6000",
    "192.0.2.1:6000",
];

fuzz_target!(|data: &[u8]| {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = |s: u8| MasterKey::from_bytes(suite, &[s; 30]).unwrap();
    let spec = RelaySpec::new(
        1,
        "127.0.0.1".parse().unwrap(),
        40000,
        40002,
        suite,
        key(1),
        key(2),
    );
    let mut now = Instant::now();
    let mut relay = Relay::new(now, &spec).unwrap();
    let mut buf = vec![0u8; 2048];
    // Records: control byte, gap byte, length byte, bytes.
    let mut rest = data;
    while let [control, gap, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        now += Duration::from_millis(*gap as u64 * 50);
        let src: SocketAddr = SOURCES[(*control >> 2 & 3) as usize].parse().unwrap();
        match control >> 4 {
            0 => relay.set_direction(
                [
                    MediaDirection::SendRecv,
                    MediaDirection::SendOnly,
                    MediaDirection::RecvOnly,
                    MediaDirection::Inactive,
                ][(*control & 3) as usize],
            ),
            1 => relay.set_remote(control & 1 == 0, src),
            _ => {
                let socket = Socket::from_index((*control & 3) as usize);
                buf[..n].copy_from_slice(&tail[..n]);
                if let Verdict::Send {
                    socket: out,
                    to,
                    len,
                } = relay.handle(now, socket, src, &mut buf, n)
                {
                    assert!(
                        Networks::loopback().contains(to.ip()),
                        "sent outside the networks"
                    );
                    assert!(len <= n + 32);
                    let lan_in = matches!(socket, Socket::LanRtp | Socket::LanRtcp);
                    let lan_out = matches!(out, Socket::LanRtp | Socket::LanRtcp);
                    assert_ne!(lan_in, lan_out, "relayed back to the leg it came from");
                }
            }
        }
        let _ = relay.poll_event(now);
        rest = &tail[n..];
    }
    let _ = relay.stats();
});
