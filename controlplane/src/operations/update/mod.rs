//! Software updates (SPEC §4 step 5, §7): the platform offers a signed
//! release through the tunnel, the gateway takes it in pieces, verifies
//! it (the trusted key, newer than what runs), stages it, and applies it
//! at the wizard's update time or at once: switch, restart with drain,
//! health check, roll back by itself when the check fails.
//! The decisions are `pbxlink-update`'s (sans-IO); this module does the
//! I/O: [`releases`] on disk, [`launch`] at start, [`apply`] when due,
//! [`health`] after a switch.
//!
//! The update unit is a release directory with an atomic `current` link
//! in the state directory, not the Debian package: the gateway runs as
//! its own unprivileged user on a read-only system and cannot run dpkg,
//! and a link's rename is the one step that makes the switch atomic and
//! the roll-back instant (docs: Updates).

pub mod apply;
pub mod health;
pub mod launch;
pub mod releases;

use crate::config::UpdateSettings;
use crate::node_control::NodeControl;
use base64::Engine;
use pbxlink_update::Version;
use pbxlink_update::journal::Journal;
use pbxlink_update::release::{self, Refused};
use pbxlink_update::transfer::Transfer;
use releases::Releases;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, OnceLock};

/// The alarm a cut in the critical phase raises (the vendor's name).
pub const CRITICAL_PHASE_FAILED: &str = "CLGW_ALARM_CRITICAL_PHASE_FAILED";
/// The alarm a refused, failed or rolled-back update raises.
pub const UPDATE_FAILED: &str = "update_failed";

/// What an update tells the operator and the platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// An `update` event: `{"version", "phase", "cause"?}`.
    Event(Value),
    /// An alarm raised (code, text), told to the platform too when the
    /// flag is set (once per failure: a restart raises it on the page
    /// again without a second event).
    Alarm(&'static str, String, bool),
}

/// Where reports go (the alarms list and the platform's events), set once
/// the node's state exists.
pub type Reporter = Box<dyn Fn(Report) + Send + Sync>;

/// A release arriving.
#[derive(Debug)]
struct Incoming {
    version: Version,
    signature: String,
    now: bool,
    transfer: Transfer,
    bytes: Vec<u8>,
}

