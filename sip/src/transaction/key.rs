//! Matching messages to transactions. A request to its server transaction
//! (RFC 3261 §17.2.3): the top Via's branch (RFC 3261 magic cookie) and
//! sent-by, and the method, with ACK matching the INVITE it acknowledges.
//! A CANCEL to the INVITE it cancels (§9.2: the same match with the method
//! taken as INVITE). A response to its client transaction (§17.1.3): the
//! top Via's branch and the CSeq method. Pre-RFC 3261 branches are not
//! matched (the transaction user treats such requests statelessly).

use crate::normalize::Head;

/// Identifies a client transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Top Via branch of the request the client sent.
    pub branch: String,
    /// The request's method (CSeq method of the response).
    pub method: String,
}

/// The top Via's (sent-by lower-cased, branch) of a head.
fn top_via(head: &Head) -> Option<(String, String)> {
    // The top Via is the first value of the first Via field.
    let via = head.get("Via")?.split(',').next()?.trim();
    // Past "SIP / 2.0 / transport" (LWS may surround the slashes).
    let (_, after) = via.split_once('/')?;
    let (_, after) = after.split_once('/')?;
    let after = after.trim_start();
    let rest = after[after.find(char::is_whitespace)?..].trim_start();
    let mut parts = rest.split(';');
    let sent_by = parts.next()?.trim().to_ascii_lowercase();
    let branch = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
        .map(|(_, v)| v.trim().to_owned())?;
    (branch.starts_with("z9hG4bK") && !sent_by.is_empty()).then_some((sent_by, branch))
}

/// The key of the client transaction a response belongs to (§17.1.3).
pub fn client_key(head: &Head) -> Option<ClientKey> {
    if crate::message::request_method(&head.start_line).is_some() {
        return None;
    }
    let (_, branch) = top_via(head)?;
    let method = head.get("CSeq")?.split_whitespace().nth(1)?.to_owned();
    Some(ClientKey { branch, method })
}

/// The key of the INVITE server transaction a CANCEL targets (§9.2).
pub fn cancel_target(head: &Head) -> Option<ServerKey> {
    let key = server_key(head)?;
    (key.method == "CANCEL").then(|| ServerKey {
        method: "INVITE".to_owned(),
        ..key
    })
}

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
    let (sent_by, branch) = top_via(head)?;
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
    fn cancel_targets_its_invite_and_responses_match_clients() {
        let invite =
            key("INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK74").unwrap();
        let cancel = head(
            b"CANCEL sip:a SIP/2.0\r\nVia: SIP/2.0/UDP H:5060;branch=z9hG4bK74\r\nCSeq: 1 CANCEL",
        )
        .unwrap();
        assert_eq!(cancel_target(&cancel), Some(invite));
        let options =
            head(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK74").unwrap();
        assert_eq!(cancel_target(&options), None);
        let ok = head(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS gw.example.com;branch=z9hG4bKping1;received=192.0.2.1\r\nCSeq: 7 OPTIONS").unwrap();
        assert_eq!(
            client_key(&ok),
            Some(ClientKey {
                branch: "z9hG4bKping1".into(),
                method: "OPTIONS".into()
            })
        );
        let cancel_ok =
            head(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS gw;branch=z9hG4bKping1\r\nCSeq: 7 CANCEL")
                .unwrap();
        assert_ne!(
            client_key(&cancel_ok),
            client_key(&ok),
            "CANCEL's 200 is not the INVITE's"
        );
        assert_eq!(client_key(&options), None, "requests have no client key");
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
