//! The PBX's users and roles as the gateway holds them (SPEC §5), and the
//! rules that decide who is onboarded. Pure: a push in, a report and the
//! new directory out; it never touches the disk or the network (the store
//! and the API around it do).
//!
//! A user is onboarded when it has an extension, a first or last name and
//! a valid email that no other user has and that is not a role mailbox
//! (`admin@`, `support@`, …). Everyone else is kept and listed as not
//! onboarded, with the reason. Roles come from the PBX's role table
//! (index, name, CTI, Softphone; Softphone implies CTI); until it sends
//! one, MiVoice 5000's three are assumed: 0 Basic, 1 CTI, 2 Softphone.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Most users one PBX may push: well past the largest sites.
pub const MAX_USERS: usize = 20_000;

/// Most roles in a role table.
pub const MAX_ROLES: usize = 64;

/// Mailboxes that belong to a function, not a person: no welcome message
/// can go to them, so no user is onboarded with one.
const ROLE_MAILBOXES: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "billing",
    "careers",
    "contact",
    "enquiries",
    "help",
    "helpdesk",
    "hostmaster",
    "hr",
    "info",
    "inquiries",
    "jobs",
    "marketing",
    "no-reply",
    "noreply",
    "office",
    "postmaster",
    "root",
    "sales",
    "security",
    "support",
    "webmaster",
];

/// One role of the PBX's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its index (what users refer to).
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Call control through CSTA.
    #[serde(default)]
    pub cti: bool,
    /// Media through the gateway (implies CTI).
    #[serde(default)]
    pub softphone: bool,
}

/// A role as a user names it: by index or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RoleRef {
    /// The table's index.
    Index(u32),
    /// The role's name (case does not matter).
    Name(String),
}

/// A user as the PBX pushes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PbxUser {
    /// The extension (directory number).
    #[serde(default)]
    pub directory_number: String,
    /// First name.
    #[serde(default)]
    pub first_name: String,
    /// Last name.
    #[serde(default)]
    pub last_name: String,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Role (none: Basic).
    #[serde(default)]
    pub role: Option<RoleRef>,
    /// The SIP password a Softphone user registers to the PBX with (the
    /// gateway is that user's phone); never shown back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_password: Option<String>,
}

/// Whether a user is onboarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Imported, with this role.
    Onboarded(Role),
    /// Not imported, and why.
    NotOnboarded(String),
}

/// One user and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As pushed.
    pub user: PbxUser,
    /// Onboarded or not.
    pub status: Status,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// Users of the push now onboarded.
    pub accepted: usize,
    /// Every user not onboarded after the push (the push's and any other
    /// it affected, such as the other holder of a duplicated email), with
    /// the reason.
    pub refused: Vec<Refusal>,
    /// Users the push removed.
    pub removed: usize,
    /// Users onboarded in all.
    pub onboarded: usize,
}

/// One user not onboarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Its extension, or `#N` (its place in the push) when it has none.
    pub user: String,
    /// Why.
    pub reason: String,
}

/// Why a push was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// More users than the gateway holds.
    #[error("{0} users: the gateway holds at most {MAX_USERS}")]
    TooManyUsers(usize),
    /// A role table that cannot be used.
    #[error("role table: {0}")]
    BadRoles(String),
}

/// The users and roles.
#[derive(Debug, Clone)]
pub struct Directory {
    roles: Vec<Role>,
    /// Users with an extension, by extension; users pushed without one
    /// are only reported, never kept (there is nothing to key them by).
    users: BTreeMap<String, Entry>,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            roles: default_roles(),
            users: BTreeMap::new(),
        }
    }
}

/// MiVoice 5000's role table, assumed until the PBX sends its own.
pub fn default_roles() -> Vec<Role> {
    [
        (0, "Basic", false, false),
        (1, "CTI", true, false),
        (2, "Softphone", true, true),
    ]
    .into_iter()
    .map(|(index, name, cti, softphone)| Role {
        index,
        name: name.into(),
        cti,
        softphone,
    })
    .collect()
}

impl Directory {
    /// A directory from stored roles and users (statuses worked out again).
    pub fn from_parts(roles: Vec<Role>, users: Vec<PbxUser>) -> Self {
        let mut d = Self {
            roles: if roles.is_empty() {
                default_roles()
            } else {
                roles
            },
            users: BTreeMap::new(),
        };
        for u in users {
            if !u.directory_number.trim().is_empty() {
                d.users.insert(
                    u.directory_number.trim().to_owned(),
                    Entry {
                        user: u,
                        status: Status::NotOnboarded(String::new()),
                    },
                );
            }
        }
        d.evaluate();
        d
    }

    /// The role table.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Every user, by extension.
    pub fn users(&self) -> impl Iterator<Item = &Entry> {
        self.users.values()
    }

