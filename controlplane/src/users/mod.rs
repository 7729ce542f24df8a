//! The PBX's users on the gateway (SPEC §5): the directory and its rules
//! (`pbxlink-users`, pure), kept on disk ([`store`]), fed by the PBX's pushes on
//! the user-config API ([`api`], HTTPS, port 8086), read by the admin API,
//! and watched by the CSTA link (every CTI and Softphone user is
//! monitored).
//!
//! A change is applied to a copy, saved, and only then made current: what
//! the gateway answers the PBX is what is on disk.

pub mod api;
pub mod store;

use pbxlink_users::{Directory, PbxUser, PushError, PushReport, Role};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use store::Store;
use tokio::sync::watch;

/// Why a change to the users did not take.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The push itself was refused.
    #[error(transparent)]
    Push(#[from] PushError),
    /// It could not be saved; nothing changed.
    #[error(
        "the users could not be saved ({0}); nothing changed: free space in the state directory, then push again"
    )]
    Save(std::io::Error),
}

/// What the user-config API counted.
#[derive(Debug, Default)]
pub struct UserCounters {
    /// Pushes taken (users and roles).
    pub pushes: AtomicU64,
    /// Pushes refused as a whole (bad JSON, too many users, unsaved).
    pub pushes_refused: AtomicU64,
    /// Requests refused for missing or wrong credentials.
    pub auth_failures: AtomicU64,
}

/// The users, shared by the APIs and the CSTA link.
#[derive(Debug)]
pub struct Users {
    directory: Mutex<Directory>,
    store: Store,
    devices: watch::Sender<Vec<String>>,
    softphones: watch::Sender<Vec<(String, Option<String>)>>,
    /// Bumped on every change that took.
    changes: watch::Sender<u64>,
    syncing: AtomicBool,
    /// What the user-config API counted.
    pub counters: UserCounters,
}

impl Users {
    /// The users saved in `store` (none the first time).
    pub fn load(store: Store) -> anyhow::Result<Arc<Self>> {
        let (roles, users) = store.load()?;
        let directory = Directory::from_parts(roles, users);
        let (devices, _) = watch::channel(directory.cti_devices());
        let (softphones, _) = watch::channel(directory.softphones());
        let (changes, _) = watch::channel(0);
        Ok(Arc::new(Self {
            directory: Mutex::new(directory),
            store,
            devices,
            softphones,
            changes,
            syncing: AtomicBool::new(false),
            counters: UserCounters::default(),
        }))
    }

    /// Reads the directory.
    pub fn read<T>(&self, f: impl FnOnce(&Directory) -> T) -> T {
        f(&self.directory.lock().expect("users lock"))
    }

    /// The CTI and Softphone users' extensions, as they change.
    pub fn cti_devices(&self) -> watch::Receiver<Vec<String>> {
        self.devices.subscribe()
    }

    /// The Softphone users and their SIP passwords, as they change.
    pub fn softphones(&self) -> watch::Receiver<Vec<(String, Option<String>)>> {
        self.softphones.subscribe()
    }

    /// Fires on every change of users or roles that took.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Marks a sync toward the cloud as running (or done): the PBX
    /// connection cannot be deleted meanwhile.
    pub fn set_sync_running(&self, running: bool) {
        self.syncing.store(running, Ordering::Relaxed);
    }

    /// Whether a sync is being applied.
    pub fn sync_running(&self) -> bool {
        self.syncing.load(Ordering::Relaxed)
    }

    /// Takes the PBX's users (`replace`: the whole list).
    pub fn push(&self, users: Vec<PbxUser>, replace: bool) -> Result<PushReport, ChangeError> {
        self.change(|d| d.push(users, replace).map_err(ChangeError::from))
    }

    /// Takes the PBX's role table.
    pub fn set_roles(&self, roles: Vec<Role>) -> Result<PushReport, ChangeError> {
        self.change(|d| d.set_roles(roles).map_err(ChangeError::from))
    }

    /// Removes one user; whether there was one.
    pub fn remove(&self, dn: &str) -> Result<bool, ChangeError> {
        self.change(|d| Ok(d.remove(dn)))
    }

    fn change<T>(
        &self,
        f: impl FnOnce(&mut Directory) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let mut current = self.directory.lock().expect("users lock");
        self.syncing.store(true, Ordering::Relaxed);
        let result = (|| {
            let mut next = current.clone();
            let out = f(&mut next)?;
            self.store
                .save(next.roles(), &next.raw_users())
                .map_err(ChangeError::Save)?;
            *current = next;
            Ok(out)
        })();
        self.syncing.store(false, Ordering::Relaxed);
        match &result {
            Ok(_) => {
                let devices = current.cti_devices();
                self.devices.send_if_modified(|d| {
                    let changed = *d != devices;
                    *d = devices;
                    changed
                });
                let softphones = current.softphones();
                self.softphones.send_if_modified(|s| {
                    let changed = *s != softphones;
                    *s = softphones;
                    changed
                });
                self.counters.pushes.fetch_add(1, Ordering::Relaxed);
                self.changes.send_modify(|n| *n += 1);
            }
            Err(_) => {
                self.counters.pushes_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}
