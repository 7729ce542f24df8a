//! CSTA stream framing on arbitrary bytes split at arbitrary points: no
//! panic, nothing buffered past one frame's worth, the same frames however
//! the bytes are chunked, and once it fails it stays failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_csta::framing::{Decoder, Frame, FramingError, MAX_FRAME};

fn frames(data: &[u8], chunk: usize) -> (Vec<Frame>, Option<FramingError>) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next_frame(), Err(e.clone()), "a failure sticks");
                    return (out, Some(e));
                }
            }
        }
        assert!(d.pending() < MAX_FRAME + piece.len());
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let whole = frames(data, data.len());
    let split = frames(data, usize::from(chunk));
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1.is_some(), split.1.is_some());
    for f in &whole.0 {
        assert!(!f.xml.is_empty() && f.xml.len() + 8 <= MAX_FRAME);
    }
});
