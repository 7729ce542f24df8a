//! RTCP XR VoIP metrics (RFC 3611 §4.7) in a call's record (issue 33): a
//! PBX written here from RFC 3261, 3550 and 3611 — a UDP user agent that
//! places a G.711 call through `pbxlink run` to cloudsim, sends its RTP,
//! and every second an RTCP compound of a receiver report and an XR whose
//! VoIP metrics block says how it heard the call (loss 8/256, discard
//! 13/256, R 80, MOS-LQ 3.9, MOS-CQ 3.8, a 40 ms buffer) — then hangs up.
//! The gateway passes the reports on toward the cloud and keeps the last
//! one: the record's `pbx_leg.xr` must hold those figures, and count the
//! blocks sent.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use pbxlink_tests::site::Site;
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const BASE: u16 = 24_650;
const RTP: u16 = 45_700;
const CALL_ID: &str = "xr-call-1@127.0.0.1";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The next SIP message on `sip` (skipping anything else), as text.
fn next_message(sip: &UdpSocket, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 8192];
    loop {
        assert!(
            Instant::now() < deadline,
            "no SIP message within {within:?}"
        );
        if let Ok(n) = sip.recv(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{msg}"))
}

/// RFC 3550 §6.4.2 RR from `ssrc` on source `of`, then an RFC 3611 XR with
/// a VoIP metrics block on `of`.
fn rr_and_xr(ssrc: u32, of: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&of.to_be_bytes());
    p.extend_from_slice(&[0; 20]); // nothing lost, no jitter, no SR yet
    p.extend_from_slice(&[0x80, 207, 0, 10]); // XR, 11 words
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[7, 0, 0, 8]); // VoIP metrics, 9 words
    p.extend_from_slice(&of.to_be_bytes());
    p.extend_from_slice(&[8, 13, 0, 0, 0, 0, 0, 0]); // loss, discard; bursts
    p.extend_from_slice(&[0, 30, 0, 70]); // round trip, end system delay
    p.extend_from_slice(&[127, 127, 127, 127]); // levels, RERL, Gmin
    p.extend_from_slice(&[80, 127, 39, 38]); // R, ext. R, MOS-LQ, MOS-CQ
    p.extend_from_slice(&[0, 0, 0, 40, 0, 80, 0, 120]); // RX config, JB
    p
}

#[test]
fn a_pbxs_xr_voip_metrics_reach_the_calls_record() {
    let work = Workdir::new("rtcp-xr");
    let site = Site::at(BASE);
    let cloud = site.cloudsim(&work);
    let config = GatewayConfig {
        gateway: "cdr_file = \"cdr.jsonl\"",
        pbx_extra: "",
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, 120);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));

    let sip = UdpSocket::bind(site.pbx_sip()).unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let rtp = UdpSocket::bind(at(RTP)).unwrap();
    let rtcp = UdpSocket::bind(at(RTP + 1)).unwrap();
    let me = site.pbx_sip();
    let gateway = site.gateway_sip();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {RTP} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n"
    );
    let invite = format!(
        "INVITE sip:0611111111@{gateway} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKxr1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=pbx1\r\nTo: <sip:0611111111@127.0.0.1>\r\n\
         Call-ID: {CALL_ID}\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sip.send_to(invite.as_bytes(), gateway).unwrap();
    let ok = loop {
        let m = next_message(&sip, Duration::from_secs(10));
        if m.starts_with("SIP/2.0 200") {
            break m;
        }
        assert!(m.starts_with("SIP/2.0 1"), "not answered:\n{m}");
    };
    // The gateway's media port, from its answer.
    let port: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .expect("an m=audio line in the answer");
    let to = header(&ok, "To").to_owned();
    let contact = header(&ok, "Contact");
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:1000@127.0.0.1>;tag=pbx1\r\nTo: {to}\r\nCall-ID: {CALL_ID}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    sip.send_to(in_dialog("ACK", 1, "z9hG4bKxr2").as_bytes(), gateway)
        .unwrap();

    // Three seconds of G.711 at 20 ms, a report each second.
    let (media, control) = (at(port), at(port + 1));
    let ssrc = 0x5858_0001u32;
    let start = Instant::now();
    let mut sent_reports = 0;
    for n in 0u32..150 {
        let due = start + Duration::from_millis(20 * u64::from(n));
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut p = vec![0x80, 8];
        p.extend_from_slice(&(n as u16).to_be_bytes());
        p.extend_from_slice(&(160 * n).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        rtp.send_to(&p, media).unwrap();
        if n % 50 == 49 {
            rtcp.send_to(&rr_and_xr(ssrc, 0x0c10_0d00), control)
                .unwrap();
            sent_reports += 1;
        }
    }
    sip.send_to(in_dialog("BYE", 2, "z9hG4bKxr3").as_bytes(), gateway)
        .unwrap();
    loop {
        let m = next_message(&sip, Duration::from_secs(10));
        if m.starts_with("SIP/2.0 200") && header(&m, "CSeq").ends_with("BYE") {
            break;
        }
    }

    // The record, once the relay's final counters came.
    let deadline = Instant::now() + Duration::from_secs(15);
    let record: Value = loop {
        let text = std::fs::read_to_string(work.dir.join("cdr.jsonl")).unwrap_or_default();
        if let Some(r) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["pbx_call_id"] == CALL_ID)
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no record of the call:\n{}",
            gw.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("record: {record}");
    assert_eq!(record["codec"], "PCMA");
    assert_eq!(
        (&record["to_cloud"]["rtcp"], &record["to_cloud"]["dropped"]),
        (&Value::from(sent_reports), &Value::from(0)),
        "every compound passed on toward the cloud"
    );
    let xr = &record["quality"]["pbx_leg"]["xr"];
    assert_eq!(xr["reports"], sent_reports, "{xr}");
    assert_eq!(xr["loss_percent"], 3.13, "8/256");
    assert_eq!(xr["discard_percent"], 5.08, "13/256");
    assert_eq!(xr["round_trip_ms"], 30);
    assert_eq!(xr["end_system_delay_ms"], 70);
    assert_eq!(xr["jitter_buffer_ms"], 40);
    assert_eq!(xr["r"], 80);
    assert_eq!(xr["mos_lq"], 3.9);
    assert_eq!(xr["mos_cq"], 3.8);
    assert_eq!(
        record["quality"]["pbx_leg"]["outbound"]["reports"], sent_reports,
        "the RRs beside them"
    );
    assert!(
        record["quality"]["cloud_leg"]["xr"].is_null(),
        "cloudsim sends no XR"
    );
}
