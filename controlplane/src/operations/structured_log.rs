//! The gateway's log events (tracing): each is printed as its message
//! alone on stdout, as before (the terminal, the journal, the plain
//! `gateway.log` that `log_file` tees from stdout), and, once the gateway
//! runs with a state directory, also written as one JSON object per line
//! to `logs/gateway.jsonl` (rotated like `gateway.log`): its UTC time,
//! level, the module that logged it (`target`) and the message, for log
//! shippers and `jq`. The log bundle carries both files.
//!
//! What is logged: pbxlink's own modules at `info` and up, its
//! dependencies (HTTP clients, TLS, DNS, …) at `warn` and up; `[log]
//! level` sets pbxlink's level ([`set_level`]), and `RUST_LOG` (as
//! `target=level,…,default`) overrides both.
//!
//! [`init`] installs the subscriber once per process (every subcommand);
//! [`to_file`] opens the JSON file when `pbxlink run` knows where. Until
//! then (and if the file cannot be written) JSON lines are not kept; the
//! plain line always reaches stdout.

use super::log_file::{JSON_NAME, Rotating, Rotation};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Registry, reload};

static JSON_FILE: OnceLock<Mutex<Rotating>> = OnceLock::new();

/// The filter's handle, to change the level once the file is read.
static FILTER: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();

/// pbxlink's modules (the binary's and every `pbxlink_*` crate's) at
/// `level`, everything else at `warn`.
fn targets(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("pbxlink", level)
}

/// `RUST_LOG`, when set and readable.
fn from_env() -> Option<Targets> {
    let spec = std::env::var("RUST_LOG").ok()?;
    match spec.parse::<Targets>() {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: RUST_LOG={spec:?} is not understood ({e}); ignored");
            None
        }
    }
}

/// Sets pbxlink's own level (`[log] level`: error, warn, info, debug,
/// trace); `RUST_LOG`, when set, wins.
pub fn set_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let Ok(level) = level.parse::<LevelFilter>() else {
        return;
    };
    if let Some(h) = FILTER.get() {
        let _ = h.reload(targets(level));
    }
}

/// Where the JSON layer writes: the file once opened, else nowhere.
struct JsonFile;

/// One event's JSON line, written whole when the formatter is done.
struct JsonLine(Vec<u8>);

impl Write for JsonLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for JsonLine {
    fn drop(&mut self) {
        if let Some(file) = JSON_FILE.get()
            && let Ok(mut f) = file.lock()
        {
            // A full disk loses the JSON line only; stdout has the text.
            let _ = f.write_line(&String::from_utf8_lossy(&self.0));
        }
    }
}

impl<'a> MakeWriter<'a> for JsonFile {
    type Writer = JsonLine;

    fn make_writer(&'a self) -> JsonLine {
        JsonLine(Vec::with_capacity(256))
    }
}

/// UTC timestamps as the plain log has them.
struct Utc;

impl tracing_subscriber::fmt::time::FormatTime for Utc {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&crate::cdr::rfc3339(std::time::SystemTime::now()))
    }
}

/// Installs the subscriber (once; later calls do nothing).
pub fn init() {
    let plain = tracing_subscriber::fmt::layer()
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout);
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_timer(Utc)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(JsonFile);
    let (filter, handle) = reload::Layer::new(from_env().unwrap_or(targets(LevelFilter::INFO)));
    if tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(filter)
            .with(plain)
            .with(json),
    )
    .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Keeps JSON lines in `dir/gateway.jsonl` from now on.
pub fn to_file(dir: &Path, rotation: Rotation) -> anyhow::Result<()> {
    let file = Rotating::open(dir, JSON_NAME, rotation)?;
    let _ = JSON_FILE.set(Mutex::new(file));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_json_lines_with_level_target_and_message() {
        let dir = std::env::temp_dir().join(format!("pbxlink-jsonl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init();
        to_file(&dir, Rotation::default()).unwrap();
        tracing::warn!("diagnostics: stun 192.0.2.9:3479: FAILED: no answer");
        let text = std::fs::read_to_string(dir.join(JSON_NAME)).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(
            line["fields"]["message"],
            "diagnostics: stun 192.0.2.9:3479: FAILED: no answer"
        );
        assert!(line["target"].as_str().unwrap().starts_with("pbxlink::"));
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
