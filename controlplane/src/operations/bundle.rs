//! Downloads behind temporary, unguessable links (SPEC §7 "log download"):
//! a log bundle (tar.gz of the gateway's plain-text logs and its status)
//! or a call trace (pcap) is made once, kept in memory under 128 random
//! bits, and served at `/downloads/TOKEN` until the link expires (default
//! 5 minutes, `[admin] log_link_seconds`). After that the link answers
//! 410 Gone for as long as it is remembered, then 404. At most
//! [`MAX_KEPT`] downloads are held; making another forgets the oldest.
//!
//! Time is an input: every call takes `now`.

use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Downloads held at once.
pub const MAX_KEPT: usize = 8;
/// Expired links remembered (answered 410 rather than 404).
const EXPIRED_KEPT: usize = 64;

/// One download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The file name offered to the browser.
    pub file_name: String,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// What a link gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetch<T> {
    /// The download.
    Ready(T),
    /// The link expired.
    Expired,
    /// No such link.
    Unknown,
}

#[derive(Debug, Default)]
struct Held {
    live: VecDeque<(String, Instant, Download)>,
    expired: VecDeque<String>,
}

/// The downloads the gateway holds.
#[derive(Debug)]
pub struct Downloads {
    ttl: Duration,
    held: Mutex<Held>,
}

fn token() -> String {
    let bytes: [u8; 16] = crate::random::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Downloads {
    /// Links live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            held: Mutex::new(Held::default()),
        }
    }

    /// How long a link lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn expire(held: &mut Held, now: Instant) {
        while let Some(pos) = held.live.iter().position(|(_, until, _)| *until <= now) {
            if let Some((t, _, _)) = held.live.remove(pos) {
                held.expired.push_back(t);
            }
        }
        while held.expired.len() > EXPIRED_KEPT {
            held.expired.pop_front();
        }
    }

    /// Holds `d`; its link's token.
    pub fn add(&self, d: Download, now: Instant) -> String {
        let mut held = self.held.lock().expect("downloads");
        Self::expire(&mut held, now);
        while held.live.len() >= MAX_KEPT {
            if let Some((t, _, _)) = held.live.pop_front() {
                held.expired.push_back(t);
            }
        }
        let t = token();
        held.live.push_back((t.clone(), now + self.ttl, d));
        t
    }

    /// What the link `token` gives now.
    pub fn get(&self, token: &str, now: Instant) -> Fetch<Download> {
        self.read(token, now, Download::clone)
    }

    /// `look` at what the link `token` gives now (a piece of it, its
    /// size) without copying all of it.
    pub fn read<T>(
        &self,
        token: &str,
        now: Instant,
        look: impl FnOnce(&Download) -> T,
    ) -> Fetch<T> {
        let mut held = self.held.lock().expect("downloads");
        Self::expire(&mut held, now);
        if let Some((_, _, d)) = held.live.iter().find(|(t, _, _)| t == token) {
            return Fetch::Ready(look(d));
        }
        if held.expired.iter().any(|t| t == token) {
            Fetch::Expired
        } else {
            Fetch::Unknown
        }
    }
}

/// A tar.gz of the log files in `log_dir` (under `logs/`) and `extra`
/// files made on the spot (name, text), e.g. the status.
pub fn log_bundle(log_dir: &Path, extra: &[(&str, String)]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for path in super::log_file::files(log_dir) {
        if let Some(name) = path.file_name() {
            tar.append_path_with_name(&path, Path::new("logs").join(name))?;
        }
    }
    for (name, text) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, name, text.as_bytes())?;
    }
    tar.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(n: u8) -> Download {
        Download {
            file_name: format!("d{n}"),
            content_type: "application/gzip",
            bytes: vec![n],
        }
    }

    #[test]
    fn links_work_until_they_expire_then_answer_gone() {
        let d = Downloads::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let t = d.add(download(1), t0);
        assert_eq!(t.len(), 32);
        assert!(
            matches!(d.get(&t, t0 + Duration::from_secs(299)), Fetch::Ready(x) if x.bytes == [1])
        );
        assert_eq!(d.get(&t, t0 + Duration::from_secs(300)), Fetch::Expired);
        assert_eq!(d.get("0123", t0), Fetch::Unknown);
        assert_ne!(d.add(download(2), t0), d.add(download(3), t0));
    }

    #[test]
    fn only_the_newest_downloads_are_held() {
        let d = Downloads::new(Duration::from_secs(300));
        let now = Instant::now();
        let tokens: Vec<String> = (0..MAX_KEPT as u8 + 2)
            .map(|n| d.add(download(n), now))
            .collect();
        assert_eq!(d.get(&tokens[0], now), Fetch::Expired);
        assert_eq!(d.get(&tokens[1], now), Fetch::Expired);
        assert!(matches!(d.get(&tokens[2], now), Fetch::Ready(_)));
    }

    #[test]
    fn a_bundle_holds_the_logs_and_the_extra_files() {
        let dir = std::env::temp_dir().join(format!("pbxlink-bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("gateway.log"), "2026 admin: hello\n").unwrap();
        std::fs::write(dir.join("gateway.log.1"), "older\n").unwrap();
        std::fs::write(dir.join("other.txt"), "not a log\n").unwrap();
        let gz = log_bundle(&dir, &[("status.json", "{}".into())]).unwrap();
        let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]))
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["logs/gateway.log", "logs/gateway.log.1", "status.json"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