    /// One user.
    pub fn user(&self, dn: &str) -> Option<&Entry> {
        self.users.get(dn)
    }

    /// Users as stored (as pushed).
    pub fn raw_users(&self) -> Vec<PbxUser> {
        self.users.values().map(|e| e.user.clone()).collect()
    }

    /// Onboarded users.
    pub fn onboarded(&self) -> usize {
        self.users
            .values()
            .filter(|e| matches!(e.status, Status::Onboarded(_)))
            .count()
    }

    /// The extensions to monitor through CSTA: onboarded CTI and Softphone
    /// users.
    pub fn cti_devices(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, e)| matches!(&e.status, Status::Onboarded(r) if r.cti || r.softphone))
            .map(|(dn, _)| dn.clone())
            .collect()
    }

    /// The Softphone users the gateway registers to the PBX, each with
    /// the SIP password the PBX pushed (none: it did not).
    pub fn softphones(&self) -> Vec<(String, Option<String>)> {
        self.users
            .iter()
            .filter(|(_, e)| matches!(&e.status, Status::Onboarded(r) if r.softphone))
            .map(|(dn, e)| (dn.clone(), e.user.sip_password.clone()))
            .collect()
    }

    /// Replaces the role table; users are judged again against it.
    pub fn set_roles(&mut self, roles: Vec<Role>) -> Result<PushReport, PushError> {
        if roles.is_empty() {
            return Err(PushError::BadRoles("empty: send at least one role".into()));
        }
        if roles.len() > MAX_ROLES {
            return Err(PushError::BadRoles(format!(
                "{} roles: at most {MAX_ROLES}",
                roles.len()
            )));
        }
        let mut seen = HashMap::new();
        for r in &roles {
            if r.name.trim().is_empty() || r.name.len() > 64 {
                return Err(PushError::BadRoles(format!(
                    "role {}: a name of 1 to 64 characters",
                    r.index
                )));
            }
            if seen.insert(r.index, ()).is_some() {
                return Err(PushError::BadRoles(format!(
                    "index {} given twice",
                    r.index
                )));
            }
        }
        self.roles = roles
            .into_iter()
            .map(|r| Role {
                cti: r.cti || r.softphone,
                ..r
            })
            .collect();
        self.evaluate();
        Ok(self.report(0, 0))
    }

    /// Takes a push of users: `replace` makes it the whole list (users not
    /// in it are removed), otherwise it adds and updates.
    pub fn push(&mut self, users: Vec<PbxUser>, replace: bool) -> Result<PushReport, PushError> {
        let total = if replace {
            users.len()
        } else {
            self.users.len() + users.len()
        };
        if users.len() > MAX_USERS || total > MAX_USERS {
            return Err(PushError::TooManyUsers(total.max(users.len())));
        }
        let mut refused_now = Vec::new();
        let mut incoming: BTreeMap<String, PbxUser> = BTreeMap::new();
        for (i, u) in users.into_iter().enumerate() {
            let dn = u.directory_number.trim().to_owned();
            if dn.is_empty() {
                refused_now.push(Refusal {
                    user: format!("#{}", i + 1),
                    reason: "missing extension".into(),
                });
                continue;
            }
            if incoming.contains_key(&dn) {
                refused_now.push(Refusal {
                    user: dn.clone(),
                    reason: "extension given twice in one push: the first is kept".into(),
                });
                continue;
            }
            incoming.insert(dn, u);
        }
        let mut removed = 0;
        if replace {
            let before = self.users.len();
            self.users.retain(|dn, _| incoming.contains_key(dn));
            removed = before - self.users.len();
        }
        let keys: Vec<String> = incoming.keys().cloned().collect();
        for (dn, u) in incoming {
            self.users.insert(
                dn,
                Entry {
                    user: u,
                    status: Status::NotOnboarded(String::new()),
                },
            );
        }
        self.evaluate();
        let accepted = keys
            .iter()
            .filter(|dn| matches!(self.users[*dn].status, Status::Onboarded(_)))
            .count();
        let mut report = self.report(accepted, removed);
        // Users the push named without an extension are not kept: report
        // them first.
        refused_now.extend(report.refused);
        report.refused = refused_now;
        Ok(report)
    }

    /// Removes a user; whether there was one.
    pub fn remove(&mut self, dn: &str) -> bool {
        let gone = self.users.remove(dn).is_some();
        if gone {
            // A duplicate email may be one holder fewer now.
            self.evaluate();
        }
        gone
    }

    /// Whether the PBX connection may be deleted (SPEC §5): not while any
    /// user holds the CTI or Softphone role, nor while a sync runs.
    pub fn connection_deletable(&self, sync_running: bool) -> Result<(), String> {
        let holders = self.cti_devices().len();
        if holders > 0 {
            return Err(format!(
                "{holders} user(s) hold the CTI or Softphone role: give them the Basic role on the PBX first"
            ));
        }
        if sync_running {
            return Err("a user sync is running: try again when it has finished".into());
        }
        Ok(())
    }

    fn report(&self, accepted: usize, removed: usize) -> PushReport {
        PushReport {
            accepted,
            refused: self
                .users
                .iter()
                .filter_map(|(dn, e)| match &e.status {
                    Status::NotOnboarded(r) => Some(Refusal {
                        user: dn.clone(),
                        reason: r.clone(),
                    }),
                    Status::Onboarded(_) => None,
                })
                .collect(),
            removed,
            onboarded: self.onboarded(),
        }
    }

    /// Judges every user (an email's duplicates are across the whole
    /// directory, so one user's change can change another's status).
    fn evaluate(&mut self) {
        let mut holders: HashMap<String, Vec<String>> = HashMap::new();
        for (dn, e) in &self.users {
            let email = e.user.email.trim().to_ascii_lowercase();
            if !email.is_empty() {
                holders.entry(email).or_default().push(dn.clone());
            }
        }
        let roles = self.roles.clone();
        for (dn, e) in self.users.iter_mut() {
            e.status = match judge(dn, &e.user, &roles, &holders) {
                Ok(role) => Status::Onboarded(role),
                Err(reason) => Status::NotOnboarded(reason),
            };
        }
    }
}

