//! The subscriber side (SPEC §3, 5070): the gateway as its Softphone
//! users' phone on the PBX. A thin tokio loop around the sans-IO
//! registrations (`pbxlink-sip::register`) and a keep-alive watch on the
//! registrar, on a UDP listener of its own; requests and call responses
//! arriving there go to the node's core as the PBX side (`Peer::Subscriber`),
//! so a Softphone user's calls run through the same B2BUA, relays and
//! records as trunk calls.
//!
//! Users come from the PBX's push (Softphone role, with the SIP password
//! pushed with them) and from `[[subscriber.user]]`; a user who loses the
//! role is unregistered. When the registrar is lost and then answers
//! again (it may have restarted and forgotten everyone), every user
//! registers again.

use super::core::{Core, Inbound, Peer};
use super::counters::Counters;
use super::dscp::set_dscp;
use super::softphones::{Softphone, Softphones};
use crate::config::SubscriberConfig;
use pbxlink_b2bua::leg::Side;
use pbxlink_sip::digest::Credentials;
use pbxlink_sip::framing::{self, Frame};
use pbxlink_sip::keepalive::{Liveness, PbxWatch, WatchOutput};
use pbxlink_sip::register::{RegOutput, RegState, RegistrarTarget, Registrations};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

/// What a user without a SIP password shows.
const NO_PASSWORD: &str =
    "failed: no SIP password (the PBX pushes it as sip_password, or set [[subscriber.user]])";

/// What the subscriber side runs with.
pub struct SubscriberSetup {
    /// Its settings.
    pub config: SubscriberConfig,
    /// The PBX's Softphone users and their pushed SIP passwords.
    pub users: watch::Receiver<Vec<(String, Option<String>)>>,
    /// Where its state is shown.
    pub view: Softphones,
}

/// The users to register: the PBX's Softphone users (with the password
/// pushed, else one configured) and those configured.
fn wanted(
    pushed: &[(String, Option<String>)],
    configured: &[(String, String)],
) -> BTreeMap<String, Option<String>> {
    let mut all: BTreeMap<String, Option<String>> = configured
        .iter()
        .map(|(e, p)| (e.clone(), Some(p.clone())))
        .collect();
    for (e, p) in pushed {
        let entry = all.entry(e.clone()).or_insert(None);
        if p.is_some() {
            *entry = p.clone();
        }
    }
    all
}

