//! Criterion micro-benches of the media core's per-packet work on a 172-byte
//! G.711 RTP packet (12-byte header, 160-byte payload), with Debian's
//! libsrtp2 measured in the same run as the peer: SRTP protect, a
//! protect+unprotect pair (unprotect cannot be repeated on one packet, the
//! replay window refuses it), the gateway's whole LAN→cloud direction, RTP
//! parsing and RTCP validation. Ends with a table of native ÷ libsrtp ratios.
//!
//! Run: `cargo bench -p pbxlink-bench --bench media_core`

use criterion::{Criterion, Throughput, black_box};
use pbxlink_dataplane::srtp::{LibsrtpContext, Role, SrtpContext, Suite, TRAILER_ROOM};
use pbxlink_dataplane::{DirectionConfig, DropReason, LanToCloud, MasterKey, rtcp, rtp};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn key(suite: Suite) -> MasterKey {
    let m: Vec<u8> = (0..suite.master_len() as u8).collect();
    MasterKey::from_bytes(suite, &m).unwrap()
}

fn g711(buf: &mut [u8], seq: u16) -> usize {
    buf[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    buf[12..172].fill(0xd5);
    172
}

/// The two engines behind one shape, so each bench runs both.
trait Engine {
    const NAME: &'static str;
    fn make(suite: Suite, key: &MasterKey, role: Role) -> Self;
    fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason>;
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason>;
}

impl Engine for SrtpContext {
    const NAME: &'static str = "native";
    fn make(suite: Suite, key: &MasterKey, role: Role) -> Self {
        SrtpContext::new(suite, key, role).unwrap()
    }
    fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        self.protect_rtp(buf, len)
    }
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        self.unprotect_rtp(buf, len)
    }
}

impl Engine for LibsrtpContext {
    const NAME: &'static str = "libsrtp";
    fn make(suite: Suite, key: &MasterKey, role: Role) -> Self {
        LibsrtpContext::new(suite, key, role).unwrap()
    }
    fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        self.protect_rtp(buf, len)
    }
    fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        self.unprotect_rtp(buf, len)
    }
}

fn engine_benches<E: Engine>(c: &mut Criterion, suite: Suite) {
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    let k = key(suite);
    let mut buf = vec![0u8; 172 + TRAILER_ROOM];
    let mut tx = E::make(suite, &k, Role::Protect);
    let mut seq = 0u16;
    g.bench_function(format!("protect-{}-{suite}", E::NAME), |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let n = g711(&mut buf, seq);
            black_box(tx.protect(&mut buf, n).unwrap())
        })
    });
    let mut tx = E::make(suite, &k, Role::Protect);
    let mut rx = E::make(suite, &k, Role::Unprotect);
    let mut seq = 0u16;
    g.bench_function(format!("pair-{}-{suite}", E::NAME), |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let n = g711(&mut buf, seq);
            let n = tx.protect(&mut buf, n).unwrap();
            black_box(rx.unprotect(&mut buf, n).unwrap())
        })
    });
    g.finish();
}

fn srtp(c: &mut Criterion) {
    for suite in Suite::ALL {
        engine_benches::<SrtpContext>(c, suite);
        engine_benches::<LibsrtpContext>(c, suite);
        let mut up = LanToCloud::new(suite, &key(suite), DirectionConfig::default()).unwrap();
        let mut buf = vec![0u8; 172 + TRAILER_ROOM];
        let t0 = Instant::now();
        let mut seq = 0u16;
        c.bench_function(&format!("lan_to_cloud-{suite}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let n = g711(&mut buf, seq);
                let now = t0 + Duration::from_millis(20 * seq as u64);
                black_box(up.rtp(now, &mut buf, n).unwrap())
            })
        });
    }
}

/// One packet through a relay's decision: source check, latching, direction,
/// the LAN→cloud transform and the destination check.
fn relay(c: &mut Criterion) {
    use pbxlink_dataplane::relay::{Relay, RelaySpec, Socket};
    let suite = Suite::AesCm128HmacSha1_80;
    let pbx: std::net::SocketAddr = "127.0.0.1:6000".parse().unwrap();
    let spec = RelaySpec {
        lan_remote: Some(pbx),
        cloud_remote: Some("127.0.0.1:5000".parse().unwrap()),
        ..RelaySpec::new(
            1,
            "127.0.0.1".parse().unwrap(),
            40000,
            40002,
            suite,
            key(suite),
            key(suite),
        )
    };
    let t0 = Instant::now();
    let mut r = Relay::new(t0, &spec).unwrap();
    let mut buf = vec![0u8; 172 + TRAILER_ROOM];
    let mut seq = 0u16;
    c.bench_function("relay_handle-AES_CM_128_HMAC_SHA1_80", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let n = g711(&mut buf, seq);
            let now = t0 + Duration::from_millis(20 * seq as u64);
            black_box(r.handle(now, Socket::LanRtp, pbx, &mut buf, n))
        })
    });
}

fn parse(c: &mut Criterion) {
    let mut buf = vec![0u8; 172];
    g711(&mut buf, 7);
    c.bench_function("rtp_parse", |b| {
        b.iter(|| black_box(rtp::parse(black_box(&buf)).unwrap()))
    });
    let mut sr = vec![0x81, 200, 0, 12];
    sr.extend_from_slice(&[0; 48]);
    sr.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0]);
    c.bench_function("rtcp_validate", |b| {
        b.iter(|| black_box(rtcp::validate(black_box(&sr)).unwrap()))
    });
}

/// Mean time of a finished bench, read back from criterion's report.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("criterion").join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn print_ratios() {
    println!("\nSRTP per 172-byte packet, native vs libsrtp2 (Debian), same run:");
    println!(
        "{:<26} {:>10} {:>12} {:>12} {:>9}",
        "suite", "operation", "native ns", "libsrtp ns", "speed-up"
    );
    for suite in Suite::ALL {
        for op in ["protect", "pair"] {
            let native = mean_ns(&format!("srtp/{op}-native-{suite}"));
            let lib = mean_ns(&format!("srtp/{op}-libsrtp-{suite}"));
            if let (Some(n), Some(l)) = (native, lib) {
                let op = if op == "pair" { "prot+unprot" } else { op };
                println!(
                    "{:<26} {:>10} {:>12.0} {:>12.0} {:>8.1}x",
                    suite.sdp_name(),
                    op,
                    n,
                    l,
                    l / n
                );
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    srtp(&mut c);
    relay(&mut c);
    parse(&mut c);
    c.final_summary();
    print_ratios();
}
