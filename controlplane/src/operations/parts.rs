//! The admin page's own parts, as its handlers and the operations read
//! them: the wizard's settings and where they are kept, the diagnostics'
//! last run, where a relink stands and the call trace's progress. Below
//! the handlers (`wizard`, `diagnostics`, `relink`, `console`), so the
//! state that holds these parts names no handler.

use crate::diagnostics::{Checked, Plan};
use crate::http_error::HttpError;
use crate::onboarding::store::Store;
use crate::onboarding::{FieldErrors, Onboarding};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

/// The wizard's settings and where they go.
#[derive(Debug)]
pub struct Wizard {
    store: Store,
    current: Mutex<Onboarding>,
    pub(crate) config: PathBuf,
}

impl Wizard {
    /// The settings kept in `state_dir`, for the configuration at `config`.
    pub fn open(state_dir: &Path, config: &Path) -> anyhow::Result<Wizard> {
        let store = Store::new(state_dir);
        let current = store.load()?;
        Ok(Wizard {
            store,
            current: Mutex::new(current),
            config: config.to_owned(),
        })
    }

    /// What was entered so far.
    pub fn get(&self) -> Onboarding {
        self.current.lock().expect("wizard").clone()
    }

    /// Saves `next` in place of what was entered.
    pub(crate) fn save(&self, next: Onboarding) -> Result<(), HttpError> {
        self.store.save(&next).map_err(|e| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the settings cannot be kept: {e:#}"),
            )
        })?;
        *self.current.lock().expect("wizard") = next;
        Ok(())
    }

    /// Forgets every setting (data or factory reset).
    pub fn forget(&self) -> anyhow::Result<()> {
        self.store.forget()?;
        *self.current.lock().expect("wizard") = Onboarding::default();
        Ok(())
    }

    /// The configuration's problems with `next`'s settings laid over it
    /// (none to report while `[cloud]` is not there yet: the gateway
    /// keeps to its wizard until it is).
    pub(crate) fn check_config(&self, next: &Onboarding) -> Result<(), HttpError> {
        let table = crate::config::read_table(&self.config, &next.overlay())
            .map_err(|e| invalid(BTreeMap::from([("_config".into(), e.to_string())])))?;
        if !crate::config::configured(&table, "pbx") || !crate::config::configured(&table, "cloud")
        {
            return Ok(());
        }
        let base = self.config.parent().unwrap_or(Path::new("."));
        crate::config::parse_table(table, base)
            .map(|_| ())
            .map_err(|problems| {
                invalid(BTreeMap::from([(
                    "_config".into(),
                    format!(
                        "the gateway's configuration would not accept it: {}",
                        problems.join("; ")
                    ),
                )]))
            })
    }
}

pub(crate) fn invalid(errors: FieldErrors) -> HttpError {
    HttpError::with_body(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "error": "some fields need attention", "errors": errors }),
    )
}

/// A step's name as the page shows it.
fn step_label(step: &str) -> &str {
    match step {
        "gateway" => "Gateway",
        "pbx" => "PBX",
        "connect" => "Connect",
        "deployment" => "Deployment",
        "advanced" => "Advanced",
        other => other,
    }
}

/// The status word the page shows for onboarding.
pub fn status_word(o: &Onboarding) -> String {
    if o.complete {
        "Onboarding complete".into()
    } else {
        match o.next_step() {
            Some(step) => format!("Onboarding: {} step next", step_label(step)),
            None => "Onboarding: review the overview and finish".into(),
        }
    }
}

/// The last run.
#[derive(Debug, Clone)]
pub struct Report {
    /// When it ended.
    pub at: SystemTime,
    /// Each check.
    pub checks: Vec<Checked>,
}

/// The checks, their last run and the door to ask for another.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// What is checked (empty: not configured yet).
    pub plan: Plan,
    pub(crate) last: Mutex<Option<Report>>,
    pub(crate) running: std::sync::atomic::AtomicBool,
    pub(crate) again: Notify,
}

impl Diagnostics {
    /// Diagnostics running `plan`.
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            ..Self::default()
        }
    }

    /// The last run, if any.
    pub fn last(&self) -> Option<Report> {
        self.last.lock().expect("diagnostics").clone()
    }
}

/// Where a relink stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RelinkState {
    /// None asked for.
    #[default]
    Idle,
    /// Asked; the platform's answer awaited.
    Waiting {
        /// The gateway replaced.
        replaces: String,
        /// `stored` or `own`.
        network: String,
    },
    /// The platform refused, or the settings could not be taken.
    Failed(String),
}

pub fn state_json(r: &RelinkState) -> Value {
    match r {
        RelinkState::Idle => json!({ "state": "idle" }),
        RelinkState::Waiting { replaces, network } => {
            json!({ "state": "waiting", "replaces": replaces, "network": network })
        }
        RelinkState::Failed(why) => json!({ "state": "failed", "error": why }),
    }
}

/// The call trace running or last made.
#[derive(Debug, Clone)]
pub enum TraceState {
    /// None made yet.
    Idle,
    /// Capturing until then.
    Running {
        /// When it ends.
        until: Instant,
    },
    /// Made: its link and what it holds.
    Done(Value),
    /// It could not run.
    Failed(String),
}

/// The trace's state as the page and the platform read it.
pub fn trace_json(t: &TraceState) -> Value {
    match t {
        TraceState::Idle => json!({ "state": "idle" }),
        TraceState::Running { until } => json!({
            "state": "running",
            "ends_in_s": until.saturating_duration_since(Instant::now()).as_secs_f64().ceil(),
        }),
        TraceState::Done(v) => {
            let mut v = v.clone();
            v["state"] = json!("done");
            v
        }
        TraceState::Failed(why) => json!({ "state": "failed", "error": why }),
    }
}
