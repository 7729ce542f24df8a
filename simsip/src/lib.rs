//! The SIP text pbxlink's simulators read and write — pbxsim (the PBX)
//! and cloudsim (the cloud platform's SBC) — kept apart from the
//! gateway's `pbxlink-sip`, so a mistake on the gateway's side cannot hide
//! behind the same mistake in its test peers. Deliberately small: what a
//! well-behaved peer needs, with none of a real parser's checks.
//!
//! - [`Message`]: first line, headers in order (compact names expanded),
//!   body; read from a datagram or from a stream's bytes.
//! - [`response`]: a response to a request, its dialog headers copied.
//! - [`user_of`], [`tag_of`], [`uri_in`]: pieces of header values.
//! - [`sdp_audio`]: an SDP body's audio address.
//! - [`RtpPorts`]: a simulator's media ports, in turn within a window.
//! - [`alaw`], [`TONE`]: G.711 A-law and 20 ms of a 1 kHz tone in it.
//! - [`token`]: a random hex token for tags, branches and Call-IDs.

use std::net::{IpAddr, SocketAddr};

/// A SIP message as read: first line, headers in order, body.
#[derive(Debug, Clone)]
pub struct Message {
    /// The request or status line.
    pub first: String,
    /// Headers in order, compact names expanded (`v` → `Via`).
    pub headers: Vec<(String, String)>,
    /// The body (after the blank line).
    pub body: String,
}

impl Message {
    /// A whole message (a datagram): head, blank line, body.
    pub fn parse(bytes: &[u8]) -> Option<Message> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        Some(Message::from_head(head, body.to_owned()))
    }

    /// The first whole message at the start of a stream's bytes and how
    /// many bytes it took (none: more are needed). Single CRLFs before it
    /// (keep-alive pongs) are skipped and counted in; a double CRLF (a
    /// ping, RFC 5626) is the caller's to answer and remove first.
    pub fn from_stream(buf: &[u8]) -> Option<(Message, usize)> {
        let mut start = 0;
        while buf[start..].starts_with(b"\r\n") && !buf[start..].starts_with(b"\r\n\r\n") {
            start += 2;
        }
        let rest = &buf[start..];
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let len: usize = head
            .split("\r\n")
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                (full_name(n.trim()) == "Content-Length").then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body = rest.get(end + 4..end + 4 + len)?;
        let body = String::from_utf8_lossy(body).into_owned();
        Some((Message::from_head(&head, body), start + end + 4 + len))
    }

    fn from_head(head: &str, body: String) -> Message {
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (full_name(n.trim()).to_owned(), v.trim().to_owned()))
            .collect();
        Message {
            first,
            headers,
            body,
        }
    }

    /// The first header called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header called `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A request's method (none: a response).
    pub fn method(&self) -> Option<&str> {
        (!self.first.starts_with("SIP/")).then(|| self.first.split(' ').next().unwrap_or(""))
    }

    /// A response's status (none: a request).
    pub fn status(&self) -> Option<u16> {
        self.first
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
    }
}

fn full_name(n: &str) -> &str {
    match n {
        "v" => "Via",
        "f" => "From",
        "t" => "To",
        "i" => "Call-ID",
        "m" => "Contact",
        "l" => "Content-Length",
        "c" => "Content-Type",
        other => other,
    }
}

/// A response to `req`: its Vias, From, To (with `tag` added when it has
/// none and `tag` is not empty), Call-ID and CSeq; then `contact` (a URI)
/// and an SDP body when given.
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    tag: &str,
    contact: Option<&str>,
    sdp: Option<&str>,
) -> String {
    let mut t = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.all("Via") {
        t.push_str(&format!("Via: {v}\r\n"));
    }
    let to = req.get("To").unwrap_or_default();
    let to = if tag.is_empty() || to.contains("tag=") {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    t.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        req.get("From").unwrap_or_default(),
        req.get("Call-ID").unwrap_or_default(),
        req.get("CSeq").unwrap_or_default(),
    ));
    if let Some(c) = contact {
        t.push_str(&format!("Contact: <{c}>\r\n"));
    }
    match sdp {
        Some(b) => t.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => t.push_str("Content-Length: 0\r\n\r\n"),
    }
    t
}

/// The user part of a SIP URI in a header or request line.
pub fn user_of(v: &str) -> String {
    let after = v
        .split_once("sips:")
        .or_else(|| v.split_once("sip:"))
        .or_else(|| v.split_once("tel:"))
        .map_or(v, |(_, r)| r);
    after
        .split(['@', ';', '>'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The `tag` parameter of a From or To value.
pub fn tag_of(v: &str) -> String {
    v.split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .unwrap_or_default()
        .to_owned()
}

/// The URI in a name-addr (`<…>`) or addr-spec value.
pub fn uri_in(v: &str) -> String {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_owned(),
        _ => v.split(';').next().unwrap_or(v).trim().to_owned(),
    }
}

/// The audio address of an SDP body (session or media `c=` line, first
/// `m=audio` port).
pub fn sdp_audio(body: &str) -> Option<SocketAddr> {
    let ip: IpAddr = body
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("c=IN IP4 ")
                .or_else(|| l.trim().strip_prefix("c=IN IP6 "))
        })?
        .trim()
        .parse()
        .ok()?;
    let port: u16 = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

/// A simulator's media ports: every second port from `first` to `last`,
/// handed out in turn and over again from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPorts {
    first: u16,
    last: u16,
}

