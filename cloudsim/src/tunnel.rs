//! cloudsim's side of the management tunnel (docs/protocols-tunnel.md), written
//! from the document with its own framing and plain JSON values: a TLS
//! listener; per connection a `hello` checked against the accounts, then
//! events stored once and acknowledged, pings answered, commands sent and
//! their results awaited. A command not answered before the connection
//! goes is sent again, with the same id, when the gateway is back. A
//! replacement's `relink_request` is answered with the `relink` command
//! carrying the replaced gateway's stored settings (same account only).

use crate::store::{Store, Stored};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

/// The platform's shared state.
pub struct Platform {
    /// Accounts and what gateways delivered.
    pub store: Store,
    /// Each connected gateway's write queue.
    links: HashMap<String, mpsc::UnboundedSender<Vec<u8>>>,
    /// Commands sent and not answered, by id.
    pending: HashMap<String, Pending>,
    next_command: u64,
}

/// A command waiting for its result.
struct Pending {
    /// The gateway it was sent to.
    gateway: String,
    /// Its frame, sent again when the gateway reconnects.
    frame: Vec<u8>,
    /// Who waits for the result.
    reply: oneshot::Sender<Value>,
}

/// Shared between the tasks.
pub type Shared = Arc<Mutex<Platform>>;

impl Platform {
    /// A platform with these accounts.
    pub fn new(store: Store) -> Shared {
        Arc::new(Mutex::new(Platform {
            store,
            links: HashMap::new(),
            pending: HashMap::new(),
            next_command: 1,
        }))
    }
}

fn frame(v: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).expect("values serialise");
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn msg(kind: &str, mut fields: Value) -> Vec<u8> {
    fields["v"] = json!(1);
    fields["type"] = json!(kind);
    frame(&fields)
}

/// Sends `name` with `args` to `gateway` (the only one connected when
/// none is named) under `id` (a new one when none is given: an id given
/// again is a platform sending a command whose answer it lost); its
/// result, or why there is none.
pub async fn command(
    shared: &Shared,
    gateway: Option<&str>,
    id: Option<String>,
    name: &str,
    args: Value,
) -> Result<Value, String> {
    let (tx, rx) = oneshot::channel();
    {
        let mut p = shared.lock().expect("platform");
        let gw = match gateway {
            Some(g) => g.to_owned(),
            None => p
                .store
                .gateways
                .iter()
                .find(|(_, g)| g.connected)
                .map(|(id, _)| id.clone())
                .ok_or("no gateway is connected")?,
        };
        let id = id.unwrap_or_else(|| {
            p.next_command += 1;
            format!("c-{}", p.next_command - 1)
        });
        let bytes = msg("command", json!({ "id": id, "name": name, "args": args }));
        if let Some(link) = p.links.get(&gw) {
            let _ = link.send(bytes.clone());
        }
        p.pending.insert(
            id,
            Pending {
                gateway: gw,
                frame: bytes,
                reply: tx,
            },
        );
    }
    match tokio::time::timeout(Duration::from_secs(20), rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err("no result within 20 s".into()),
    }
}

/// Serves the tunnel on `listener`.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Shared) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                println!("cloudsim: tunnel: TLS with {peer} failed");
                return;
            };
            connection(tls, shared).await;
        });
    }
}

async fn connection(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, shared: Shared) {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut gateway: Option<String> = None;
    let mut last_rx = Instant::now();
    let mut last_tx = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let why = 'conn: loop {
        tokio::select! {
            r = rd.read(&mut chunk) => {
                let n = match r {
                    Ok(0) => break 'conn "closed by the gateway".to_owned(),
                    Ok(n) => n,
                    Err(e) => break 'conn format!("read error: {e}"),
                };
                last_rx = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                let mut acked = false;
                while buf.len() >= 4 {
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if len == 0 || len > 1 << 20 {
                        break 'conn format!("bad frame length {len}");
                    }
                    if buf.len() < 4 + len {
                        break;
                    }
                    let body: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
                    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                        break 'conn "not JSON".to_owned();
                    };
                    match handle(&shared, &tx, &mut gateway, &v) {
                        Step::Go => {}
                        Step::Ack => acked = true,
                        Step::End(why) => break 'conn why,
                    }
                }
                if acked && let Some(g) = &gateway {
                    let highest = shared.lock().expect("platform").store.gateways[g].highest;
                    let _ = tx.send(msg("ack", json!({ "upto": highest })));
                    last_tx = Instant::now();
                }
            }
            _ = tick.tick() => {
                if last_rx.elapsed() >= Duration::from_secs(45) {
                    break 'conn "nothing from the gateway for 45 s".to_owned();
                }
                if last_tx.elapsed() >= Duration::from_secs(15) {
                    let _ = tx.send(msg("ping", json!({ "t": 1 })));
                    last_tx = Instant::now();
                }
            }
        }
    };
    if let Some(g) = &gateway {
        let mut p = shared.lock().expect("platform");
        p.links.remove(g);
        p.store.gone(g);
        println!("cloudsim: tunnel: {g} gone: {why}");
    }
    writer.abort();
}

