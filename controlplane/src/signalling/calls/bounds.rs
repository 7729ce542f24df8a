//! How long a call may stay in each phase (RFC 3261 Timer C and 64×T1),
//! and the calls that stayed too long ended: cancelled with 408, or
//! abandoned and hung up.

use super::*;
use pbxlink_b2bua::call::Phase;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// RFC 3261 Timer C: an INVITE without a final answer this long is
/// cancelled (the RFC's floor, and SPEC's "3 minutes at most").
pub const TIMER_C: Duration = Duration::from_secs(180);

/// 64 × T1: how long a CANCEL's final response, or an answer's ACK, may
/// take before the gateway gives up on it.
pub const TIMER_64T1: Duration = Duration::from_secs(32);

/// The longest a call may stay in `phase` (none: its relay's media and
/// hold timeouts bound it, and the session timer when negotiated).
fn bound(phase: Phase, relay: bool) -> Option<Duration> {
    match phase {
        Phase::Proceeding => Some(TIMER_C),
        Phase::Cancelling | Phase::Answered => Some(TIMER_64T1),
        Phase::Confirmed if !relay => Some(TIMER_64T1),
        Phase::Confirmed | Phase::Ended => None,
    }
}

impl Calls {
    /// Ends what outstayed its phase's [`bound`]: Timer C cancels an
    /// unanswered INVITE (408 to the caller), a CANCEL or an answer left
    /// without reply gives up, a confirmed call without media hangs up.
    pub(super) fn bound_phases(&mut self, now: Instant) {
        let overdue: Vec<(u64, Phase)> = self
            .active
            .iter()
            .filter(|(_, a)| {
                bound(a.phase, a.relay)
                    .is_some_and(|b| now.saturating_duration_since(a.phase_since) >= b)
            })
            .map(|(id, a)| (*id, a.phase))
            .collect();
        for (id, phase) in overdue {
            let Some(a) = self.active.get_mut(&id) else {
                continue;
            };
            let why = match phase {
                Phase::Proceeding => {
                    a.call.timer_c();
                    "no final answer in 3 minutes (Timer C): cancelled, 408 to the caller"
                }
                Phase::Cancelling => {
                    a.call.abandon(408, "no final answer to the CANCEL");
                    "no final answer to the CANCEL"
                }
                Phase::Answered => {
                    a.call.hang_up("no ACK for the answer");
                    "no ACK for the answer"
                }
                Phase::Confirmed | Phase::Ended => {
                    a.call.hang_up("no media path");
                    "confirmed without a media path"
                }
            };
            tracing::info!("call {id}: {why}");
            // The next bound counts from here even if the phase stays.
            a.phase_since = now;
            self.counters
                .calls_timed_out
                .fetch_add(1, Ordering::Relaxed);
            self.flush(now, id);
        }
    }
}
