//! The response a rejected request gets: `400 Bad Request` naming the
//! reason in its reason phrase (`505` for a wrong SIP version), built from
//! whatever header lines can still be read. No response when the request
//! cannot be answered (an ACK, or no Via/From/To/Call-ID/CSeq to answer
//! with): the caller drops and counts it.

use crate::message::{ParseError, request_method};
use crate::normalize::expand_compact;

/// The response to send for a request rejected with `err`, if any.
pub fn response(raw: &[u8], err: &ParseError) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    let method = request_method(start)?;
    if method == "ACK" || method.is_empty() {
        return None;
    }
    let mut vias = Vec::new();
    let field = |name: &str| -> Option<String> {
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            let n = expand_compact(n).unwrap_or(n);
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            let n = n.trim();
            if expand_compact(n).unwrap_or(n).eq_ignore_ascii_case("Via") {
                vias.push(v.trim().to_owned());
            }
        }
    }
    let (from, to, call_id, cseq) = (
        field("From")?,
        field("To")?,
        field("Call-ID")?,
        field("CSeq")?,
    );
    if vias.is_empty() || from.contains('\r') {
        return None;
    }
    let (code, phrase) = match err {
        ParseError::BadVersion => (505, "Version Not Supported".to_owned()),
        ParseError::UnsupportedUriScheme => (416, "Unsupported URI Scheme".to_owned()),
        other => (400, format!("Bad Request ({other})")),
    };
    // The UAS adds a To tag (RFC 3261 §8.2.6.2); derived from the request
    // so that retransmissions get the same response.
    let to = if to.contains(";tag=") {
        to
    } else {
        format!(
            "{to};tag={:08x}",
            fnv1a(call_id.as_bytes()) ^ fnv1a(cseq.as_bytes())
        )
    };
    let mut out = format!("SIP/2.0 {code} {phrase}\r\n");
    for v in vias {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    out.push_str(&format!("From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"));
    Some(out.into_bytes())
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;

    #[test]
    fn names_the_reason_and_answers_the_request() {
        let raw = b"INVITE sip:gw SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nf: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\ni: abc\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n";
        let err = parse(raw).unwrap_err();
        let resp = String::from_utf8(response(raw, &err).unwrap()).unwrap();
        assert!(
            resp.starts_with(
                "SIP/2.0 400 Bad Request (CSeq method does not match the request method)\r\n"
            ),
            "{resp}"
        );
        assert!(resp.contains(
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\n"
        ));
        assert!(resp.contains("To: <sip:c@d>;tag="));
        // The response itself parses.
        assert!(parse(resp.as_bytes()).is_ok());
        assert_eq!(
            response(raw, &err),
            response(raw, &err),
            "stable for retransmissions"
        );
    }

    #[test]
    fn no_response_to_ack_or_unanswerable_requests() {
        let ack = b"ACK sip:gw SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n";
        assert_eq!(response(ack, &ParseError::BadCSeq), None);
        let no_via =
            b"OPTIONS sip:gw SIP/2.0\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(response(no_via, &ParseError::Missing("Via")), None);
        assert_eq!(
            response(b"SIP/2.0 200 OK\r\n\r\n", &ParseError::BadCSeq),
            None,
            "responses get none"
        );
        assert_eq!(response(b"\xff\xfe", &ParseError::NotUtf8), None);
    }

    #[test]
    fn wrong_version_gets_505() {
        let raw = b"OPTIONS sip:gw SIP/7.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let err = parse(raw).unwrap_err();
        assert!(
            String::from_utf8(response(raw, &err).unwrap())
                .unwrap()
                .starts_with("SIP/2.0 505 Version Not Supported")
        );
    }
}
