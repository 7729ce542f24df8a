//! SDP (RFC 8866) as the B2BUA needs it, sans-IO: parse what a PBX or the
//! cloud offers or answers, and write the gateway's own description for the
//! other leg — its origin (version bumped on every change), its relay
//! address and port, RTP/AVP on the LAN leg or RTP/SAVP with an SDES
//! `a=crypto` (RFC 4568) on the cloud leg — keeping codecs, ptime,
//! telephone-event and direction. Lines it does not interpret are kept in
//! order. Keys are zeroised when dropped and never printed by `Debug`;
//! [`redact`] makes any SDP text safe for a log.

use std::fmt;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// Why an SDP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not UTF-8, or a line is not `x=value`.
    #[error("malformed SDP line {0}")]
    Line(usize),
    /// `v=0` is not the first line.
    #[error("SDP does not start with v=0")]
    Version,
    /// `o=` is missing or malformed.
    #[error("malformed or missing o= line")]
    Origin,
    /// An `m=` line is malformed.
    #[error("malformed m= line")]
    Media,
    /// A `c=` line is malformed.
    #[error("malformed c= line")]
    Connection,
}

/// One line we keep as is: type letter and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The type letter (`a`, `b`, `c`, `t`, …).
    pub kind: char,
    /// Everything after `=`.
    pub value: String,
}

/// The `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` when none).
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Session version: bumped whenever the description changes.
    pub version: u64,
    /// Address of the originator.
    pub address: IpAddr,
}

/// Media direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// Only from the describer.
    SendOnly,
    /// Only towards the describer.
    RecvOnly,
    /// Neither (hold).
    Inactive,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// Whether the describer sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// Whether the describer receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
    /// What the other end of this direction does (sendonly ↔ recvonly).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// An SDES crypto attribute (RFC 4568): `tag suite inline:KEY[|…] [params]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Crypto {
    /// Tag, matched between offer and answer.
    pub tag: u32,
    /// Suite name, e.g. `AES_CM_128_HMAC_SHA1_80`.
    pub suite: String,
    /// Base64 master key ‖ salt.
    pub key: Zeroizing<String>,
    /// What followed the key (`|lifetime|MKI:len`, session parameters).
    pub rest: String,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Crypto {
    /// Parses the value of an `a=crypto:` attribute.
    pub fn parse(value: &str) -> Option<Crypto> {
        let mut it = value.split_ascii_whitespace();
        let tag = it.next()?.parse().ok()?;
        let suite = it.next()?.to_owned();
        let params = it.next()?.strip_prefix("inline:")?;
        let (key, lifetime) = params.split_once('|').unwrap_or((params, ""));
        if key.is_empty() {
            return None;
        }
        let mut rest = if lifetime.is_empty() {
            String::new()
        } else {
            format!("|{lifetime}")
        };
        for p in it {
            rest.push(' ');
            rest.push_str(p);
        }
        Some(Crypto {
            tag,
            suite,
            key: Zeroizing::new(key.to_owned()),
            rest,
        })
    }

    fn value(&self) -> String {
        format!(
            "{} {} inline:{}{}",
            self.tag, self.suite, *self.key, self.rest
        )
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, …
    pub kind: String,
    /// Port (0: disabled).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, …
    pub proto: String,
    /// Formats (payload types for RTP).
    pub formats: Vec<String>,
    /// Its `c=`, `b=`, `a=` lines, in order.
    pub lines: Vec<Line>,
}

impl Media {
    /// Values of `a=name:value` (or `a=name`, as "") lines.
    pub fn attrs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter(|l| l.kind == 'a')
            .filter_map(move |l| {
                let (n, v) = l.value.split_once(':').unwrap_or((&l.value, ""));
                (n == name).then_some(v)
            })
    }

    /// The media-level connection address, if any.
    pub fn connection(&self) -> Option<IpAddr> {
        self.lines
            .iter()
            .find(|l| l.kind == 'c')
            .and_then(|l| connection_address(&l.value))
    }

    /// The direction attribute (sendrecv when absent).
    pub fn direction(&self) -> Direction {
        for l in self.lines.iter().filter(|l| l.kind == 'a') {
            match l.value.as_str() {
                "sendonly" => return Direction::SendOnly,
                "recvonly" => return Direction::RecvOnly,
                "inactive" => return Direction::Inactive,
                "sendrecv" => return Direction::SendRecv,
                _ => {}
            }
        }
        Direction::SendRecv
    }

    /// The SDES crypto attributes offered or answered.
    pub fn crypto(&self) -> Vec<Crypto> {
        self.attrs("crypto").filter_map(Crypto::parse).collect()
    }

    /// The payload type of `encoding` (e.g. `telephone-event`) in `a=rtpmap`.
    pub fn payload_type(&self, encoding: &str) -> Option<u8> {
        self.attrs("rtpmap").find_map(|v| {
            let (pt, rest) = v.split_once(' ')?;
            let name = rest.split('/').next()?;
            name.eq_ignore_ascii_case(encoding)
                .then(|| pt.parse().ok())
                .flatten()
        })
    }

    /// The encoding name of payload type `pt`: its `a=rtpmap`, else the
    /// static assignment of RFC 3551 Table 4 (none: dynamic and unmapped,
    /// or unassigned).
    pub fn encoding(&self, pt: u8) -> Option<String> {
        let mapped = self.attrs("rtpmap").find_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            (p.parse::<u8>().ok()? == pt).then(|| rest.split('/').next().unwrap_or("").trim())
        });
        if let Some(name) = mapped.filter(|n| !n.is_empty()) {
            return Some(name.to_owned());
        }
        let name = match pt {
            0 => "PCMU",
            3 => "GSM",
            4 => "G723",
            5 | 6 | 16 | 17 => "DVI4",
            7 => "LPC",
            8 => "PCMA",
            9 => "G722",
            10 | 11 => "L16",
            12 => "QCELP",
            13 => "CN",
            14 => "MPA",
            15 => "G728",
            18 => "G729",
            _ => return None,
        };
        Some(name.to_owned())
    }

    fn without(&mut self, kind: char, attr: Option<&str>) {
        self.lines.retain(|l| {
            if l.kind != kind {
                return true;
            }
            match attr {
                None => false,
                Some(a) => {
                    let n = l.value.split_once(':').map_or(l.value.as_str(), |(n, _)| n);
                    n != a
                }
            }
        });
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// The `o=` line.
    pub origin: Origin,
    /// Session-level lines after `o=` (`s=`, `c=`, `t=`, `a=`, …), in order.
    pub session: Vec<Line>,
    /// Media sections.
    pub media: Vec<Media>,
}

