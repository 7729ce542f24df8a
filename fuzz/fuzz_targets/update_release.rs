//! The update's inputs from outside: a release's signature and bytes (the
//! platform's), the journal read at start (the disk's), the pieces of a
//! transfer. No panic; a journal that parses drives the state machine to
//! a decision, and the state machine never leaves a rolled-back version
//! running without saying why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_update::journal::{Journal, Start};
use pbxlink_update::release::{self, signed_version};
use pbxlink_update::transfer::Transfer;
use pbxlink_update::{Version, schedule};

/// A real key, so signatures reach the check itself.
const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (head, body) = data.split_at(split);
    let text = String::from_utf8_lossy(head);
    let running = Version::new(0, 1, 0);
    let _ = release::verify(body, &text, KEY, &Version::new(0, 2, 0), &running);
    let _ = signed_version(&text);
    let _ = schedule::next_apply(Some(&text), u64::from_le_bytes([0; 8]));
    if let Ok(j) = Journal::from_bytes(data) {
        let now = 1_000;
        match j.at_start(now, 60_000) {
            Start::RollBack { journal, to, then } => {
                assert!(matches!(journal, Journal::RollingBack { .. }));
                let Journal::Failed { from, cause, .. } = &then else {
                    panic!("a roll-back ends Failed");
                };
                assert_eq!(from, &to);
                assert!(!cause.is_empty());
            }
            Start::Check(next) => {
                let _ = next.checked(Ok(()), now);
                let _ = next.checked(Err("down".into()), now);
            }
            Start::Run => {}
        }
        let _ = j.status_word();
    }
    let mut t = match Transfer::new(u64::from(data.len() as u32)) {
        Ok(t) => t,
        Err(_) => return,
    };
    for w in data.chunks(7) {
        let off = t.have();
        let _ = t.piece(off, w.len() as u64);
    }
    assert!(t.have() <= t.size());
});
