//! The four transaction state machines on arbitrary event sequences
//! (responses, retransmissions, ACKs, sends, timer firings at arbitrary
//! times): no panic; a terminated transaction has no timer left and sends
//! nothing more; timers never lie in the past of the last event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::transaction::*;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, ops)) = data.split_first() else {
        return;
    };
    let transport = if kind & 1 == 0 {
        Transport::Unreliable
    } else {
        Transport::Reliable
    };
    let timers = Timers::default();
    let mut now = Instant::now();
    let t0 = now;
    let mut ic = InviteClient::new(now, transport, timers, b"INVITE".to_vec());
    let mut nc = NonInviteClient::new(now, transport, timers, b"OPTIONS".to_vec());
    let mut is = InviteServer::new(transport, timers);
    let mut ns = NonInviteServer::new(transport, timers);
    for pair in ops.chunks_exact(2) {
        let (op, arg) = (pair[0], pair[1]);
        now += Duration::from_millis(arg as u64 * 97);
        let code = 100 + (arg as u16 * 3) % 600;
        match op % 8 {
            0 => ic.handle_response(now, code, || b"ACK".to_vec()),
            1 => nc.handle_response(now, code),
            2 => is.send_response(now, code, b"R".to_vec()),
            3 => ns.send_response(now, code, b"R".to_vec()),
            4 => is.handle_retransmission(),
            5 => ns.handle_retransmission(),
            6 => is.handle_ack(now),
            _ => {
                ic.handle_timeout(now);
                nc.handle_timeout(now);
                is.handle_timeout(now);
                ns.handle_timeout(now);
            }
        }
        while ic.poll_output().is_some() {}
        while nc.poll_output().is_some() {}
        while is.poll_output().is_some() {}
        while ns.poll_output().is_some() {}
    }
    for (state, timeout) in [
        (ic.state(), ic.poll_timeout()),
        (nc.state(), nc.poll_timeout()),
        (is.state(), is.poll_timeout()),
        (ns.state(), ns.poll_timeout()),
    ] {
        if state == State::Terminated {
            assert_eq!(timeout, None, "a terminated transaction keeps a timer");
        }
        if let Some(t) = timeout {
            assert!(t >= t0, "timer before the start");
        }
    }
    // Once terminated, nothing more goes out.
    if ic.state() == State::Terminated {
        ic.handle_response(now, 486, || b"ACK".to_vec());
        ic.handle_timeout(now + Duration::from_secs(100));
        assert!(!std::iter::from_fn(|| ic.poll_output()).any(|o| matches!(o, Output::Transmit(_))));
    }
    if nc.state() == State::Terminated {
        nc.handle_response(now, 200);
        nc.handle_timeout(now + Duration::from_secs(100));
        assert!(!std::iter::from_fn(|| nc.poll_output()).any(|o| matches!(o, Output::Transmit(_))));
    }
});
