//! Why a packet was dropped, and the counters that remember it.
//!
//! The packet path never builds an error value: it returns one of these
//! `Copy` reasons and bumps its counter. Names are stable: they appear in
//! stats lines, metrics and the admin page.

/// A named reason for dropping a media packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than its headers (fixed header, CSRCs, extension, tag) claim.
    Truncated,
    /// RTP/RTCP version field is not 2.
    BadVersion,
    /// The RTP header extension runs past the packet.
    ExtensionOverrun,
    /// Padding count is zero or larger than the payload.
    BadPadding,
    /// A compound RTCP packet whose lengths, types or padding do not add up.
    MalformedRtcp,
    /// A telephone-event (RFC 4733) payload that is not whole 4-byte events.
    MalformedTelephoneEvent,
    /// Larger than the buffer leaves room for (packet plus SRTP trailer).
    TooLarge,
    /// SRTP/SRTCP authentication tag did not verify.
    AuthFailed,
    /// Plain RTCP where SRTCP is due: the whole datagram is a valid RTCP
    /// compound with no SRTCP trailer (a peer sending some RTCP in the
    /// clear, e.g. outside its SRTP session).
    Unprotected,
    /// Already seen: inside the replay window, or a repeated outgoing index.
    Replay,
    /// Older than the replay window.
    ReplayOld,
    /// RTP payload type not in this direction's payload-type map.
    PayloadTypeNotAllowed,
    /// Any other SRTP failure (key expired, cipher failure).
    SrtpError,
    /// A new SSRC to protect while the context already tracks its maximum;
    /// forgetting one would reuse its keystream.
    TooManySources,
    /// From an address other than the leg's configured or latched peer
    /// (LAN leg; on the cloud leg only unauthenticated packets are refused).
    UnexpectedSource,
    /// From, or to be sent to, an address outside the configured networks.
    OutsideNetworks,
    /// Nowhere to send it yet: no remote configured and none latched.
    NoDestination,
    /// The relay's direction (hold, inactive) does not let it flow.
    DirectionInactive,
    /// The kernel refused or failed the send.
    SendFailed,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 19;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::ExtensionOverrun,
        DropReason::BadPadding,
        DropReason::MalformedRtcp,
        DropReason::MalformedTelephoneEvent,
        DropReason::TooLarge,
        DropReason::AuthFailed,
        DropReason::Unprotected,
        DropReason::Replay,
        DropReason::ReplayOld,
        DropReason::PayloadTypeNotAllowed,
        DropReason::SrtpError,
        DropReason::TooManySources,
        DropReason::UnexpectedSource,
        DropReason::OutsideNetworks,
        DropReason::NoDestination,
        DropReason::DirectionInactive,
        DropReason::SendFailed,
    ];

    /// The counter's stable name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::ExtensionOverrun => "extension_overrun",
            DropReason::BadPadding => "bad_padding",
            DropReason::MalformedRtcp => "malformed_rtcp",
            DropReason::MalformedTelephoneEvent => "malformed_telephone_event",
            DropReason::TooLarge => "too_large",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Unprotected => "unprotected",
            DropReason::Replay => "replay",
            DropReason::ReplayOld => "replay_old",
            DropReason::PayloadTypeNotAllowed => "payload_type_not_allowed",
            DropReason::SrtpError => "srtp_error",
            DropReason::TooManySources => "too_many_sources",
            DropReason::UnexpectedSource => "unexpected_source",
            DropReason::OutsideNetworks => "outside_networks",
            DropReason::NoDestination => "no_destination",
            DropReason::DirectionInactive => "direction_inactive",
            DropReason::SendFailed => "send_failed",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One counter per [`DropReason`]. Plain integers: owned by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn bump(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Drops of every reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counters with their names.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }

    /// Adds another set of counters into this one.
    pub fn add(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_counter_order() {
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "{r} out of order");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counters_count_by_reason() {
        let mut c = DropCounters::default();
        c.bump(DropReason::AuthFailed);
        c.bump(DropReason::AuthFailed);
        c.bump(DropReason::Replay);
        assert_eq!(c.get(DropReason::AuthFailed), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.nonzero().count(), 2);
    }
}
