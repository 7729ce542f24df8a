//! The SIP transports against sipp (Debian `sip-tester`, pinned to
//! 127.0.0.1): OPTIONS over UDP and TCP get 200; a malformed-message storm
//! gets 400s or counted drops, and the listener keeps serving. Responses
//! carry DSCP CS3.

use pbxlink_tests::capture::Capture;
use pbxlink_tests::gateway::{Gateway, field};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const PORT: u16 = 25_060;

fn sipp(transport: &str, local_port: u16) {
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/sipp/options.xml");
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &local_port.to_string(),
            "-m",
            "20",
            "-r",
            "20",
            "-t",
            transport,
        ])
        .args([
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
            &format!("127.0.0.1:{PORT}"),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sipp runs (tests/run installs sip-tester)");
    assert!(
        out.status.success(),
        "sipp over {transport} failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn options(via: &str) -> String {
    format!(
        "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via} 127.0.0.1;branch=z9hG4bKstorm\r\nMax-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: storm@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Malformed messages, each with whether it can be answered with a 400.
fn storm() -> Vec<(Vec<u8>, bool)> {
    let ok = options("UDP");
    vec![
        (ok.as_bytes()[..ok.len() / 2].to_vec(), false), // truncated: no blank line
        // Longer than the datagram: RFC 3261 §18.3 asks for a 400.
        (
            ok.replace("Content-Length: 0", "Content-Length: 40")
                .into_bytes(),
            true,
        ),
        (
            ok.replace("Content-Length: 0", "Content-Length: zero")
                .into_bytes(),
            true,
        ),
        (
            ok.replace("Max-Forwards: 70", "Max Forwards 70")
                .into_bytes(),
            true,
        ),
        (
            ok.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE").into_bytes(),
            true,
        ),
        (
            ok.replace("Call-ID: storm@127.0.0.1\r\n", "").into_bytes(),
            false,
        ),
        (
            ok.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia").into_bytes(),
            true,
        ),
        (
            format!(
                "{}X-Big: {}\r\n\r\n",
                &ok[..ok.len() - 2],
                "a".repeat(9_000)
            )
            .into_bytes(),
            true,
        ),
        // A Request-URI outside RFC 3261 §25's grammar, whatever the
        // method: 400.
        (
            ok.replace("OPTIONS sip:gw@127.0.0.1", "OPTIONS sip:@@@:::")
                .into_bytes(),
            true,
        ),
        (
            ok.replace("OPTIONS sip:gw@127.0.0.1", "INVITE sip:@@@:::")
                .replace("1 OPTIONS", "1 INVITE")
                .into_bytes(),
            true,
        ),
        (
            ok.replace(
                "OPTIONS sip:gw@127.0.0.1",
                "MESSAGE sip:gw@example.com:99999",
            )
            .replace("1 OPTIONS", "1 MESSAGE")
            .into_bytes(),
            true,
        ),
        ((0..=255u8).cycle().take(3000).collect(), false), // binary junk
        (vec![0u8; 60_000], false),
    ]
}

#[test]
fn options_over_udp_and_tcp_and_a_malformed_storm() {
    let gw = Gateway::start(
        &[
            "sip-listen",
            "--udp",
            &format!("127.0.0.1:{PORT}"),
            "--tcp",
            &format!("127.0.0.1:{PORT}"),
            "--seconds",
            "120",
        ]
        .map(String::from),
    );
    gw.wait_for("sip-listen: UDP", Duration::from_secs(20));
    // Signalling is marked DSCP CS3 (TOS 0x60) on both transports.
    let mut capture = Capture::open().expect("packet capture (tests run as root)");
    sipp("u1", PORT + 10);
    assert_eq!(
        capture.tos_from(17, PORT, Duration::from_secs(5)),
        Some(0x60),
        "UDP responses carry CS3"
    );
    let mut capture = Capture::open().unwrap();
    sipp("t1", PORT + 11);
    assert_eq!(
        capture.tos_from(6, PORT, Duration::from_secs(5)),
        Some(0x60),
        "TCP responses carry CS3"
    );

    // The storm over UDP: each answerable one gets a 400 (or 505) naming why.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 65_536];
    let mut answered = 0;
    for (msg, answerable) in storm() {
        udp.send_to(&msg, ("127.0.0.1", PORT)).unwrap();
        match udp.recv(&mut buf) {
            Ok(n) => {
                let r = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(answerable, "answered what cannot be: {r}");
                assert!(
                    r.starts_with("SIP/2.0 400 Bad Request (") || r.starts_with("SIP/2.0 505"),
                    "{r}"
                );
                answered += 1;
            }
            Err(_) => assert!(
                !answerable,
                "no answer to {:?}",
                String::from_utf8_lossy(&msg[..msg.len().min(80)])
            ),
        }
    }
    assert_eq!(answered, 9);
    // The garbage Request-URI over TCP: 400 too.
    let mut s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        options("TCP")
            .replace("OPTIONS sip:gw@127.0.0.1", "OPTIONS sip:@@@:::")
            .as_bytes(),
    )
    .unwrap();
    let n = s.read(&mut buf).unwrap();
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request (malformed Request-URI)"),
        "{r}"
    );

    // Over TCP: a bad message closes its connection (framing cannot
    // resume) after the 400 where one can be given; others keep working.
    for (msg, _) in storm() {
        let mut s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(&msg);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let mut s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n", "keep-alive ping answered");
    s.write_all(options("TCP").as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"),
        "still serving over TCP"
    );
    udp.send_to(options("UDP").as_bytes(), ("127.0.0.1", PORT))
        .unwrap();
    let n = udp.recv(&mut buf).unwrap();
    let first = buf[..n].to_vec();
    assert!(
        String::from_utf8_lossy(&first).starts_with("SIP/2.0 200 OK"),
        "still serving over UDP"
    );
    // A retransmission (same branch) is matched to its server transaction
    // and gets the same response again, without being handled twice.
    udp.send_to(options("UDP").as_bytes(), ("127.0.0.1", PORT))
        .unwrap();
    let n = udp.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &first[..],
        "retransmission answered from its transaction"
    );
    drop(s);

    let out = gw.stop();
    let fin = out
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("final line");
    assert_eq!(field(fin, "ok"), 20 + 20 + 2, "{fin}");
    assert!(
        field(fin, "rejected") >= 6 && field(fin, "dropped") >= 4,
        "{fin}"
    );
    assert!(field(fin, "closed_on_error") >= 1, "{fin}");
    assert_eq!(field(fin, "retransmissions"), 1, "{fin}");
}
