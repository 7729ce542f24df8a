//! SIP abuse (issue 20) against `pbxlink run` with two real calls up
//! (pbxsim, the PBX on 127.0.0.1 → the gateway → cloudsim over SIP-TLS):
//!
//! - an INVITE flood from an untrusted address (127.0.0.2) is dropped
//!   before it is parsed: not one answer, no call, every datagram counted
//!   (`untrusted`, or the kernel's drops on the gateway's socket); its TCP
//!   connections are closed at once; the gateway's CPU per refused INVITE
//!   is printed;
//! - the subscriber side (Softphone users) trusts what the PBX side
//!   trusts: the same flood there is dropped unparsed and counted, and
//!   the PBX calling someone who is no Softphone user gets 404;
//! - an INVITE flood from the trusted PBX past `call_limit` gets 503
//!   (without Retry-After) for every INVITE, `refused_at_limit` counts them;
//! - a storm of malformed datagrams from the PBX's address gets 400s or
//!   counted drops;
//! - slow clients: a silent TCP connection is closed after
//!   `[sip] idle_timeout`, one trickling a message a byte at a time after
//!   `partial_timeout` counted from its first byte (each counted), and past
//!   `max_connections` a new one is closed at once;
//! - through all of it the two calls stay up and end normally, and the PBX
//!   is still answered.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use pbxlink_tests::site::Site;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// The site's first port (see `pbxlink_tests::site`): the gateway's SIP.
const GW_SIP: u16 = 24_150;
/// INVITEs in the untrusted flood, and per second.
const UNTRUSTED_INVITES: u32 = 20_000;
const UNTRUSTED_RATE: u32 = 5_000;
/// INVITEs from the PBX past its call limit.
const OVER_LIMIT_INVITES: u32 = 300;
/// Malformed datagrams from the PBX's address.
const STORM: u32 = 5_000;
const MAX_CONNECTIONS: usize = 4;
/// The gateway's subscriber side (Softphone users), past the site's ports.
const GW_SUBSCRIBER: u16 = GW_SIP + 8;
/// INVITEs from the untrusted address to the subscriber side.
const SUBSCRIBER_INVITES: u32 = 1_000;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn counter(c: &Value, name: &str) -> u64 {
    c[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {c}"))
}

/// Datagrams the kernel dropped on the gateway's SIP UDP socket (its
/// receive buffer full), from /proc/net/udp.
fn kernel_drops() -> u64 {
    kernel_drops_on(GW_SIP)
}

/// Datagrams the kernel dropped on the gateway's UDP socket on `port`.
fn kernel_drops_on(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&port))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// CPU time of a process, all threads, in nanoseconds (schedstat).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn invite(from: SocketAddr, n: u32) -> String {
    invite_to(GW_SIP, from, n)
}

/// An INVITE for 0612345678 sent to the gateway's port `to`.
fn invite_to(to: u16, from: SocketAddr, n: u32) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:0612345678@127.0.0.1:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKabuse{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:1000@{}>;tag=f{n}\r\nTo: <sip:0612345678@127.0.0.1>\r\n\
         Call-ID: abuse-{n}@{}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{from}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        from.ip(),
        from.ip(),
        sdp.len()
    )
}

/// The ACK of a non-2xx final answer (same branch, the answer's To).
fn ack(from: SocketAddr, n: u32, answer: &str) -> String {
    ack_to(GW_SIP, from, n, answer)
}

/// The ACK of a non-2xx final answer sent to the gateway's port `to`.
fn ack_to(to: u16, from: SocketAddr, n: u32, answer: &str) -> String {
    let to_header = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .unwrap_or("To: <sip:0612345678@127.0.0.1>");
    format!(
        "ACK sip:0612345678@127.0.0.1:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKabuse{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:1000@{}>;tag=f{n}\r\n{to_header}\r\nCall-ID: abuse-{n}@{}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        from.ip(),
        from.ip()
    )
}