fn judge(
    dn: &str,
    u: &PbxUser,
    roles: &[Role],
    holders: &HashMap<String, Vec<String>>,
) -> Result<Role, String> {
    if dn.len() > 16
        || !dn
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        return Err(format!("invalid extension {dn:?}: up to 16 of 0-9 * #"));
    }
    if u.first_name.trim().is_empty() && u.last_name.trim().is_empty() {
        return Err("missing first and last name".into());
    }
    if u.first_name.len() > 128 || u.last_name.len() > 128 {
        return Err("a name longer than 128 characters".into());
    }
    let email = u.email.trim();
    if email.is_empty() {
        return Err("missing email".into());
    }
    if !valid_email(email) {
        return Err(format!("invalid email {email:?}"));
    }
    let local = email
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ROLE_MAILBOXES.contains(&local.as_str()) {
        return Err(format!(
            "role-based mailbox {email:?}: a welcome message needs a person's address"
        ));
    }
    if let Some(others) = holders.get(&email.to_ascii_lowercase()) {
        let others: Vec<&str> = others
            .iter()
            .map(String::as_str)
            .filter(|o| *o != dn)
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "duplicate email {email:?}, also used by {}",
                others.join(", ")
            ));
        }
    }
    match &u.role {
        None => Ok(roles
            .iter()
            .find(|r| !r.cti && !r.softphone)
            .cloned()
            .unwrap_or(Role {
                index: 0,
                name: "Basic".into(),
                cti: false,
                softphone: false,
            })),
        Some(RoleRef::Index(i)) => roles
            .iter()
            .find(|r| r.index == *i)
            .cloned()
            .ok_or_else(|| format!("unknown role {i}")),
        Some(RoleRef::Name(n)) => roles
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(n.trim()))
            .cloned()
            .ok_or_else(|| format!("unknown role {n:?}")),
    }
}

