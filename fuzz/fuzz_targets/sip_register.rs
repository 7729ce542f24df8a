//! Softphone users' registrations driven by arbitrary registrar answers
//! (built from the REGISTERs sent, with any status and any challenge
//! bytes), time steps and user changes: no panic; only REGISTERs are sent;
//! a user taken away is forgotten (its credentials with it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::digest::Credentials;
use pbxlink_sip::parse;
use pbxlink_sip::register::{RegOutput, RegState, RegistrarTarget, Registrations};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn creds(user: &str) -> Credentials {
    Credentials {
        username: user.into(),
        password: "pw".to_owned().into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut r = Registrations::new(
        t0,
        RegistrarTarget {
            registrar: "10.0.0.2:5060".parse().unwrap(),
            domain: "pbx.example".into(),
            via: "SIP/2.0/UDP 10.0.0.5:5070".into(),
            contact: "10.0.0.5:5070".into(),
            expires: 120,
            reliable: data.first().is_some_and(|b| b & 1 == 1),
        },
        Duration::from_millis(10),
        "fz",
        7,
    );
    r.set_users(t0, (0..4).map(|i| (format!("100{i}"), creds(&format!("100{i}")))).collect());
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut gone: HashSet<String> = HashSet::new();
    for chunk in data.split(|&b| b == 0xff) {
        match chunk.first() {
            Some(&0xf0) => {
                now += Duration::from_millis(u64::from(chunk.get(1).copied().unwrap_or(0)) * 250);
                r.handle_timeout(now);
            }
            Some(&0xf1) => {
                let keep = chunk.get(1).copied().unwrap_or(0);
                let users: Vec<(String, Credentials)> = (0..4)
                    .filter(|i| keep & (1 << i) != 0)
                    .map(|i| (format!("100{i}"), creds(&format!("100{i}"))))
                    .collect();
                r.set_users(now, users);
            }
            Some(&0xf2) => r.register_all_again(now),
            Some(&code_byte) => {
                // Answer one of the REGISTERs sent, with a status and extra
                // header text from the input.
                let Some(req) = sent.get(usize::from(code_byte) % sent.len().max(1)) else {
                    continue;
                };
                let h = parse(req).expect("our REGISTER parses").head;
                let code = 100 + u16::from(chunk.get(1).copied().unwrap_or(0)) % 600;
                let extra = String::from_utf8_lossy(chunk.get(2..).unwrap_or_default()).replace(['\r', '\n'], "");
                let text = format!(
                    "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=r\r\nCall-ID: {}\r\nCSeq: {}\r\nWWW-Authenticate: {extra}\r\nProxy-Authenticate: Digest realm=\"p\", nonce=\"{extra}\"\r\nContact: <sip:1000@10.0.0.5:5070>;expires={extra}\r\nMin-Expires: {extra}\r\nContent-Length: 0\r\n\r\n",
                    h.get("Via").unwrap(),
                    h.get("From").unwrap(),
                    h.get("To").unwrap(),
                    h.get("Call-ID").unwrap(),
                    h.get("CSeq").unwrap()
                );
                if let Ok(p) = parse(text.as_bytes()) {
                    // False only for a registration since forgotten.
                    let _ = r.handle_response(now, &p.head);
                }
            }
            None => {}
        }
        while let Some(o) = r.poll_output() {
            match o {
                RegOutput::Transmit(b) => {
                    assert!(b.starts_with(b"REGISTER sip:pbx.example SIP/2.0\r\n"));
                    sent.push(b);
                    if sent.len() > 64 {
                        sent.remove(0);
                    }
                }
                RegOutput::Removed { user } => {
                    assert!(r.credentials(&user).is_none());
                    gone.insert(user);
                }
                RegOutput::Changed { user, state } => {
                    if matches!(state, RegState::Waiting) {
                        gone.remove(&user);
                    }
                }
            }
        }
    }
});
