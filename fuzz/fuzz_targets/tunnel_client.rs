//! The gateway's tunnel session against an arbitrary platform: connects
//! and cuts, time steps, new events, raw bytes, framed JSON of every
//! message type with fields from the input, arbitrary framed bodies, and
//! answers to the commands it surfaced. No panic; everything it transmits
//! is a frame holding a version-1 JSON object; an ack never runs past the
//! highest event id it has sent (the outbox never forgets an event the
//! platform did not get), acks only grow; events go out in id order on a
//! connection; a command id is surfaced for carrying out at most once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_tunnel::client::{ClientConfig, ClientOutput, OutEvent, TunnelClient};
use pbxlink_tunnel::frame::{Decoder, encode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn event(id: u64) -> OutEvent {
    OutEvent {
        id,
        kind: "cdr".into(),
        at_ms: id,
        body: json!({ "call": id }),
    }
}

fn framed(v: &Value) -> Vec<u8> {
    encode(v.to_string().as_bytes()).expect("small messages frame")
}

/// A platform message of kind `k`, its numbers taken from `b`.
fn message(k: u8, b: &[u8]) -> Value {
    let n = u64::from(b.first().copied().unwrap_or(0));
    let text = String::from_utf8_lossy(b).into_owned();
    match k % 12 {
        0 => json!({"v": 1, "type": "welcome", "session": text, "heartbeat_s": n}),
        1 => json!({"v": 1, "type": "ack", "upto": n}),
        2 => json!({"v": 1, "type": "ack", "upto": u64::MAX - n}),
        3 => json!({"v": 1, "type": "command", "id": format!("c-{}", n % 8), "name": "cti", "args": {"x": text}}),
        4 => json!({"v": 1, "type": "ping", "t": n}),
        5 => json!({"v": 1, "type": "pong", "t": n}),
        6 => json!({"v": 1, "type": "error", "code": if n % 2 == 0 { "unauthorized" } else { "other" }, "message": text}),
        7 => json!({"v": 1, "type": "event", "id": n, "kind": text, "at_ms": 1, "body": {}}),
        8 => json!({"v": 1, "type": text}),
        9 => json!({"v": n, "type": "ack", "upto": 1}),
        10 => json!({"v": 1, "type": "result", "ref": text, "ok": true}),
        _ => json!({"v": 1, "type": "hello", "account": text}),
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let cfg = ClientConfig {
        account: "ACME".into(),
        gateway: "gw-1".into(),
        token: "0123456789abcdef".into(),
        versions: json!({ "pbxlink": "0" }),
        profile: "small".into(),
        window: 3,
        hello_timeout: Duration::from_secs(10),
    };
    let mut c = TunnelClient::new(t0, cfg, 0);
    // The outbox as the driver keeps it: ids made, ids acknowledged.
    let (mut next_id, mut acked) = (1u64, 0u64);
    let mut highest_sent = 0u64;
    let mut last_sent_on_connection = 0u64;
    let mut surfaced: HashSet<String> = HashSet::new();
    let mut open_commands: Vec<String> = Vec::new();
    for chunk in data.split(|&b| b == 0xff) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        match op % 8 {
            0 => {
                last_sent_on_connection = acked;
                c.handle_connected(now, (acked + 1..next_id).map(event).collect());
            }
            1 => c.handle_closed(),
            2 => {
                now += Duration::from_millis(u64::from(rest.first().copied().unwrap_or(0)) * 500);
                c.handle_timeout(now);
            }
            3 => {
                c.offer(now, event(next_id));
                next_id += 1;
            }
            4 => c.handle_input(now, rest),
            5 => {
                let (k, b) = rest.split_first().unwrap_or((&0, &[]));
                c.handle_input(now, &framed(&message(*k, b)));
            }
            6 => {
                if !open_commands.is_empty() {
                    let i = usize::from(rest.first().copied().unwrap_or(0)) % open_commands.len();
                    let id = open_commands.swap_remove(i);
                    let result = if rest.len() % 2 == 0 {
                        Ok(json!({ "n": rest.len() }))
                    } else {
                        Err("refused".into())
                    };
                    c.answer(now, &id, result);
                }
            }
            _ => {
                if !rest.is_empty()
                    && let Ok(f) = encode(rest)
                {
                    c.handle_input(now, &f);
                }
            }
        }
        while let Some(o) = c.poll_output() {
            match o {
                ClientOutput::Transmit(bytes) => {
                    let mut d = Decoder::new();
                    d.push(&bytes);
                    let body = d.next_message().expect("a whole frame").expect("one message");
                    assert!(matches!(d.next_message(), Ok(None)), "exactly one frame");
                    let v: Value = serde_json::from_slice(&body).expect("JSON");
                    assert_eq!(v["v"], 1, "{v}");
                    if v["type"] == "event" {
                        let id = v["id"].as_u64().expect("an event id");
                        assert!(id > last_sent_on_connection, "in order: {id} after {last_sent_on_connection}");
                        assert!(id > acked && id < next_id, "only unacknowledged events: {id}");
                        last_sent_on_connection = id;
                        highest_sent = highest_sent.max(id);
                    }
                }
                ClientOutput::Acked(upto) => {
                    assert!(upto > acked, "acks only grow");
                    assert!(upto <= highest_sent, "ack {upto} past what was sent ({highest_sent})");
                    acked = upto;
                }
                ClientOutput::Command { id, .. } => {
                    assert!(surfaced.insert(id.clone()), "command {id} surfaced twice");
                    open_commands.push(id);
                }
                ClientOutput::Close(_) => last_sent_on_connection = acked,
                ClientOutput::Up { .. } | ClientOutput::PeerError(_) | ClientOutput::Refused(_) => {}
            }
        }
        assert_eq!(c.acked(), acked);
    }
});
