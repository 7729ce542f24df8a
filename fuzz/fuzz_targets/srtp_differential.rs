//! The native SRTP engine against libsrtp on arbitrary packet sequences:
//! both must accept or refuse each packet alike and produce the same bytes.
//! Contexts persist across the packets of one input, so index estimation,
//! rollover, replay windows and SSRC changes are all exercised. SSRCs are
//! folded onto four values: past `MAX_STREAMS` sources the native engine
//! deliberately differs (it refuses or recycles, libsrtp grows without bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::DropReason;
use pbxlink_dataplane::srtp::{LibsrtpContext, MasterKey, Role, SrtpContext, Suite};

fn run(
    p: &[u8],
    f: impl FnOnce(&mut [u8], usize) -> Result<usize, DropReason>,
) -> Result<Vec<u8>, DropReason> {
    let mut buf = vec![0u8; p.len() + 256];
    buf[..p.len()].copy_from_slice(p);
    f(&mut buf, p.len()).map(|n| buf[..n].to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let suite = Suite::ALL[selector as usize % 3];
    let key: Vec<u8> = (0..suite.master_len() as u8)
        .map(|i| i ^ selector)
        .collect();
    let key = MasterKey::from_bytes(suite, &key).unwrap();
    let mut native_tx = SrtpContext::new(suite, &key, Role::Protect).unwrap();
    let mut lib_tx = LibsrtpContext::new(suite, &key, Role::Protect).unwrap();
    let mut native_rx = SrtpContext::new(suite, &key, Role::Unprotect).unwrap();
    let mut lib_rx = LibsrtpContext::new(suite, &key, Role::Unprotect).unwrap();
    // Records: flags (bit 0 RTCP, bit 1 tamper after protect), length, bytes.
    while let [flags, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let mut owned = tail[..n].to_vec();
        rest = &tail[n..];
        let rtcp = flags & 1 == 1;
        let ssrc_at = if rtcp { 4 } else { 8 };
        if owned.len() >= ssrc_at + 4 {
            owned[ssrc_at..ssrc_at + 4]
                .copy_from_slice(&(0x1000 + (*flags as u32 >> 5 & 3)).to_be_bytes());
        }
        let packet = &owned[..];
        // Only packets the gateway would hand to SRTP: a well-formed header.
        if rtcp {
            if n < 8 {
                continue;
            }
        } else if n < 12 || pbxlink_dataplane::rtp::header_len(packet).is_err() {
            continue;
        }
        let (a, b) = if rtcp {
            (
                run(packet, |b, l| native_tx.protect_rtcp(b, l)),
                run(packet, |b, l| lib_tx.protect_rtcp(b, l)),
            )
        } else {
            (
                run(packet, |b, l| native_tx.protect_rtp(b, l)),
                run(packet, |b, l| lib_tx.protect_rtp(b, l)),
            )
        };
        assert_eq!(a, b, "protect differs");
        let Ok(mut wire) = a else { continue };
        if flags & 2 != 0 && !wire.is_empty() {
            let at = (*flags as usize >> 2) % wire.len();
            wire[at] ^= 0x01;
        }
        let (a, b) = if rtcp {
            (
                run(&wire, |b, l| native_rx.unprotect_rtcp(b, l)),
                run(&wire, |b, l| lib_rx.unprotect_rtcp(b, l)),
            )
        } else {
            (
                run(&wire, |b, l| native_rx.unprotect_rtp(b, l)),
                run(&wire, |b, l| lib_rx.unprotect_rtp(b, l)),
            )
        };
        // A tampered header may stop parsing: pbxlink names the structural
        // fault where libsrtp reports a generic failure.
        let structural = matches!(a, Err(DropReason::Truncated | DropReason::ExtensionOverrun));
        if !structural {
            assert_eq!(a, b, "unprotect differs");
        }
        if a.is_ok() && flags & 2 == 0 {
            assert_eq!(a.unwrap(), packet, "round trip");
        }
    }
});
