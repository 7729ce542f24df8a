//! The update journal: each step written (atomically, synced) before it
//! is taken, so a gateway cut at any point — power lost, SIGKILL — starts
//! again on a whole version and knows what happened.
//!
//! ```text
//! Staged ─apply─▶ Switching ─link switched─▶ Checking ─healthy─▶ Done
//!                    │ (cut here: the              │ (unhealthy, timed out,
//!                    │  critical phase)            │  or too many starts)
//!                    ▼                             ▼
//!               RollingBack ─link back─▶ Failed ◀──┘ (through RollingBack)
//! ```
//!
//! The switch itself is one `rename(2)` of the `current` link: whichever
//! side of it a cut falls, `current` names one whole version. A start
//! that finds `Switching` cannot know whether the new version ever ran,
//! so it rolls back and raises the critical-phase alarm.

use semver::Version;
use serde::{Deserialize, Serialize};

/// How many starts a new version gets to pass its health check (a
/// version that keeps failing to start is rolled back by the next).
pub const MAX_STARTS: u32 = 3;

/// The journal's one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Journal {
    /// Verified and staged; applied at `apply_at_ms` (UNIX ms).
    Staged {
        /// The new version.
        version: Version,
        /// The version running when it was staged.
        from: Version,
        /// When to apply it.
        apply_at_ms: u64,
    },
    /// The critical phase: `current` is being switched to `version`.
    Switching {
        /// The new version.
        version: Version,
        /// The version it replaces.
        from: Version,
    },
    /// Switched: `version` runs and must be healthy by `deadline_ms`.
    Checking {
        /// The new version.
        version: Version,
        /// The version to go back to.
        from: Version,
        /// The health check's deadline (UNIX ms) for this start.
        deadline_ms: u64,
        /// Starts of the new version so far.
        starts: u32,
    },
    /// `version` passed its health check.
    Done {
        /// The version now running.
        version: Version,
        /// The version it replaced.
        from: Version,
        /// When (UNIX ms).
        at_ms: u64,
    },
    /// Going back to `from`; `cause` says why.
    RollingBack {
        /// The version that failed.
        version: Version,
        /// The version going back to.
        from: Version,
        /// Why.
        cause: String,
        /// Whether a cut in the critical phase caused it.
        critical: bool,
    },
    /// The update to `version` failed; `from` runs.
    Failed {
        /// The version that failed.
        version: Version,
        /// The version running.
        from: Version,
        /// Why.
        cause: String,
        /// Whether a cut in the critical phase caused it.
        critical: bool,
        /// When (UNIX ms).
        at_ms: u64,
    },
}

/// What a starting gateway does about the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Nothing owed: run the version `current` names.
    Run,
    /// A new version's start: write `journal` (the start counted, a new
    /// deadline), run it, and check its health by the deadline.
    Check(Journal),
    /// Write `journal` (RollingBack), point `current` at `to`, write
    /// `then` (Failed), and run `to`.
    RollBack {
        /// The journal to write first.
        journal: Journal,
        /// The version to run.
        to: Version,
        /// The journal once `current` names `to`.
        then: Journal,
    },
}

/// Why a cut in the critical phase rolled back.
pub fn critical_cause(version: &Version) -> String {
    format!(
        "the gateway stopped in the critical phase of the update to {version} (power lost or killed); \
         the previous version runs"
    )
}

impl Journal {
    /// What a gateway starting at `now_ms` does, with `health_ms` for a
    /// new version's health check.
    pub fn at_start(&self, now_ms: u64, health_ms: u64) -> Start {
        match self {
            Journal::Staged { .. } | Journal::Done { .. } | Journal::Failed { .. } => Start::Run,
            Journal::Switching { version, from } => {
                self.roll_back_for(version, from, critical_cause(version), true, now_ms)
            }
            Journal::Checking {
                version,
                from,
                starts,
                ..
            } => {
                if *starts >= MAX_STARTS {
                    let cause = format!(
                        "version {version} stopped {starts} times before passing its health check"
                    );
                    self.roll_back_for(version, from, cause, false, now_ms)
                } else {
                    Start::Check(Journal::Checking {
                        version: version.clone(),
                        from: from.clone(),
                        deadline_ms: now_ms + health_ms,
                        starts: starts + 1,
                    })
                }
            }
            Journal::RollingBack {
                version,
                from,
                cause,
                critical,
            } => self.roll_back_for(version, from, cause.clone(), *critical, now_ms),
        }
    }

    fn roll_back_for(
        &self,
        version: &Version,
        from: &Version,
        cause: String,
        critical: bool,
        now_ms: u64,
    ) -> Start {
        Start::RollBack {
            journal: Journal::RollingBack {
                version: version.clone(),
                from: from.clone(),
                cause: cause.clone(),
                critical,
            },
            to: from.clone(),
            then: Journal::Failed {
                version: version.clone(),
                from: from.clone(),
                cause,
                critical,
                at_ms: now_ms,
            },
        }
    }

