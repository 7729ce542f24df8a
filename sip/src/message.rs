//! Parsing a framed message: normalise the head, check what RFC 3261
//! requires before anything may act on a message, then build the `rsip`
//! model. Every rejection names its reason, for the 400 and for counters.

use crate::error::FrameError;
pub use crate::error::ParseError;
use crate::grammar;
use crate::normalize::{self, Head};

/// A parsed, checked message.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The normalised head (compact names expanded, folding undone). The
    /// checks above make its start line, Via, From, To, Call-ID and CSeq
    /// safe to act on.
    pub head: Head,
    /// The `rsip` model, when `rsip` can represent the message. It cannot
    /// for some valid SIP (extension methods such as RFC 4475's
    /// `RE%47IST%45R`, a `;` in a URI's user part): those are `None`, and
    /// the core answers them from [`Parsed::head`] (501 for a method it
    /// does not implement).
    pub message: Option<rsip::SipMessage>,
}

/// The method of a request's start line, `None` for a response.
pub fn request_method(start_line: &str) -> Option<&str> {
    (!start_line.starts_with("SIP/")).then(|| start_line.split(' ').next().unwrap_or_default())
}

/// The status code of a response's start line (0 for a request, or one
/// the checks would have refused).
pub fn status_code(start_line: &str) -> u16 {
    start_line
        .strip_prefix("SIP/2.0 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn check_start_line(line: &str) -> Result<(), ParseError> {
    let parts: Vec<&str> = line.splitn(3, ' ').collect();
    if line.starts_with("SIP/") {
        // Status line: version, 3-digit code, reason (may be empty).
        let [version, code, ..] = parts[..] else {
            return Err(ParseError::BadStartLine);
        };
        if version != "SIP/2.0" {
            return Err(ParseError::BadVersion);
        }
        if code.len() != 3
            || !code.bytes().all(|b| b.is_ascii_digit())
            || !(b'1'..=b'6').contains(&code.as_bytes()[0])
        {
            return Err(ParseError::BadStartLine);
        }
        return Ok(());
    }
    let [method, uri, version] = parts[..] else {
        return Err(ParseError::BadStartLine);
    };
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    {
        return Err(ParseError::BadStartLine);
    }
    if version != "SIP/2.0" {
        // SIP/x.y with other numbers is a version we do not speak (505);
        // anything else (trailing spaces, RFC 4475 §3.1.2.10) is malformed.
        let numbered = version.strip_prefix("SIP/").is_some_and(|v| {
            v.split_once('.').is_some_and(|(a, b)| {
                [a, b]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
            })
        });
        return Err(if numbered {
            ParseError::BadVersion
        } else {
            ParseError::BadStartLine
        });
    }
    let scheme = grammar::scheme(uri).ok_or(ParseError::BadRequestUri)?;
    match scheme.as_str() {
        // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5).
        // (`?` may appear in the user part, so look past the last `@`.)
        "sip" | "sips" if uri.rsplit('@').next().is_some_and(|h| h.contains('?')) => {
            Err(ParseError::BadRequestUri)
        }
        // RFC 3261 §25.1 whole, for every method (`sip:@@@:::` is a 400).
        "sip" | "sips" if !grammar::sip_uri(uri) => Err(ParseError::BadRequestUri),
        "sip" | "sips" | "tel" => Ok(()),
        _ => Err(ParseError::UnsupportedUriScheme),
    }
}

fn check_cseq(head: &Head) -> Result<(), ParseError> {
    let cseq = head.get("CSeq").ok_or(ParseError::Missing("CSeq"))?;
    let mut it = cseq.split_whitespace();
    let (Some(number), Some(method), None) = (it.next(), it.next(), it.next()) else {
        return Err(ParseError::BadCSeq);
    };
    let n: u64 = number.parse().map_err(|_| ParseError::BadCSeq)?;
    if n > (1 << 31) - 1 {
        return Err(ParseError::BadCSeq);
    }
    if let Some(request) = request_method(&head.start_line) {
        if request != method {
            return Err(ParseError::CSeqMethodMismatch);
        }
    }
    Ok(())
}

/// Parses one framed message (as [`crate::framing`] returns it).
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(FrameError::NoBlankLine)?;
    let head = normalize::head(&bytes[..end])?;
    check_start_line(&head.start_line)?;
    for name in ["Via", "From", "To", "Call-ID"] {
        if head.get(name).is_none() {
            return Err(ParseError::Missing(name));
        }
    }
    check_cseq(&head)?;
    check_fields(&head)?;
    let body = &bytes[end + 4..];
    if let Some(cl) = head.get("Content-Length") {
        let n: usize = cl
            .trim()
            .parse()
            .map_err(|_| FrameError::BadContentLength)?;
        if n != body.len() {
            return Err(ParseError::BodyLength);
        }
    }
    let mut wire = head.to_wire().into_bytes();
    wire.extend_from_slice(body);
    let message = rsip::SipMessage::try_from(wire.as_slice()).ok();
    Ok(Parsed { head, message })
}