/// The gateway's updates.
pub struct Updater {
    releases: Releases,
    running: Version,
    settings: UpdateSettings,
    control: NodeControl,
    /// The wizard's update time (`HH:MM`), read when a release is staged.
    update_time: Box<dyn Fn() -> Option<String> + Send + Sync>,
    reporter: OnceLock<Reporter>,
    incoming: Mutex<Option<Incoming>>,
    journal: Mutex<Option<Journal>>,
    /// Wakes the apply task when a release is staged.
    pub(crate) staged: tokio::sync::Notify,
    /// A test's pause inside the critical phase (`PBXLINK_TEST_SWITCH_PAUSE_MS`).
    pause: std::time::Duration,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("running", &self.running)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

/// The version this binary is.
pub fn running_version() -> Version {
    Version::parse(super::versions::GATEWAY).expect("the build sets a version")
}

impl Updater {
    /// The updater of a gateway whose state is in `state_dir`, the
    /// journal as the start left it.
    pub fn new(
        state_dir: &std::path::Path,
        settings: UpdateSettings,
        control: NodeControl,
        journal: Option<Journal>,
        update_time: Box<dyn Fn() -> Option<String> + Send + Sync>,
    ) -> Arc<Self> {
        let pause = std::env::var("PBXLINK_TEST_SWITCH_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis);
        Arc::new(Self {
            releases: Releases::new(state_dir),
            running: running_version(),
            settings,
            control,
            update_time,
            reporter: OnceLock::new(),
            incoming: Mutex::new(None),
            journal: Mutex::new(journal),
            staged: tokio::sync::Notify::new(),
            pause,
        })
    }

    /// Where reports go from now on.
    pub fn set_reporter(&self, r: Reporter) {
        let _ = self.reporter.set(r);
    }

    fn report(&self, r: Report) {
        match &r {
            Report::Event(body) => tracing::info!("update: {body}"),
            Report::Alarm(code, text, _) => tracing::warn!("alarm raised: {code}: {text}"),
        }
        if let Some(to) = self.reporter.get() {
            to(r);
        }
    }

    /// The journal as it stands.
    pub fn journal(&self) -> Option<Journal> {
        self.journal.lock().expect("journal").clone()
    }

    fn set_journal(&self, j: Journal) -> Result<(), String> {
        self.releases
            .write_journal(&j)
            .map_err(|e| format!("writing the update journal: {e}"))?;
        *self.journal.lock().expect("journal") = Some(j);
        Ok(())
    }

    /// The status word an update overrides the gateway's with.
    pub fn status_word(&self) -> Option<String> {
        let j = self.journal()?;
        let word = j.status_word()?;
        Some(match &j {
            Journal::Failed { cause, .. } => format!("{word}: {cause}"),
            _ => word.to_owned(),
        })
    }

    /// Where updates stand, for `/api/status` and the platform.
    pub fn json(&self) -> Value {
        let incoming = self.incoming.lock().expect("incoming");
        json!({
            "running": self.running.to_string(),
            "journal": self.journal(),
            "receiving": incoming.as_ref().map(|i| json!({
                "version": i.version.to_string(),
                "have": i.transfer.have(),
                "size": i.transfer.size(),
            })),
            "trusted_key": self.settings.public_key.is_some(),
        })
    }

    /// A release is refused: the journal says so (`Update Error` until
    /// the next update), the platform and the alarms hear why.
    fn refuse(&self, version: &Version, cause: String) -> String {
        let j = Journal::Failed {
            version: version.clone(),
            from: self.running.clone(),
            cause: cause.clone(),
            critical: false,
            at_ms: crate::events::unix_ms(),
        };
        if let Err(e) = self.set_journal(j) {
            tracing::warn!("update: {e}");
        }
        self.report(Report::Event(
            json!({ "version": version.to_string(), "phase": "refused", "cause": cause }),
        ));
        self.report(Report::Alarm(
            UPDATE_FAILED,
            format!("Update Error: {version}: {cause}"),
            true,
        ));
        cause
    }

    /// `update_offer {"version", "size", "signature", "apply"}`: a release
    /// is coming; answers `{"have": 0}`.
    pub fn offer(&self, args: &Value) -> Result<Value, String> {
        if self.settings.public_key.is_none() {
            return Err("updates are off: [update] public_key is not set".into());
        }
        let version = release::parse_version(args["version"].as_str().ok_or("version: missing")?)?;
        if version <= self.running {
            return Err(Refused::NotNewer {
                offered: version,
                running: self.running.clone(),
            }
            .to_string());
        }
        if self
            .journal()
            .is_some_and(|j| j.status_word() == Some("System update in progress"))
        {
            return Err("an update is in progress".into());
        }
        let size = args["size"].as_u64().ok_or("size: the release's bytes")?;
        let signature = args["signature"]
            .as_str()
            .ok_or("signature: the release's minisign signature")?
            .to_owned();
        let now = match args["apply"].as_str() {
            None | Some("scheduled") => false,
            Some("now") => true,
            Some(other) => return Err(format!("apply: \"now\" or \"scheduled\", not {other:?}")),
        };
        let transfer = Transfer::new(size).map_err(|e| e.to_string())?;
        *self.incoming.lock().expect("incoming") = Some(Incoming {
            version: version.clone(),
            signature,
            now,
            transfer,
            bytes: Vec::with_capacity(size as usize),
        });
        self.report(Report::Event(
            json!({ "version": version.to_string(), "phase": "receiving", "size": size }),
        ));
        Ok(json!({ "have": 0 }))
    }

    /// `update_piece {"version", "offset", "data_base64"}`: the next
    /// piece; answers `{"have"}`. The last piece starts the check and
    /// the staging in the background (an `update` event tells how it
    /// ended: `staged` or `refused`).
    pub fn piece(self: &Arc<Self>, args: &Value) -> Result<Value, String> {
        let version = release::parse_version(args["version"].as_str().ok_or("version: missing")?)?;
        let offset = args["offset"].as_u64().ok_or("offset: a byte count")?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(args["data_base64"].as_str().ok_or("data_base64: missing")?)
            .map_err(|e| format!("data_base64: {e}"))?;
        let mut slot = self.incoming.lock().expect("incoming");
        let inc = slot
            .as_mut()
            .filter(|i| i.version == version)
            .ok_or_else(|| format!("no offer of {version} is being received"))?;
        let have = inc
            .transfer
            .piece(offset, data.len() as u64)
            .map_err(|e| e.to_string())?;
        inc.bytes.extend_from_slice(&data);
        if !inc.transfer.complete() {
            return Ok(json!({ "have": have }));
        }
        let inc = slot.take().expect("complete");
        drop(slot);
        let me = self.clone();
        std::thread::Builder::new()
            .name("update-stage".into())
            .spawn(move || me.verify_and_stage(inc))
            .map_err(|e| format!("starting the check: {e}"))?;
        Ok(json!({ "have": have, "complete": true }))
    }

    fn verify_and_stage(&self, inc: Incoming) {
        let key = self.settings.public_key.as_deref().unwrap_or_default();
        let verified =
            match release::verify(&inc.bytes, &inc.signature, key, &inc.version, &self.running) {
                Ok(v) => v,
                Err(e) => {
                    self.refuse(&inc.version, e.to_string());
                    return;
                }
            };
        if let Err(why) = self.releases.stage(&inc.version, &inc.bytes) {
            self.refuse(&inc.version, why);
            return;
        }
        let exe = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| format!("finding the running binary: {e}"));
        let kept = exe.and_then(|exe| {
            self.releases
                .keep_running(&self.running, &exe)
                .map_err(|e| format!("keeping {} to roll back to: {e}", self.running))
        });
        if let Err(why) = kept {
            self.refuse(&inc.version, why);
            return;
        }
        let now = crate::events::unix_ms();
        let time = if inc.now { None } else { (self.update_time)() };
        let apply_at_ms = match pbxlink_update::schedule::next_apply(time.as_deref(), now) {
            Ok(at) => at,
            Err(why) => {
                tracing::warn!("update: the update time {why}; applying at once");
                now
            }
        };
        let j = Journal::Staged {
            version: inc.version.clone(),
            from: self.running.clone(),
            apply_at_ms,
        };
        if let Err(why) = self.set_journal(j) {
            self.refuse(&inc.version, why);
            return;
        }
        self.report(Report::Event(json!({
            "version": inc.version.to_string(),
            "phase": "staged",
            "sha256": verified.sha256,
            "apply_at_ms": apply_at_ms,
        })));
        self.staged.notify_one();
    }
}

impl Updater {
    /// At start: the alarm a failed update left up (on the page again;
    /// told to the platform only when this start rolled back).
    pub fn raise_left_alarms(&self, rolled_back_now: bool) {
        let Some(Journal::Failed {
            version,
            cause,
            critical,
            ..
        }) = self.journal()
        else {
            return;
        };
        if rolled_back_now {
            self.report(Report::Event(json!({
                "version": version.to_string(),
                "phase": "rolled_back",
                "cause": cause,
                "critical": critical,
            })));
        }
        let code = if critical {
            CRITICAL_PHASE_FAILED
        } else {
            UPDATE_FAILED
        };
        self.report(Report::Alarm(
            code,
            format!("Update Error: {version}: {cause}"),
            rolled_back_now,
        ));
    }

