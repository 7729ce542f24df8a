//! Stream framing on arbitrary bytes split at arbitrary points: no panic,
//! bounded buffering, and the same frames however the bytes are chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::framing::{Frame, FrameError, StreamFramer};
use pbxlink_sip::limits::{MAX_LEADING_CRLF, MAX_MESSAGE};

fn frames(data: &[u8], chunk: usize) -> Vec<Result<Frame, FrameError>> {
    let mut f = StreamFramer::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        if let Err(e) = f.push(piece) {
            out.push(Err(e));
            return out;
        }
        assert!(f.pending() <= MAX_MESSAGE + MAX_LEADING_CRLF);
        while let Some(fr) = f.next_frame() {
            let stop = fr.is_err();
            out.push(fr);
            if stop {
                return out;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let whole = frames(data, data.len());
    let pieces = frames(data, chunk as usize % 17 + 1);
    // Messages are the same; only where an error is noticed may differ.
    let ok = |v: &[Result<Frame, FrameError>]| {
        v.iter()
            .take_while(|r| r.is_ok())
            .cloned()
            .collect::<Vec<_>>()
    };
    let (a, b) = (ok(&whole), ok(&pieces));
    let n = a.len().min(b.len());
    assert_eq!(a[..n], b[..n]);
});