/// Header fields that may appear once (RFC 3261 §7.3.1: only list-valued
/// fields may repeat).
const SINGLE: [&str; 7] = [
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
];

/// Grammar of the fields the stack acts on (see [`grammar`]).
fn check_fields(head: &Head) -> Result<(), ParseError> {
    for name in SINGLE {
        if head.all(name).nth(1).is_some() {
            return Err(ParseError::Duplicate(name));
        }
    }
    let bad = |name: &'static str, ok: &dyn Fn(&str) -> bool| {
        head.all(name)
            .all(ok)
            .then_some(())
            .ok_or(ParseError::BadField(name))
    };
    bad("Via", &grammar::via)?;
    bad("From", &grammar::name_addr_field)?;
    bad("To", &grammar::name_addr_field)?;
    bad("Contact", &|v| grammar::name_addr_list(v, true))?;
    bad("Route", &|v| grammar::name_addr_list(v, false))?;
    bad("Record-Route", &|v| grammar::name_addr_list(v, false))?;
    bad("Date", &grammar::date)?;
    bad("Max-Forwards", &grammar::max_forwards)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str) -> String {
        format!(
            "OPTIONS sip:gw.example.com SIP/2.0\r\nVia: SIP/2.0/UDP pbx.example.com;branch=z9hG4bK776\r\nMax-Forwards: 70\r\n\
             From: <sip:pbx@example.com>;tag=1928\r\nTo: <sip:gw@example.com>\r\nCall-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn parses_a_plain_request_and_compact_forms() {
        let p = parse(req("").as_bytes()).unwrap();
        assert!(matches!(p.message, Some(rsip::SipMessage::Request(_))));
        let compact = "OPTIONS sip:gw SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: x@y\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        let p = parse(compact.as_bytes()).unwrap();
        assert_eq!(p.head.get("Call-ID"), Some("x@y"));
    }

    #[test]
    fn parses_a_response() {
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            parse(resp.as_bytes()).unwrap().message,
            Some(rsip::SipMessage::Response(_))
        ));
    }

    #[test]
    fn rejects_with_named_reasons() {
        let ok = req("");
        let cases: [(String, ParseError); 8] = [
            (
                ok.replace("CSeq: 63104 OPTIONS", "CSeq: 63104 INVITE"),
                ParseError::CSeqMethodMismatch,
            ),
            (
                ok.replace("CSeq: 63104 OPTIONS", "CSeq: 4294967296 OPTIONS"),
                ParseError::BadCSeq,
            ),
            (
                ok.replace("Call-ID: a84b4c76e66710\r\n", ""),
                ParseError::Missing("Call-ID"),
            ),
            (
                ok.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia"),
                ParseError::BadVersion,
            ),
            (
                ok.replace("OPTIONS sip:gw.example.com", "OPTIONS  sip:gw.example.com"),
                ParseError::BadStartLine,
            ),
            (
                ok.replace("Content-Length: 0", "Content-Length: 5"),
                ParseError::BodyLength,
            ),
            (
                ok.replace("Max-Forwards: 70", "Max Forwards: 70"),
                ParseError::BadHeader,
            ),
            (
                "OPTIONS sip:gw SIP/2.0\r\nVia: x".to_string(),
                ParseError::Frame(FrameError::NoBlankLine),
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(parse(msg.as_bytes()).unwrap_err(), want, "{msg:?}");
        }
    }
}
