//! Who may use the admin page: the account admin (one account, SPEC §4's
//! password rules), its password kept as an Argon2id hash in
//! `state_dir/admin.json` (mode 0600), sessions as signed cookies, a CSRF
//! token per session, and login throttling per address.
//!
//! A session is a cookie `v1.ID.EXPIRES.EPOCH.MAC`: a random id, when it
//! ends (Unix seconds), the account's epoch, and an HMAC-SHA256 over them
//! with a key kept in `state_dir/session.key` (0600). Nothing is kept per
//! session, so sessions survive the gateway restarting itself (the wizard
//! applies settings that way); logging out or changing the password moves
//! the epoch on, which ends every session. The CSRF token is an HMAC of
//! the session id: requests that change something must send it in
//! `X-CSRF-Token` (with the cookie `SameSite=Strict` on top).
//!
//! Time is an input (Unix seconds for cookies, `Instant` for throttling).

use crate::throttle::Throttle;
use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "pbxlink_session";
/// How long a session lasts.
pub const SESSION: Duration = Duration::from_secs(12 * 3600);
/// Wrong passwords from one address before it waits, and the window.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What is kept on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    /// PHC string of the password's Argon2id hash (none: not set yet).
    password: Option<String>,
    /// Sessions from an older epoch are over.
    epoch: u32,
}

/// A session a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id (hex).
    pub id: String,
    /// When it ends (Unix seconds).
    pub expires: u64,
    /// The token requests that change something must carry.
    pub csrf: String,
}

/// Why a login failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// No password is set: the first login sets it.
    NoPassword,
    /// Too many wrong passwords from this address: wait this long.
    Throttled(Duration),
    /// Wrong password.
    Wrong,
}

/// Why a password was not set.
#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    /// The rules it breaks.
    Rules(Vec<String>),
    /// A password is set already (change it with the old one).
    AlreadySet,
    /// The old password is wrong.
    Wrong,
    /// It could not be kept.
    Store(String),
}

/// The admin account and its sessions.
#[derive(Debug)]
pub struct Access {
    path: PathBuf,
    key: [u8; 32],
    account: Mutex<Account>,
    throttle: Mutex<Throttle>,
}

