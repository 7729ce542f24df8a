//! Per-direction payload-type map: which RTP payload types may pass and
//! what number they carry on the other leg (the legs may number the same
//! codec differently).

/// Maps incoming payload types to outgoing ones; unmapped types are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadTypeMap([u8; 128]);

const REFUSED: u8 = 0xff;

impl PayloadTypeMap {
    /// Every payload type passes unchanged.
    pub fn identity() -> Self {
        let mut m = [0u8; 128];
        for (i, v) in m.iter_mut().enumerate() {
            *v = i as u8;
        }
        Self(m)
    }

    /// Only the listed `(incoming, outgoing)` pairs pass. Payload types are
    /// 7-bit; pairs outside 0..=127 are ignored.
    pub fn only(pairs: &[(u8, u8)]) -> Self {
        let mut m = [REFUSED; 128];
        for &(from, to) in pairs {
            if from < 128 && to < 128 {
                m[from as usize] = to;
            }
        }
        Self(m)
    }

    /// The outgoing payload type for `pt`, or `None` when refused.
    #[inline]
    pub fn map(&self, pt: u8) -> Option<u8> {
        match self.0[(pt & 0x7f) as usize] {
            REFUSED => None,
            to => Some(to),
        }
    }
}

impl Default for PayloadTypeMap {
    fn default() -> Self {
        Self::identity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_passes_everything() {
        let m = PayloadTypeMap::identity();
        assert!((0..128).all(|pt| m.map(pt) == Some(pt)));
    }

    #[test]
    fn only_maps_and_refuses_the_rest() {
        let m = PayloadTypeMap::only(&[(0, 0), (101, 96), (200, 1)]);
        assert_eq!(m.map(0), Some(0));
        assert_eq!(m.map(101), Some(96));
        assert_eq!(m.map(8), None);
    }
}
