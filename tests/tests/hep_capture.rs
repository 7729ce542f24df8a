//! HEP3 capture (`[capture] hep`), read from the wire by outside tools: a
//! call through `pbxlink run` between sipp as the PBX (UDP, `uac_pcap`)
//! and baresip as the cloud (TLS, SRTP, which sends RTCP reports), with
//! the gateway copying to a collector address on 127.0.0.1. tshark
//! (Debian's) captures what reaches the collector's port on loopback and
//! hands each datagram's payload to hep-js, the Homer project's own HEP
//! library (`tests/hep/decode.mjs`, installed by `tests/run`), which
//! decodes it as a collector does. Debian's tshark 4.0 has no HEP
//! dissector of its own (the Homer project's is a Lua plugin published
//! outside Debian), so tshark reads the capture a second time with one
//! written here from the HEP3 specification (`tests/hep/hep3.lua`), which
//! hands every SIP payload to Wireshark's own SIP dissector.
//!
//! It shows: every datagram the gateway sent decodes as HEP3; the call's
//! SIP messages are there from both sides (the PBX's over UDP, the
//! cloud's over TCP: the TLS connection's cleartext) and every one of
//! them carries the same correlation id, the PBX leg's Call-ID; each
//! copy's addresses are the message's; and the cloud's RTCP reports
//! arrive as Homer's RTCP JSON (protocol type 5) under that id too.

use pbxlink_tests::baresip::Place;
use pbxlink_tests::rig::{GatewayConfig, Workdir, run_gateway};
use serde_json::Value;
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GW_SIP: u16 = 27_450;
const PBX_SIP: u16 = 27_460;
const CLOUD_SIP: u16 = 27_401; // baresip's TLS: 27_402
const PBX_MEDIA: u16 = 27_500;
const COLLECTOR: u16 = 27_490;

/// tshark capturing; stopped (SIGINT, so its file is whole) when done
/// or when the test fails.
struct Capture(Option<std::process::Child>);

