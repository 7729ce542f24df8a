//! pbxsim's own CSTA codec, written apart from the gateway's: the 8-byte
//! header (00 00, big-endian total length, four ASCII digits of invoke
//! id) and the XML read with roxmltree, written with plain formatting.
//! Requests are read by their elements' local names, so a client may use
//! any namespace edition or prefix.

/// ECMA-323 third edition: what pbxsim answers in unless the client asked
/// for another in `StartApplicationSession`.
pub const ED3: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";

/// ECMA-354 application sessions.
pub const ACS: &str = "http://www.ecma-international.org/standards/ecma-354/appl_session";

/// One message's header and body.
pub fn frame(invoke: u16, xml: &str) -> Vec<u8> {
    let total = 8 + xml.len();
    let mut out = Vec::with_capacity(total);
    out.push(0);
    out.push(0);
    out.push((total >> 8) as u8);
    out.push((total & 0xff) as u8);
    out.extend_from_slice(format!("{:04}", invoke % 10_000).as_bytes());
    out.extend_from_slice(xml.as_bytes());
    out
}

/// Splits complete messages off the front of `buf`: `(invoke, xml)`
/// each; an error when the header is not one.
pub fn unframe(buf: &mut Vec<u8>) -> Result<Vec<(u16, String)>, String> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 8 {
            return Ok(out);
        }
        if buf[0] != 0 || buf[1] != 0 {
            return Err(format!("bad header {:02x} {:02x}", buf[0], buf[1]));
        }
        let total = usize::from(buf[2]) << 8 | usize::from(buf[3]);
        if total <= 8 {
            return Err(format!("bad length {total}"));
        }
        let digits = std::str::from_utf8(&buf[4..8]).map_err(|_| "bad invoke id".to_owned())?;
        let invoke: u16 = digits
            .parse()
            .map_err(|_| format!("bad invoke id {digits:?}"))?;
        if buf.len() < total {
            return Ok(out);
        }
        let xml = String::from_utf8_lossy(&buf[8..total]).into_owned();
        buf.drain(..total);
        out.push((invoke, xml));
    }
}

/// A request read: its root's local name and a way to look inside.
pub struct Request {
    /// The root element's local name.
    pub name: String,
    text: String,
}

impl Request {
    /// Parses `xml`.
    pub fn parse(xml: &str) -> Result<Self, String> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
        let root = doc.root_element();
        Ok(Self {
            name: root.tag_name().name().to_owned(),
            text: xml.to_owned(),
        })
    }

    /// The text of the first element named `path[last]` under the chain
    /// `path` (local names), descendants allowed between steps.
    pub fn get(&self, path: &[&str]) -> Option<String> {
        let doc = roxmltree::Document::parse(&self.text).ok()?;
        let mut node = doc.root_element();
        for step in path {
            node = node
                .descendants()
                .skip(1)
                .find(|n| n.is_element() && n.tag_name().name() == *step)?;
        }
        let t: String = node
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect::<String>()
            .trim()
            .to_owned();
        (!t.is_empty()).then_some(t)
    }
}

/// `s` escaped for XML text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A connection element.
pub fn conn(tag: &str, call: &str, device: &str) -> String {
    format!(
        "<{tag}><callID>{}</callID><deviceID>{}</deviceID></{tag}>",
        esc(call),
        esc(device)
    )
}

/// A device element in the nested form most PBXs send.
pub fn dev(tag: &str, device: &str) -> String {
    format!(
        "<{tag}><deviceIdentifier>{}</deviceIdentifier></{tag}>",
        esc(device)
    )
}

/// A `CSTAErrorCode` in namespace `ns`.
pub fn error_code(ns: &str, category: &str, value: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CSTAErrorCode xmlns=\"{ns}\"><{category}>{value}</{category}></CSTAErrorCode>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut buf = frame(12, "<a/>");
        buf.extend(frame(9999, "<b>x</b>"));
        buf.extend(&frame(3, "<c/>")[..5]);
        let got = unframe(&mut buf).unwrap();
        assert_eq!(got, [(12, "<a/>".into()), (9999, "<b>x</b>".into())]);
        assert_eq!(buf.len(), 5);
        assert!(unframe(&mut vec![1, 0, 0, 9, b'0', b'0', b'0', b'1', b'x']).is_err());
    }

    #[test]
    fn requests_are_read_by_local_name_in_any_edition() {
        let r = Request::parse("<?xml version=\"1.0\"?><c:MakeCall xmlns:c=\"http://www.ecma-international.org/standards/ecma-323/csta/ed4\"><c:callingDevice>1000</c:callingDevice><c:calledDirectoryNumber>0&lt;1</c:calledDirectoryNumber></c:MakeCall>").unwrap();
        assert_eq!(r.name, "MakeCall");
        assert_eq!(r.get(&["callingDevice"]).as_deref(), Some("1000"));
        assert_eq!(r.get(&["calledDirectoryNumber"]).as_deref(), Some("0<1"));
        let a = Request::parse("<AnswerCall><callToBeAnswered><callID>7</callID><deviceID>1001</deviceID></callToBeAnswered></AnswerCall>").unwrap();
        assert_eq!(a.get(&["callToBeAnswered", "callID"]).as_deref(), Some("7"));
    }
}
