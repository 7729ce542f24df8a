//! Support access (SPEC §7 "enable support SSH for 24 h"): OpenSSH's own
//! server (`/usr/sbin/sshd`, Debian's openssh-server) started by the
//! gateway with a configuration of its own, for the one public key the
//! platform or the operator supplies:
//!
//! - key only (no passwords, no keyboard-interactive), never root: the
//!   login is the gateway's own account (`[support] ssh_user`), which
//!   sshd runs as; no forwarding of any kind;
//! - on the LAN address only (`[support] ssh_port`, 22);
//! - for a window (`[support] window_seconds`, 24 hours) whose end is kept
//!   on disk (`support-ssh/until`): a restart starts sshd again for what
//!   is left, and nothing survives the end — sshd stopped, the key gone.
//!
//! Everything sshd logs about logins comes back as [`Seen`]: the console
//! (`super::console`) logs it and tells the platform.

use crate::config::SupportSettings;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// OpenSSH's server, from Debian's openssh-server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The key types support may use.
const KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "ssh-rsa",
];

/// What sshd reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A login with the support key.
    Login {
        /// The account.
        user: String,
        /// From where (address and port).
        from: String,
        /// The key's fingerprint.
        key: String,
    },
    /// A refused attempt (another key, a password, another user).
    Refused {
        /// sshd's line.
        line: String,
    },
    /// sshd stopped by itself.
    Exited(String),
}

