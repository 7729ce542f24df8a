//! The gateway before it is onboarded: the admin page and its wizard, and
//! the tunnel when the file links it already.

use crate::admin::{AdminSetup, AdminState};
use crate::config::SetupConfig;
use crate::node_control::{Exit, NodeControl};
use crate::signalling::{CloudPath, Counters};
use anyhow::Context;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The gateway before it is onboarded: the admin page and its wizard
/// only, until SIGINT/SIGTERM, `seconds`, or the wizard asks for a
/// restart with its settings.
pub fn run_setup(
    setup: SetupConfig,
    config: &std::path::Path,
    control: NodeControl,
    seconds: Option<u64>,
) -> anyhow::Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let admin = AdminSetup::open(
            setup.admin.clone(),
            &setup.state_dir,
            config,
            control.clone(),
            setup.account.clone(),
            setup.missing.clone(),
            crate::admin::Watch::default(),
        )?;
        tracing::info!(
            "setup: the gateway does not carry calls yet ({}); finish the wizard on the admin page",
            setup.missing.join("; ")
        );
        if setup.admin.https_listen.is_none() {
            tracing::warn!("warning: [admin] https_listen is off: the wizard cannot be reached");
        }
        let cloud: CloudPath = Arc::new(Mutex::new(None));
        let (sink, events) = crate::events::EventSink::new();
        let mut state = AdminState {
            admin,
            events: setup.tunnel.as_ref().map(|_| sink),
            counters: Arc::new(Counters::default()),
            cloud,
            started: Instant::now(),
            profile: (String::new(), 0),
            cti: None,
            users: None,
            token: setup.admin.token.clone(),
            softphones: None,
            tunnel: None,
            update: None,
        };
        for p in &setup.tunnel_problems {
            tracing::warn!("warning: the tunnel stays off until this is fixed: {p}");
        }
        // A gateway linked already (the file has [tunnel]) talks to the
        // platform while it waits for its wizard: a replacement relinks.
        if let Some(t) = &setup.tunnel {
            let cfg = crate::tunnel::TunnelConfig::from_settings(t, &setup.state_dir, "setup")?;
            state.tunnel = Some(crate::tunnel::start(cfg, events, state.clone())?);
        }
        crate::admin::diagnostics::start(state.clone());
        crate::operations::console::support_watch(state.clone());
        crate::admin::start(state)
            .await
            .context("starting the admin page")?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let exit = tokio::select! {
            _ = tokio::signal::ctrl_c() => Exit::Stop,
            _ = term.recv() => Exit::Stop,
            why = control.requested() => Exit::Restart(why),
            _ = async {
                match seconds {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            } => Exit::Stop,
        };
        anyhow::Ok(exit)
    })
}