    /// Applies the staged release now: the journal's `Switching`, the
    /// link's rename, `Checking`, then a restart (drained) into it.
    pub fn switch_now(&self) -> Result<Version, String> {
        let Some(Journal::Staged { version, from, .. }) = self.journal() else {
            return Err("no release is staged".into());
        };
        self.set_journal(Journal::Switching {
            version: version.clone(),
            from: from.clone(),
        })?;
        self.report(Report::Event(
            json!({ "version": version.to_string(), "phase": "applying" }),
        ));
        if let Err(e) = self.releases.switch(&version, self.pause) {
            let cause = format!("switching to {version}: {e}");
            let _ = self.releases.switch(&from, std::time::Duration::ZERO);
            return Err(self.refuse(&version, cause));
        }
        let deadline_ms = crate::events::unix_ms() + self.settings.health.as_millis() as u64;
        self.set_journal(Journal::Checking {
            version: version.clone(),
            from,
            deadline_ms,
            starts: 0,
        })?;
        self.control
            .restart(&format!("software update to {version}"));
        Ok(version)
    }

    /// The health check's verdict on the version running after a switch:
    /// `Done`, or roll back to the previous one and restart into it.
    pub fn finish(&self, healthy: Result<(), String>) {
        let Some(j) = self.journal() else { return };
        match j.checked(healthy, crate::events::unix_ms()) {
            None | Some(pbxlink_update::journal::Start::Run) => {}
            Some(pbxlink_update::journal::Start::Check(done)) => {
                if let Journal::Done { version, from, .. } = &done {
                    self.releases.prune(&[version, from]);
                    self.report(Report::Event(
                        json!({ "version": version.to_string(), "phase": "done", "from": from.to_string() }),
                    ));
                }
                if let Err(e) = self.set_journal(done) {
                    tracing::warn!("update: {e}");
                }
            }
            Some(pbxlink_update::journal::Start::RollBack { journal, to, then }) => {
                let written = self
                    .set_journal(journal)
                    .and_then(|()| {
                        self.releases
                            .switch(&to, std::time::Duration::ZERO)
                            .map_err(|e| format!("switching back to {to}: {e}"))
                    })
                    .and_then(|()| self.set_journal(then.clone()));
                if let Err(e) = written {
                    tracing::warn!("update: rolling back: {e}");
                }
                if let Journal::Failed { version, cause, .. } = &then {
                    self.report(Report::Event(json!({
                        "version": version.to_string(),
                        "phase": "rolled_back",
                        "cause": cause,
                        "critical": false,
                    })));
                    self.report(Report::Alarm(
                        UPDATE_FAILED,
                        format!("Update Error: {version}: {cause}"),
                        true,
                    ));
                }
                self.control.restart(&format!("update rolled back to {to}"));
            }
        }
    }
}
