//! The users and roles on disk (`STATE_DIR/users.json`), so a restart
//! keeps them; written whole (`state_file`), readable by the gateway's
//! user only (names, emails).

use pbxlink_users::{PbxUser, Role};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's format version; a file of a newer one is refused rather
/// than misread.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    roles: Vec<Role>,
    users: Vec<PbxUser>,
}

/// Where the users are kept.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `state_dir` (created if missing, mode 0700).
    pub fn new(state_dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
        Ok(Self {
            path: state_dir.join("users.json"),
        })
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was saved (nothing yet: empty).
    pub fn load(&self) -> anyhow::Result<(Vec<Role>, Vec<PbxUser>)> {
        use anyhow::Context;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.path.display()));
            }
        };
        let f: File = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a users file this gateway can read (move it aside to start empty)",
                self.path.display()
            )
        })?;
        anyhow::ensure!(
            f.version <= VERSION,
            "{} is format version {}, newer than this gateway's {VERSION}: upgrade the gateway",
            self.path.display(),
            f.version
        );
        Ok((f.roles, f.users))
    }

    /// Saves `roles` and `users` in place of what was there.
    pub fn save(&self, roles: &[Role], users: &[PbxUser]) -> std::io::Result<()> {
        let text = serde_json::to_vec(&File {
            version: VERSION,
            roles: roles.to_vec(),
            users: users.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        crate::state_file::write(&self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbxlink_users::{RoleRef, default_roles};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn what_is_saved_is_loaded_and_only_its_owner_reads_it() {
        let dir = std::env::temp_dir().join(format!("pbxlink-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::new(&dir).unwrap();
        assert_eq!(s.load().unwrap(), (Vec::new(), Vec::new()));
        let users = vec![PbxUser {
            directory_number: "1000".into(),
            first_name: "Zoë".into(),
            email: "zoe@example.com".into(),
            role: Some(RoleRef::Name("CTI".into())),
            sip_password: Some("s1p-pw".into()),
            ..PbxUser::default()
        }];
        s.save(&default_roles(), &users).unwrap();
        assert_eq!(s.load().unwrap(), (default_roles(), users));
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(s.path(), "{\"version\":9,\"roles\":[],\"users\":[]}").unwrap();
        assert!(
            s.load()
                .unwrap_err()
                .to_string()
                .contains("upgrade the gateway")
        );
        std::fs::write(s.path(), "not json").unwrap();
        assert!(s.load().unwrap_err().to_string().contains("move it aside"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
