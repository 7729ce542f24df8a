//! The management tunnel's tokio driver (docs/protocols-tunnel.md): one task owns
//! the sans-IO session (`pbxlink-tunnel`), the outbox on disk and the
//! user sync, and carries bytes over one TLS connection to the platform,
//! dialled again after a jittered back-off whenever it goes.
//!
//! Producers (calls, the CSTA link) hand events to an [`crate::events::EventSink`]; the
//! driver writes each batch to the outbox (synced) before offering it to
//! the session, so an event is on disk before it is on the wire. The
//! platform's commands are carried out here (sync) or by the CSTA link
//! (CTI), each answered once.

pub mod handle;

use crate::alarms::{CSTA_LOST, OUTBOX_OVERFLOW};
use crate::events::unix_ms;
use crate::operations::state::{AdminState, CtiCommand, service, status_brief, status_json};
use crate::outbox::Outbox;
use crate::sync::UserSync;
pub use handle::Tunnel;
use handle::{Ask, View};
use pbxlink_tunnel::client::{ClientConfig, ClientOutput, TunnelClient};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;

/// Events waiting to be written per batch, at most.
const BATCH: usize = 1024;

/// How the tunnel runs.
#[derive(Clone)]
pub struct TunnelConfig {
    /// The platform's management endpoint (`host:port`).
    pub endpoint: String,
    /// The name its certificate must carry.
    pub server_name: String,
    /// The CA it must chain to.
    pub ca: PathBuf,
    /// The account.
    pub account: String,
    /// The gateway's id.
    pub gateway: String,
    /// The gateway's secret.
    pub token: String,
    /// Where the outbox lives.
    pub outbox_dir: PathBuf,
    /// Most unacknowledged events kept.
    pub outbox_events: usize,
    /// The state directory (sync state).
    pub state_dir: PathBuf,
    /// Between scheduled user syncs (none: on push and on demand only).
    pub sync_every: Option<Duration>,
    /// The profile, for `hello`.
    pub profile: String,
}

impl TunnelConfig {
    /// The tunnel `[tunnel]` asks for, its state in `state_dir`, saying
    /// `profile` in its hello.
    pub fn from_settings(
        t: &crate::config::TunnelSettings,
        state_dir: &std::path::Path,
        profile: &str,
    ) -> anyhow::Result<TunnelConfig> {
        Ok(TunnelConfig {
            endpoint: t.endpoint.clone(),
            server_name: t.server_name.clone(),
            ca: t.ca.clone(),
            account: t.account.clone(),
            gateway: match &t.gateway_id {
                Some(id) => id.clone(),
                None => gateway_id(state_dir)?,
            },
            token: t.token.clone(),
            outbox_dir: state_dir.join("outbox"),
            outbox_events: t.outbox_events,
            state_dir: state_dir.to_owned(),
            sync_every: t.sync_every,
            profile: profile.to_owned(),
        })
    }
}