fn connection_address(value: &str) -> Option<IpAddr> {
    let mut it = value.split_ascii_whitespace();
    let (net, kind, addr) = (it.next()?, it.next()?, it.next()?);
    if net != "IN" || !(kind == "IP4" || kind == "IP6") {
        return None;
    }
    // Multicast TTL/count suffixes are not for a gateway's media.
    addr.parse().ok()
}

fn address_line(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("IN IP4 {a}"),
        IpAddr::V6(a) => format!("IN IP6 {a}"),
    }
}

/// Parses an SDP body.
pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Line(0))?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    let mut next = || -> Result<Option<(char, &str)>, SdpError> {
        let Some((n, l)) = lines.next() else {
            return Ok(None);
        };
        let (k, v) = l.split_once('=').ok_or(SdpError::Line(n + 1))?;
        let mut kc = k.chars();
        match (kc.next(), kc.next()) {
            (Some(c), None) if c.is_ascii_lowercase() => Ok(Some((c, v))),
            _ => Err(SdpError::Line(n + 1)),
        }
    };
    if next()? != Some(('v', "0")) {
        return Err(SdpError::Version);
    }
    let origin = match next()? {
        Some(('o', v)) => {
            let f: Vec<&str> = v.split_ascii_whitespace().collect();
            let [user, id, version, "IN", "IP4" | "IP6", addr] = f[..] else {
                return Err(SdpError::Origin);
            };
            Origin {
                username: user.to_owned(),
                session_id: id.parse().map_err(|_| SdpError::Origin)?,
                version: version.parse().map_err(|_| SdpError::Origin)?,
                address: addr.parse().map_err(|_| SdpError::Origin)?,
            }
        }
        _ => return Err(SdpError::Origin),
    };
    let mut sdp = Sdp {
        origin,
        session: Vec::new(),
        media: Vec::new(),
    };
    while let Some((kind, value)) = next()? {
        if kind == 'c' && connection_address(value).is_none() {
            return Err(SdpError::Connection);
        }
        if kind == 'm' {
            let f: Vec<&str> = value.split_ascii_whitespace().collect();
            let [media, port, proto, formats @ ..] = &f[..] else {
                return Err(SdpError::Media);
            };
            let port = port.split('/').next().unwrap_or_default();
            sdp.media.push(Media {
                kind: (*media).to_owned(),
                port: port.parse().map_err(|_| SdpError::Media)?,
                proto: (*proto).to_owned(),
                formats: formats.iter().map(|s| (*s).to_owned()).collect(),
                lines: Vec::new(),
            });
            continue;
        }
        let line = Line {
            kind,
            value: value.to_owned(),
        };
        match sdp.media.last_mut() {
            Some(m) => m.lines.push(line),
            None => sdp.session.push(line),
        }
    }
    Ok(sdp)
}

