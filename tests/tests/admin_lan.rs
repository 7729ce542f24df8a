//! The gateway on a LAN (issue 19), inside network namespaces the tests
//! make (as root; never on the machine's own interfaces):
//!
//! - the wizard's static LAN applied for real: the gateway runs
//!   unconfigured, managing an interface `lan0` (`[admin]
//!   network_interface`); the Gateway step's static address, mask,
//!   default gateway and DNS servers end up on `lan0`, in the
//!   namespace's routing table and in `[admin] resolv_conf`; a wrong one
//!   changes nothing. Requests reach the admin API on the namespace's
//!   loopback through `ip netns exec … python3`.
//! - `pbxlink.local`: a second namespace on the same link (a veth pair)
//!   asks for the name by mDNS (a one-shot query, RFC 6762 §5.1, from
//!   `python3`) and gets the page's address.

use pbxlink_tests::baresip::Place;
use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::rig::Workdir;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

const ADMIN: u16 = 23_930;
const TOKEN: &str = "admin-token-0123456789";

/// The namespace, removed when dropped.
struct Namespace(String);

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Namespace {
    /// A namespace with its loopback up.
    fn new(what: &str) -> Namespace {
        let ns = Namespace(format!("pbxl-{what}-{}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `python3 -c script args…` inside; its output, and whether it
    /// succeeded.
    fn python(&self, script: &str, args: &[String]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "python3", "-c", script])
            .args(args)
            .output()
            .expect("python3 runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `pbxlink run` inside, with `config`, at `addr`, for at most 60 s.
    fn gateway(&self, config: &std::path::Path, addr: Ipv4Addr) -> Gateway {
        let place = Place {
            netns: Some(self.0.clone()),
            addr: IpAddr::V4(addr),
        };
        Gateway::start_at(
            &place,
            &[
                "run".into(),
                "--config".into(),
                config.display().to_string(),
                "--seconds".into(),
                "60".into(),
            ],
        )
    }

    /// `method path` with `body` on the admin API inside the namespace,
    /// with the API token; the status and the JSON answer.
    fn request(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let script = "import sys, urllib.request, urllib.error\n\
            req = urllib.request.Request(sys.argv[1], data=sys.argv[3].encode() or None, method=sys.argv[2])\n\
            req.add_header('Authorization', 'Bearer ' + sys.argv[4])\n\
            req.add_header('Content-Type', 'application/json')\n\
            try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())\n\
            except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n";
        let (_, text) = self.python(
            script,
            &[
                format!("http://127.0.0.1:{ADMIN}{path}"),
                method.to_owned(),
                if body.is_null() {
                    String::new()
                } else {
                    body.to_string()
                },
                TOKEN.to_owned(),
            ],
        );
        let (status, json) = text
            .split_once('\n')
            .unwrap_or_else(|| panic!("no answer: {text}"));
        (
            status.trim().parse().unwrap(),
            serde_json::from_str(json.trim()).unwrap_or(Value::Null),
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn the_wizards_static_lan_lands_on_the_interface_inside_a_test_namespace() {
    let work = Workdir::new("admin-lan");
    let ns = Namespace::new("lan");
    // The managed port: one end of a veth pair kept inside (the kernel
    // may have no dummy interfaces).
    ip(&[
        "-n", &ns.0, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0-far",
    ]);
    ip(&["-n", &ns.0, "link", "set", "lan0-far", "up"]);
    ip(&["-n", &ns.0, "addr", "add", "10.66.9.9/24", "dev", "lan0"]);
    ip(&["-n", &ns.0, "link", "set", "lan0", "up"]);
    let resolv = work.dir.join("resolv.conf");
    let config = work.dir.join("pbxlink.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlan_address = \"127.0.0.1\"\nprofile = \"small\"\nstate_dir = \"{}\"\n\
             networks = [\"127.0.0.0/8\"]\n\n\
             [admin]\nlisten = \"127.0.0.1:{ADMIN}\"\nhttps_listen = \"127.0.0.1:{}\"\napi_token = \"{TOKEN}\"\n\
             network_interface = \"lan0\"\nresolv_conf = \"{}\"\n",
            work.dir.join("state").display(),
            ADMIN + 1,
            resolv.display()
        ),
    )
    .unwrap();
    let gw = ns.gateway(&config, Ipv4Addr::LOCALHOST);
    gw.wait_for(
        "setup: the gateway does not carry calls yet",
        Duration::from_secs(20),
    );
    gw.wait_for("admin: API on", Duration::from_secs(10));

    // A default gateway outside the network is refused: nothing changes.
    let (status, answer) = ns.request(
        "PUT",
        "/api/onboarding/gateway",
        &json!({"site": "Lab", "address": "Paris", "lan_mode": "static", "ip": "10.66.0.20",
                "mask": "255.255.255.0", "gateway": "10.66.1.1", "dns": ["10.66.0.1"]}),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(ip(&["-n", &ns.0, "-4", "addr", "show", "dev", "lan0"]).contains("10.66.9.9/24"));

    // The static settings land on lan0, the routing table and resolv.conf.
    let (status, answer) = ns.request(
        "PUT",
        "/api/onboarding/gateway",
        &json!({"site": "Lab", "address": "Paris", "lan_mode": "static", "ip": "10.66.0.20",
                "mask": "255.255.255.0", "gateway": "10.66.0.1", "dns": ["10.66.0.1", "10.66.0.2"]}),
    );
    assert_eq!(status, 200, "{answer}");
    let addrs = ip(&["-n", &ns.0, "-4", "addr", "show", "dev", "lan0"]);
    assert!(addrs.contains("inet 10.66.0.20/24"), "{addrs}");
    assert!(
        !addrs.contains("10.66.9.9"),
        "the old address stays: {addrs}"
    );
    let route = ip(&["-n", &ns.0, "route", "show", "default"]);
    assert!(route.contains("default via 10.66.0.1 dev lan0"), "{route}");
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "nameserver 10.66.0.1\nnameserver 10.66.0.2\n"
    );
    gw.wait_for(
        "admin: wizard: LAN: 10.66.0.20/24 on lan0",
        Duration::from_secs(5),
    );
    // The machine's own interfaces never saw it.
    assert!(!ip(&["-4", "addr"]).contains("10.66.0.20"));

    // DHCP is left to the system's client: the address stays as it is.
    let (status, answer) = ns.request(
        "PUT",
        "/api/onboarding/gateway",
        &json!({"site": "Lab", "address": "Paris", "lan_mode": "dhcp"}),
    );
    assert_eq!(status, 200, "{answer}");
    gw.wait_for(
        "admin: wizard: LAN: DHCP on lan0: left to the system's DHCP client",
        Duration::from_secs(5),
    );
    // The saved step restarts the gateway (a third start): stopped once it
    // is up again, not while the new process is still being born.
    gw.wait_count("admin: page on https://", 3, Duration::from_secs(20));
    gw.stop();
}

/// Asks for `argv[1]` (type A) by mDNS from `argv[2]`, a one-shot query
/// from an ephemeral port, answered by unicast (RFC 6762 §5.1, §6.7);
/// prints the address and who answered.
const MDNS_QUERY: &str = r#"
import socket, struct, sys, time
name, src = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x5150, 0, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
s.bind((src, 0))
s.settimeout(0.5)
def skip_name(d, i):
    while True:
        n = d[i]
        if n == 0: return i + 1
        if n & 0xC0 == 0xC0: return i + 2
        i += 1 + n
deadline = time.time() + 15
while time.time() < deadline:
    s.sendto(q, ("224.0.0.251", 5353))
    try:
        d, frm = s.recvfrom(9000)
    except socket.timeout:
        continue
    qd, an, ns_, ar = struct.unpack(">HHHH", d[4:12])
    i = 12
    for _ in range(qd):
        i = skip_name(d, i) + 4
    for _ in range(an + ns_ + ar):
        i = skip_name(d, i)
        t, c, ttl, ln = struct.unpack(">HHIH", d[i:i + 10])
        i += 10
        if t == 1 and ln == 4:
            print(socket.inet_ntoa(d[i:i + 4]), frm[0])
            sys.exit(0)
        i += ln
print("no answer")
sys.exit(1)
"#;

#[test]
fn the_page_is_found_as_pbxlink_local_from_the_lan() {
    let work = Workdir::new("admin-mdns");
    let gw_ns = Namespace::new("mdns-gw");
    let lan = Namespace::new("mdns-pc");
    // The link between them: the gateway's LAN port and an installer's PC.
    ip(&[
        "-n", &gw_ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "pc0", "netns",
        &lan.0,
    ]);
    ip(&["-n", &gw_ns.0, "addr", "add", "10.67.0.1/24", "dev", "eth0"]);
    ip(&["-n", &gw_ns.0, "link", "set", "eth0", "up"]);
    ip(&["-n", &lan.0, "addr", "add", "10.67.0.2/24", "dev", "pc0"]);
    ip(&["-n", &lan.0, "link", "set", "pc0", "up"]);
    let config = work.dir.join("pbxlink.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlan_address = \"10.67.0.1\"\nprofile = \"small\"\nstate_dir = \"{}\"\n\
             networks = [\"10.67.0.0/24\"]\n\n\
             [admin]\nlisten = \"10.67.0.1:{ADMIN}\"\nhttps_listen = \"10.67.0.1:{}\"\n",
            work.dir.join("state").display(),
            ADMIN + 1,
        ),
    )
    .unwrap();
    let gw = gw_ns.gateway(&config, Ipv4Addr::new(10, 67, 0, 1));
    gw.wait_for(
        "admin: advertised on the LAN as pbxlink.local (10.67.0.1, mDNS)",
        Duration::from_secs(20),
    );
    let (ok, said) = lan.python(MDNS_QUERY, &["pbxlink.local".into(), "10.67.0.2".into()]);
    assert!(ok, "pbxlink.local was not answered: {said}");
    assert_eq!(said.trim(), "10.67.0.1 10.67.0.1", "{said}");
    gw.stop();
}
