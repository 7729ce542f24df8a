//! A CSTA session driven by arbitrary PBX bytes, time steps, requests and
//! disconnects: no panic, and every request gets exactly one answer by the
//! time the connection is gone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_csta::history::CallHistory;
use pbxlink_csta::message::{ConnectionId, Service};
use pbxlink_csta::session::{CstaSession, SessionConfig, SessionOutput};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = CstaSession::new(SessionConfig {
        monitor_window: 2,
        ..SessionConfig::default()
    });
    s.handle_connected(now);
    let mut asked = HashSet::new();
    let mut answered = HashSet::new();
    let mut next = 0u64;
    let mut history = CallHistory::new(4);
    for chunk in data.split(|&b| b == 0xfe) {
        match chunk.first() {
            Some(0xf0) => {
                now += Duration::from_millis(u64::from(chunk.get(1).copied().unwrap_or(0)) * 50);
                s.handle_timeout(now);
            }
            Some(0xf1) => {
                next += 1;
                asked.insert(next);
                let c = ConnectionId {
                    call: "c".into(),
                    device: "1000".into(),
                };
                s.request(now, next, Service::HoldCall(c));
            }
            Some(0xf2) => s.monitor(now, &format!("{}", chunk.get(1).copied().unwrap_or(0))),
            Some(0xf3) => s.unmonitor(now, &format!("{}", chunk.get(1).copied().unwrap_or(0))),
            Some(0xf4) => s.handle_disconnected(now, "fuzz"),
            Some(0xf5) => s.handle_connected(now),
            _ => s.handle_input(now, chunk),
        }
        while let Some(o) = s.poll_output() {
            match o {
                SessionOutput::Answer { id, .. } => {
                    assert!(asked.contains(&id), "an answer to a request never made");
                    assert!(answered.insert(id), "request {id} answered twice");
                }
                SessionOutput::Event { device, event } => {
                    // The history of whatever events arrive stays bounded.
                    history.handle_event(
                        now.duration_since(t0).as_millis() as u64,
                        &device,
                        &event,
                    );
                    assert!(history.calls(&device).len() <= 4 + 8);
                }
                _ => {}
            }
        }
        if let Some(t) = s.poll_timeout() {
            assert!(t + Duration::from_secs(3600) > now);
        }
    }
    s.handle_disconnected(now, "end");
    while let Some(o) = s.poll_output() {
        if let SessionOutput::Answer { id, .. } = o {
            assert!(answered.insert(id), "request {id} answered twice");
        }
    }
    assert_eq!(asked, answered, "every request answered");
});