enum Step {
    Go,
    Ack,
    End(String),
}

fn handle(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    gateway: &mut Option<String>,
    v: &Value,
) -> Step {
    let kind = v["type"].as_str().unwrap_or_default();
    if v["v"].as_u64() != Some(1) {
        let _ = tx.send(msg(
            "error",
            json!({ "code": "version", "message": "cloudsim speaks version 1" }),
        ));
        return Step::End("another protocol version".into());
    }
    let mut p = shared.lock().expect("platform");
    match (kind, gateway.as_ref()) {
        ("hello", None) => {
            let (Some(account), Some(gw), Some(token)) = (
                v["account"].as_str(),
                v["gateway"].as_str(),
                v["token"].as_str(),
            ) else {
                let _ = tx.send(msg("error", json!({ "code": "bad_message", "message": "hello needs account, gateway and token", "ref_type": "hello" })));
                return Step::End("a hello without who it is".into());
            };
            if !p.store.admits(account, token) {
                let _ = tx.send(msg(
                    "error",
                    json!({ "code": "unauthorized", "message": "unknown account or wrong token" }),
                ));
                return Step::End(format!("{gw} refused: wrong token for {account}"));
            }
            let highest = p.store.hello(
                gw,
                account,
                json!({ "versions": v["versions"], "profile": v["profile"] }),
            );
            *gateway = Some(gw.to_owned());
            p.links.insert(gw.to_owned(), tx.clone());
            let session = format!("s-{}-{}", gw, p.store.gateways[gw].sessions);
            let _ = tx.send(msg(
                "welcome",
                json!({ "session": session, "heartbeat_s": 15 }),
            ));
            // What the gateway may have missed: where the platform stands,
            // and commands still waiting for their results.
            let _ = tx.send(msg("ack", json!({ "upto": highest })));
            for pending in p.pending.values() {
                if pending.gateway == gw {
                    let _ = tx.send(pending.frame.clone());
                }
            }
            println!(
                "cloudsim: tunnel: {gw} of {account} connected ({session}), {highest} event(s) stored so far"
            );
            Step::Go
        }
        (_, None) => {
            let _ = tx.send(msg(
                "error",
                json!({ "code": "bad_message", "message": "hello first", "ref_type": kind }),
            ));
            Step::End("no hello".into())
        }
        ("event", Some(gw)) => {
            let (Some(id), Some(k)) = (v["id"].as_u64(), v["kind"].as_str()) else {
                let _ = tx.send(msg("error", json!({ "code": "bad_message", "message": "event needs id and kind", "ref_type": "event" })));
                return Step::Go;
            };
            let gw = gw.clone();
            let new = p.store.event(
                &gw,
                Stored {
                    id,
                    kind: k.to_owned(),
                    at_ms: v["at_ms"].as_u64().unwrap_or(0),
                    body: v["body"].clone(),
                },
            );
            // A replacement asks for a gateway's settings: they go back
            // as the relink command.
            if new && k == "relink_request" {
                let replaces = v["body"]["replaces"].as_str().unwrap_or_default();
                let args = p.store.relink(&gw, replaces, &v["body"]["network"]);
                println!("cloudsim: tunnel: {gw} relinks in place of {replaces:?}");
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = command(&shared, Some(&gw), None, "relink", args).await;
                });
            }
            Step::Ack
        }
        ("result", Some(_)) => {
            let id = v["ref"].as_str().unwrap_or_default();
            if let Some(pending) = p.pending.remove(id) {
                let _ = pending
                    .reply
                    .send(json!({ "ok": v["ok"], "body": v["body"], "error": v["error"] }));
            }
            Step::Go
        }
        ("ping", Some(_)) => {
            let _ = tx.send(msg("pong", json!({ "t": v["t"] })));
            Step::Go
        }
        ("pong", Some(_)) => Step::Go,
        ("error", Some(gw)) => {
            println!("cloudsim: tunnel: {gw} says: {}", v);
            Step::Go
        }
        (other, Some(_)) => {
            let _ = tx.send(msg(
                "error",
                json!({ "code": "unknown_type", "ref_type": other }),
            ));
            Step::Go
        }
    }
}