/// Runs the subscriber side on `socket` until the node stops.
pub async fn run(
    socket: UdpSocket,
    mut setup: SubscriberSetup,
    core: Arc<Mutex<Core>>,
    counters: Arc<Counters>,
    mut outgoing: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
) {
    let cfg = setup.config.clone();
    let now = Instant::now();
    let seed = u64::from_be_bytes(crate::random::random());
    let token: String = crate::random::random::<4>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut regs = Registrations::new(
        now,
        RegistrarTarget {
            registrar: cfg.registrar,
            domain: cfg.domain.clone(),
            via: format!("SIP/2.0/UDP {}", cfg.listen),
            contact: cfg.listen.to_string(),
            expires: cfg.expires,
            reliable: false,
        },
        cfg.spacing,
        &token,
        seed,
    );
    let mut watch = (!cfg.keepalive.is_zero()).then(|| {
        PbxWatch::new(
            now,
            cfg.keepalive,
            cfg.registrar,
            &format!("SIP/2.0/UDP {}", cfg.listen),
            false,
            &format!("sub{token}"),
        )
    });
    let mut lost = false;
    setup.view.0.lock().expect("softphones").registrar = "not known yet".into();
    let apply_users =
        |regs: &mut Registrations, view: &Softphones, pushed: &[(String, Option<String>)], now| {
            let all = wanted(pushed, &cfg.users);
            let with_password: Vec<(String, Credentials)> = all
                .iter()
                .filter_map(|(e, p)| {
                    p.as_ref().map(|p| {
                        (
                            e.clone(),
                            Credentials {
                                username: e.clone(),
                                password: Zeroizing::new(p.clone()),
                            },
                        )
                    })
                })
                .collect();
            {
                let mut v = view.0.lock().expect("softphones");
                v.users.retain(|e, _| all.contains_key(e));
                for (e, p) in &all {
                    let s = v.users.entry(e.clone()).or_insert(Softphone {
                        creds: None,
                        state: None,
                        note: None,
                    });
                    s.creds = p.as_ref().map(|p| Credentials {
                        username: e.clone(),
                        password: Zeroizing::new(p.clone()),
                    });
                    s.note = p.is_none().then_some(NO_PASSWORD);
                    if p.is_none() {
                        s.state = None;
                    }
                }
            }
            tracing::info!(
                "subscriber: {} Softphone user(s), {} with a SIP password, registering to {}",
                all.len(),
                with_password.len(),
                cfg.registrar
            );
            regs.set_users(now, with_password);
        };
    let pushed = setup.users.borrow_and_update().clone();
    apply_users(&mut regs, &setup.view, &pushed, now);
    let mut buf = vec![0u8; 65_536];
    let mut last_count = usize::MAX;
    let mut last_print = Instant::now();
    loop {
        // Timers run when the registrations or the watch next want the
        // time (paced registrations, refreshes, retransmissions, the next
        // OPTIONS), never on a fixed tick.
        let due = [
            regs.poll_timeout(),
            watch.as_ref().map(PbxWatch::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {
                let now = Instant::now();
                regs.handle_timeout(now);
                if let Some(w) = &mut watch {
                    w.handle_timeout(now);
                }
            }
            Some((to, bytes)) = outgoing.recv() => {
                let _ = socket.send_to(&bytes, to).await;
            }
            Ok(()) = setup.users.changed() => {
                let pushed = setup.users.borrow_and_update().clone();
                apply_users(&mut regs, &setup.view, &pushed, Instant::now());
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                // Nobody but the registrar and the PBX's trusted addresses
                // reaches the subscriber side: not its calls, not the
                // registrations' answers (dropped unparsed, counted).
                if !core.lock().expect("core lock").trusts_subscriber(from.ip()) {
                    continue;
                }
                let now = Instant::now();
                let Ok(Frame::Message(msg)) = framing::datagram(&buf[..n]) else {
                    continue;
                };
                // Responses to registrations and keep-alives stay here;
                // everything else is the PBX side of a call.
                if let Ok(p) = pbxlink_sip::parse(&msg)
                    && pbxlink_sip::message::request_method(&p.head.start_line).is_none()
                    && (regs.handle_response(now, &p.head)
                        || watch.as_mut().is_some_and(|w| w.handle_response(now, &p.head)))
                {
                    // handled
                } else {
                    let inbound = core.lock().expect("core lock").receive(now, &msg, Peer::Subscriber(from), Side::Pbx);
                    match inbound {
                        Inbound::Reply(replies) => {
                            for r in replies {
                                let _ = socket.send_to(&r, from).await;
                            }
                        }
                        Inbound::Response(_) => {
                            counters.responses_ignored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        // What the registrations and the watch want done.
        let now = Instant::now();
        let mut sends = Vec::new();
        while let Some(o) = regs.poll_output() {
            match o {
                RegOutput::Transmit(b) => sends.push(b),
                RegOutput::Changed { user, state } => {
                    if let RegState::Failed { reason, .. } = &state {
                        tracing::warn!("subscriber: {user}: registration failed: {reason}");
                    }
                    let mut v = setup.view.0.lock().expect("softphones");
                    if let Some(s) = v.users.get_mut(&user) {
                        s.state = Some(state);
                    }
                }
                RegOutput::Removed { user } => {
                    tracing::info!("subscriber: {user}: unregistered (no longer a Softphone user)");
                }
            }
        }
        while let Some(o) = watch.as_mut().and_then(PbxWatch::poll_output) {
            match o {
                WatchOutput::Transmit(b) => sends.push(b),
                WatchOutput::Changed(Liveness::Lost) => {
                    lost = true;
                    tracing::info!(
                        "subscriber: the registrar {} does not answer",
                        cfg.registrar
                    );
                    setup.view.0.lock().expect("softphones").registrar = "lost".into();
                }
                WatchOutput::Changed(Liveness::Up) => {
                    setup.view.0.lock().expect("softphones").registrar = "up".into();
                    if lost {
                        // It may have restarted and forgotten everyone.
                        tracing::info!(
                            "subscriber: the registrar {} answers again: every user registers again",
                            cfg.registrar
                        );
                        regs.register_all_again(now);
                        lost = false;
                    }
                }
                WatchOutput::Changed(Liveness::Unknown) => {}
            }
        }
        for b in sends {
            let _ = socket.send_to(&b, cfg.registrar).await;
        }
        // Hundreds registering: a line a second at most, and the last.
        let (count, total) = setup.view.registered();
        if count != last_count && (count == total || last_print.elapsed() >= Duration::from_secs(1))
        {
            last_count = count;
            last_print = Instant::now();
            tracing::info!("subscriber: {count} of {total} Softphone user(s) registered");
        }
    }
}

/// Binds the subscriber side's listener.
pub async fn bind(cfg: &SubscriberConfig, dscp: u8) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(cfg.listen).await?;
    set_dscp(&socket, cfg.listen.is_ipv6(), dscp)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_passwords_win_and_configured_users_fill_in() {
        let pushed = vec![
            ("1000".to_owned(), Some("pushed".to_owned())),
            ("1001".to_owned(), None),
            ("1002".to_owned(), None),
        ];
        let configured = vec![
            ("1000".to_owned(), "configured".to_owned()),
            ("1001".to_owned(), "configured".to_owned()),
            ("2000".to_owned(), "configured".to_owned()),
        ];
        let all = wanted(&pushed, &configured);
        assert_eq!(all["1000"].as_deref(), Some("pushed"));
        assert_eq!(all["1001"].as_deref(), Some("configured"));
        assert_eq!(all["1002"], None, "listed, without a password");
        assert_eq!(all["2000"].as_deref(), Some("configured"));
    }
}