impl fmt::Display for Sdp {
    /// The wire form (CRLF line ends), keys included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        let kind = if o.address.is_ipv4() { "IP4" } else { "IP6" };
        write!(
            f,
            "v=0\r\no={} {} {} IN {kind} {}\r\n",
            o.username, o.session_id, o.version, o.address
        )?;
        for l in &self.session {
            write!(f, "{}={}\r\n", l.kind, l.value)?;
        }
        for m in &self.media {
            write!(f, "m={} {} {}", m.kind, m.port, m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            for l in &m.lines {
                write!(f, "{}={}\r\n", l.kind, l.value)?;
            }
        }
        Ok(())
    }
}

impl Sdp {
    /// The first audio section with a port, and its index.
    pub fn audio(&self) -> Option<(usize, &Media)> {
        self.media
            .iter()
            .enumerate()
            .find(|(_, m)| m.kind == "audio" && m.port != 0)
    }

    /// Where the audio of this description should be sent: the audio
    /// section's address (or the session's) and port.
    pub fn audio_target(&self) -> Option<(IpAddr, u16)> {
        let (_, m) = self.audio()?;
        let addr = m.connection().or_else(|| {
            self.session
                .iter()
                .find(|l| l.kind == 'c')
                .and_then(|l| connection_address(&l.value))
        })?;
        Some((addr, m.port))
    }

    /// This description as the gateway presents it on a leg: its origin,
    /// its relay `addr`:`port` for the audio, `proto` (RTP/AVP or
    /// RTP/SAVP), its own `crypto` lines (an offer lists one per suite, an
    /// answer the one chosen; none on RTP/AVP), direction `dir`; every other
    /// section disabled (port 0: only audio is relayed).
    pub fn for_leg(
        &self,
        origin: &Origin,
        addr: IpAddr,
        port: u16,
        proto: &str,
        crypto: &[Crypto],
        dir: Direction,
    ) -> Sdp {
        let mut out = self.clone();
        out.origin = origin.clone();
        out.session.retain(|l| l.kind != 'c');
        // c= goes right after s= (RFC 8866 order: v o s i u e p c b t …).
        let at = out
            .session
            .iter()
            .position(|l| !matches!(l.kind, 's' | 'i' | 'u' | 'e' | 'p'))
            .unwrap_or(out.session.len());
        out.session.insert(
            at,
            Line {
                kind: 'c',
                value: address_line(addr),
            },
        );
        let audio = self.audio().map(|(i, _)| i);
        for (i, m) in out.media.iter_mut().enumerate() {
            if Some(i) != audio {
                m.port = 0;
                continue;
            }
            m.port = port;
            m.proto = proto.to_owned();
            m.without('c', None);
            m.without('a', Some("crypto"));
            for d in ["sendrecv", "sendonly", "recvonly", "inactive"] {
                m.without('a', Some(d));
            }
            // ICE and RTCP-address hints describe the other leg's transport.
            for a in ["rtcp", "candidate", "ice-ufrag", "ice-pwd", "ice-options"] {
                m.without('a', Some(a));
            }
            for c in crypto {
                m.lines.push(Line {
                    kind: 'a',
                    value: format!("crypto:{}", c.value()),
                });
            }
            m.lines.push(Line {
                kind: 'a',
                value: dir.name().to_owned(),
            });
        }
        out
    }
}

/// `text` with every SDES inline key replaced, for logs and traces.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("inline:") {
        out.push_str(&rest[..at + 7]);
        out.push_str("[redacted]");
        rest = &rest[at + 7..];
        let end = rest
            .find(|c: char| c == '|' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The strongest offered crypto the gateway supports: `supported` lists
/// suite names strongest first.
pub fn pick_crypto<'a>(offered: &'a [Crypto], supported: &[&str]) -> Option<&'a Crypto> {
    supported
        .iter()
        .find_map(|s| offered.iter().find(|c| c.suite == *s))
}

#[cfg(test)]
mod tests {
    use super::*;