/// An address a welcome message can be sent to: one `@`, a local part of
/// letters, digits and `.!#$%&'*+/=?^_`{|}~-` (no leading, trailing or
/// double dot), a domain of at least two dot-separated labels of letters,
/// digits and hyphens (not at a label's ends), the last alphabetic.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 || email.len() > 254 {
        return false;
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(dn: &str, first: &str, email: &str, role: Option<u32>) -> PbxUser {
        PbxUser {
            directory_number: dn.into(),
            first_name: first.into(),
            last_name: String::new(),
            email: email.into(),
            role: role.map(RoleRef::Index),
            sip_password: None,
        }
    }

    #[test]
    fn each_bad_user_is_refused_with_its_reason_and_the_rest_kept() {
        let mut d = Directory::default();
        let r = d
            .push(
                vec![
                    user("1000", "Ada", "ada@example.com", Some(2)),
                    user("1001", "", "bob@example.com", Some(1)),
                    user("1002", "Cy", "", None),
                    user("1003", "Di", "di@example", None),
                    user("1004", "Ed", "ed@@example.com", None),
                    user("1005", "Flo", "dup@example.com", None),
                    user("1006", "Gus", "DUP@example.com", None),
                    user("1007", "Hal", "support@example.com", None),
                    user("1008", "Ivy", "ivy@example.com", Some(7)),
                    user("", "Jo", "jo@example.com", None),
                    user("10x9", "Kim", "kim@example.com", None),
                    user("1010", "Lu", "lu@example.com", Some(1)),
                ],
                true,
            )
            .unwrap();
        let reasons: HashMap<&str, &str> = r
            .refused
            .iter()
            .map(|f| (f.user.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(reasons["1001"], "missing first and last name");
        assert_eq!(reasons["1002"], "missing email");
        assert_eq!(reasons["1003"], "invalid email \"di@example\"");
        assert_eq!(reasons["1004"], "invalid email \"ed@@example.com\"");
        assert_eq!(
            reasons["1005"],
            "duplicate email \"dup@example.com\", also used by 1006"
        );
        assert!(reasons["1006"].starts_with("duplicate email"));
        assert!(reasons["1007"].starts_with("role-based mailbox \"support@example.com\""));
        assert_eq!(reasons["1008"], "unknown role 7");
        assert_eq!(reasons["#10"], "missing extension");
        assert!(reasons["10x9"].starts_with("invalid extension"));
        assert_eq!((r.accepted, r.onboarded, r.refused.len()), (2, 2, 10));
        assert_eq!(d.cti_devices(), ["1000", "1010"]);
        // Kept and listed, not onboarded.
        assert_eq!(d.users().count(), 11);
    }

    #[test]
    fn a_role_table_decides_who_is_monitored_and_softphone_implies_cti() {
        let mut d = Directory::default();
        d.push(
            vec![
                user("1000", "Ada", "ada@example.com", Some(5)),
                user("1001", "Bob", "bob@example.com", None),
            ],
            true,
        )
        .unwrap();
        assert!(d.cti_devices().is_empty(), "role 5 unknown so far");
        d.set_roles(vec![
            Role {
                index: 0,
                name: "Basic".into(),
                cti: false,
                softphone: false,
            },
            Role {
                index: 5,
                name: "Mobile".into(),
                cti: false,
                softphone: true,
            },
        ])
        .unwrap();
        assert_eq!(d.cti_devices(), ["1000"]);
        assert!(matches!(&d.user("1000").unwrap().status, Status::Onboarded(r) if r.cti));
        let named = PbxUser {
            role: Some(RoleRef::Name("mobile".into())),
            ..user("1002", "Cy", "cy@example.com", None)
        };
        d.push(vec![named], false).unwrap();
        assert_eq!(d.cti_devices(), ["1000", "1002"]);
        assert!(d.set_roles(vec![]).is_err());
        let twice = vec![
            Role {
                index: 1,
                name: "A".into(),
                cti: true,
                softphone: false,
            };
            2
        ];
        assert_eq!(
            d.set_roles(twice).unwrap_err().to_string(),
            "role table: index 1 given twice"
        );
    }

    #[test]
    fn a_push_replaces_or_adds_and_a_change_reaches_the_next_read() {
        let mut d = Directory::default();
        d.push(
            vec![
                user("1000", "Ada", "ada@example.com", Some(1)),
                user("1001", "Bob", "bob@example.com", Some(1)),
            ],
            true,
        )
        .unwrap();
        let r = d
            .push(
                vec![user("1000", "Ada", "ada.l@example.com", Some(1))],
                false,
            )
            .unwrap();
        assert_eq!((r.accepted, r.removed, r.onboarded), (1, 0, 2));
        assert_eq!(d.user("1000").unwrap().user.email, "ada.l@example.com");
        let r = d
            .push(vec![user("1001", "Bob", "bob@example.com", Some(1))], true)
            .unwrap();
        assert_eq!((r.removed, r.onboarded), (1, 1));
        // A duplicate pushed later unsettles both holders; removing it
        // settles them again.
        d.push(vec![user("1002", "Eve", "bob@example.com", None)], false)
            .unwrap();
        assert!(d.cti_devices().is_empty());
        assert!(d.remove("1002"));
        assert_eq!(d.cti_devices(), ["1001"]);
        let too_many = vec![PbxUser::default(); MAX_USERS + 1];
        assert!(matches!(
            d.push(too_many, true),
            Err(PushError::TooManyUsers(_))
        ));
    }

    #[test]
    fn the_pbx_connection_stays_while_users_hold_roles_or_a_sync_runs() {
        let mut d = Directory::default();
        d.push(vec![user("1000", "Ada", "ada@example.com", Some(1))], true)
            .unwrap();
        let e = d.connection_deletable(false).unwrap_err();
        assert!(
            e.starts_with("1 user(s) hold the CTI or Softphone role"),
            "{e}"
        );
        d.push(vec![user("1000", "Ada", "ada@example.com", Some(0))], true)
            .unwrap();
        assert!(
            d.connection_deletable(true)
                .unwrap_err()
                .contains("sync is running")
        );
        assert!(d.connection_deletable(false).is_ok());
    }

    #[test]
    fn emails_are_checked_strictly() {
        for ok in [
            "a@b.co",
            "first.last+tag@mail.example.org",
            "o'neil@example.ie",
        ] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-b.com",
            "a@b.c",
            "a@b.123",
            "a@exa_mple.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