impl RtpPorts {
    /// `count` ports from `first` (fewer where the port space ends: never
    /// 65,535, whose RTCP port would not exist).
    pub fn new(first: u16, count: u16) -> Self {
        let last = first
            .saturating_add(count.saturating_sub(1))
            .min(u16::MAX - 1);
        RtpPorts { first, last }
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The port after `port`: two up, back to the first past the last —
    /// never 0, which in SDP refuses the stream.
    pub fn next(&self, port: u16) -> u16 {
        port.checked_add(2)
            .filter(|p| *p <= self.last)
            .unwrap_or(self.first)
    }
}

/// `N` bytes from the OS (/dev/urandom; zeros if it cannot be read, which
/// only makes a simulator's tokens predictable).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b
}

/// A random 16-hex-digit token (tags, branches, Call-IDs).
pub fn token() -> String {
    random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 20 ms of a 1 kHz tone at a quarter of full scale, A-law coded.
pub static TONE: [u8; 160] = {
    // sin(2πk/8) × 8192, k = 0..7: a 1 kHz period at 8 kHz.
    const PERIOD: [i16; 8] = [0, 5793, 8192, 5793, 0, -5793, -8192, -5793];
    let mut out = [0u8; 160];
    let mut i = 0;
    while i < 160 {
        out[i] = alaw(PERIOD[i % 8]);
        i += 1;
    }
    out
};

/// G.711 A-law of a 16-bit linear sample.
pub const fn alaw(sample: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut v = (sample as i32) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let mut seg = 0;
    while seg < 8 && v > SEG_END[seg] {
        seg += 1;
    }
    let code = if seg >= 8 {
        0x7f
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        ((seg as i32) << 4) | ((v >> shift) & 0x0f)
    };
    (code ^ mask) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_law_codes_silence_and_the_extremes_as_g711_does() {
        assert_eq!((alaw(0), alaw(-1)), (0xd5, 0x55));
        assert_eq!((alaw(i16::MAX), alaw(i16::MIN)), (0xaa, 0x2a));
        assert_eq!(alaw(8192), 0xb5);
    }

    #[test]
    fn messages_are_read_from_datagrams_and_streams() {
        let text = "INVITE sip:1000@pbx SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nf: <sip:2000@x>;tag=ab\r\nl: 4\r\n\r\nbody";
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(tag_of(m.get("from").unwrap()), "ab");
        assert_eq!(user_of(m.get("From").unwrap()), "2000");
        let stream = format!("\r\n{text}SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        let (first, used) = Message::from_stream(stream.as_bytes()).unwrap();
        assert_eq!(
            (first.body.as_str(), first.get("Via").is_some()),
            ("body", true)
        );
        let (second, _) = Message::from_stream(&stream.as_bytes()[used..]).unwrap();
        assert_eq!(second.status(), Some(200));
        assert!(Message::from_stream(&stream.as_bytes()[..used - 1]).is_none());
    }

    #[test]
    fn requests_responses_and_descriptions_are_read() {
        let m = Message::parse(b"INVITE sip:1000@127.0.0.1:5080 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nf: <sip:0612@gw>;tag=ab\r\nt: <sip:1000@pbx>\r\ni: c1\r\nCSeq: 1 INVITE\r\nl: 48\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 40000 RTP/AVP 8\r\n").unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(user_of(m.first.split(' ').nth(1).unwrap()), "1000");
        assert_eq!(user_of(m.get("From").unwrap()), "0612");
        assert_eq!(m.get("Call-ID"), Some("c1"));
        assert_eq!(sdp_audio(&m.body), Some("127.0.0.1:40000".parse().unwrap()));
        let r = Message::parse(b"SIP/2.0 486 Busy Here\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert_eq!((r.method(), r.status()), (None, Some(486)));
    }

    #[test]
    fn a_response_copies_the_dialog_and_adds_the_tag() {
        let req = Message::parse(b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=1\r\nVia: SIP/2.0/UDP y;branch=2\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:c@d>\r\nCall-ID: k\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        let r = Message::parse(response(&req, 200, "OK", "t9", Some("sip:c@e"), None).as_bytes())
            .unwrap();
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.all("Via").len(), 2);
        assert_eq!(tag_of(r.get("To").unwrap()), "t9");
        assert_eq!(
            (r.get("CSeq"), r.get("Contact")),
            (Some("2 BYE"), Some("<sip:c@e>"))
        );
    }

    #[test]
    fn an_offer_gives_its_audio_address() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\n";
        assert_eq!(sdp_audio(sdp), Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(
            uri_in("\"A\" <sip:a@b;transport=tls>;tag=1"),
            "sip:a@b;transport=tls"
        );
    }

    #[test]
    fn media_ports_wrap_to_the_first_not_to_zero() {
        let top = RtpPorts::new(48_000, u16::MAX);
        assert_eq!(top.next(48_000), 48_002);
        assert_eq!(top.next(65_532), 65_534);
        assert_eq!(top.next(65_534), 48_000);
        // An odd first port stays odd and wraps before 65,535.
        assert_eq!(RtpPorts::new(40_001, u16::MAX).next(65_533), 40_001);
        let mut p = top.first();
        for _ in 0..20_000 {
            p = top.next(p);
            assert!((48_000..u16::MAX).contains(&p), "{p}");
        }
    }

    #[test]
    fn media_ports_stay_inside_their_window() {
        let w = RtpPorts::new(33_000, 400);
        let mut p = w.first();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            assert!((33_000..=33_399).contains(&p), "{p}");
            seen.insert(p);
            p = w.next(p);
        }
        assert_eq!(seen.len(), 200, "every even port of the window, in turn");
    }
}
