//! The PBX's pushes as the user-config API reads them, from arbitrary
//! bytes: a role table, a whole list, then changes. No panic; every user
//! not onboarded has a reason; the users to monitor are onboarded ones;
//! nothing is onboarded twice under one email.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_users::{Directory, PbxUser, Role, Status};
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let mut d = Directory::default();
    if let Some(roles) = parts
        .next()
        .and_then(|p| serde_json::from_slice::<Vec<Role>>(p).ok())
    {
        let _ = d.set_roles(roles);
    }
    for (i, part) in parts.enumerate() {
        let Ok(users) = serde_json::from_slice::<Vec<PbxUser>>(part) else {
            continue;
        };
        let Ok(report) = d.push(users, i == 0) else {
            continue;
        };
        assert!(report.refused.iter().all(|r| !r.reason.is_empty()));
        assert_eq!(report.onboarded, d.onboarded());
    }
    let mut emails = HashSet::new();
    for e in d.users() {
        match &e.status {
            Status::Onboarded(_) => {
                assert!(
                    emails.insert(e.user.email.trim().to_ascii_lowercase()),
                    "an email onboarded twice"
                );
            }
            Status::NotOnboarded(why) => assert!(!why.is_empty()),
        }
    }
    for dn in d.cti_devices() {
        assert!(
            matches!(d.user(&dn).map(|e| &e.status), Some(Status::Onboarded(r)) if r.cti || r.softphone)
        );
    }
});
