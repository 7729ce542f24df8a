//! SIP over TLS, and the trunk the gateway dials to the cloud, against TLS
//! peers this test runs itself (rustls, certificates from a CA made here
//! with rcgen; sipp's Debian build has no TLS).
//!
//! - The TLS listener answers OPTIONS with 200 to a client that verifies
//!   it against the test CA; a client trusting another CA refuses it; a
//!   plaintext client fails the handshake and is counted.
//! - The trunk: of three targets in order, the first refuses the
//!   connection and the second presents a certificate from another CA —
//!   both are failed over (RFC 3263 §4.3) — and the third is the cloud.
//!   There the gateway's OPTIONS keep-alives are answered, and the cloud
//!   sends its own requests back over the gateway's connection (RFC 5923
//!   reuse): OPTIONS gets 200, INVITE 501, and CANCELs are matched to the
//!   INVITE (200) or not (481).
//! - RFC 3263 over DNS: dnsmasq serves NAPTR → SRV → A for `cloud.test`;
//!   the gateway resolves it, fails over from the dead higher-priority
//!   host to the live one, and verifies the certificate by the domain.

use pbxlink_tests::gateway::{Gateway, field};
use pbxlink_tests::pki::TestCa;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const UDP_TCP: u16 = 25_160;
const TLS: u16 = 25_161;
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(cert: &Path, key: &Path) -> Arc<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn client_config(ca: &TestCa) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `pbxlink sip-listen` on UDP/TCP `port`, trusting `ca` for its trunk,
/// with a keep-alive every second, plus `extra` arguments.
fn gateway(port: u16, ca: &Path, extra: &[&str]) -> Gateway {
    let addr = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = ["sip-listen", "--udp", &addr, "--tcp", &addr, "--trunk-ca"]
        .map(String::from)
        .to_vec();
    args.push(ca.to_str().unwrap().to_owned());
    args.extend(["--trunk-ping", "1", "--seconds", "60"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    Gateway::start(&args)
}

/// Reads one SIP message (these peers send no bodies) from a stream.
fn read_message(s: &mut impl Read, pending: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let msg: Vec<u8> = pending.drain(..end + 4).collect();
            return String::from_utf8(msg).unwrap();
        }
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed");
        pending.extend_from_slice(&buf[..n]);
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn request(method: &str, branch: &str, cseq: u32, transport: &str) -> String {
    format!(
        "{method} sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:cloud@127.0.0.1>;tag=c1\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: {branch}@cloud\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The cloud: serves one TLS connection from the gateway, checks both
/// directions, and reports what it saw.
fn cloud(listener: TcpListener, config: Arc<ServerConfig>) -> Vec<String> {
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
    let mut pending = Vec::new();
    let mut seen = Vec::new();
    let answer_ping = |tls: &mut rustls::StreamOwned<ServerConnection, TcpStream>,
                       pending: &mut Vec<u8>,
                       seen: &mut Vec<String>| {
        let ping = read_message(tls, pending);
        assert!(ping.starts_with("OPTIONS sips:127.0.0.1:"), "{ping}");
        let via = header(&ping, "Via")[0].to_owned();
        assert!(
            via.starts_with("SIP/2.0/TLS ") && via.ends_with(";alias"),
            "{via}"
        );
        let mut ok = "SIP/2.0 200 OK\r\n".to_owned();
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            ok.push_str(&format!("{name}: {}\r\n", header(&ping, name)[0]));
        }
        ok.push_str("Content-Length: 0\r\n\r\n");
        tls.write_all(ok.as_bytes()).unwrap();
        seen.push("ping answered".to_owned());
    };
    answer_ping(&mut tls, &mut pending, &mut seen);
    // The cloud's own requests over the gateway's connection.
    for (method, branch, cseq) in [
        ("OPTIONS", "z9hG4bKcloud1", 1),
        ("INVITE", "z9hG4bKcloud2", 2),
        // Before the ACK the INVITE's transaction is still there (after
        // it, over TLS, it ends at once and a CANCEL matches nothing).
        ("CANCEL", "z9hG4bKcloud2", 2),
        ("ACK", "z9hG4bKcloud2", 2),
        ("CANCEL", "z9hG4bKnosuch", 3),
    ] {
        tls.write_all(request(method, branch, cseq, "TLS").as_bytes())
            .unwrap();
        if method == "ACK" {
            continue; // no response to an ACK
        }
        // A keep-alive may come in between; answer it and read on.
        loop {
            let msg = read_message(&mut tls, &mut pending);
            if msg.starts_with("OPTIONS ") {
                pending.splice(0..0, msg.into_bytes());
                answer_ping(&mut tls, &mut pending, &mut seen);
                continue;
            }
            let status = msg.lines().next().unwrap().to_owned();
            assert!(
                header(&msg, "Via")[0].contains(branch),
                "response matches the request: {msg}"
            );
            seen.push(format!("{method} -> {status}"));
            break;
        }
    }
    answer_ping(&mut tls, &mut pending, &mut seen);
    // Closing at once could race the gateway's reading of that 200.
    std::thread::sleep(Duration::from_millis(500));
    seen
}

/// A target that completes TCP but presents a certificate from another CA.
fn rogue(listener: TcpListener, config: Arc<ServerConfig>) {
    if let Ok((mut tcp, _)) = listener.accept() {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        // The gateway aborts the handshake: an error here is expected.
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                break;
            }
        }
    }
}

#[test]
fn tls_listener_and_cloud_trunk_with_failover_and_connection_reuse() {
    let dir = std::env::temp_dir().join(format!("pbxlink-sip-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new("pbxlink test CA");
    let other = TestCa::new("some other CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (gw_cert, gw_key) = ca.write_leaf(&dir, "gateway", &["gateway.test"], &[LOCALHOST]);
    let (cloud_cert, cloud_key) = ca.write_leaf(&dir, "cloud", &["cloud.test"], &[LOCALHOST]);
    let (rogue_cert, rogue_key) = other.write_leaf(&dir, "rogue", &["cloud.test"], &[LOCALHOST]);

    // Trunk targets: nothing listening, a rogue certificate, the cloud.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let rogue_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let rogue_port = rogue_l.local_addr().unwrap().port();
    let cloud_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let cloud_port = cloud_l.local_addr().unwrap().port();
    let rogue_cfg = server_config(&rogue_cert, &rogue_key);
    let rogue_thread = std::thread::spawn(move || rogue(rogue_l, rogue_cfg));
    let cloud_cfg = server_config(&cloud_cert, &cloud_key);
    let cloud_thread = std::thread::spawn(move || cloud(cloud_l, cloud_cfg));

    let gw = gateway(
        UDP_TCP,
        &ca_file,
        &[
            "--tls",
            &format!("127.0.0.1:{TLS}"),
            "--cert",
            gw_cert.to_str().unwrap(),
            "--key",
            gw_key.to_str().unwrap(),
            "--trunk-target",
            &format!("tls:127.0.0.1:{closed_port}"),
            "--trunk-target",
            &format!("tls:127.0.0.1:{rogue_port}"),
            "--trunk-target",
            &format!("tls:127.0.0.1:{cloud_port}"),
        ],
    );
    gw.wait_for("sip-listen: UDP", Duration::from_secs(20));

    // The TLS listener, verified against the test CA by name and by IP.
    for name in ["gateway.test", "127.0.0.1"] {
        let tcp = TcpStream::connect(("127.0.0.1", TLS)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = ClientConnection::new(
            client_config(&ca),
            ServerName::try_from(name.to_owned()).unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request("OPTIONS", "z9hG4bKtls1", 1, "TLS").as_bytes())
            .unwrap();
        let resp = read_message(&mut tls, &mut Vec::new());
        assert!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    }
    // A client trusting another CA refuses the gateway.
    let tcp = TcpStream::connect(("127.0.0.1", TLS)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = ClientConnection::new(
        client_config(&other),
        ServerName::try_from("gateway.test").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let err = tls
        .write_all(request("OPTIONS", "z9hG4bKtls2", 1, "TLS").as_bytes())
        .and_then(|_| tls.flush())
        .and_then(|_| tls.read(&mut [0u8; 64]).map(|_| ()))
        .expect_err("the gateway's certificate is not from the other CA");
    assert!(err.to_string().contains("certificate"), "{err}");
    // Plaintext to the TLS port: a failed handshake, counted.
    let mut plain = TcpStream::connect(("127.0.0.1", TLS)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(request("OPTIONS", "z9hG4bKplain", 1, "TCP").as_bytes())
        .unwrap();
    let _ = plain.read(&mut [0u8; 64]);

    let seen = cloud_thread.join().expect("cloud checks pass");
    rogue_thread.join().unwrap();
    assert_eq!(
        seen.iter()
            .filter(|s| !s.starts_with("ping"))
            .cloned()
            .collect::<Vec<_>>(),
        [
            "OPTIONS -> SIP/2.0 200 OK",
            "INVITE -> SIP/2.0 501 Not Implemented",
            "CANCEL -> SIP/2.0 200 OK",
            "CANCEL -> SIP/2.0 481 Call/Transaction Does Not Exist",
        ]
    );
    assert!(seen.iter().filter(|s| s.starts_with("ping")).count() >= 2);
    // Let the gateway see the 200 to its last keep-alive.
    std::thread::sleep(Duration::from_millis(300));

    let out = gw.stop();
    let joined = out.join("\n");
    assert!(
        joined.contains(&format!("trunk: target tls:127.0.0.1:{closed_port} failed")),
        "{joined}"
    );
    assert!(
        out.iter().any(|l| l.contains(&format!(
            "tls:127.0.0.1:{rogue_port} failed: TLS handshake failed"
        )) && l.contains("UnknownIssuer")),
        "{joined}"
    );
    assert!(
        joined.contains(&format!("trunk: connected to tls:127.0.0.1:{cloud_port}")),
        "{joined}"
    );
    let fin = out
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("final line");
    println!("{fin}");
    assert_eq!(field(fin, "trunk_connects"), 1, "{fin}");
    assert!(field(fin, "trunk_failures") >= 2, "{fin}");
    assert!(field(fin, "trunk_pings_ok") >= 2, "{fin}");
    assert_eq!(field(fin, "cancels"), 2, "{fin}");
    // The rogue trunk target, the other-CA client, the plaintext client.
    assert!(field(fin, "tls_handshake_failures") >= 3, "{fin}");
    assert_eq!(field(fin, "responses_unmatched"), 0, "{fin}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trunk_domain_resolved_per_rfc3263_from_dns() {
    let dir = std::env::temp_dir().join(format!("pbxlink-sip-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new("pbxlink test CA");
    let ca_file = ca.write(&dir, "ca.pem");
    // The certificate names the domain only: RFC 5922 checks the domain
    // the gateway resolved, not the address it reached.
    let (cloud_cert, cloud_key) = ca.write_leaf(&dir, "cloud", &["cloud.test"], &[]);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let cloud_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let cloud_port = cloud_l.local_addr().unwrap().port();
    let cfg = server_config(&cloud_cert, &cloud_key);
    let cloud_thread = std::thread::spawn(move || cloud(cloud_l, cfg));
    // NAPTR → SRV (priority 10 dead, 20 alive) → A.
    let dns = pbxlink_tests::dnsmasq::Dnsmasq::start(
        25_353,
        &[
            "--naptr-record=cloud.test,10,10,S,SIPS+D2T,,_sips._tcp.cloud.test".to_owned(),
            format!("--srv-host=_sips._tcp.cloud.test,sip1.cloud.test,{closed_port},10,10"),
            format!("--srv-host=_sips._tcp.cloud.test,sip2.cloud.test,{cloud_port},20,10"),
            "--host-record=sip1.cloud.test,127.0.0.1".to_owned(),
            "--host-record=sip2.cloud.test,127.0.0.1".to_owned(),
        ],
    );
    let gw = gateway(
        25_170,
        &ca_file,
        &[
            "--trunk-domain",
            "cloud.test",
            "--dns-server",
            &format!("127.0.0.1:{}", dns.port),
        ],
    );
    let seen = cloud_thread.join().expect("cloud checks pass");
    assert_eq!(
        seen.iter().filter(|s| !s.starts_with("ping")).count(),
        4,
        "{seen:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = gw.stop();
    let joined = out.join("\n");
    assert!(
        joined.contains(&format!(
            "trunk: cloud.test resolved by NAPTR, SRV, A: tls:127.0.0.1:{closed_port}, tls:127.0.0.1:{cloud_port}"
        )),
        "{joined}"
    );
    assert!(
        joined.contains(&format!("trunk: target tls:127.0.0.1:{closed_port} failed")),
        "{joined}"
    );
    assert!(
        joined.contains(&format!("trunk: connected to tls:127.0.0.1:{cloud_port}")),
        "{joined}"
    );
    let fin = out.iter().find(|l| l.starts_with("final:")).unwrap();
    assert!(field(fin, "trunk_pings_ok") >= 2, "{fin}");
    let _ = std::fs::remove_dir_all(&dir);
}
