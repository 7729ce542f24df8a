//! The node's services wired together and run: the CSTA link, the
//! user-config API, the admin page, the tunnel and the SIP side with its
//! calls, on one runtime, until a stop or a restart; then drained in
//! order (calls, the CSTA link, the tunnel's outbox).

use crate::events::EventSink;
use crate::node_control::Exit;
use crate::signalling::{
    self, CallsConfig, CallsSetup, CloudPath, Counters, SipListenArgs, SubscriberSetup, Trust,
};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the node needs to carry calls (`pbxlink run`).
pub struct B2buaSetup {
    /// The running data plane.
    pub plane: pbxlink_dataplane::engine::DataPlane,
    /// Relay ports.
    pub ports: pbxlink_dataplane::ports::PortPool,
    /// Addresses and identities of the calls.
    pub config: CallsConfig,
    /// Who may use the PBX trunk.
    pub trust: Option<Trust>,
    /// Where call records go.
    pub cdrs: Option<std::path::PathBuf>,
    /// Where HEP3 copies go (none: capture off).
    pub capture: Option<crate::config::CaptureSettings>,
    /// The admin page and API (none: off).
    pub admin: Option<Arc<crate::admin::AdminSetup>>,
    /// Software updates, and whether this start rolled one back.
    pub update: Option<(Arc<crate::operations::update::Updater>, bool)>,
    /// The profile the admin API reports (name, call limit).
    pub profile: (String, usize),
    /// How long calls up may go on after SIGTERM.
    pub drain: Duration,
    /// The PBX's users, its CSTA link and the APIs around them.
    pub pbx_side: PbxSide,
}

/// What the node runs toward the PBX besides SIP: the users it pushes, the
/// CSTA link monitoring them, and who may give commands.
pub struct PbxSide {
    /// The users (loaded from the state directory).
    pub users: Arc<crate::users::Users>,
    /// The CSTA link (none: off).
    pub cti: Option<crate::cti::CtiConfig>,
    /// The user-config API, where its certificate is kept, and who may
    /// reach it (none: off).
    pub users_api: Option<(
        crate::config::UsersApiConfig,
        PathBuf,
        pbxlink_dataplane::net::Networks,
    )>,
    /// The admin API's command token.
    pub admin_token: Option<String>,
    /// The subscriber side (none: off).
    pub subscriber: Option<SubscriberSetup>,
    /// The tunnel to the cloud platform (none: off).
    pub tunnel: Option<crate::tunnel::TunnelConfig>,
}

/// Runs the node: the SIP side, and calls with everything around them
/// when `b2bua` is given; how it ended (a restart the admin page asked
/// for, or a stop).
pub fn serve(args: &SipListenArgs, mut b2bua: Option<B2buaSetup>) -> anyhow::Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = Arc::new(Counters::default());
        let cloud_path: CloudPath = Arc::new(Mutex::new(None));
        let sub = b2bua.as_mut().and_then(|b| b.pbx_side.subscriber.take());
        let softphones = sub.as_ref().map(|s| s.view.clone());
        let drain = b2bua.as_ref().map_or(Duration::ZERO, |b| b.drain);
        // Events for the cloud platform, when a tunnel carries them.
        let (sink, sink_rx) = match b2bua.as_ref().and_then(|b| b.pbx_side.tunnel.as_ref()) {
            Some(_) => {
                let (s, r) = EventSink::new();
                (Some(s), Some(r))
            }
            None => (None, None),
        };
        let cti = b2bua.as_ref().and_then(|b| {
            b.pbx_side.cti.clone().map(|cfg| {
                crate::cti::Cti::start(cfg, b.pbx_side.users.cti_devices(), sink.clone())
            })
        });
        if let Some(b) = &b2bua
            && let Some((api, state_dir, trusted)) = &b.pbx_side.users_api
        {
            start_users_api(api, state_dir, trusted.clone(), b.pbx_side.users.clone()).await?;
        }
        let control = b2bua
            .as_ref()
            .and_then(|b| b.admin.as_ref().map(|a| a.control.clone()));
        let mut admin_state = b2bua.as_ref().and_then(|b| {
            Some(crate::admin::AdminState {
                admin: b.admin.clone()?,
                events: sink.clone(),
                counters: c.clone(),
                cloud: cloud_path.clone(),
                started: Instant::now(),
                profile: b.profile.clone(),
                cti: cti.clone(),
                users: Some(b.pbx_side.users.clone()),
                token: b.pbx_side.admin_token.clone(),
                softphones: softphones.clone(),
                tunnel: None,
                update: b.update.as_ref().map(|(u, _)| u.clone()),
            })
        });
        let tunnel = match (
            b2bua.as_mut().and_then(|b| b.pbx_side.tunnel.take()),
            sink_rx,
            &admin_state,
        ) {
            (Some(cfg), Some(rx), Some(state)) => {
                Some(crate::tunnel::start(cfg, rx, state.clone())?)
            }
            _ => None,
        };
        if let Some(state) = &mut admin_state {
            state.tunnel = tunnel.clone();
        }
        if let (Some(state), Some((u, rolled_back_now))) =
            (&admin_state, b2bua.as_ref().and_then(|b| b.update.clone()))
        {
            let pbx_watched = b2bua
                .as_ref()
                .is_some_and(|b| !b.config.pbx_keepalive.is_zero());
            start_updates(state, u, rolled_back_now, pbx_watched);
        }
        if let Some(state) = admin_state {
            // The start-up diagnostics, then now and then while it runs.
            crate::admin::diagnostics::start(state.clone());
            crate::operations::console::support_watch(state.clone());
            crate::admin::start(state).await?;
        }
        let calls = b2bua.map(|b| CallsSetup {
            alarms: b.admin.as_ref().map(|a| a.alarms.clone()),
            live: b.admin.as_ref().map(|a| a.live.clone()),
            capture: b.capture,
            plane: b.plane,
            ports: b.ports,
            config: b.config,
            trust: b.trust,
            cdrs: b.cdrs,
            events: sink,
        });
        let sip = signalling::start(args, c.clone(), cloud_path.clone(), calls, sub).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let exit = tokio::select! {
            _ = tokio::signal::ctrl_c() => Exit::Stop,
            _ = term.recv() => Exit::Stop,
            why = async {
                match &control {
                    Some(c) => c.requested().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("restart: {why}");
                Exit::Restart(why)
            }
            _ = async {
                match args.seconds {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            } => Exit::Stop,
        };
        sip.drain(drain, &mut term).await;
        if let Some(cti) = &cti {
            cti.stop().await;
        }
        // The calls' records and the link's events are in the outbox.
        if let Some(t) = &tunnel {
            t.stop().await;
        }
        tracing::info!("final: {}", c.line());
        anyhow::Ok(exit)
    })
}

