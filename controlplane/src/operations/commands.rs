//! The console functions the cloud platform runs through the management
//! tunnel (docs/protocols-tunnel.md "Commands"): the same ones the admin page has,
//! carried out by the same code ([`super::console`], [`super::host`]).
//!
//! - `collect_logs`: makes a log bundle; answers its size and link.
//! - `trace {"seconds": N}`: starts a call trace; `trace {}` tells it
//!   running, failed, or done with its link.
//! - `download {"url", "offset"}`: a piece of a bundle or trace behind a
//!   link (base64, at most [`PIECE`] bytes), with where the next starts:
//!   the platform cannot reach the LAN, so it reads a download through
//!   the tunnel while the link lives.
//! - `reboot`, `data_reset`, `relink` (the settings of the gateway this
//!   one replaces): answered first, then the gateway
//!   drains and starts again. The command's id is kept in the state directory, so
//!   the same command sent again after the restart (its answer lost in
//!   the cut) is answered `done` rather than carried out twice.

use super::bundle::Fetch;
use super::console::{collect_logs, reset_gateway, start_trace, take};
use super::host::Reset;
use super::parts::trace_json;
use super::state::AdminState;
use base64::Engine;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The most bytes of a download one answer carries (its base64 stays
/// well inside a tunnel frame).
pub const PIECE: usize = 256 << 10;

/// The file holding the id of the command that last restarted the
/// gateway.
const RESTARTED_BY: &str = "restarted-by-command";

/// How long the gateway waits after answering before it restarts, so
/// the answer leaves first.
const ANSWER_LEAVES: Duration = Duration::from_millis(500);

/// Carries out the console command `name` (id `id`); `None` when `name`
/// is not one.
pub fn carry_out(
    s: &AdminState,
    id: &str,
    name: &str,
    args: &Value,
) -> Option<Result<Value, String>> {
    let result = match name {
        "collect_logs" => collect_logs(s),
        "trace" => trace(s, args),
        "download" => download(s, args),
        "reboot" => restart(s, id, "reboot", |_| Ok(json!({}))),
        "relink" => restart(s, id, "relink", |s| take(s, args)),
        "update_offer" => updater(s).and_then(|u| u.offer(args)),
        "update_piece" => updater(s).and_then(|u| u.piece(args)),
        "update_status" => updater(s).map(|u| u.json()),
        "support_ssh" => support_ssh(s, args),
        "data_reset" => restart(s, id, "data reset", |s| {
            let removed = reset_gateway(s, Reset::Data, "the cloud platform")?;
            Ok(json!({ "removed": removed }))
        }),
        _ => return None,
    };
    Some(result)
}

/// `support_ssh {"key"}` opens the window, `{"off": true}` closes it,
/// `{}` asks.
fn support_ssh(s: &AdminState, args: &Value) -> Result<Value, String> {
    if args["off"] == true {
        return Ok(super::console::support_off(
            s,
            "the cloud platform closed it",
        ));
    }
    match args["key"].as_str() {
        Some(key) => super::console::support_on(s, key, "the cloud platform"),
        None => Ok(s.admin.support.json(std::time::SystemTime::now())),
    }
}

fn updater(s: &AdminState) -> Result<&std::sync::Arc<super::update::Updater>, String> {
    s.update
        .as_ref()
        .ok_or_else(|| "updates wait for onboarding: the gateway does not carry calls yet".into())
}

fn trace(s: &AdminState, args: &Value) -> Result<Value, String> {
    match args.get("seconds") {
        None | Some(Value::Null) => Ok(trace_json(&s.admin.trace.lock().expect("trace"))),
        Some(n) => {
            let seconds = n.as_u64().ok_or("seconds: a whole number from 1 to 300")?;
            start_trace(s, seconds).map_err(|(_, why)| why)
        }
    }
}

fn download(s: &AdminState, args: &Value) -> Result<Value, String> {
    let url = args["url"].as_str().ok_or("url: the link to read")?;
    let token = url.strip_prefix("/downloads/").unwrap_or(url);
    let offset = match &args["offset"] {
        Value::Null => 0,
        n => n.as_u64().ok_or("offset: a byte count")? as usize,
    };
    let piece = s.admin.downloads.read(token, Instant::now(), |d| {
        let end = d.bytes.len().min(offset.saturating_add(PIECE));
        let piece = d.bytes.get(offset..end).unwrap_or_default();
        (d.file_name.clone(), d.bytes.len(), end, piece.to_vec())
    });
    match piece {
        Fetch::Ready((file, total, _, _)) if offset > total => {
            Err(format!("offset: {file} holds {total} bytes"))
        }
        Fetch::Ready((file, total, end, piece)) => Ok(json!({
            "file": file,
            "total": total,
            "offset": offset,
            "data_base64": base64::engine::general_purpose::STANDARD.encode(piece),
            "next": (end < total).then_some(end),
        })),
        Fetch::Expired => Err("this download link expired: ask for a new one".into()),
        Fetch::Unknown => Err("no such download".into()),
    }
}

/// Answers `done` when command `id` already restarted the gateway;
/// otherwise runs `first`, keeps `id`, and restarts once the answer has
/// left.
fn restart(
    s: &AdminState,
    id: &str,
    what: &str,
    first: impl FnOnce(&AdminState) -> Result<Value, String>,
) -> Result<Value, String> {
    let kept = s.admin.state_dir.join(RESTARTED_BY);
    if restarted_by(&kept).as_deref() == Some(id) {
        return Ok(
            json!({ "result": format!("done: the gateway started again after this {what}") }),
        );
    }
    let mut body = first(s)?;
    crate::state_file::write(&kept, id.as_bytes())
        .map_err(|e| format!("the gateway could not note the command: {e}"))?;
    tracing::info!("admin: {what} asked by the cloud platform (command {id})");
    let host = s.admin.host.clone();
    let why = format!("{what} from the cloud platform");
    tokio::spawn(async move {
        tokio::time::sleep(ANSWER_LEAVES).await;
        host.restart(&why);
    });
    body["result"] = json!("the gateway drains its calls and starts again");
    Ok(body)
}

fn restarted_by(kept: &Path) -> Option<String> {
    std::fs::read_to_string(kept)
        .ok()
        .map(|s| s.trim().to_owned())
}