/// Support's SSH access: its settings, files and server.
#[derive(Debug)]
pub struct SupportSsh {
    settings: SupportSettings,
    dir: PathBuf,
    server: Mutex<Option<(Child, SystemTime)>>,
    /// Wakes the watch of the window's end when a window opens.
    pub(crate) opened: tokio::sync::Notify,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Checks a public key line (`TYPE BASE64 [comment]`); the line kept.
pub fn check_key(key: &str) -> Result<String, String> {
    use base64::Engine;
    let key = key.trim();
    if key.contains(['\n', '\r']) {
        return Err("key: one public key, on one line".into());
    }
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("key: an OpenSSH public key (\"ssh-ed25519 AAAA… support@vendor\")".into());
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(format!(
            "key: type {kind:?} is not one of {}",
            KEY_TYPES.join(", ")
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| "key: its second field is not base64".to_owned())?;
    // The blob starts with its own type, length-prefixed.
    let named = bytes
        .get(4..4 + kind.len())
        .is_some_and(|t| t == kind.as_bytes());
    if !named {
        return Err(format!("key: the key's data does not say {kind}"));
    }
    Ok(key.to_owned())
}

/// Reads one of sshd's log lines.
pub fn seen(line: &str) -> Option<Seen> {
    if let Some(rest) = line.strip_prefix("Accepted publickey for ") {
        let mut w = rest.split_whitespace();
        let user = w.next()?.to_owned();
        let (_, ip, _, port) = (w.next()?, w.next()?, w.next()?, w.next()?);
        let key = rest.rsplit(' ').next().unwrap_or_default().to_owned();
        return Some(Seen::Login {
            user,
            from: format!("{ip}:{port}"),
            key,
        });
    }
    let refused = [
        "Failed ",
        "Invalid user",
        "Connection closed by authenticating user",
        "Connection closed by invalid user",
        "Disconnected from authenticating user",
    ]
    .iter()
    .any(|p| line.starts_with(p))
        || line.contains("not allowed because");
    refused.then(|| Seen::Refused {
        line: line.to_owned(),
    })
}

impl SupportSsh {
    /// Support access with `settings`, its files in `state_dir/support-ssh`.
    pub fn new(settings: SupportSettings, state_dir: &Path) -> Self {
        Self {
            settings,
            dir: state_dir.join("support-ssh"),
            server: Mutex::new(None),
            opened: tokio::sync::Notify::new(),
        }
    }

    fn until_file(&self) -> PathBuf {
        self.dir.join("until")
    }

    /// The end of the window kept on disk, if one is.
    pub fn saved_until(&self) -> Option<SystemTime> {
        let s = std::fs::read_to_string(self.until_file()).ok()?;
        let secs: u64 = s.trim().parse().ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The end of the running window.
    pub fn until(&self) -> Option<SystemTime> {
        self.server.lock().expect("sshd").as_ref().map(|(_, u)| *u)
    }

    /// Where it stands, for the page and the platform.
    pub fn json(&self, now: SystemTime) -> Value {
        let until = self.until();
        json!({
            "enabled": until.is_some(),
            "until": until.map(crate::cdr::rfc3339),
            "seconds_left": until.map(|u| u.duration_since(now).map_or(0, |d| d.as_secs())),
            "listen": self.settings.listen.map(|a| a.to_string()),
            "user": self.settings.user,
            "window_seconds": self.settings.window.as_secs(),
        })
    }

    /// Opens a window for `key` from `now` (a new key replaces the one
    /// before and starts the window again); its end.
    pub fn open(
        &self,
        key: &str,
        now: SystemTime,
        seen: impl Fn(Seen) + Send + 'static,
    ) -> Result<SystemTime, String> {
        let line = check_key(key)?;
        self.stop();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("making {}: {e}", self.dir.display()))?;
        let until = now + self.settings.window;
        crate::state_file::write(
            &self.dir.join("authorized_keys"),
            format!("restrict,pty {line}\n").as_bytes(),
        )
        .and_then(|()| {
            crate::state_file::write(&self.until_file(), unix(until).to_string().as_bytes())
        })
        .map_err(|e| format!("keeping the support key: {e}"))?;
        self.serve(until, seen)
    }

    /// After a restart: the window kept on disk, if it has time left.
    pub fn resume(
        &self,
        now: SystemTime,
        seen: impl Fn(Seen) + Send + 'static,
    ) -> Option<Result<SystemTime, String>> {
        let until = self.saved_until()?;
        if until <= now {
            self.forget();
            return None;
        }
        Some(self.serve(until, seen))
    }

    /// Starts sshd for the window ending at `until`.
    fn serve(
        &self,
        until: SystemTime,
        seen: impl Fn(Seen) + Send + 'static,
    ) -> Result<SystemTime, String> {
        let listen = self.settings.listen.ok_or(
            "support SSH listens on the LAN address only, and [gateway] lan_address is not set",
        )?;
        if !Path::new(SSHD).exists() {
            return Err(format!(
                "support SSH needs OpenSSH's server ({SSHD}; Debian package openssh-server)"
            ));
        }
        let user = nix::unistd::User::from_name(&self.settings.user)
            .ok()
            .flatten()
            .ok_or_else(|| format!("no account {:?} to log in as", self.settings.user))?;
        let me = nix::unistd::geteuid();
        if !me.is_root() && me != user.uid {
            return Err(format!(
                "support SSH logs in as {} and the gateway runs as another account",
                self.settings.user
            ));
        }
        let host_key = self.dir.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            let made = Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "pbxlink support",
                    "-f",
                ])
                .arg(&host_key)
                .output()
                .map_err(|e| format!("making the host key (ssh-keygen): {e}"))?;
            if !made.status.success() {
                return Err(format!(
                    "making the host key: {}",
                    String::from_utf8_lossy(&made.stderr).trim()
                ));
            }
        }
        let config = self.dir.join("sshd_config");
        let text = format!(
            "# Written by pbxlink for support access; rewritten at each start.\n\
             ListenAddress {listen}\n\
             HostKey {hk}\n\
             AuthorizedKeysFile {ak}\n\
             AuthenticationMethods publickey\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitEmptyPasswords no\n\
             PermitRootLogin no\n\
             AllowUsers {user}\n\
             UsePAM no\n\
             StrictModes no\n\
             PidFile none\n\
             LogLevel VERBOSE\n\
             PrintMotd no\n\
             X11Forwarding no\n\
             AllowTcpForwarding no\n\
             AllowAgentForwarding no\n\
             AllowStreamLocalForwarding no\n\
             PermitTunnel no\n\
             MaxAuthTries 3\n\
             ClientAliveInterval 30\n",
            hk = host_key.display(),
            ak = self.dir.join("authorized_keys").display(),
            user = self.settings.user,
        );
        crate::state_file::write(&config, text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        if me.is_root() {
            // sshd runs as the support account: it reads these.
            for f in [
                &self.dir,
                &config,
                &host_key,
                &self.dir.join("authorized_keys"),
            ] {
                nix::unistd::chown(f.as_path(), Some(user.uid), Some(user.gid))
                    .map_err(|e| format!("handing {} to {}: {e}", f.display(), user.name))?;
            }
        }
        // As root, sshd is started as the support account by util-linux's
        // setpriv, its supplementary groups cleared.
        let mut cmd = if me.is_root() {
            let mut c = Command::new("setpriv");
            // It keeps the one capability it needs: its port below 1024.
            c.arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .args([
                    "--clear-groups",
                    "--inh-caps=-all,+net_bind_service",
                    "--ambient-caps=-all,+net_bind_service",
                    "--bounding-set=-all,+net_bind_service",
                    SSHD,
                ]);
            c
        } else {
            Command::new(SSHD)
        };
        // Its own process group: closing the window ends the sessions too.
        cmd.process_group(0)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting {SSHD}: {e}"))?;
        let err = child.stderr.take().expect("piped");
        // sshd says when it listens, or why it cannot, before it is
        // taken as started.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("support-sshd".into())
            .spawn(move || {
                let mut ready = Some(ready_tx);
                let mut last = String::new();
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.starts_with("Server listening on ") {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                    match self::seen(&line) {
                        Some(s) => seen(s),
                        None => tracing::info!("support ssh: sshd: {line}"),
                    }
                    last = line;
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(last));
                }
                seen(Seen::Exited("sshd's log ended".into()));
            })
            .map_err(|e| format!("reading sshd's log: {e}"))?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            failed => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match failed {
                    Ok(Err(last)) => last,
                    _ => "it did not say it listens within 5 s".into(),
                };
                return Err(format!("sshd did not start: {why}"));
            }
        }
        *self.server.lock().expect("sshd") = Some((child, until));
        self.opened.notify_one();
        Ok(until)
    }

    /// Stops sshd (the window stays on disk: a restart resumes it);
    /// whether it was running.
    pub fn stop(&self) -> bool {
        let Some((mut child, _)) = self.server.lock().expect("sshd").take() else {
            return false;
        };
        // The listener and every session it forked.
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// Stops sshd and forgets the window and the key.
    pub fn close(&self) -> bool {
        let was = self.stop();
        self.forget();
        was
    }

    fn forget(&self) {
        let _ = std::fs::remove_file(self.until_file());
        let _ = std::fs::remove_file(self.dir.join("authorized_keys"));
    }

    /// Whether the window has ended at `now`.
    pub fn ended(&self, now: SystemTime) -> bool {
        self.until().is_some_and(|u| u <= now)
    }
}

