//! Matching a request to its server transaction (RFC 3261 §17.2.3): the top
//! Via's branch (RFC 3261 magic cookie) and sent-by, and the method, with
//! ACK matching the INVITE it acknowledges. Pre-RFC 3261 branches are not
//! matched (the transaction user treats such requests statelessly).

use crate::normalize::Head;

/// Identifies a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    /// Top Via branch, starting with `z9hG4bK`.
    pub branch: String,
    /// Top Via sent-by (host[:port]), lower-cased.
    pub sent_by: String,
    /// The request method, INVITE for an ACK.
    pub method: String,
}

/// The key of the transaction a request belongs to, if it can be matched.
pub fn server_key(head: &Head) -> Option<ServerKey> {
    let method = crate::message::request_method(&head.start_line)?;
    // The top Via is the first value of the first Via field.
    let via = head.get("Via")?.split(',').next()?.trim();
    let (_protocol, rest) = via.split_once(char::is_whitespace)?;
    let mut parts = rest.split(';');
    let sent_by = parts.next()?.trim().to_ascii_lowercase();
    let branch = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
        .map(|(_, v)| v.trim().to_owned())?;
    if !branch.starts_with("z9hG4bK") || sent_by.is_empty() {
        return None;
    }
    let method = if method == "ACK" { "INVITE" } else { method };
    Some(ServerKey {
        branch,
        sent_by,
        method: method.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::head;

    fn key(raw: &str) -> Option<ServerKey> {
        server_key(&head(raw.as_bytes()).unwrap())
    }

    #[test]
    fn matches_on_branch_sent_by_and_method() {
        let invite = key("INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP PBX.example.com:5060 ;branch=z9hG4bK74;rport, SIP/2.0/UDP x;branch=z9hG4bKother").unwrap();
        assert_eq!(invite.branch, "z9hG4bK74");
        assert_eq!(invite.sent_by, "pbx.example.com:5060");
        let ack = key("ACK sip:a SIP/2.0\r\nv: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK74")
            .unwrap();
        assert_eq!(ack, invite, "the ACK of a non-2xx matches its INVITE");
        let cancel =
            key("CANCEL sip:a SIP/2.0\r\nVia: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bK74")
                .unwrap();
        assert_ne!(cancel, invite, "CANCEL is its own transaction");
    }

    #[test]
    fn pre_3261_branches_are_not_matched() {
        assert_eq!(
            key("OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1234"),
            None
        );
        assert_eq!(key("OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h"), None);
        assert_eq!(
            key("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1"),
            None
        );
    }
}
