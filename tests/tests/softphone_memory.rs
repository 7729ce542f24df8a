//! What a Softphone user's registration costs in memory: 10,000 users set
//! up and registered (each REGISTER answered, as a registrar does), the
//! heap measured by a counting allocator before and after. Prints bytes
//! per user; fails past 4 KiB, which would make a Large gateway's users
//! (thousands) weigh more than its relays.

use pbxlink_sip::digest::Credentials;
use pbxlink_sip::parse;
use pbxlink_sip::register::{RegOutput, RegistrarTarget, Registrations};
use pbxlink_tests::counting_alloc::{Counting, live_bytes};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Counting = Counting;

const USERS: usize = 10_000;

#[test]
fn a_registered_softphone_user_costs_under_4_kib() {
    let t0 = Instant::now();
    let users: Vec<(String, Credentials)> = (0..USERS)
        .map(|i| {
            let dn = format!("{}", 100_000 + i);
            (
                dn.clone(),
                Credentials {
                    username: dn,
                    password: format!("pw-{i:08}").into(),
                },
            )
        })
        .collect();
    let before = live_bytes();
    let mut regs = Registrations::new(
        t0,
        RegistrarTarget {
            registrar: "10.0.0.2:5060".parse().unwrap(),
            domain: "pbx.example".into(),
            via: "SIP/2.0/UDP 10.0.0.5:5070".into(),
            contact: "10.0.0.5:5070".into(),
            expires: 300,
            reliable: false,
        },
        Duration::ZERO,
        "mem",
        1,
    );
    regs.set_users(t0, users);
    regs.handle_timeout(t0);
    let mut answered = 0;
    while let Some(o) = regs.poll_output() {
        if let RegOutput::Transmit(b) = o {
            let h = parse(&b).unwrap().head;
            let ok = format!(
                "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=r\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                h.get("Via").unwrap(),
                h.get("From").unwrap(),
                h.get("To").unwrap(),
                h.get("Call-ID").unwrap(),
                h.get("CSeq").unwrap()
            );
            assert!(regs.handle_response(t0, &parse(ok.as_bytes()).unwrap().head));
            answered += 1;
        }
    }
    assert_eq!(answered, USERS);
    assert!((0..USERS).all(|i| regs.is_registered(&format!("{}", 100_000 + i))));
    let per_user = (live_bytes() - before) / USERS as i64;
    println!("a registered Softphone user: {per_user} bytes (registrations of {USERS} users)");
    assert!(per_user < 4096, "{per_user} bytes per registered user");
}
