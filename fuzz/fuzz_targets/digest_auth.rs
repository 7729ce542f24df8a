//! Digest authentication on arbitrary headers: reading a credential or a
//! challenge never panics; a credential the gateway did not compute from
//! its own challenge is never accepted; the gateway's answer to its own
//! challenge always is, whatever the method and URI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::digest::{Algorithm, Challenger, Credentials, Verdict, answer, parse};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (header, method, uri) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("INVITE"),
        parts.next().unwrap_or("sip:1@h"),
    );
    let _ = parse(header);
    let creds = Credentials {
        username: "officelinkmv5000".into(),
        password: Zeroizing::new("right".into()),
    };
    let gw = Challenger::new("pbxlink", Algorithm::Md5, creds.clone(), [3; 32]);
    // The header as a credential: ours it is not.
    assert_ne!(gw.verify(100, method, uri, Some(header)), Verdict::Accepted);
    // The header as a challenge: answering it never panics.
    let _ = answer(header, &creds, method, uri, 1, "c");
    // Our own challenge answered rightly is accepted.
    if !uri.contains('"') && !uri.contains('\\') {
        let good = answer(&gw.challenge(100, false), &creds, method, uri, 1, "c").unwrap();
        assert_eq!(gw.verify(101, method, uri, Some(&good)), Verdict::Accepted);
    }
});