    /// The health check's verdict on a `Checking` journal: `Done`, or a
    /// roll-back with `why`. Other phases are left as they are.
    pub fn checked(&self, healthy: Result<(), String>, now_ms: u64) -> Option<Start> {
        let Journal::Checking { version, from, .. } = self else {
            return None;
        };
        Some(match healthy {
            Ok(()) => Start::Check(Journal::Done {
                version: version.clone(),
                from: from.clone(),
                at_ms: now_ms,
            }),
            Err(why) => self.roll_back_for(
                version,
                from,
                format!("version {version} failed its health check: {why}"),
                false,
                now_ms,
            ),
        })
    }

    /// The status word while this journal stands, if it overrides the
    /// gateway's own (`System update in progress`, `Update Error`).
    pub fn status_word(&self) -> Option<&'static str> {
        match self {
            Journal::Switching { .. } | Journal::Checking { .. } | Journal::RollingBack { .. } => {
                Some("System update in progress")
            }
            Journal::Failed { .. } => Some("Update Error"),
            Journal::Staged { .. } | Journal::Done { .. } => None,
        }
    }

    /// Reads a journal written by [`Journal::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(b).map_err(|e| format!("not an update journal: {e}"))
    }

    /// The journal as written to disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a journal serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn a_cut_in_the_critical_phase_rolls_back_and_says_so() {
        let j = Journal::Switching {
            version: v("0.2.0"),
            from: v("0.1.0"),
        };
        let Start::RollBack { journal, to, then } = j.at_start(1000, 60_000) else {
            panic!("a roll-back");
        };
        assert_eq!(to, v("0.1.0"));
        assert!(matches!(
            journal,
            Journal::RollingBack { critical: true, .. }
        ));
        assert!(matches!(
            then,
            Journal::Failed {
                critical: true,
                at_ms: 1000,
                ..
            }
        ));
        assert_eq!(then.status_word(), Some("Update Error"));
        // A cut while rolling back finishes the roll-back.
        assert!(
            matches!(journal.at_start(2000, 60_000), Start::RollBack { to, .. } if to == v("0.1.0"))
        );
    }

    #[test]
    fn a_new_version_gets_its_starts_then_is_rolled_back() {
        let mut j = Journal::Checking {
            version: v("0.2.0"),
            from: v("0.1.0"),
            deadline_ms: 0,
            starts: 0,
        };
        for n in 1..=MAX_STARTS {
            match j.at_start(u64::from(n) * 1000, 60_000) {
                Start::Check(next) => {
                    assert_eq!(
                        next,
                        Journal::Checking {
                            version: v("0.2.0"),
                            from: v("0.1.0"),
                            deadline_ms: u64::from(n) * 1000 + 60_000,
                            starts: n,
                        }
                    );
                    assert_eq!(next.status_word(), Some("System update in progress"));
                    j = next;
                }
                other => panic!("start {n}: {other:?}"),
            }
        }
        assert!(
            matches!(j.at_start(9000, 60_000), Start::RollBack { to, then: Journal::Failed { critical: false, .. }, .. } if to == v("0.1.0"))
        );
    }

    #[test]
    fn the_health_check_ends_the_update_either_way() {
        let j = Journal::Checking {
            version: v("0.2.0"),
            from: v("0.1.0"),
            deadline_ms: 5,
            starts: 1,
        };
        assert_eq!(
            j.checked(Ok(()), 7),
            Some(Start::Check(Journal::Done {
                version: v("0.2.0"),
                from: v("0.1.0"),
                at_ms: 7
            }))
        );
        let Some(Start::RollBack { then, .. }) = j.checked(Err("the PBX trunk is down".into()), 7)
        else {
            panic!("a roll-back");
        };
        let Journal::Failed { cause, .. } = &then else {
            panic!("failed");
        };
        assert_eq!(
            cause,
            "version 0.2.0 failed its health check: the PBX trunk is down"
        );
        assert_eq!(
            Journal::Done {
                version: v("0.2.0"),
                from: v("0.1.0"),
                at_ms: 1
            }
            .checked(Ok(()), 2),
            None
        );
    }

    #[test]
    fn settled_journals_need_nothing_and_round_trip() {
        for j in [
            Journal::Staged {
                version: v("0.2.0"),
                from: v("0.1.0"),
                apply_at_ms: 9,
            },
            Journal::Done {
                version: v("0.2.0"),
                from: v("0.1.0"),
                at_ms: 9,
            },
            Journal::Failed {
                version: v("0.2.0"),
                from: v("0.1.0"),
                cause: "x".into(),
                critical: false,
                at_ms: 9,
            },
        ] {
            assert_eq!(j.at_start(10, 10), Start::Run);
            assert_eq!(Journal::from_bytes(&j.to_bytes()).unwrap(), j);
        }
        assert!(Journal::from_bytes(b"{\"phase\":\"nonsense\"}").is_err());
        assert!(Journal::from_bytes(b"\xff").is_err());
    }
}
