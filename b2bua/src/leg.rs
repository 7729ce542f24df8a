//! One leg of a call: a SIP dialog (RFC 3261 §12) between the gateway and
//! the PBX or the cloud, and the messages the gateway writes on it —
//! requests (new branch each, in-dialog Route set and target) and
//! responses to the other side's requests (Via, From, To with the
//! gateway's tag, Call-ID and CSeq echoed; RFC 3261 §8.2.6).

use pbxlink_sip::normalize::Head;

/// Which side a leg faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The PBX's SIP trunk (LAN; plain RTP).
    Pbx,
    /// The cloud trunk (TLS; SRTP).
    Cloud,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Pbx => Side::Cloud,
            Side::Cloud => Side::Pbx,
        }
    }
}

/// The value of a header parameter (`;tag=…`) in a field value.
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    // Parameters follow the URI (after '>' when there is one).
    let after = value.rfind('>').map_or(value, |i| &value[i..]);
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URI inside a name-addr (or the addr-spec itself).
pub fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// `uri` as a Request-URI, if the gateway can send requests to it: a sip
/// or sips URI (RFC 3261 §8.1.1.8 requires one in a dialog's Contact),
/// without a headers part (not allowed in a Request-URI, §19.1.5).
pub fn sip_target(uri: &str) -> Option<&str> {
    let scheme = pbxlink_sip::grammar::scheme(uri)?;
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    // `?` may appear in the user part: the headers start after the host.
    let host_at = uri.rfind('@').map_or(0, |i| i + 1);
    let end = uri[host_at..].find('?').map_or(uri.len(), |i| host_at + i);
    let target = &uri[..end];
    pbxlink_sip::grammar::scheme(target).map(|_| target)
}

/// A field value without its `;tag=` (the identity part of From/To).
fn without_tag(value: &str) -> String {
    let mut out = String::new();
    let (head, params) = match value.rfind('>') {
        Some(i) => value.split_at(i + 1),
        None => value
            .split_once(';')
            .map_or((value, ""), |(h, _)| (h, &value[h.len()..])),
    };
    out.push_str(head.trim());
    for p in params.split(';').skip(1) {
        if !p.trim().to_ascii_lowercase().starts_with("tag=") && !p.trim().is_empty() {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

/// A dialog as the gateway holds it.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Which side.
    pub side: Side,
    /// Call-ID.
    pub call_id: String,
    /// The gateway's tag.
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// The gateway's identity on this leg (From of its requests).
    pub local_uri: String,
    /// The peer's identity (To of the gateway's requests).
    pub remote_uri: String,
    /// Where in-dialog requests go (the peer's Contact, or the initial
    /// Request-URI before one is known).
    pub remote_target: String,
    /// Route set, in the order requests carry it.
    pub route: Vec<String>,
    /// The gateway's last CSeq on this leg.
    pub local_cseq: u32,
    /// The gateway's Via (`SIP/2.0/UDP host:port`) and Contact URI here.
    pub via: String,
    /// The gateway's Contact URI here.
    pub contact: String,
}

impl Leg {
    /// The leg an incoming INVITE opens (the gateway is its UAS).
    pub fn from_invite(
        side: Side,
        invite: &Head,
        local_tag: String,
        via: String,
        contact: String,
    ) -> Option<Leg> {
        let from = invite.get("From")?;
        let to = invite.get("To")?;
        // Where in-dialog requests go: the Contact, else the From URI; a
        // dialog without a SIP URI to reach cannot be carried.
        let target = invite
            .get("Contact")
            .and_then(|c| sip_target(uri_of(c)))
            .or_else(|| sip_target(uri_of(from)))?
            .to_owned();
        Some(Leg {
            side,
            call_id: invite.get("Call-ID")?.to_owned(),
            local_tag,
            remote_tag: param(from, "tag")
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            remote_target: target,
            // UAS: the Record-Route values in order (RFC 3261 §12.1.1).
            route: invite.all("Record-Route").map(str::to_owned).collect(),
            local_cseq: 0,
            via,
            contact,
        })
    }

    /// Learns the dialog from a response to the gateway's INVITE (UAC).
    pub fn learn(&mut self, response: &Head) {
        // A tag without a value is no tag (and `;tag=` would not parse).
        if let Some(tag) = response
            .get("To")
            .and_then(|t| param(t, "tag"))
            .filter(|t| !t.is_empty())
        {
            self.remote_tag = Some(tag.to_owned());
        }
        // A Contact the gateway cannot send to is ignored (the target stays).
        if let Some(c) = response.get("Contact").and_then(|c| sip_target(uri_of(c))) {
            self.remote_target = c.to_owned();
        }
        let rr: Vec<String> = response.all("Record-Route").map(str::to_owned).collect();
        if !rr.is_empty() {
            // UAC: reversed (RFC 3261 §12.1.2).
            self.route = rr.into_iter().rev().collect();
        }
    }

    /// A request on this leg: `branch` names its transaction, `cseq` its
    /// number (a new one unless ACK/CANCEL reuse the INVITE's).
    pub fn request(&self, method: &str, branch: &str, cseq: u32, sdp: Option<&str>) -> Vec<u8> {
        self.request_with(method, branch, cseq, sdp.map(|s| ("application/sdp", s)))
    }

    /// [`Leg::request`] with a body of any type (`(Content-Type, body)`).
    pub fn request_with(
        &self,
        method: &str,
        branch: &str,
        cseq: u32,
        body: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut out = format!(
            "{method} {} SIP/2.0\r\nVia: {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            self.remote_target, self.via
        );
        for r in &self.route {
            out.push_str(&format!("Route: {r}\r\n"));
        }
        let to_tag = match (&self.remote_tag, method) {
            (Some(t), m) if m != "CANCEL" => format!(";tag={t}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "From: {};tag={}\r\nTo: {}{to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.local_uri, self.local_tag, self.remote_uri, self.call_id
        ));
        if method == "INVITE" {
            out.push_str(&format!(
                "Contact: <{}>\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n",
                self.contact
            ));
        }
        out.push_str("User-Agent: pbxlink\r\n");
        typed_body(&mut out, body);
        out.into_bytes()
    }

    /// A response to `request` (received on this leg).
    pub fn response(&self, request: &Head, code: u16, phrase: &str, sdp: Option<&str>) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {code} {phrase}\r\n");
        for via in request.all("Via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        for rr in request.all("Record-Route") {
            out.push_str(&format!("Record-Route: {rr}\r\n"));
        }
        let to = request.get("To").unwrap_or_default();
        let to = if code == 100 || param(to, "tag").is_some() {
            to.to_owned()
        } else {
            format!("{to};tag={}", self.local_tag)
        };
        out.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            request.get("From").unwrap_or_default(),
            request.get("Call-ID").unwrap_or_default(),
            request.get("CSeq").unwrap_or_default()
        ));
        if (101..300).contains(&code) {
            out.push_str(&format!("Contact: <{}>\r\n", self.contact));
        }
        body(&mut out, sdp);
        out.into_bytes()
    }
}

