//! Call detail records: one JSON line per call — both legs' Call-IDs, who
//! called whom, when it started, was answered and ended, why it ended, and
//! the packets and loss each way, and each leg's quality (loss, jitter,
//! round trip, the far ends' own reports) — appended to a file that is rotated by
//! size (`cdr.jsonl` → `cdr.jsonl.1` → … → `cdr.jsonl.N`, the oldest
//! dropped). A record that cannot be written is counted, never blocking a
//! call.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Media one way, from the relay's final counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Flow {
    /// RTP packets relayed.
    pub rtp: u64,
    /// RTCP packets relayed.
    pub rtcp: u64,
    /// RFC 3550 cumulative loss of the sender's stream.
    pub lost: i64,
    /// Packets dropped (any reason).
    pub dropped: u64,
}

/// One call's record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cdr {
    /// The gateway's number for the call (as in `call N:` lines).
    pub call: u64,
    /// `pbx-to-cloud` or `cloud-to-pbx`.
    pub direction: &'static str,
    /// Call-ID of the PBX leg.
    pub pbx_call_id: String,
    /// Call-ID of the cloud leg.
    pub cloud_call_id: String,
    /// The caller (user part of the caller's From).
    pub from: String,
    /// The callee (user part of the Request-URI).
    pub to: String,
    /// The voice codec's SDP encoding name (`PCMA`, `G729`, …; empty: no
    /// media was agreed).
    pub codec: String,
    /// When the INVITE arrived (RFC 3339, UTC).
    pub start: String,
    /// When it was answered, if it was.
    pub answer: Option<String>,
    /// When it ended.
    pub end: String,
    /// Why (as in `call N: ended (…)`).
    pub cause: String,
    /// PBX → cloud.
    pub to_cloud: Flow,
    /// Cloud → PBX.
    pub to_pbx: Flow,
    /// Media quality per leg and direction (none when no media was
    /// relayed): see `call_quality`.
    pub quality: Option<crate::call_quality::CallQuality>,
}

/// A call's `direction` as records and the live view name it: from the
/// side that called.
pub fn direction(caller: pbxlink_b2bua::leg::Side) -> &'static str {
    match caller {
        pbxlink_b2bua::leg::Side::Pbx => "pbx-to-cloud",
        pbxlink_b2bua::leg::Side::Cloud => "cloud-to-pbx",
    }
}

/// RFC 3339 UTC time with milliseconds, e.g. `2026-11-24T02:23:05.120Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) as i64;
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// The CDR file.
#[derive(Debug)]
pub struct CdrLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl CdrLog {
    /// Appends to `path`, rotating past `max_bytes` and keeping `keep` old files.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<CdrLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CdrLog {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            keep,
        })
    }

    /// Writes one record as a line.
    pub fn write(&mut self, cdr: &Cdr) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(cdr).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_485_345_712);
        assert_eq!(rfc3339(t), "2026-11-24T01:55:45.712Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    fn cdr(call: u64) -> Cdr {
        Cdr {
            call,
            direction: "pbx-to-cloud",
            pbx_call_id: "a@pbx".into(),
            cloud_call_id: "b@pbxlink".into(),
            from: "201".into(),
            to: "4420".into(),
            codec: "PCMA".into(),
            start: rfc3339(UNIX_EPOCH),
            answer: None,
            end: rfc3339(UNIX_EPOCH),
            cause: "Rejected(486)".into(),
            to_cloud: Flow::default(),
            to_pbx: Flow {
                rtp: 5,
                ..Flow::default()
            },
            quality: None,
        }
    }

    #[test]
    fn records_are_json_lines_rotated_by_size() {
        let dir = std::env::temp_dir().join(format!("pbxlink-cdr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("cdr.jsonl");
        let mut log = CdrLog::open(&path, 700, 2).unwrap();
        for i in 1..=5 {
            log.write(&cdr(i)).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let current = read(&path);
        let line: serde_json::Value =
            serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(line["call"], 5);
        assert_eq!(line["to_pbx"]["rtp"], 5);
        assert_eq!(line["answer"], serde_json::Value::Null);
        let all: usize = [
            path.clone(),
            dir.join("cdr.jsonl.1"),
            dir.join("cdr.jsonl.2"),
        ]
        .iter()
        .map(|p| read(p).lines().count())
        .sum();
        assert!(!dir.join("cdr.jsonl.3").exists(), "only 2 kept");
        assert!(
            all >= 3 && current.len() <= 700,
            "rotated: {all} lines kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
