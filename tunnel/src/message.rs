//! The tunnel's messages (docs/protocols-tunnel.md): a JSON object with `v` (the
//! protocol's major version) and `type`. Reading tells a known message
//! from one of an unknown type (answered `unknown_type`), one of another
//! major version, and one missing what it must carry — each its own case,
//! so none is dropped in silence.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol's major version.
pub const VERSION: u64 = 1;

/// A message of this version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Gateway → platform: who it is.
    Hello {
        /// The account it belongs to.
        account: String,
        /// Its own id.
        gateway: String,
        /// Its secret, given at linking.
        token: String,
        /// Software versions.
        #[serde(default)]
        versions: Value,
        /// Its performance profile.
        #[serde(default)]
        profile: String,
        /// The highest event id it knows the platform stored.
        #[serde(default)]
        resume_after: u64,
    },
    /// Platform → gateway: accepted.
    Welcome {
        /// The session's id.
        session: String,
        /// Seconds between heartbeats.
        #[serde(default = "heartbeat")]
        heartbeat_s: u64,
    },
    /// Gateway → platform: something that happened, kept until acknowledged.
    Event {
        /// Its id (increasing, never reused).
        id: u64,
        /// What it is (`cdr`, `cti_event`, …).
        kind: String,
        /// When (Unix ms).
        at_ms: u64,
        /// Its content.
        #[serde(default)]
        body: Value,
    },
    /// Platform → gateway: every event up to `upto` is stored.
    Ack {
        /// The highest id stored.
        upto: u64,
    },
    /// Platform → gateway: do something.
    Command {
        /// Its id (the same id is the same command).
        id: String,
        /// What (`sync_now`, `cti`, …).
        name: String,
        /// Its arguments.
        #[serde(default)]
        args: Value,
    },
    /// Gateway → platform: a command's outcome.
    Result {
        /// The command's id.
        #[serde(rename = "ref")]
        reference: String,
        /// Whether it succeeded.
        ok: bool,
        /// What it gave.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        body: Value,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Either way: are you there?
    Ping {
        /// A token to echo.
        t: u64,
    },
    /// Either way: yes.
    Pong {
        /// The ping's token.
        t: u64,
    },
    /// Either way: what was wrong with a message.
    Error {
        /// `unknown_type`, `bad_message`, `version`, `unauthorized`, …
        code: String,
        /// More.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// The type of the message it answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ref_type: Option<String>,
    },
}

fn heartbeat() -> u64 {
    15
}

const KNOWN: [&str; 10] = [
    "hello", "welcome", "event", "ack", "command", "result", "ping", "pong", "error", "",
];

/// What a received message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A message of this version.
    Message(Message),
    /// A message of a type this version does not know.
    UnknownType(String),
    /// A known type without what it must carry.
    Bad {
        /// Its type.
        kind: String,
        /// What is wrong.
        why: String,
    },
    /// Another major version.
    OtherVersion(u64),
    /// Not a JSON object: the stream cannot be trusted.
    NotJson(String),
}

impl Message {
    /// The message as a JSON object with `v`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("messages serialise");
        if let Value::Object(m) = &mut v {
            m.insert("v".into(), VERSION.into());
        }
        serde_json::to_vec(&v).expect("values serialise")
    }

    /// An `error` answering a message of `ref_type`.
    pub fn error(code: &str, message: Option<String>, ref_type: Option<String>) -> Self {
        Message::Error {
            code: code.into(),
            message,
            ref_type,
        }
    }
}

/// Reads one message's bytes.
pub fn read(bytes: &[u8]) -> Received {
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Received::NotJson("a JSON value that is not an object".into()),
        Err(e) => return Received::NotJson(e.to_string()),
    };
    let version = v.get("v").and_then(Value::as_u64).unwrap_or(0);
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if version != VERSION {
        return Received::OtherVersion(version);
    }
    if !KNOWN.contains(&kind.as_str()) || kind.is_empty() {
        return Received::UnknownType(kind);
    }
    match serde_json::from_value::<Message>(v) {
        Ok(m) => Received::Message(m),
        Err(e) => Received::Bad {
            kind,
            why: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_version_and_read_back() {
        let m = Message::Result {
            reference: "c-1".into(),
            ok: true,
            body: serde_json::json!({"call": "4701"}),
            error: None,
        };
        let bytes = m.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"v\":1") && text.contains("\"ref\":\"c-1\""),
            "{text}"
        );
        assert_eq!(read(&bytes), Received::Message(m));
    }

    #[test]
    fn unknown_other_and_broken_messages_are_told_apart() {
        assert_eq!(
            read(br#"{"v":1,"type":"teleport","to":"mars"}"#),
            Received::UnknownType("teleport".into())
        );
        assert_eq!(
            read(br#"{"v":2,"type":"hello"}"#),
            Received::OtherVersion(2)
        );
        assert!(matches!(
            read(br#"{"v":1,"type":"ack"}"#),
            Received::Bad { kind, why } if kind == "ack" && why.contains("upto")
        ));
        assert!(matches!(read(b"[1,2]"), Received::NotJson(_)));
        assert!(matches!(read(b"{\"v\":1,"), Received::NotJson(_)));
        // Unknown fields are ignored.
        assert_eq!(
            read(br#"{"v":1,"type":"ack","upto":7,"extra":{"x":1}}"#),
            Received::Message(Message::Ack { upto: 7 })
        );
    }
}