    // What sipp's uac_pcap scenario offers, and what a baresip with
    // mediaenc=srtp-mand offers (keys made up).
    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";
    const BARESIP: &str = "v=0\r\no=- 1851397423 2049735426 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:baresip 1.0.0\r\nm=audio 10050 RTP/SAVP 0 8 101\r\nb=AS:64\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=rtcp-mux\r\na=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\nm=video 0 RTP/AVP 96\r\n";

    #[test]
    fn parses_and_writes_back_the_same_bytes() {
        for text in [SIPP, BARESIP] {
            let sdp = parse(text.as_bytes()).unwrap();
            assert_eq!(sdp.to_string(), text);
        }
        let b = parse(BARESIP.as_bytes()).unwrap();
        let (_, audio) = b.audio().unwrap();
        assert_eq!(audio.formats, ["0", "8", "101"]);
        assert_eq!(audio.payload_type("telephone-event"), Some(101));
        assert_eq!(
            b.audio_target(),
            Some(("127.0.0.1".parse().unwrap(), 10050))
        );
        let crypto = audio.crypto();
        assert_eq!(crypto.len(), 2);
        assert_eq!(crypto[0].rest, "|2^20|1:32");
        assert_eq!(
            pick_crypto(&crypto, &["AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"])
                .unwrap()
                .tag,
            2
        );
        assert!(
            !format!("{crypto:?}").contains("NzB4"),
            "Debug never shows keys"
        );
    }

    #[test]
    fn a_payload_types_encoding_is_its_rtpmap_or_its_static_assignment() {
        let text = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18 0 96 97 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 \r\na=rtpmap:101 telephone-event/8000\r\n";
        let sdp = parse(text.as_bytes()).unwrap();
        let (_, m) = sdp.audio().unwrap();
        assert_eq!(m.encoding(18).as_deref(), Some("G729"), "static, no rtpmap");
        assert_eq!(m.encoding(0).as_deref(), Some("PCMU"));
        assert_eq!(m.encoding(96).as_deref(), Some("opus"));
        assert_eq!(m.encoding(97), None, "an empty rtpmap names nothing");
        assert_eq!(m.encoding(101).as_deref(), Some("telephone-event"));
        assert_eq!(m.encoding(120), None, "dynamic and unmapped");
    }

    #[test]
    fn rewrites_for_the_cloud_leg() {
        let offer = parse(SIPP.as_bytes()).unwrap();
        let origin = Origin {
            username: "pbxlink".into(),
            session_id: 42,
            version: 7,
            address: "198.51.100.7".parse().unwrap(),
        };
        let key = Crypto::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk",
        )
        .unwrap();
        let out = offer.for_leg(
            &origin,
            "198.51.100.7".parse().unwrap(),
            30000,
            "RTP/SAVP",
            std::slice::from_ref(&key),
            Direction::SendRecv,
        );
        let text = out.to_string();
        assert_eq!(
            text,
            "v=0\r\no=pbxlink 42 7 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 30000 RTP/SAVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\r\na=sendrecv\r\n"
        );
        assert_eq!(parse(text.as_bytes()).unwrap(), out);
        assert_eq!(
            redact(&text).matches("inline:[redacted]\r\n").count(),
            1,
            "{}",
            redact(&text)
        );
        assert!(
            !redact(BARESIP).contains("d0Rm")
                && redact(BARESIP).contains("inline:[redacted]|2^20|1:32")
        );
        // Back to the LAN: plain RTP, no crypto, hold direction.
        let lan = parse(BARESIP.as_bytes()).unwrap().for_leg(
            &origin,
            "192.168.1.5".parse().unwrap(),
            28000,
            "RTP/AVP",
            &[],
            Direction::SendOnly,
        );
        let (_, a) = lan.audio().unwrap();
        assert!(a.crypto().is_empty() && a.direction() == Direction::SendOnly);
        assert_eq!(lan.media[1].port, 0, "video refused");
    }

    #[test]
    fn refuses_malformed_descriptions() {
        assert_eq!(parse(b"o=x").unwrap_err(), SdpError::Version);
        assert_eq!(parse(b"v=0\r\ns=-\r\n").unwrap_err(), SdpError::Origin);
        assert_eq!(
            parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n").unwrap_err(),
            SdpError::Media
        );
        assert_eq!(
            parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 nowhere\r\n").unwrap_err(),
            SdpError::Connection
        );
        assert_eq!(
            parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nmissing equals\r\n").unwrap_err(),
            SdpError::Line(3)
        );
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert!(Crypto::parse("1 AES_CM_128_HMAC_SHA1_80 inline:").is_none());
    }
}
