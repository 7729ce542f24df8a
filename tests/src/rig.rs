//! What the B2BUA's end-to-end tests share: a work directory with sipp's
//! audio files, a test CA and the cloud's certificate, the gateway's
//! configuration file and its start, and reading its call lines.

use crate::baresip::{self, Baresip, Place};
use crate::gateway::Gateway;
use crate::pki::TestCa;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// A test's directory (removed when dropped), with `pcap/` holding sipp's
/// G.711 and DTMF captures for `play_pcap_audio`.
#[derive(Debug)]
pub struct Workdir {
    /// Where it is.
    pub dir: PathBuf,
}

impl Workdir {
    /// A fresh directory named after `name` and this process.
    pub fn new(name: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("pbxlink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pcap")).unwrap();
        for f in ["g711a.pcap", "dtmf_2833_1.pcap"] {
            std::os::unix::fs::symlink(
                format!("/usr/share/sip-tester/{f}"),
                dir.join("pcap").join(f),
            )
            .unwrap();
        }
        Workdir { dir }
    }

    /// A CA made here and the cloud's certificate and key (one PEM) for
    /// `cloud.test` and `ip`: (CA file, cloud PEM).
    pub fn cloud_pki(&self, ip: IpAddr) -> (PathBuf, PathBuf) {
        let ca = TestCa::new("pbxlink test CA");
        let ca_file = ca.write(&self.dir, "ca.pem");
        let (cert, key) = ca.leaf(&["cloud.test"], &[ip]);
        let pem = self.dir.join("cloud.pem");
        std::fs::write(&pem, format!("{cert}{key}")).unwrap();
        (ca_file, pem)
    }

    /// The cloud on loopback: a test CA, and baresip answering `cloud` over
    /// TLS on `port`+1 with SRTP, playing a 1 kHz tone. Returns it and the
    /// CA file the gateway must trust.
    pub fn cloud(&self, port: u16) -> (Baresip, PathBuf) {
        let (ca_file, cloud_pem) = self.cloud_pki(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let tone = self.tone("tone.wav", 1000.0);
        let cloud = Baresip::start(
            &self.dir.join("cloud"),
            port,
            &cloud_pem,
            &ca_file,
            "cloud",
            &tone,
        );
        (cloud, ca_file)
    }

    /// A 30 s tone file at `freq` Hz.
    pub fn tone(&self, name: &str, freq: f64) -> PathBuf {
        let path = self.dir.join(name);
        baresip::tone_wav(&path, freq, 30);
        path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The gateway's configuration file for a test: LAN and PBX addresses,
/// the cloud as one TLS target (AES-CM only: baresip 1.0 mis-reads
/// AEAD_AES_128_GCM keys), the PBX-side SIP port, and extra lines for
/// `[gateway]`, `[pbx]` and `[cloud]`.
#[derive(Debug, Clone)]
pub struct GatewayConfig<'a> {
    /// `[gateway] lan_address`, and `networks` covers it (/8 for loopback).
    pub lan: IpAddr,
    /// The PBX's SIP address.
    pub pbx: SocketAddr,
    /// The cloud's TLS address.
    pub cloud: SocketAddr,
    /// The CA the cloud's certificate chains to.
    pub ca: &'a Path,
    /// The gateway's PBX-side SIP port.
    pub sip_port: u16,
    /// More `[gateway]` lines (a `profile` line replaces the default `max`).
    pub gateway: &'a str,
    /// More `[pbx]` lines.
    pub pbx_extra: &'a str,
    /// More `[cloud]` lines.
    pub cloud_extra: &'a str,
    /// More `[sip]` lines.
    pub sip_extra: &'a str,
    /// More sections at the end; without an `[admin]` one the admin API
    /// is off (tests run side by side: they would all want port 80).
    pub sections: &'a str,
}

impl<'a> GatewayConfig<'a> {
    /// Everything on 127.0.0.1: the PBX's SIP at `pbx_sip`, the cloud's TLS
    /// at `cloud_tls`, the gateway's PBX-side SIP at `sip_port`; no extra
    /// lines (set them with struct update syntax).
    pub fn loopback(ca: &'a Path, sip_port: u16, pbx_sip: u16, cloud_tls: u16) -> Self {
        let localhost = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        GatewayConfig {
            lan: localhost,
            pbx: SocketAddr::new(localhost, pbx_sip),
            cloud: SocketAddr::new(localhost, cloud_tls),
            ca,
            sip_port,
            gateway: "",
            pbx_extra: "",
            cloud_extra: "",
            sip_extra: "",
            sections: "",
        }
    }

    /// Writes it to `dir/pbxlink.toml`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let networks = if self.lan.is_loopback() {
            "\"127.0.0.0/8\"".to_owned()
        } else {
            self.gateway_networks()
        };
        // Tests stop gateways within 20 s: calls left up are hung up soon.
        let drain = if self.gateway.contains("drain_seconds") {
            ""
        } else {
            "drain_seconds = 5\n"
        };
        // sipp as a UAS takes each OPTIONS for a call (-m counts it): the
        // keep-alives toward the PBX are off unless a test turns them on.
        let keepalive = if self.pbx_extra.contains("keepalive_seconds") {
            ""
        } else {
            "keepalive_seconds = 0\n"
        };
        let profile = if self.gateway.contains("profile") {
            ""
        } else {
            "profile = \"max\"\n"
        };
        // What the gateway keeps (users, certificates) stays in the test's
        // directory, never in the machine's /var/lib.
        let state = if self.gateway.contains("state_dir") {
            String::new()
        } else {
            format!("state_dir = \"{}\"\n", dir.join("state").display())
        };
        let text = format!(
            "[gateway]\nlan_address = \"{}\"\n{profile}{state}networks = [{networks}]\n{drain}{}\n\n\
             [pbx]\ntype = \"mivoice-5000\"\naddress = \"{}\"\nport = {}\n{keepalive}{}\n\n\
             [cloud]\ntargets = [\"tls:{}\"]\nca = \"{}\"\n\
             srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\"]\n{}\n\n\
             [sip]\nport = {}\n{}\n\n{}\n",
            self.lan,
            self.gateway,
            self.pbx.ip(),
            self.pbx.port(),
            self.pbx_extra,
            self.cloud,
            self.ca.display(),
            self.cloud_extra,
            self.sip_port,
            self.sip_extra,
            {
                // Tests run side by side: the admin API (port 80) and the
                // subscriber side (5070) are off unless a test asks.
                let mut sections = self.sections.to_owned();
                if !sections.contains("[admin]") {
                    sections.push_str("\n[admin]\nlisten = \"off\"\n");
                }
                if !sections.contains("[subscriber]") {
                    sections.push_str("\n[subscriber]\nlisten = \"off\"\n");
                }
                sections
            }
        );
        let path = dir.join("pbxlink.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The LAN's and the cloud's /24s, when not on loopback.
    fn gateway_networks(&self) -> String {
        [self.lan, self.cloud.ip()]
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    format!("\"{}.{}.{}.0/24\"", o[0], o[1], o[2])
                }
                IpAddr::V6(v6) => format!("\"{v6}/64\""),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Starts `pbxlink run --config FILE` at `place` for at most 90 s and waits
/// for its trunk to connect; returns it and the trunk connection's end
/// (where the cloud's calls are sent).
pub fn run_gateway(place: &Place, config: &Path) -> (Gateway, String) {
    run_gateway_with(place, config, &[])
}

/// As [`run_gateway`], with more command-line arguments (`--backend xdp`).
pub fn run_gateway_with(place: &Place, config: &Path, extra: &[&str]) -> (Gateway, String) {
    let mut args: Vec<String> = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--seconds",
        "90",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    let gw = Gateway::start_at(place, &args);
    let connected = gw.wait_for("trunk: connected to", Duration::from_secs(20));
    let trunk_end = connected.rsplit(' ').next().unwrap().to_owned();
    (gw, trunk_end)
}

/// The number after `label` in a gateway call line (`to cloud 244 RTP …`).
pub fn media_count(line: &str, label: &str) -> u64 {
    line.split(label)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits for sipp (started with stdout piped) and fails with the tail of
/// its report unless its scenario passed.
pub fn sipp_passes(child: Child, what: &str) {
    let out = child.wait_with_output().expect("sipp ends");
    assert!(
        out.status.success(),
        "{what}: sipp's scenario failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `GET http://addr/path` (HTTP/1.1, the connection closed after): the
/// status code and the body read as JSON.
pub fn http_get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}
