//! dnsmasq (Debian `dnsmasq-base`, installed by `tests/run`) as the DNS
//! server of a test: given records only, on 127.0.0.1, no upstream, no
//! system files; stopped when dropped.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Dnsmasq {
    /// Serves `records` (dnsmasq options such as `--srv-host=…`) on
    /// 127.0.0.1:`port`.
    pub fn start(port: u16, records: &[String]) -> Dnsmasq {
        let child = Command::new("dnsmasq")
            .args(["--no-daemon", "-C", "/dev/null", "--bind-interfaces"])
            .args(["--listen-address=127.0.0.1", "--no-resolv", "--no-hosts"])
            .args(["--pid-file=", "--log-queries", "--log-facility=-"])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (tests/run installs dnsmasq-base)");
        // Ready when its port is taken.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "dnsmasq did not bind {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Dnsmasq { child, port }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