/// The gateway's id: made at first start (random), kept in the state
/// directory so the platform knows it again after a restart.
pub fn gateway_id(state_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = state_dir.join("gateway-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let id: String = crate::random::random::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = format!("gw-{id}");
    std::fs::create_dir_all(state_dir)?;
    anyhow::Context::with_context(std::fs::write(&path, &id), || {
        format!("writing {}", path.display())
    })?;
    Ok(id)
}

impl std::fmt::Debug for TunnelConfig {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConfig")
            .field("endpoint", &self.endpoint)
            .field("account", &self.account)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

enum Conn {
    Up(mpsc::Sender<Vec<u8>>),
    Bytes(Vec<u8>),
    Closed(String),
}

/// Starts the driver; `admin` is what status and CTI commands read.
pub fn start(
    cfg: TunnelConfig,
    events: mpsc::UnboundedReceiver<(String, u64, Value)>,
    admin: AdminState,
) -> anyhow::Result<Tunnel> {
    let outbox = Outbox::open(&cfg.outbox_dir, cfg.outbox_events)?;
    let tls = crate::tls::client(&cfg.ca)?;
    tracing::info!(
        "tunnel: to {} as {} of account {}; {} event(s) waiting in the outbox",
        cfg.endpoint,
        cfg.gateway,
        cfg.account,
        outbox.len()
    );
    let gateway = cfg.gateway.clone();
    let (asks, asks_rx) = mpsc::channel(16);
    let view = Arc::new(Mutex::new(View {
        state: "connecting".into(),
        ..View::default()
    }));
    let tunnel = Tunnel {
        asks,
        view: view.clone(),
        gateway,
    };
    // The driver's state knows the tunnel too: its `status` command
    // answers the same body as `GET /api/status`.
    let admin = AdminState {
        tunnel: Some(tunnel.clone()),
        ..admin
    };
    tokio::spawn(drive(cfg, tls, outbox, events, asks_rx, admin, view));
    Ok(tunnel)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    cfg: TunnelConfig,
    tls: Arc<rustls::ClientConfig>,
    mut outbox: Outbox,
    mut events: mpsc::UnboundedReceiver<(String, u64, Value)>,
    mut asks: mpsc::Receiver<Ask>,
    admin: AdminState,
    view: Arc<Mutex<View>>,
) {
    let now = Instant::now();
    let mut client = TunnelClient::new(
        now,
        ClientConfig {
            account: cfg.account.clone(),
            gateway: cfg.gateway.clone(),
            token: cfg.token.clone(),
            versions: json!({ "pbxlink": crate::operations::versions::GATEWAY, "protocol": pbxlink_tunnel::message::VERSION }),
            profile: cfg.profile.clone(),
            window: 256,
            hello_timeout: Duration::from_secs(10),
        },
        outbox.acked(),
    );
    let mut sync = UserSync::open(&cfg.state_dir);
    let (conn_tx, mut conn_rx) = mpsc::channel::<(u64, Conn)>(256);
    let (answers_tx, mut answers_rx) = mpsc::unbounded_channel::<(String, Result<Value, String>)>();
    let mut generation = 0u64;
    let mut writer: Option<mpsc::Sender<Vec<u8>>> = None;
    let mut stop_conn: Option<oneshot::Sender<()>> = None;
    let mut reconnect_at = Some(now);
    let mut failures = 0u32;
    let mut rng = u64::from_be_bytes(crate::random::random()) | 1;
    let mut next_sync = cfg.sync_every.map(|d| now + d);
    let mut users_changed = admin.users.as_ref().map(|u| u.changes());
    let mut last_status = Value::Null;
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        // Carry out what the session asks.
        while let Some(o) = client.poll_output() {
            match o {
                ClientOutput::Transmit(b) => {
                    if let Some(w) = &writer
                        && w.try_send(b).is_err()
                    {
                        // The platform does not read: start over.
                        client.handle_closed();
                        writer = None;
                        stop_conn = None;
                        generation += 1;
                        failures += 1;
                        reconnect_at = Some(Instant::now() + backoff(failures, &mut rng));
                        tracing::info!(
                            "tunnel: the platform does not read what is sent; reconnecting"
                        );
                    }
                }
                ClientOutput::Up { session } => {
                    failures = 0;
                    let mut v = view.lock().expect("tunnel view");
                    v.state = "connected".into();
                    v.session = Some(session.clone());
                    v.connects += 1;
                    tracing::info!(
                        "tunnel: connected to {} (session {session}); {} event(s) to deliver",
                        cfg.endpoint,
                        outbox.len()
                    );
                }
                ClientOutput::Acked(upto) => {
                    outbox.ack(upto);
                    if let Some(dropped) = outbox.overflow_over() {
                        // The platform has all that was left: the
                        // episode's clearing, outside the bound too.
                        tracing::info!(
                            "tunnel: the outbox overflow is over ({dropped} event(s) were dropped); alarm outbox_overflow cleared"
                        );
                        admin.admin.alarms.clear(OUTBOX_OVERFLOW, "outbox");
                        let now = Instant::now();
                        for e in outbox.append_outside_bound(vec![(
                            "alarm".into(),
                            unix_ms(),
                            json!({ "alarm": OUTBOX_OVERFLOW, "raised": false, "detail": format!("{dropped} event(s) were dropped") }),
                        )]) {
                            client.offer(now, e);
                        }
                    }
                }
                ClientOutput::Command { id, name, args } => {
                    view.lock().expect("tunnel view").commands += 1;
                    match name.as_str() {
                        "sync_now" => {
                            let report =
                                run_sync(&mut sync, &admin, &mut outbox, &mut client, &view);
                            client.answer(
                                Instant::now(),
                                &id,
                                report
                                    .ok_or_else(|| "users are not kept on this gateway".to_owned()),
                            );
                        }
                        "status" => client.answer(Instant::now(), &id, Ok(status_json(&admin))),
                        "cti" => {
                            let answers = answers_tx.clone();
                            let admin = admin.clone();
                            tokio::spawn(async move {
                                let result = cti(&admin, args).await;
                                let _ = answers.send((id, result));
                            });
                        }
                        _ => {
                            let result =
                                crate::operations::commands::carry_out(&admin, &id, &name, &args)
                                    .unwrap_or_else(|| {
                                        Err(format!("{name:?} is not a command this gateway knows"))
                                    });
                            client.answer(Instant::now(), &id, result);
                        }
                    }
                }
                ClientOutput::PeerError(e) => tracing::info!("tunnel: the platform says: {e}"),
                ClientOutput::Close(why) | ClientOutput::Refused(why) => {
                    let refused = why.starts_with("unauthorized") || why.starts_with("version");
                    writer = None;
                    stop_conn = None;
                    generation += 1;
                    failures += 1;
                    let wait = if refused {
                        Duration::from_secs(60)
                    } else {
                        backoff(failures, &mut rng)
                    };
                    reconnect_at = Some(Instant::now() + wait);
                    view.lock().expect("tunnel view").state = format!("down: {why}");
                    tracing::info!(
                        "tunnel: lost: {why}; next try in {:.1} s",
                        wait.as_secs_f32()
                    );
                }
            }
        }
        {
            let mut v = view.lock().expect("tunnel view");
            v.backlog = outbox.len();
            v.acked = outbox.acked();
            v.last_id = outbox.last_id();
            v.dropped = outbox.counters().dropped;
            v.write_failures = outbox.counters().write_failures;
            v.events_sent = client.counters().events_sent;
            v.acks_beyond_sent = client.counters().acks_beyond_sent;
        }
        let timer = [client.poll_timeout(), reconnect_at, next_sync]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            Some(first) = events.recv() => {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match events.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                store(&mut outbox, &mut client, &view, &admin.admin.alarms, batch);
            }
            Some((g, ev)) = conn_rx.recv() => {
                if g != generation {
                    continue;
                }
                let now = Instant::now();
                match ev {
                    Conn::Up(w) => {
                        writer = Some(w);
                        client.handle_connected(now, outbox.pending());
                    }
                    Conn::Bytes(b) => client.handle_input(now, &b),
                    Conn::Closed(why) => {
                        client.handle_closed();
                        writer = None;
                        stop_conn = None;
                        generation += 1;
                        failures += 1;
                        let wait = backoff(failures, &mut rng);
                        reconnect_at = Some(now + wait);
                        view.lock().expect("tunnel view").state = format!("down: {why}");
                        tracing::info!("tunnel: lost: {why}; next try in {:.1} s", wait.as_secs_f32());
                    }
                }
            }
            Some((id, result)) = answers_rx.recv() => client.answer(Instant::now(), &id, result),
            Some(ask) = asks.recv() => match ask {
                Ask::Sync(reply) => {
                    let report = run_sync(&mut sync, &admin, &mut outbox, &mut client, &view);
                    let _ = reply.send(report.unwrap_or(Value::Null));
                }
                Ask::Stop(reply) => {
                    let mut batch = Vec::new();
                    while let Ok(e) = events.try_recv() {
                        batch.push(e);
                    }
                    if !batch.is_empty() {
                        store(&mut outbox, &mut client, &view, &admin.admin.alarms, batch);
                    }
                    // Let the last frames leave.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = reply.send(());
                    return;
                }
            },
            Some(()) = async {
                match &mut users_changed {
                    Some(rx) => rx.changed().await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                // The PBX pushed its users: sync them on.
                run_sync(&mut sync, &admin, &mut outbox, &mut client, &view);
            }
            _ = status_tick.tick() => {
                let brief = status_brief(&admin);
                if brief != last_status {
                    if last_status["csta"] != brief["csta"] && !last_status.is_null() {
                        let lost = brief["csta"].as_str().is_some_and(|c| c.starts_with("Lost"));
                        let alarms = &admin.admin.alarms;
                        if lost {
                            let detail = brief["csta"].as_str().unwrap_or_default();
                            alarms.raise(CSTA_LOST, "csta", detail, crate::cdr::rfc3339(SystemTime::now()));
                        } else {
                            alarms.clear(CSTA_LOST, "csta");
                        }
                        store(&mut outbox, &mut client, &view, &admin.admin.alarms, vec![(
                            "alarm".into(),
                            unix_ms(),
                            json!({ "alarm": "csta_lost", "raised": lost, "detail": brief["csta"] }),
                        )]);
                    }
                    store(&mut outbox, &mut client, &view, &admin.admin.alarms, vec![("status".into(), unix_ms(), brief.clone())]);
                    last_status = brief;
                }
            }
            _ = tokio::time::sleep_until(timer) => {
                let now = Instant::now();
                client.handle_timeout(now);
                if next_sync.is_some_and(|t| t <= now) {
                    next_sync = cfg.sync_every.map(|d| now + d);
                    run_sync(&mut sync, &admin, &mut outbox, &mut client, &view);
                }
                if reconnect_at.is_some_and(|t| t <= now) {
                    reconnect_at = None;
                    generation += 1;
                    let (tx, rx) = oneshot::channel();
                    stop_conn = Some(tx);
                    view.lock().expect("tunnel view").state = "connecting".into();
                    tokio::spawn(connection(
                        generation,
                        cfg.endpoint.clone(),
                        cfg.server_name.clone(),
                        tls.clone(),
                        conn_tx.clone(),
                        rx,
                    ));
                }
            }
        }
        let _ = &stop_conn;
    }
}

/// Writes `batch` to the outbox, then offers it to the session. The
/// first drop of an overflow episode raises `outbox_overflow`: on the page
/// (its text follows the count) and to the platform once, as an event
/// kept outside the bound; it clears when the platform has acknowledged
/// what was left (see `ClientOutput::Acked`).
fn store(
    outbox: &mut Outbox,
    client: &mut TunnelClient,
    view: &Mutex<View>,
    alarms: &crate::alarms::Alarms,
    batch: Vec<(String, u64, Value)>,
) {
    let now = Instant::now();
    let began = outbox.overflowing().is_none();
    let (added, dropped) = outbox.append(batch);
    for e in added {
        client.offer(now, e);
    }
    if let (true, Some(total)) = (dropped > 0, outbox.overflowing()) {
        let detail = format!("{total} event(s) for the platform dropped, oldest first");
        alarms.raise(
            OUTBOX_OVERFLOW,
            "outbox",
            &detail,
            crate::cdr::rfc3339(SystemTime::now()),
        );
        if began {
            tracing::warn!(
                "tunnel: the outbox is full: the oldest events are dropped (alarm outbox_overflow)"
            );
            for e in outbox.append_outside_bound(vec![(
                "alarm".into(),
                unix_ms(),
                json!({ "alarm": OUTBOX_OVERFLOW, "raised": true, "detail": detail }),
            )]) {
                client.offer(now, e);
            }
        }
    }
    view.lock().expect("tunnel view").backlog = outbox.len();
}

/// Runs a user sync: its events into the outbox, then the sync state.
fn run_sync(
    sync: &mut UserSync,
    admin: &AdminState,
    outbox: &mut Outbox,
    client: &mut TunnelClient,
    view: &Mutex<View>,
) -> Option<Value> {
    let users = admin.users.as_ref()?;
    users.set_sync_running(true);
    let run = users.read(|d| sync.run(d));
    let report = run.report();
    let now = unix_ms();
    store(
        outbox,
        client,
        view,
        &admin.admin.alarms,
        run.events
            .iter()
            .map(|(k, b)| (k.clone(), now, b.clone()))
            .collect(),
    );
    if let Err(e) = sync.commit(run) {
        tracing::info!(
            "tunnel: the sync state cannot be saved ({e}); the next sync sends everything again"
        );
    }
    users.set_sync_running(false);
    view.lock().expect("tunnel view").syncs += 1;
    tracing::info!(
        "tunnel: user sync {}: {} added or changed, {} removed, {} not onboarded",
        report["sync"],
        report["upserted"],
        report["removed"],
        report["errors"]
    );
    Some(report)
}

/// A CTI command from the platform.
async fn cti(admin: &AdminState, args: Value) -> Result<Value, String> {
    let cti = admin.cti.as_ref().ok_or("the CSTA link is off")?;
    let mut args = args;
    let name = args
        .as_object_mut()
        .and_then(|m| m.remove("service"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or("a cti command needs \"service\"")?;
    let command: CtiCommand =
        serde_json::from_value(args).map_err(|e| format!("bad cti arguments: {e}"))?;
    let service = service(&name, command)?;
    match cti.request(service).await {
        Ok(pbxlink_csta::session::ServiceResult::Done) => Ok(json!({})),
        Ok(pbxlink_csta::session::ServiceResult::Call(c)) => {
            Ok(json!({ "call": c.call, "device": c.device }))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// 1 s doubling to 60 s, drawn between half and all of it.
fn backoff(failures: u32, rng: &mut u64) -> Duration {
    let d = Duration::from_secs(1)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(60));
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    d.mul_f64(0.5 + (*rng >> 11) as f64 / (1u64 << 53) as f64 / 2.0)
}

async fn connection(
    generation: u64,
    endpoint: String,
    server_name: String,
    tls: Arc<rustls::ClientConfig>,
    up: mpsc::Sender<(u64, Conn)>,
    mut stop: oneshot::Receiver<()>,
) {
    let report = |c| {
        let up = up.clone();
        async move {
            let _ = up.send((generation, c)).await;
        }
    };
    let tcp =
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&endpoint)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return report(Conn::Closed(format!("cannot connect to {endpoint}: {e}"))).await;
            }
            Err(_) => {
                return report(Conn::Closed(format!(
                    "no answer from {endpoint} within 10 s"
                )))
                .await;
            }
        };
    let Ok(name) = rustls::pki_types::ServerName::try_from(server_name.clone()) else {
        return report(Conn::Closed(format!(
            "{server_name:?} is not a server name"
        )))
        .await;
    };
    let stream = match tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return report(Conn::Closed(format!("TLS with {endpoint}: {e}"))).await,
        Err(_) => {
            return report(Conn::Closed(format!(
                "TLS with {endpoint} did not finish within 10 s"
            )))
            .await;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(1024);
    report(Conn::Up(wtx)).await;
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let why = loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => break "the platform closed the connection".to_owned(),
                Ok(n) => report(Conn::Bytes(buf[..n].to_vec())).await,
                Err(e) => break format!("connection error: {e}"),
            },
            _ = &mut stop => {
                let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
                return;
            }
        }
    };
    writer.abort();
    report(Conn::Closed(why)).await;
}
