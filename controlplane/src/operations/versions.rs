//! The version of each part of the gateway and of its build, as the build
//! set them (each crate's Cargo version; the commit and date from
//! `build.rs`): what the admin page, the status the platform reads and a
//! log bundle report.

use serde_json::{Value, json};

/// The gateway's version (the crate's, or the release's as its build set it).
pub const GATEWAY: &str = env!("PBXLINK_VERSION");
/// The commit the gateway was built from ("unknown" outside a checkout).
pub const COMMIT: &str = env!("PBXLINK_COMMIT");
/// When: the commit's date, or `@SECONDS` as a packager's
/// `SOURCE_DATE_EPOCH` set it.
pub const BUILD_DATE: &str = env!("PBXLINK_BUILD_DATE");

/// Each part's version and the build's.
pub fn part_versions() -> Value {
    json!({
        "gateway": GATEWAY,
        "data_plane": pbxlink_dataplane::VERSION,
        "sip": pbxlink_sip::VERSION,
        "csta": pbxlink_csta::VERSION,
        "tunnel_protocol": pbxlink_tunnel::message::VERSION,
        "build_commit": COMMIT,
        "build_date": BUILD_DATE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_the_checkout_it_was_built_from() {
        let head = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        match head {
            // Built in a checkout: its commit, not a number written by hand.
            Some(head) => assert_eq!(COMMIT, head),
            None => assert_eq!(COMMIT, "unknown"),
        }
        assert!(
            BUILD_DATE == "unknown" || BUILD_DATE.starts_with('@') || BUILD_DATE.contains('T'),
            "{BUILD_DATE}"
        );
        let v = part_versions();
        for part in [
            "gateway",
            "data_plane",
            "sip",
            "csta",
            "tunnel_protocol",
            "build_commit",
        ] {
            assert!(v[part].is_string() || v[part].is_number(), "{part}: {v}");
        }
    }
}
