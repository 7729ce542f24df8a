//! Normalises a message head before `rsip` sees it: unfolds continuation
//! lines (RFC 3261 §7.3.1), expands compact header names, and enforces the
//! header count and line limits. Owns no I/O.

use crate::error::ParseError;
use crate::limits::{MAX_HEADERS, MAX_LINE};

/// RFC 3261 §7.3.3 and later RFCs' compact forms.
const COMPACT: [(u8, &str); 17] = [
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
];

/// The full name of a compact header name, if `name` is one.
pub fn expand_compact(name: &str) -> Option<&'static str> {
    let [c] = name.as_bytes() else { return None };
    let c = c.to_ascii_lowercase();
    COMPACT.iter().find(|(k, _)| *k == c).map(|(_, full)| *full)
}

/// A normalised head: the start line and `Name: value` fields, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The start line, without CRLF.
    pub start_line: String,
    /// Header fields as (name with compact forms expanded, value trimmed).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes the head back as CRLF-terminated lines, blank line included.
    pub fn to_wire(&self) -> String {
        let mut s = String::with_capacity(self.start_line.len() + 32 * self.headers.len());
        s.push_str(&self.start_line);
        s.push_str("\r\n");
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s
    }
}

/// Splits and normalises a head (everything before the blank line, which
/// must not be included).
pub fn head(raw: &[u8]) -> Result<Head, ParseError> {
    let text = std::str::from_utf8(raw).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    if start_line.is_empty() {
        return Err(ParseError::MissingStartLine);
    }
    if start_line.starts_with([' ', '\t']) {
        return Err(ParseError::BadStartLine);
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Folded continuation: joins the previous field with one space.
            let Some((_, value)) = headers.last_mut() else {
                return Err(ParseError::BadStartLine);
            };
            value.push(' ');
            value.push_str(line.trim());
            if value.len() > MAX_LINE {
                return Err(ParseError::HeaderTooLong);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::BadHeader);
        };
        // RFC 3261 allows whitespace between the name and the colon.
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseError::BadHeader);
        }
        if line.len() > MAX_LINE {
            return Err(ParseError::HeaderTooLong);
        }
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let name = expand_compact(name).map_or_else(|| name.to_owned(), str::to_owned);
        headers.push((name, value.trim().to_owned()));
    }
    Ok(Head {
        start_line: start_line.to_owned(),
        headers,
    })
}

/// RFC 3261 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_and_expands_compact_names() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: I know you're there,\r\n   pick up the phone\r\n\tand talk to me!\r\nl : 0";
        let h = head(raw).unwrap();
        assert_eq!(h.get("Via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
        assert_eq!(
            h.get("subject"),
            Some("I know you're there, pick up the phone and talk to me!")
        );
        assert_eq!(h.get("Content-Length"), Some("0"));
    }

    #[test]
    fn rejects_broken_heads_with_reasons() {
        assert_eq!(head(b"").unwrap_err(), ParseError::MissingStartLine);
        assert_eq!(
            head(b"INVITE sip:a SIP/2.0\r\nNoColon").unwrap_err(),
            ParseError::BadHeader
        );
        assert_eq!(
            head(b"INVITE sip:a SIP/2.0\r\nBad Name: x").unwrap_err(),
            ParseError::BadHeader
        );
        assert_eq!(
            head(b"INVITE sip:a SIP/2.0\r\n\xff: x").unwrap_err(),
            ParseError::NotUtf8
        );
        let many = format!(
            "OPTIONS sip:a SIP/2.0\r\n{}",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            head(many.trim_end().as_bytes()).unwrap_err(),
            ParseError::TooManyHeaders
        );
        let long = format!("OPTIONS sip:a SIP/2.0\r\nX: {}", "a".repeat(MAX_LINE));
        assert_eq!(
            head(long.as_bytes()).unwrap_err(),
            ParseError::HeaderTooLong
        );
    }
}