/// `message` with `headers` (CRLF-terminated lines) added after its start line.
pub fn insert_headers(message: &[u8], headers: &str) -> Vec<u8> {
    let at = message
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(message.len(), |i| i + 2);
    let mut out = Vec::with_capacity(message.len() + headers.len());
    out.extend_from_slice(&message[..at]);
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(&message[at..]);
    out
}

fn body(out: &mut String, sdp: Option<&str>) {
    typed_body(out, sdp.map(|s| ("application/sdp", s)));
}

fn typed_body(out: &mut String, body: Option<(&str, &str)>) {
    match body {
        Some((kind, b)) => out.push_str(&format!(
            "Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_uris_are_read_from_name_addrs() {
        assert_eq!(param("\"A\" <sip:a@b;x=1>;tag=9;y", "tag"), Some("9"));
        assert_eq!(
            param("<sip:a@b;tag=no>", "tag"),
            None,
            "URI parameters are not the field's"
        );
        assert_eq!(param("sip:a@b;tag=7", "tag"), Some("7"));
        // A valueless tag is read as empty; legs take it as no tag.
        assert_eq!(param("<sip:a@b>;tag;rt", "tag"), Some(""));
        assert_eq!(
            uri_of("\"A\" <sip:a@b:5060;transport=tcp>;tag=1"),
            "sip:a@b:5060;transport=tcp"
        );
        assert_eq!(uri_of("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(
            without_tag("\"A\" <sip:a@b>;tag=1;x=2"),
            "\"A\" <sip:a@b>;x=2"
        );
        assert_eq!(without_tag("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(
            sip_target("sips:ua@h:5061;transport=tls?x=y"),
            Some("sips:ua@h:5061;transport=tls")
        );
        assert_eq!(sip_target("http://h"), None);
        assert_eq!(sip_target("sip:?"), None);
    }
}
