//! `[users]`: the PBX's user-config API.

use super::defaults::*;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsersSection {
    pub(super) listen: Option<String>,
    #[serde(default = "push_username")]
    pub(super) push_username: String,
    pub(super) push_password: Option<String>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    #[serde(default = "history_calls")]
    pub(super) history_calls: usize,
}

impl Default for UsersSection {
    fn default() -> Self {
        Self {
            listen: None,
            push_username: push_username(),
            push_password: None,
            cert: None,
            key: None,
            history_calls: history_calls(),
        }
    }
}

/// The user-config API's settings.
#[derive(Clone)]
pub struct UsersApiConfig {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// The PBX's credentials.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Certificate and key given by the operator (none: made and kept in
    /// the state directory).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for UsersApiConfig {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersApiConfig")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The user-config API's settings, or the problems with them.
pub(super) fn users_api(
    users: &UsersSection,
    lan: Option<IpAddr>,
    problems: &mut Vec<String>,
) -> Option<UsersApiConfig> {
    let listen = match users.listen.as_deref() {
        Some("off") => return None,
        Some(a) => match a.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "[users] listen = {a:?}: an address and port (e.g. \"192.168.1.20:8086\") or \"off\""
                ));
                return None;
            }
        },
        None => lan.map(|ip| std::net::SocketAddr::new(ip, 8086)),
    };
    let Some(password) = &users.push_password else {
        if users.listen.is_some() {
            problems.push(
                "[users] listen needs push_password: the PBX must authenticate its pushes".into(),
            );
        }
        return None;
    };
    if password.chars().count() < 12 {
        problems.push("[users] push_password needs at least 12 characters".into());
    }
    if users.push_username.is_empty() || users.push_username.contains(':') {
        problems.push("[users] push_username: not empty, without ':'".into());
    }
    let tls = match (&users.cert, &users.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            problems.push("[users] cert and key go together".into());
            None
        }
    };
    Some(UsersApiConfig {
        listen: listen?,
        username: users.push_username.clone(),
        password: password.clone(),
        tls,
    })
}
