//! The gateway behind NAT, in network namespaces the test builds
//! (`pbxlink_tests::netns`): the gateway and the PBX (sipp,
//! `peers/sipp/uas_pcap.xml`) at 10.77.1.2 behind a MASQUERADE router,
//! the cloud (baresip, TLS, `mediaenc=srtp-mand`) at 10.77.2.2 with no
//! route back — it only ever sees the router's 10.77.2.1.
//!
//! The gateway learns its public address at start from the cloud's STUN
//! server (coturn, Debian `coturn`, in the cloud's namespace; nothing is
//! configured): the router's. It dials the trunk out through the NAT and
//! learns from its
//! keep-alives' responses (RFC 3581 `received`/`rport`) the address the
//! cloud sees the connection as; the cloud calls over that connection
//! (the router would drop a new one); the gateway's SDP names its
//! configured public address; its relay opens the NAT pinhole toward the
//! cloud as it starts, so the cloud's SRTP to the public address comes
//! through. Media must flow both ways and decrypt. The PBX's audio starts
//! a second after the answer, so the cloud's media reaches the router
//! first: without the pinhole (tried, 2026-11-24) the router then kept
//! that port for itself, mapped the gateway's packets to another, and
//! none of the cloud's media arrived.

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::netns::{self, Nat};
use pbxlink_tests::rig::{GatewayConfig, Workdir, media_count, run_gateway_with};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const GW_SIP: u16 = 5060;
const PBX_SIP: u16 = 5080;
const CLOUD_SIP: u16 = 5060; // baresip's TLS: 5061

/// On the io_uring backend, then on the xdp backend: its program on the
/// gateway's veth (native XDP), the cloud's SRTP arriving through the
/// router (frames with the router's MAC), the PBX on the gateway's own
/// address (loopback: its RTP reaches the relay's socket, not the program).
/// One after the other: both would want the same namespaces.
#[test]
fn a_call_from_the_cloud_reaches_the_gateway_behind_nat_and_media_flows() {
    call_through_nat("uring");
    call_through_nat("xdp");
}

fn call_through_nat(backend: &str) {
    let xdp = backend == "xdp";
    let work = Workdir::new(&format!("nat-{backend}"));
    let dir = &work.dir;
    let nat = Nat::new();
    let (ca_file, cloud_pem) = work.cloud_pki(IpAddr::V4(netns::CLOUD));
    let tone = work.tone("tone.wav", 1000.0);
    // The cloud's STUN server.
    let stun = pbxlink_tests::coturn::Stun::start(
        nat.at_cloud().command("turnserver"),
        SocketAddr::new(IpAddr::V4(netns::CLOUD), 3478),
        dir,
    );
    let mut cloud = Baresip::cloud_at(
        &nat.at_cloud(),
        &dir.join("cloud"),
        CLOUD_SIP,
        &cloud_pem,
        &ca_file,
        "cloud",
        &tone,
    );

    let gateway = IpAddr::V4(netns::GATEWAY);
    let config = GatewayConfig {
        lan: gateway,
        pbx: SocketAddr::new(gateway, PBX_SIP),
        cloud: SocketAddr::new(IpAddr::V4(netns::CLOUD), CLOUD_SIP + 1),
        ca: &ca_file,
        sip_port: GW_SIP,
        // The xdp backend: one worker per receive queue (a veth has one).
        gateway: if xdp { "profile = \"small\"" } else { "" },
        pbx_extra: "",
        cloud_extra: &format!("stun = [\"{}:3478\"]", netns::CLOUD),
        sip_extra: "",
        sections: "",
    }
    .write(dir);
    let (gw, _) = run_gateway_with(
        &nat.at_gateway(netns::GATEWAY),
        &config,
        &["--backend", backend],
    );
    let learned = gw.wait_for("public address by STUN", Duration::from_secs(10));
    assert!(
        learned.ends_with(&format!(": {}", netns::ROUTER_OUTSIDE)),
        "{learned}"
    );
    let seen = gw.wait_for(
        "trunk: the cloud sees this connection as",
        Duration::from_secs(10),
    );
    let trunk_end = seen.rsplit(' ').next().unwrap().to_owned();
    assert!(
        trunk_end.starts_with(&format!("{}:", netns::ROUTER_OUTSIDE)),
        "the cloud saw the router: {seen}"
    );

    let pbx = nat
        .at_gateway(netns::GATEWAY)
        .command("sipp")
        .args([
            "-i",
            &netns::GATEWAY.to_string(),
            "-p",
            &PBX_SIP.to_string(),
        ])
        .args([
            "-mp",
            "26400",
            "-m",
            "1",
            "-nostdin",
            "-aa",
            "-timeout",
            "40s",
            "-timeout_error",
        ])
        .arg("-sf")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sipp/uas_pcap.xml"))
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sipp runs (tests/run installs sip-tester)");
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 201@{trunk_end}"));
    cloud.wait_for("Call established", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(5));
    cloud.command("/hangup");
    let out = pbx.wait_with_output().expect("sipp ends");
    assert!(
        out.status.success(),
        "sipp as the PBX: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ended = gw.wait_for("call 1: ended", Duration::from_secs(10));
    let media = gw.wait_for("call 1: media to cloud", Duration::from_secs(5));
    let lines = gw.stop();
    println!("{learned}\n{seen}\n{ended}\n{media}");
    assert!(ended.contains("Hangup(Cloud)"), "{ended}");
    assert!(
        media_count(&media, "to cloud ") >= 100,
        "the PBX's audio went out through the NAT: {media}"
    );
    assert!(
        media_count(&media, "to PBX ") >= 150,
        "the cloud's SRTP came in through the NAT: {media}"
    );
    assert!(
        !media.contains("auth_failed") && !media.contains("srtp_error"),
        "{media}"
    );
    let bs = cloud.output().join("\n");
    assert!(!bs.contains("failed to decrypt"), "{bs}");
    let decoded = cloud.decoded();
    let (samples, rate) = baresip::read_wav(&decoded[0]);
    let seconds = samples.len() as f64 / f64::from(rate);
    println!(
        "baresip decoded {seconds:.1} s of the PBX's audio, RMS {:.0}",
        baresip::rms(&samples)
    );
    assert!(seconds >= 3.0 && baresip::rms(&samples) > 300.0);
    let fin = final_line(&lines);
    assert_eq!(field(fin, "calls_ended"), 1, "{fin}");
    if xdp {
        assert!(
            lines.iter().any(|l| l.contains("backend xdp")),
            "the xdp backend started"
        );
        // The cloud's SRTP came in through the program; the PBX's RTP, over
        // loopback, by the relay's socket — and so left by the socket path.
        assert!(field(fin, "media_received_xdp") >= 150, "{fin}");
        println!("{fin}");
    }
    drop(cloud);
    drop(stun);
    drop(nat);
}
