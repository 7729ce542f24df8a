//! Bytes from the OS's random source: tokens, keys, ids.

/// `N` bytes from the OS's random source.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source");
    b
}