impl Capture {
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_calls_sip_from_both_sides_and_its_rtcp_reach_the_collector_as_hep3() {
    let work = Workdir::new("hep");
    let dir = &work.dir;
    let (cloud, ca_file) = work.cloud(CLOUD_SIP);

    // The collector's port: bound, so nothing is refused; tshark reads
    // what arrives there.
    let collector = UdpSocket::bind(("127.0.0.1", COLLECTOR)).unwrap();
    let pcap = dir.join("hep.pcap");
    let mut tshark = Capture(Some(
        Command::new("tshark")
            .args(["-i", "lo", "-f", &format!("udp dst port {COLLECTOR}"), "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark runs (tests/run installs it)"),
    ));
    // tshark says "Capturing on" once it listens.
    let until = Instant::now() + Duration::from_secs(20);
    let mut err = tshark.0.as_mut().unwrap().stderr.take().unwrap();
    let mut said = Vec::new();
    while !String::from_utf8_lossy(&said).contains("Capturing on") {
        assert!(Instant::now() < until, "tshark did not start capturing");
        let mut b = [0u8; 256];
        let n = std::io::Read::read(&mut err, &mut b).unwrap_or(0);
        said.extend_from_slice(&b[..n]);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let config = GatewayConfig {
        cloud_extra: "keepalive_seconds = 3600",
        sections: &format!("[capture]\nhep = \"127.0.0.1:{COLLECTOR}\"\ncapture_id = 4242\n"),
        ..GatewayConfig::loopback(&ca_file, GW_SIP, PBX_SIP, CLOUD_SIP + 1)
    }
    .write(dir);
    let (gw, _) = run_gateway(&Place::default(), &config);
    let out = Command::new("sipp")
        .args(["-i", "127.0.0.1", "-p", &PBX_SIP.to_string(), "-aa"])
        .args(["-mp", &PBX_MEDIA.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error"])
        .args(["-sn", "uac_pcap", "-s", "cloud", "-t", "u1"])
        .arg(format!("127.0.0.1:{GW_SIP}"))
        .current_dir(dir)
        .output()
        .expect("sipp runs (tests/run installs sip-tester)");
    assert!(
        out.status.success(),
        "sipp's call failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    gw.wait_for("call 1: media to cloud", Duration::from_secs(10));
    cloud.wait_for("terminated", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    gw.stop();
    drop(cloud);
    tshark.stop();
    drop(collector);
    // Every captured datagram's payload, decoded by hep-js.
    let fields = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-e", "udp.payload"])
        .output()
        .expect("tshark reads its capture");
    let hex = String::from_utf8_lossy(&fields.stdout).into_owned();
    let mut node = Command::new("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hep/decode.mjs"))
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hep"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs hep-js (tests/run installs it)");
    node.stdin
        .take()
        .unwrap()
        .write_all(hex.as_bytes())
        .unwrap();
    let decoded = node.wait_with_output().unwrap();
    let copies: Vec<Value> = String::from_utf8_lossy(&decoded.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let captured = hex.lines().filter(|l| !l.trim().is_empty()).count();
    println!("tshark captured {captured} datagram(s) to the collector");
    assert!(captured >= 8, "a call's copies: {captured}");
    assert_eq!(copies.len(), captured);
    for c in &copies {
        assert_eq!(c["ok"], true, "hep-js could not decode a copy: {c}");
        assert_eq!(c["rcinfo"]["captureId"], 4242, "{c}");
    }

    // The call's SIP, both sides, under one correlation id.
    let sip: Vec<&Value> = copies
        .iter()
        .filter(|c| c["rcinfo"]["payloadType"] == 1)
        .collect();
    let invite_from_pbx = sip
        .iter()
        .find(|c| {
            c["payload"].as_str().unwrap().starts_with("INVITE ")
                && c["rcinfo"]["srcPort"] != GW_SIP
                && c["rcinfo"]["dstPort"] == GW_SIP
        })
        .expect("the PBX's INVITE, copied");
    let pbx_call_id = invite_from_pbx["rcinfo"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        invite_from_pbx["payload"]
            .as_str()
            .unwrap()
            .contains(&format!("Call-ID: {pbx_call_id}")),
        "the correlation id is the PBX leg's Call-ID: {invite_from_pbx}"
    );
    let call: Vec<&&Value> = sip
        .iter()
        .filter(|c| c["rcinfo"]["correlation_id"] == pbx_call_id.as_str())
        .collect();
    let side = |c: &Value| -> &'static str {
        let port = |k: &str| c["rcinfo"][k].as_u64().unwrap();
        match (
            c["rcinfo"]["protocol"].as_u64(),
            port("srcPort"),
            port("dstPort"),
        ) {
            (Some(17), s, d) if s == u64::from(GW_SIP) || d == u64::from(GW_SIP) => "pbx",
            (Some(6), s, d) if s == u64::from(CLOUD_SIP + 1) || d == u64::from(CLOUD_SIP + 1) => {
                "cloud"
            }
            _ => "?",
        }
    };
    let starts = |c: &Value, p: &str| c["payload"].as_str().unwrap().starts_with(p);
    for (want, from_side) in [
        ("INVITE ", "pbx"),
        ("INVITE ", "cloud"),
        ("SIP/2.0 200 OK", "cloud"),
        ("SIP/2.0 200 OK", "pbx"),
        ("ACK ", "pbx"),
        ("ACK ", "cloud"),
        ("BYE ", "pbx"),
        ("BYE ", "cloud"),
    ] {
        assert!(
            call.iter().any(|c| starts(c, want) && side(c) == from_side),
            "no {want:?} on the {from_side} side under {pbx_call_id}"
        );
    }
    let other: Vec<_> = sip
        .iter()
        .filter(|c| {
            let p = c["payload"].as_str().unwrap();
            c["rcinfo"]["correlation_id"] != pbx_call_id.as_str()
                && !p.starts_with("OPTIONS ")
                && !p.contains("CSeq: 1 OPTIONS")
                && !p.contains(" OPTIONS\r\n")
        })
        .collect();
    assert!(
        other.is_empty(),
        "every message of the call carries its id: {other:?}"
    );

    // RTCP, as Homer's JSON, under the same id.
    let rtcp: Vec<&Value> = copies
        .iter()
        .filter(|c| c["rcinfo"]["payloadType"] == 5)
        .collect();
    println!(
        "{} SIP copies of the call ({} in all), {} RTCP report(s)",
        call.len(),
        sip.len(),
        rtcp.len()
    );
    assert!(!rtcp.is_empty(), "baresip's RTCP reports, copied");
    for r in &rtcp {
        assert_eq!(r["rcinfo"]["correlation_id"], pbx_call_id.as_str(), "{r}");
        let json: Value = serde_json::from_str(r["payload"].as_str().unwrap()).unwrap();
        assert!(
            json["type"] == 200 || json["type"] == 201,
            "an SR or RR: {json}"
        );
        assert!(json["report_blocks"].is_array(), "{json}");
    }

    // tshark itself, with a HEP3 dissector written from the HEP3
    // specification (tests/hep/hep3.lua) that hands each SIP payload to
    // Wireshark's own SIP dissector: every frame is HEP3, none malformed,
    // every SIP copy parses as SIP, and the call's messages of both sides
    // are there under the PBX leg's Call-ID.
    let lua = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hep/hep3.lua");
    let dissected = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"])
        .args([
            "-e",
            "hep3.chunks",
            "-e",
            "hep3.malformed",
            "-e",
            "hep3.proto_type",
        ])
        .args([
            "-e",
            "hep3.correlation_id",
            "-e",
            "hep3.src_port",
            "-e",
            "hep3.dst_port",
        ])
        .args([
            "-e",
            "hep3.capture_id",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .args(["-e", "sip.Call-ID", "-e", "hep3.payload"])
        .output()
        .expect("tshark reads its capture");
    let frames: Vec<Vec<String>> = String::from_utf8_lossy(&dissected.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect();
    assert_eq!(frames.len(), captured, "tshark dissected every frame");
    for fr in &frames {
        assert!(
            fr[0].parse::<u32>().unwrap_or(0) >= 10,
            "not HEP3 to tshark: {fr:?}"
        );
        assert!(fr[1].is_empty(), "malformed to tshark: {fr:?}");
        assert_eq!(fr[6], "4242", "{fr:?}");
        match fr[2].as_str() {
            "1" => assert!(
                !fr[9].is_empty() && (!fr[7].is_empty() || !fr[8].is_empty()),
                "a SIP copy tshark's SIP dissector did not read: {fr:?}"
            ),
            "5" => assert!(fr[10].starts_with('{'), "RTCP as JSON: {fr:?}"),
            other => panic!("protocol type {other}: {fr:?}"),
        }
    }
    let of_call = |what: &str, port: u16| {
        frames.iter().any(|fr| {
            fr[3] == pbx_call_id
                && (fr[7] == what || fr[8] == what)
                && (fr[4] == port.to_string() || fr[5] == port.to_string())
        })
    };
    for what in ["INVITE", "ACK", "BYE", "200"] {
        assert!(of_call(what, GW_SIP), "tshark: no PBX-side {what}");
        assert!(of_call(what, CLOUD_SIP + 1), "tshark: no cloud-side {what}");
    }
    let tshark_rtcp = frames.iter().filter(|fr| fr[2] == "5").count();
    assert_eq!(tshark_rtcp, rtcp.len(), "the RTCP copies, to tshark");
    println!(
        "tshark (tests/hep/hep3.lua, SIP by Wireshark's own dissector): {} HEP3 frame(s), none malformed, {tshark_rtcp} RTCP",
        frames.len()
    );
}