/// Malformed datagrams: junk, cut-off heads, impossible lengths.
fn malformed(n: u32) -> Vec<u8> {
    let ok = invite(at(1), n);
    match n % 5 {
        0 => (0..=255u8)
            .cycle()
            .skip(n as usize % 256)
            .take(700)
            .collect(),
        1 => ok.as_bytes()[..ok.len() / 3].to_vec(),
        2 => ok
            .replace("Content-Length: ", "Content-Length: 9")
            .into_bytes(),
        3 => ok.replace("CSeq: 1 INVITE", "CSeq: x INVITE").into_bytes(),
        _ => ok.replace(" SIP/2.0\r\n", " SIP/9.9\r\n").into_bytes(),
    }
}

/// When the peer closed `s`, if it did within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Instant> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => Some(Instant::now()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(Instant::now()),
        _ => None,
    }
}

/// A TCP connection to the gateway from `ip`.
fn connect_from(ip: [u8; 4]) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
    s.connect(&at(GW_SIP).into()).unwrap();
    s.into()
}

#[test]
fn floods_storms_and_slow_clients_are_refused_while_calls_go_on() {
    let work = Workdir::new("sip-abuse");
    let site = Site::at(GW_SIP);
    let cloud = site.cloudsim(&work);
    let sim = site.pbxsim(4, 44_400, &[]);
    let sip_extra =
        format!("idle_timeout = 3\npartial_timeout = 2\nmax_connections = {MAX_CONNECTIONS}");
    let sections = format!(
        "[admin]\nlisten = \"{}\"\nhttps_listen = \"off\"\napi_token = \"{}\"\n\n[subscriber]\nlisten = \"{}\"\n",
        site.admin(),
        pbxlink_tests::site::ADMIN_TOKEN,
        at(GW_SUBSCRIBER)
    );
    let config = GatewayConfig {
        gateway: "call_limit = 2",
        sip_extra: &sip_extra,
        sections: &sections,
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, 120);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));

    // Two calls up: the gateway's limit.
    for n in 0..2 {
        sim.place_call(&(1000 + n).to_string(), &format!("0600000{n}"), 20);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter(&site.counters(), "port_pairs_in_use") < 2 {
        assert!(Instant::now() < deadline, "the calls never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = site.counters();

    // Slow clients, side by side with the floods.
    let slow = std::thread::spawn(|| {
        let mut silent = TcpStream::connect(at(GW_SIP)).unwrap();
        let silent_since = Instant::now();
        let mut trickle = TcpStream::connect(at(GW_SIP)).unwrap();
        let t = Instant::now();
        // One byte every 300 ms: every read comes well within the partial
        // time; the message as a whole does not.
        let message = invite(trickle.local_addr().unwrap(), 999_999);
        let mut sent = 0;
        let cut = loop {
            if trickle.write_all(&message.as_bytes()[sent..=sent]).is_err() {
                break t.elapsed();
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(300));
            if closed_within(&mut trickle, Duration::from_millis(1)).is_some() {
                break t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(8),
                "the trickle was never cut"
            );
        };
        let idle = closed_within(&mut silent, Duration::from_secs(8))
            .expect("a silent connection closed")
            - silent_since;
        (cut, sent, idle)
    });

    // The untrusted INVITE flood, paced, from 127.0.0.2.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let from = stranger.local_addr().unwrap();
    let (cpu0, drops0) = (cpu_ns(gw.pid()), kernel_drops());
    let t = Instant::now();
    for n in 0..UNTRUSTED_INVITES {
        let due = t + Duration::from_secs_f64(f64::from(n) / f64::from(UNTRUSTED_RATE));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        stranger
            .send_to(invite(from, n).as_bytes(), at(GW_SIP))
            .unwrap();
    }
    // Its TCP side: every connection closed at once.
    let mut tcp_closed = 0;
    for _ in 0..50 {
        let mut s = connect_from([127, 0, 0, 2]);
        let _ = s.write_all(invite(from, 0).as_bytes());
        if closed_within(&mut s, Duration::from_secs(2)).is_some() {
            tcp_closed += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_flood = site.counters();
    let untrusted = counter(&after_flood, "untrusted") - counter(&before, "untrusted");
    let dropped_by_kernel = kernel_drops() - drops0;
    let cpu = cpu_ns(gw.pid()) - cpu0;
    println!(
        "untrusted flood: {UNTRUSTED_INVITES} INVITEs at {UNTRUSTED_RATE}/s in {:.1} s: {untrusted} refused as untrusted (TCP connections among them), {dropped_by_kernel} dropped by the kernel; gateway CPU {:.1} µs per refused INVITE (debug build, everything else it did meanwhile included)",
        t.elapsed().as_secs_f32(),
        cpu as f64 / 1e3 / f64::from(UNTRUSTED_INVITES),
    );
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        stranger.recv(&mut buf).is_err(),
        "the untrusted flood got an answer"
    );
    assert_eq!(
        untrusted + dropped_by_kernel,
        u64::from(UNTRUSTED_INVITES) + 50,
        "every untrusted INVITE and connection counted"
    );
    assert_eq!(tcp_closed, 50, "untrusted TCP connections closed at once");
    assert_eq!(
        counter(&after_flood, "calls"),
        counter(&before, "calls"),
        "no call from the flood"
    );

    // The subscriber side trusts what the PBX side trusts: the same flood
    // there is dropped unparsed and counted; the PBX calling someone who
    // is no Softphone user of ours gets 404, limit or not.
    let before_sub = site.counters();
    let drops0 = kernel_drops_on(GW_SUBSCRIBER);
    for n in 0..SUBSCRIBER_INVITES {
        stranger
            .send_to(
                invite_to(GW_SUBSCRIBER, from, n).as_bytes(),
                at(GW_SUBSCRIBER),
            )
            .unwrap();
        if n % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_sub = site.counters();
    let untrusted = counter(&after_sub, "untrusted") - counter(&before_sub, "untrusted");
    let dropped_by_kernel = kernel_drops_on(GW_SUBSCRIBER) - drops0;
    println!(
        "subscriber side: {SUBSCRIBER_INVITES} untrusted INVITEs: {untrusted} refused as untrusted, {dropped_by_kernel} dropped by the kernel"
    );
    assert!(
        stranger.recv(&mut buf).is_err(),
        "the untrusted subscriber flood got an answer"
    );
    assert_eq!(untrusted + dropped_by_kernel, u64::from(SUBSCRIBER_INVITES));
    assert_eq!(counter(&after_sub, "calls"), counter(&before_sub, "calls"));
    let pbx_sub = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pbx_sub_at = pbx_sub.local_addr().unwrap();
    pbx_sub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    pbx_sub
        .send_to(
            invite_to(GW_SUBSCRIBER, pbx_sub_at, 777).as_bytes(),
            at(GW_SUBSCRIBER),
        )
        .unwrap();
    let answer = loop {
        let len = pbx_sub.recv(&mut buf).expect("the PBX is answered");
        let answer = String::from_utf8_lossy(&buf[..len]).into_owned();
        if !answer.starts_with("SIP/2.0 100") {
            break answer;
        }
    };
    assert!(
        answer.starts_with("SIP/2.0 404"),
        "no such Softphone user: {answer}"
    );
    pbx_sub
        .send_to(
            ack_to(GW_SUBSCRIBER, pbx_sub_at, 777, &answer).as_bytes(),
            at(GW_SUBSCRIBER),
        )
        .unwrap();

    // The trusted PBX past its limit: 503 for every INVITE.
    // idle_timeout (3 s) is for connections peers open: the trunk the
    // gateway dialled, quiet between its pings, is still up.
    let status = site.admin_get("/api/status");
    assert_eq!(status["cloud_trunk"]["state"], "connected", "{status}");
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pbx_at = pbx.local_addr().unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut refused = 0;
    for window in (0..OVER_LIMIT_INVITES).collect::<Vec<_>>().chunks(20) {
        for &n in window {
            pbx.send_to(invite(pbx_at, n).as_bytes(), at(GW_SIP))
                .unwrap();
        }
        let mut finals = 0;
        while finals < window.len() {
            let len = pbx.recv(&mut buf).expect("an answer to every INVITE");
            let answer = String::from_utf8_lossy(&buf[..len]).into_owned();
            if answer.starts_with("SIP/2.0 100") {
                continue;
            }
            assert!(
                answer.starts_with("SIP/2.0 503"),
                "past the limit: {answer}"
            );
            assert!(
                !answer.to_ascii_lowercase().contains("\nretry-after:"),
                "503 at the limit carries no Retry-After: {answer}"
            );
            let n: u32 = answer
                .split("Call-ID: abuse-")
                .nth(1)
                .and_then(|r| r.split('@').next())
                .and_then(|n| n.parse().ok())
                .expect("the answer names its call");
            pbx.send_to(ack(pbx_at, n, &answer).as_bytes(), at(GW_SIP))
                .unwrap();
            finals += 1;
            refused += 1;
        }
    }
    let after_limit = site.counters();
    assert_eq!(refused, OVER_LIMIT_INVITES);
    assert_eq!(
        counter(&after_limit, "refused_at_limit") - counter(&before, "refused_at_limit"),
        u64::from(OVER_LIMIT_INVITES)
    );

    // A malformed storm from the PBX's address.
    let drops0 = kernel_drops();
    let t = Instant::now();
    for n in 0..STORM {
        pbx.send_to(&malformed(n), at(GW_SIP)).unwrap();
        if n % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_storm = site.counters();
    let answered = counter(&after_storm, "rejected") - counter(&after_limit, "rejected");
    let dropped = counter(&after_storm, "dropped") - counter(&after_limit, "dropped");
    let by_kernel = kernel_drops() - drops0;
    println!(
        "malformed storm: {STORM} datagrams in {:.1} s: {answered} answered 400, {dropped} dropped, {by_kernel} dropped by the kernel",
        t.elapsed().as_secs_f32()
    );
    assert_eq!(answered + dropped + by_kernel, u64::from(STORM));
    assert!(answered > 0 && dropped > 0, "both kinds seen");

    // Slow clients were cut, each by its own limit.
    let (cut, sent, idle) = slow.join().unwrap();
    println!(
        "slow clients: a trickle cut after {:.1} s ({sent} bytes), a silent connection after {:.1} s",
        cut.as_secs_f32(),
        idle.as_secs_f32()
    );
    assert!(
        cut >= Duration::from_millis(1900) && cut < Duration::from_secs(5),
        "partial_timeout (2 s) from the first byte: {cut:?}"
    );
    assert!(
        idle >= Duration::from_millis(2900) && idle < Duration::from_secs(7),
        "idle_timeout (3 s): {idle:?}"
    );
    // Past max_connections, a new connection is closed at once.
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| connect_from([127, 0, 0, 1]))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(at(GW_SIP)).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).is_some(),
        "a connection past max_connections is closed"
    );
    // The PBX is still served on the connections it holds.
    let opts = "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKopt\r\n\
         Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\n\
         Call-ID: opt@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    held[0].write_all(opts.as_bytes()).unwrap();
    held[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = held[0].read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"),
        "the PBX is still answered"
    );
    drop(held);
    let c = site.counters();
    assert!(counter(&c, "closed_slow") - counter(&before, "closed_slow") >= 1);
    assert!(counter(&c, "closed_idle") - counter(&before, "closed_idle") >= 1);
    assert!(counter(&c, "connections_refused") - counter(&before, "connections_refused") >= 1);

    // The two calls went on through it all and ended as pbxsim ended them.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let stats = sim.sip_calls();
        if stats["ended by pbxsim"].as_u64() == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the calls did not end normally: {stats}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let end = site.counters();
    assert_eq!(counter(&end, "calls"), 2, "only the two real calls: {end}");
    assert_eq!(counter(&end, "calls_completed"), 2, "{end}");
    drop(sim);
    drop(cloud);
    gw.stop();
}