/// Updates: their reports to the alarms and the platform, alarms a
/// failed update left, the apply task and the health check a new version
/// owes.
fn start_updates(
    state: &crate::admin::AdminState,
    u: Arc<crate::operations::update::Updater>,
    rolled_back_now: bool,
    pbx_watched: bool,
) {
    use crate::operations::update::{Report, health};
    let to = state.clone();
    u.set_reporter(Box::new(move |r| match r {
        Report::Event(body) => {
            if let Some(e) = &to.events {
                e.emit("update", body);
            }
        }
        Report::Alarm(code, text, tell) => {
            to.admin
                .alarms
                .raise(code, "update", &text, crate::cdr::rfc3339(std::time::SystemTime::now()));
            if tell && let Some(e) = &to.events {
                e.emit(
                    "alarm",
                    serde_json::json!({ "alarm": code, "raised": true, "source": "update", "detail": text }),
                );
            }
        }
    }));
    u.raise_left_alarms(rolled_back_now);
    tokio::spawn(crate::operations::update::apply::run(u.clone()));
    let checked = state.clone();
    tokio::spawn(health::run(u, move || {
        health::verdict(
            &crate::operations::state::status_json(&checked),
            pbx_watched,
        )
    }));
}

/// Starts the PBX's user-config API (HTTPS) for the PBX's addresses.
async fn start_users_api(
    api: &crate::config::UsersApiConfig,
    state_dir: &std::path::Path,
    trusted: pbxlink_dataplane::net::Networks,
    users: Arc<crate::users::Users>,
) -> anyhow::Result<()> {
    let (cert, key) = crate::https::certificate(
        api.tls.clone(),
        state_dir,
        "users-api",
        &[api.listen.ip().to_string(), "pbxlink.local".to_owned()],
    )?;
    let acceptor = TlsAcceptor::from(crate::tls::server(&cert, &key)?);
    let listener = TcpListener::bind(api.listen).await.with_context(|| {
        format!(
            "binding the user-config API on {} ([users] listen)",
            api.listen
        )
    })?;
    tracing::info!(
        "users: user-config API on https://{}/api/v1/users, certificate {} (SHA-256 {})",
        api.listen,
        cert.display(),
        crate::https::fingerprint(&cert)?
    );
    let router = crate::users::api::router(crate::users::api::ApiState::new(
        users,
        api.username.clone(),
        api.password.clone(),
    ));
    tokio::spawn(crate::https::serve(
        listener,
        acceptor,
        router,
        Arc::new(move |ip| trusted.contains(ip)),
        crate::https::Limits::default(),
    ));
    Ok(())
}