type HmacSha256 = Hmac<Sha256>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Access {
    /// The account kept in `state_dir` (made empty at first start).
    pub fn open(state_dir: &Path) -> anyhow::Result<Access> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let key_path = state_dir.join("session.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k.try_into().expect("32 bytes"),
            _ => {
                let k: [u8; 32] = crate::random::random();
                crate::state_file::write(&key_path, &k)
                    .with_context(|| format!("writing {}", key_path.display()))?;
                k
            }
        };
        let path = state_dir.join("admin.json");
        let account = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not the admin account", path.display()))?,
            Err(_) => Account::default(),
        };
        Ok(Access {
            path,
            key,
            account: Mutex::new(account),
            throttle: Mutex::new(Throttle::new(MAX_FAILURES, FAILURE_WINDOW)),
        })
    }

    /// Whether the admin password is set.
    pub fn has_password(&self) -> bool {
        self.account.lock().expect("account").password.is_some()
    }

    fn save(&self, a: &Account) -> Result<(), SetError> {
        let bytes = serde_json::to_vec_pretty(a).map_err(|e| SetError::Store(e.to_string()))?;
        crate::state_file::write(&self.path, &bytes)
            .map_err(|e| SetError::Store(format!("writing {}: {e}", self.path.display())))
    }

    fn hash(password: &str) -> Result<String, SetError> {
        let salt = SaltString::encode_b64(&crate::random::random::<16>())
            .map_err(|e| SetError::Store(e.to_string()))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| SetError::Store(e.to_string()))
    }

    fn verify(hash: &str, password: &str) -> bool {
        PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    }

    /// Sets the password, when none is set yet (the first login).
    pub fn set_first(&self, password: &str, company: &[&str]) -> Result<(), SetError> {
        let rules = pbxlink_onboarding::password::problems(password, company);
        if !rules.is_empty() {
            return Err(SetError::Rules(rules));
        }
        let mut a = self.account.lock().expect("account");
        if a.password.is_some() {
            return Err(SetError::AlreadySet);
        }
        let next = Account {
            password: Some(Self::hash(password)?),
            epoch: a.epoch,
        };
        self.save(&next)?;
        *a = next;
        Ok(())
    }

    /// Changes the password (the old one given); every session ends.
    pub fn change(&self, old: &str, new: &str, company: &[&str]) -> Result<(), SetError> {
        let mut a = self.account.lock().expect("account");
        if !a.password.as_deref().is_some_and(|h| Self::verify(h, old)) {
            return Err(SetError::Wrong);
        }
        let rules = pbxlink_onboarding::password::problems(new, company);
        if !rules.is_empty() {
            return Err(SetError::Rules(rules));
        }
        let next = Account {
            password: Some(Self::hash(new)?),
            epoch: a.epoch.wrapping_add(1),
        };
        self.save(&next)?;
        *a = next;
        Ok(())
    }

    /// Forgets the password (a factory reset): the next visitor sets it.
    pub fn forget(&self) -> Result<(), SetError> {
        let mut a = self.account.lock().expect("account");
        let next = Account {
            password: None,
            epoch: a.epoch.wrapping_add(1),
        };
        self.save(&next)?;
        *a = next;
        Ok(())
    }

    /// A login from `peer`: a new session, or why not.
    pub fn login(
        &self,
        peer: IpAddr,
        password: &str,
        now: Instant,
        unix_now: u64,
    ) -> Result<Session, LoginError> {
        if let Some(wait) = self.throttle.lock().expect("throttle").wait(peer, now) {
            return Err(LoginError::Throttled(wait));
        }
        let a = self.account.lock().expect("account");
        let Some(hash) = a.password.as_deref() else {
            return Err(LoginError::NoPassword);
        };
        if !Self::verify(hash, password) {
            self.throttle.lock().expect("throttle").failed(peer, now);
            return Err(LoginError::Wrong);
        }
        self.throttle.lock().expect("throttle").succeeded(peer);
        drop(a);
        Ok(self.issue(unix_now))
    }

    /// Every session ends (logging out).
    pub fn end_sessions(&self) -> Result<(), SetError> {
        let mut a = self.account.lock().expect("account");
        let next = Account {
            password: a.password.clone(),
            epoch: a.epoch.wrapping_add(1),
        };
        self.save(&next)?;
        *a = next;
        Ok(())
    }

    fn mac(&self, text: &str) -> String {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(text.as_bytes());
        hex(&m.finalize().into_bytes())
    }

    fn issue(&self, unix_now: u64) -> Session {
        let id = hex(&crate::random::random::<16>());
        let expires = unix_now + SESSION.as_secs();
        Session {
            csrf: self.mac(&format!("csrf.{id}"))[..32].to_owned(),
            id,
            expires,
        }
    }

    /// The cookie's value for `session`.
    pub fn cookie_value(&self, s: &Session) -> String {
        let epoch = self.account.lock().expect("account").epoch;
        let payload = format!("v1.{}.{}.{epoch}", s.id, s.expires);
        let mac = self.mac(&payload);
        format!("{payload}.{mac}")
    }

    /// The session a cookie's value holds, when it is genuine, current and
    /// of this epoch.
    pub fn session(&self, value: &str, unix_now: u64) -> Option<Session> {
        let (payload, mac) = value.rsplit_once('.')?;
        let expected = self.mac(payload);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            mac.as_bytes(),
        )) {
            return None;
        }
        let mut parts = payload.split('.');
        let (v, id, expires, epoch) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires: u64 = expires.parse().ok()?;
        let epoch: u32 = epoch.parse().ok()?;
        if v != "v1" || expires <= unix_now || epoch != self.account.lock().expect("account").epoch
        {
            return None;
        }
        Some(Session {
            csrf: self.mac(&format!("csrf.{id}"))[..32].to_owned(),
            id: id.to_owned(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pbxlink-access-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_first_login_sets_the_password_and_sessions_follow_it() {
        let d = dir("first");
        let a = Access::open(&d).unwrap();
        let (t0, peer) = (Instant::now(), "10.0.0.9".parse().unwrap());
        assert_eq!(a.login(peer, "x", t0, 1000), Err(LoginError::NoPassword));
        assert!(matches!(a.set_first("short", &[]), Err(SetError::Rules(r)) if r.len() == 2));
        a.set_first("Gateway-2026", &["ACME"]).unwrap();
        assert_eq!(a.set_first("Other-2026x", &[]), Err(SetError::AlreadySet));
        let s = a.login(peer, "Gateway-2026", t0, 1000).unwrap();
        let cookie = a.cookie_value(&s);
        assert_eq!(a.session(&cookie, 1001), Some(s.clone()));
        // Kept across a restart (the same state directory).
        let again = Access::open(&d).unwrap();
        assert_eq!(again.session(&cookie, 1001), Some(s.clone()));
        // Tampered, expired, or after logging out: no session.
        let tampered = cookie.replacen("v1.", "v1.0", 1);
        assert_eq!(a.session(&tampered, 1001), None);
        assert_eq!(a.session(&cookie, 1000 + SESSION.as_secs()), None);
        a.end_sessions().unwrap();
        assert_eq!(a.session(&cookie, 1001), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn wrong_passwords_are_throttled_per_address() {
        let d = dir("throttle");
        let a = Access::open(&d).unwrap();
        a.set_first("Gateway-2026", &[]).unwrap();
        let t0 = Instant::now();
        let (bad, good): (IpAddr, IpAddr) =
            ("10.0.0.66".parse().unwrap(), "10.0.0.7".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            assert_eq!(a.login(bad, "guess", t0, 1), Err(LoginError::Wrong));
        }
        assert!(matches!(
            a.login(bad, "Gateway-2026", t0, 1),
            Err(LoginError::Throttled(_))
        ));
        assert!(a.login(good, "Gateway-2026", t0, 1).is_ok());
        assert!(a.login(bad, "Gateway-2026", t0 + FAILURE_WINDOW, 1).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