impl Drop for SupportSsh {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_sshd_lines_read() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ support@vendor";
        assert_eq!(check_key(ed).unwrap(), ed);
        assert!(check_key("ssh-dss AAAAB3NzaC1kc3M=").is_err());
        assert!(check_key("ssh-ed25519 !!!").is_err());
        assert!(
            check_key("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB").is_err(),
            "an RSA blob"
        );
        assert!(check_key(&format!("{ed}\nssh-ed25519 AAAA")).is_err());
        assert!(check_key("").is_err());
        assert_eq!(
            seen(
                "Accepted publickey for pbxlink from 10.77.0.2 port 40022 ssh2: ED25519 SHA256:Ylj"
            ),
            Some(Seen::Login {
                user: "pbxlink".into(),
                from: "10.77.0.2:40022".into(),
                key: "SHA256:Ylj".into()
            })
        );
        assert!(matches!(
            seen("Connection closed by authenticating user pbxlink 10.77.0.2 port 1 [preauth]"),
            Some(Seen::Refused { .. })
        ));
        assert!(matches!(
            seen("User root from 10.77.0.2 not allowed because not listed in AllowUsers"),
            Some(Seen::Refused { .. })
        ));
        assert_eq!(seen("Server listening on 10.77.0.1 port 22."), None);
    }
}
