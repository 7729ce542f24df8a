//! Sets what the gateway reports of its build: the commit it was built
//! from (`PBXLINK_COMMIT`, "unknown" outside a git checkout) and when
//! (`PBXLINK_BUILD_DATE`: `SOURCE_DATE_EPOCH` when the packager sets it,
//! else the commit's date), and its version (`PBXLINK_VERSION`: the
//! crate's, or `PBXLINK_RELEASE_VERSION` when a release sets one), so no
//! version is written by hand.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    // A new commit or another branch builds this again.
    let git_dir = git(&["rev-parse", "--git-dir"]);
    if let Some(dir) = &git_dir {
        let dir = Path::new(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("packed-refs").display()
        );
        if let Ok(head) = std::fs::read_to_string(dir.join("HEAD"))
            && let Some(r) = head.trim().strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed={}", dir.join(r).display());
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A release's version, when release engineering sets one other than
    // the crate's (the updates' tests build two versions this way).
    println!("cargo:rerun-if-env-changed=PBXLINK_RELEASE_VERSION");
    let version = std::env::var("PBXLINK_RELEASE_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").expect("cargo sets it"));
    // The updater compares versions: a release's must be one (semver's
    // MAJOR.MINOR.PATCH, with an optional -pre or +build part).
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.parse::<u64>().is_ok()),
        "PBXLINK_RELEASE_VERSION={version:?} is not a version (MAJOR.MINOR.PATCH)"
    );
    println!("cargo:rustc-env=PBXLINK_VERSION={version}");
    let commit = git_dir
        .and_then(|_| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Seconds since the epoch as a packager sets them, or the commit's
    // date (RFC 3339).
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => format!("@{epoch}"),
        Err(_) => git(&["log", "-1", "--format=%cI"]).unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=PBXLINK_COMMIT={commit}");
    println!("cargo:rustc-env=PBXLINK_BUILD_DATE={date}");
}
