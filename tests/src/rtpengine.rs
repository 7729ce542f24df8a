//! rtpengine (Debian `rtpengine-daemon`) as an independent SRTP peer, run in
//! user space on loopback and driven through its ng control protocol.

use crate::bencode::Value;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/rtpengine";

/// A running rtpengine, killed on drop.
#[derive(Debug)]
pub struct Rtpengine {
    child: Child,
    ng: UdpSocket,
    cookie: u64,
    log: std::path::PathBuf,
    /// Where the calls' endpoints are (the SDP's connection address).
    peer: Ipv4Addr,
}

/// What one side of a call was told by rtpengine.
#[derive(Debug, Clone)]
pub struct Side {
    /// The port on rtpengine this side sends its RTP to (RTCP: +1).
    pub rtpengine_port: u16,
    /// `(tag, suite, inline key)` of each `a=crypto` line offered to this side.
    pub crypto: Vec<(u32, String, String)>,
}

impl Rtpengine {
    /// Starts rtpengine on 127.0.0.1 with one worker, no kernel forwarding,
    /// media ports in `ports`, control on `ng_port`.
    pub fn start(ng_port: u16, ports: (u16, u16)) -> Rtpengine {
        Self::start_on(ng_port, ports, None)
    }

    /// As [`start`](Self::start), pinned to `cpu` with `taskset` when given.
    pub fn start_on(ng_port: u16, ports: (u16, u16), cpu: Option<usize>) -> Rtpengine {
        Self::start_at(
            ng_port,
            ports,
            cpu,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
        )
    }

    /// As [`start_on`](Self::start_on), with media on `media` (an address
    /// of this host) for call endpoints at `peer`. Control stays on
    /// 127.0.0.1.
    pub fn start_at(
        ng_port: u16,
        ports: (u16, u16),
        cpu: Option<usize>,
        media: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Rtpengine {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} missing: run ./tests/run, which installs rtpengine-daemon"
        );
        let log = std::env::temp_dir().join(format!("pbxlink-rtpengine-{ng_port}.log"));
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), BINARY]);
                c
            }
            None => Command::new(BINARY),
        };
        let child = command
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--table=-1",
                &format!("--interface={media}"),
                "--num-threads=1",
                "--delete-delay=0",
            ])
            .arg(format!(
                "--log-level={}",
                std::env::var("PBXLINK_RTPENGINE_LOG_LEVEL").unwrap_or_else(|_| "6".into())
            ))
            .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
        let ng = UdpSocket::bind("127.0.0.1:0").unwrap();
        ng.connect(("127.0.0.1", ng_port)).unwrap();
        ng.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut r = Rtpengine {
            child,
            ng,
            cookie: 0,
            log,
            peer,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = r.try_command(&Value::dict([("command", Value::str("ping"))])) {
                assert_eq!(v.get("result").and_then(Value::as_str), Some("pong"));
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "rtpengine did not answer ping:\n{}",
                r.log_text()
            );
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log so far, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_command(&mut self, msg: &Value) -> Option<Value> {
        self.cookie += 1;
        let cookie = format!("c{}", self.cookie);
        let mut out = format!("{cookie} ").into_bytes();
        msg.encode(&mut out);
        self.ng.send(&out).ok()?;
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let Ok(n) = self.ng.recv(&mut buf) else {
                continue;
            };
            let reply = &buf[..n];
            if let Some(body) = reply.strip_prefix(format!("{cookie} ").as_bytes()) {
                return Value::decode(body).map(|(v, _)| v);
            }
        }
        None
    }

    /// Sends an ng command and returns the reply; panics with the log on failure.
    pub fn command(&mut self, msg: &Value) -> Value {
        let v = self
            .try_command(msg)
            .unwrap_or_else(|| panic!("rtpengine did not answer:\n{}", self.log_text()));
        assert_eq!(
            v.get("result").and_then(Value::as_str),
            Some("ok"),
            "rtpengine refused {msg:?}: {v:?}"
        );
        v
    }

    /// Sets up a call: side A speaks plain RTP/AVP from `a_port`, side B speaks
    /// RTP/SAVP from `b_port` with `b_crypto` = `(tag, suite, inline key)`
    /// chosen from what rtpengine offered. Returns what each side was told.
    pub fn plain_to_srtp_call(
        &mut self,
        call_id: &str,
        a_port: u16,
        b_port: u16,
        pick: impl FnOnce(&Side) -> (u32, String, String),
    ) -> (Side, Side) {
        let offer = self.command(&Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str("lan")),
            ("sdp", Value::str(&sdp(self.peer, a_port, "RTP/AVP", None))),
            ("transport-protocol", Value::str("RTP/SAVP")),
            ("ICE", Value::str("remove")),
            ("flags", Value::strs(&["no-rtcp-attribute"])),
            ("replace", Value::strs(&["origin", "session-connection"])),
        ]));
        let b_side = parse_side(offer.get("sdp").and_then(Value::as_str).unwrap());
        let (tag, suite, key) = pick(&b_side);
        let answer = self.command(&Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str(call_id)),
            ("from-tag", Value::str("lan")),
            ("to-tag", Value::str("cloud")),
            (
                "sdp",
                Value::str(&sdp(
                    self.peer,
                    b_port,
                    "RTP/SAVP",
                    Some((tag, &suite, &key)),
                )),
            ),
            ("ICE", Value::str("remove")),
            ("flags", Value::strs(&["no-rtcp-attribute"])),
        ]));
        let a_side = parse_side(answer.get("sdp").and_then(Value::as_str).unwrap());
        (a_side, b_side)
    }

    /// Tears a call down.
    pub fn delete(&mut self, call_id: &str) {
        self.command(&Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(call_id)),
        ]));
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdp(peer: Ipv4Addr, port: u16, proto: &str, crypto: Option<(u32, &str, &str)>) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {peer}\r\ns=pbxlink interop\r\nc=IN IP4 {peer}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    );
    if let Some((tag, suite, key)) = crypto {
        s += &format!("a=crypto:{tag} {suite} {key}\r\n");
    }
    s
}

fn parse_side(sdp: &str) -> Side {
    let mut port = 0;
    let mut crypto = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split(' ').next().unwrap().parse().unwrap();
        } else if let Some(c) = line.strip_prefix("a=crypto:") {
            let mut f = c.split(' ');
            let tag = f.next().unwrap().parse().unwrap();
            let suite = f.next().unwrap().to_owned();
            let key = f.next().unwrap().to_owned();
            crypto.push((tag, suite, key));
        }
    }
    assert_ne!(port, 0, "no m=audio in rtpengine's SDP:\n{sdp}");
    Side {
        rtpengine_port: port,
        crypto,
    }
}
