//! The one door to the machine the gateway runs on: the LAN settings the
//! wizard applies, the gateway restarting itself (`reboot`), and the data
//! and factory resets. The admin page and the cloud tunnel both go
//! through it; tests apply network changes only inside a network
//! namespace they make.
//!
//! [`SystemHost`] applies a static LAN with iproute2 (`ip addr`, `ip
//! route`) on `[admin] network_interface` and writes the DNS servers to
//! `[admin] resolv_conf`; without an interface it only records them (the
//! system owns the network). Resets forget files in the state directory:
//!
//! - data reset (SPEC §7 "forget onboarding data"): the wizard's settings,
//!   the PBX's users and role table, the user-sync state. Kept: the admin
//!   account, certificates, the gateway's id and its outbox (events owed
//!   to the platform are still delivered), call records.
//! - factory reset: the same, and the admin account (the next visitor
//!   sets the password), the session key, the generated certificates (made
//!   anew). Still kept: the gateway's id and outbox, so nothing owed to
//!   the platform is lost, and the configuration file (the operator's).

use crate::node_control::NodeControl;
use crate::onboarding::Lan;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Forget onboarding data.
    Data,
    /// Back to as shipped (but for what is owed to the platform).
    Factory,
}

/// The machine.
pub trait Host: Send + Sync + std::fmt::Debug {
    /// Applies the LAN settings; what was done.
    fn apply_lan(&self, lan: &Lan) -> Result<String, String>;
    /// Restarts the gateway (drained first).
    fn restart(&self, why: &str);
    /// Forgets what `kind` forgets; the files removed.
    fn reset(&self, kind: Reset) -> Result<Vec<String>, String>;
}

/// The real machine.
#[derive(Debug)]
pub struct SystemHost {
    /// The LAN interface the gateway manages (none: the system does).
    pub interface: Option<String>,
    /// Where DNS servers are written when it does.
    pub resolv_conf: PathBuf,
    /// The gateway's state directory.
    pub state_dir: PathBuf,
    /// The node, to restart it.
    pub control: NodeControl,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e} (iproute2 is needed)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What `kind` removes from the state directory.
pub fn reset_files(kind: Reset) -> &'static [&'static str] {
    match kind {
        Reset::Data => &["onboarding.json", "users.json", "synced.json"],
        Reset::Factory => &[
            "onboarding.json",
            "users.json",
            "synced.json",
            "admin.json",
            "session.key",
            "admin.crt",
            "admin.key",
            "users-api.crt",
            "users-api.key",
        ],
    }
}

fn remove(dir: &Path, names: &[&str]) -> Result<Vec<String>, String> {
    let mut gone = Vec::new();
    for n in names {
        let p = dir.join(n);
        match std::fs::remove_file(&p) {
            Ok(()) => gone.push((*n).to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", p.display())),
        }
    }
    Ok(gone)
}

impl Host for SystemHost {
    fn apply_lan(&self, lan: &Lan) -> Result<String, String> {
        let Some(dev) = self.interface.as_deref() else {
            return Ok(
                "recorded; the system manages the network ([admin] network_interface is not set)"
                    .into(),
            );
        };
        match lan {
            Lan::Dhcp => Ok(format!("DHCP on {dev}: left to the system's DHCP client")),
            Lan::Static {
                ip: addr,
                prefix,
                gateway,
                dns,
            } => {
                ip(&["-4", "addr", "flush", "dev", dev])?;
                ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", dev])?;
                ip(&["link", "set", dev, "up"])?;
                ip(&[
                    "route",
                    "replace",
                    "default",
                    "via",
                    &gateway.to_string(),
                    "dev",
                    dev,
                ])?;
                let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
                crate::state_file::write(&self.resolv_conf, text.as_bytes())
                    .map_err(|e| format!("writing {}: {e}", self.resolv_conf.display()))?;
                Ok(format!(
                    "{addr}/{prefix} on {dev}, default route via {gateway}, DNS in {}",
                    self.resolv_conf.display()
                ))
            }
        }
    }

    fn restart(&self, why: &str) {
        self.control.restart(why);
    }

    fn reset(&self, kind: Reset) -> Result<Vec<String>, String> {
        remove(&self.state_dir, reset_files(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_forget_their_files_and_keep_what_is_owed() {
        let dir = std::env::temp_dir().join(format!("pbxlink-host-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("outbox")).unwrap();
        for f in [
            "onboarding.json",
            "users.json",
            "admin.json",
            "gateway-id",
            "outbox/log",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let host = SystemHost {
            interface: None,
            resolv_conf: dir.join("resolv.conf"),
            state_dir: dir.clone(),
            control: NodeControl::default(),
        };
        assert_eq!(
            host.reset(Reset::Data).unwrap(),
            ["onboarding.json", "users.json"]
        );
        assert!(dir.join("admin.json").exists());
        assert_eq!(host.reset(Reset::Factory).unwrap(), ["admin.json"]);
        assert!(dir.join("gateway-id").exists() && dir.join("outbox/log").exists());
        assert!(host.apply_lan(&Lan::Dhcp).unwrap().starts_with("recorded"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
