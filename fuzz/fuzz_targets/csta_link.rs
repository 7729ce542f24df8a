//! The CSTA link over three servers driven by arbitrary connects, closes,
//! PBX bytes, time steps, device lists and requests: no panic; every
//! request gets exactly one answer by the time every connection is gone;
//! a device is held by at most one session; the link only sends on,
//! or closes, connections it opened.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_csta::link::{CstaLink, LinkConfig, LinkOutput};
use pbxlink_csta::message::Service;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const SERVERS: usize = 3;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut link = CstaLink::new(LinkConfig {
        servers: (0..SERVERS)
            .map(|i| format!("10.0.0.1:{}", 3211 + i))
            .collect(),
        seed: 1,
        ..LinkConfig::default()
    });
    let mut open = [false; SERVERS];
    let mut asked = HashSet::new();
    let mut answered = HashSet::new();
    let drain =
        |link: &mut CstaLink, open: &mut [bool; SERVERS], answered: &mut HashSet<u64>| {
            while let Some(o) = link.poll_output() {
                match o {
                    LinkOutput::Connect(i) => open[i] = true,
                    LinkOutput::Close(i) => open[i] = false,
                    LinkOutput::Transmit(i, _) => {
                        assert!(open[i], "bytes for server {i}, never connected")
                    }
                    LinkOutput::Answer { id, .. } => {
                        assert!(answered.insert(id), "request {id} answered twice")
                    }
                    _ => {}
                }
            }
        };
    drain(&mut link, &mut open, &mut answered);
    for chunk in data.split(|&b| b == 0xfe) {
        let (&op, rest) = match chunk.split_first() {
            Some(x) => x,
            None => continue,
        };
        let i = usize::from(rest.first().copied().unwrap_or(0)) % SERVERS;
        match op {
            0xf0 => {
                now += Duration::from_millis(u64::from(rest.first().copied().unwrap_or(0)) * 100);
                link.handle_timeout(now);
            }
            0xf1 => {
                if open[i] {
                    link.handle_connected(now, i);
                }
            }
            0xf2 => {
                link.handle_closed(now, i, "fuzz");
                open[i] = false;
            }
            0xf3 => {
                let devices = rest
                    .iter()
                    .map(|b| format!("{}", 1000 + u32::from(*b % 32)));
                link.set_devices(now, devices);
            }
            0xf4 => {
                let device = format!(
                    "{}",
                    1000 + u32::from(rest.first().copied().unwrap_or(0) % 40)
                );
                let id = link.request(
                    now,
                    Service::MakeCall {
                        calling: device,
                        called: "1".into(),
                    },
                );
                asked.insert(id);
            }
            _ if open[i] => link.handle_input(now, i, &chunk[1..]),
            _ => {}
        }
        drain(&mut link, &mut open, &mut answered);
        let held: usize = link.status().iter().map(|s| s.devices).sum();
        assert!(
            held <= link.wanted() + SERVERS * 32,
            "devices held twice: {held} of {}",
            link.wanted()
        );
    }
    for i in 0..SERVERS {
        link.handle_closed(now, i, "end");
    }
    drain(&mut link, &mut open, &mut answered);
    assert_eq!(asked, answered, "every request answered");
});
