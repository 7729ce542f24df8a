//! Every default value of the configuration, in one place: what a key
//! left out of the file means.

use std::path::PathBuf;

pub(super) fn outbox_events() -> usize {
    100_000
}

pub(super) fn sync_minutes() -> u64 {
    60
}

pub(super) fn register_expires() -> u32 {
    300
}

pub(super) fn registrations_per_second() -> u32 {
    20
}

pub(super) fn mdns_name() -> String {
    "pbxlink".into()
}

pub(super) fn log_link_seconds() -> u64 {
    300
}

pub(super) fn resolv_conf() -> PathBuf {
    PathBuf::from("/etc/resolv.conf")
}

pub(super) fn push_username() -> String {
    "pbx".into()
}

pub(super) fn history_calls() -> usize {
    20
}

/// The state directory systemd made for the unit (`$STATE_DIRECTORY`,
/// its first path: a template unit's site `pbxlink@SITE` gets
/// /var/lib/pbxlink/SITE), else /var/lib/pbxlink.
pub(super) fn state_dir() -> PathBuf {
    std::env::var("STATE_DIRECTORY")
        .ok()
        .and_then(|v| v.split(':').next().map(str::to_owned))
        .filter(|p| p.starts_with('/'))
        .map_or_else(|| PathBuf::from("/var/lib/pbxlink"), PathBuf::from)
}

pub(super) fn drain() -> u64 {
    30
}

pub(super) fn media_timeout() -> u64 {
    60
}

pub(super) fn auto() -> String {
    "auto".into()
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn csta_timeout() -> u64 {
    5
}

pub(super) fn ed3() -> String {
    "ed3".into()
}

pub(super) fn realm() -> String {
    "pbxlink".into()
}

pub(super) fn untrusted_drop() -> String {
    "drop".into()
}

pub(super) fn sip_port() -> u16 {
    5060
}

pub(super) fn udp() -> String {
    "udp".into()
}

pub(super) fn keepalive() -> u64 {
    30
}

pub(super) fn idle_timeout() -> u64 {
    120
}

pub(super) fn partial_timeout() -> u64 {
    10
}

pub(super) fn max_connections() -> usize {
    1024
}

pub(super) fn service_unavailable() -> u16 {
    503
}

pub(super) fn pbx_trunk() -> String {
    "pbx-trunk".into()
}

pub(super) fn cs3() -> u8 {
    24
}

pub(super) fn health_seconds() -> u64 {
    120
}

pub(super) fn ssh_port() -> u16 {
    22
}

pub(super) fn ssh_user() -> String {
    "pbxlink".into()
}

pub(super) fn support_window_seconds() -> u64 {
    86_400
}

pub(super) fn poor_mos() -> f64 {
    3.6
}

pub(super) fn jitter_buffer_ms() -> u32 {
    40
}

pub(super) fn poor_alarm_percent() -> f64 {
    20.0
}

pub(super) fn poor_alarm_min_calls() -> u32 {
    10
}

pub(super) fn off() -> String {
    "off".into()
}

pub(super) fn hep_capture_id() -> u32 {
    2001
}
