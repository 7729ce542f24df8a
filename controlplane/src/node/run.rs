//! `pbxlink run --config FILE`: the gateway's main job — the PBX trunk's
//! listeners, the cloud trunk, the data plane and the B2BUA carrying calls
//! between them — from a checked configuration file.

use super::services::{self, B2buaSetup, PbxSide};
use crate::config::{self, CloudTargets};
use crate::node_control::{Exit, NodeControl};
use crate::operations::log_file::{LogFile, Rotation};
use crate::signalling::{self, CallsConfig, SipListenArgs, Trust};
use anyhow::Context;
use pbxlink_b2bua::call::Local;
use pbxlink_dataplane::engine::{Backend, DataPlane, DataPlaneConfig};
use pbxlink_dataplane::net::Networks;
use pbxlink_dataplane::ports::PortPool;
use pbxlink_dataplane::profile::{Profile, Resources};
use pbxlink_dataplane::xdp::program::interface_holding;
use pbxlink_sip::digest::{Algorithm, Challenger};
use pbxlink_sip::resolve::Transport;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Options of `pbxlink run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (see `pbxlink check-config`).
    #[arg(long)]
    config: PathBuf,
    /// Exit after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Data-plane backend (default: io_uring when the kernel allows it).
    #[arg(long, value_parser = crate::relay_cmd::parse_backend)]
    backend: Option<Backend>,
    /// Interface the xdp backend diverts relay traffic on (default: the
    /// one holding the LAN address, where relays bind).
    #[arg(long)]
    xdp_interface: Option<String>,
}

/// Runs `pbxlink run`: the gateway, or its wizard while it is not
/// configured; when the admin page asks, it drains, stops and starts
/// again (the same process, the configuration read anew).
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let state_dir = config::state_dir_of(&args.config);
    // The update journal first, before the log takes over stdout: which
    // whole version runs (this binary, or a release exec'd in its place),
    // a roll-back owed.
    let health = std::fs::read_to_string(&args.config)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .map_or_else(
            || config::update_health(&toml::Table::new()),
            |t| config::update_health(&t),
        );
    let launch = crate::operations::update::launch::take_over(&state_dir, health);
    let log = match LogFile::start(&state_dir.join("logs"), Rotation::default()) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("warning: the log is not written to disk: {e:#}");
            None
        }
    };
    if let Err(e) =
        crate::operations::structured_log::to_file(&state_dir.join("logs"), Rotation::default())
    {
        tracing::warn!("warning: the structured log is not written to disk: {e:#}");
    }
    let ended = run_once(args, &state_dir, launch);
    if let Ok(Exit::Restart(why)) = &ended {
        tracing::info!("starting again: {why}");
    }
    if let Some(l) = log {
        l.stop();
    }
    match ended? {
        Exit::Stop => Ok(()),
        Exit::Restart(_) => Err(crate::node_control::exec_self()),
    }
}

fn run_once(
    args: &RunArgs,
    state_dir: &std::path::Path,
    launch: crate::operations::update::launch::Launch,
) -> anyhow::Result<Exit> {
    let overlay = crate::onboarding::store::Store::new(state_dir)
        .load()?
        .overlay();
    let table = config::read_table(&args.config, &overlay)?;
    match config::log_level(&table) {
        Ok(level) => crate::operations::structured_log::set_level(level),
        Err(why) => tracing::warn!("warning: {why}; logging at info"),
    }
    let control = NodeControl::default();
    if let Some(setup) = config::setup_config(&args.config, &table)? {
        return super::setup::run_setup(setup, &args.config, control, args.seconds);
    }
    let cfg = config::load_with(&args.config, &overlay)?;
    let resources = Resources::detect();
    let profile = cfg
        .profile
        .unwrap_or_else(|| Profile::select(resources.cpus.len(), resources.memory));
    let spec = profile.spec(resources.cpus.len());
    tracing::info!("{}", resources.startup_line(profile));
    let plane = DataPlane::start(
        &DataPlaneConfig {
            profile,
            backend: args.backend,
            // Each relay holds 4 ports: no worker needs more than the pool.
            max_relays_per_worker: (spec.call_limit as usize).clamp(16, 4096),
            buffers_per_worker: receive_buffers(spec.call_limit),
            xdp_interface: args
                .xdp_interface
                .clone()
                .or_else(|| interface_holding(cfg.lan_address))
                .unwrap_or_else(|| "lo".to_string()),
            ..DataPlaneConfig::default()
        },
        &resources,
    )
    .context("starting the data plane")?;
    tracing::info!("{}", plane.describe());
    let sip_port = cfg
        .sip_port
        .unwrap_or(signalling::role_ports(&cfg.sip_role).0);
    let lan = SocketAddr::new(cfg.lan_address, sip_port);
    let public = match (cfg.public_address, cfg.stun.is_empty()) {
        (Some(a), _) => a,
        (None, true) => cfg.lan_address,
        (None, false) => match public_by_stun(cfg.lan_address, &cfg.stun) {
            Some((ip, server)) => {
                tracing::info!("public address by STUN from {server}: {ip}");
                ip
            }
            None => {
                tracing::warn!(
                    "warning: no STUN server answered ({}); the cloud leg's SDP names the LAN \
                     address {}: set [gateway] public_address",
                    cfg.stun
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    cfg.lan_address
                );
                cfg.lan_address
            }
        },
    };
    let cloud_domain = match &cfg.cloud {
        CloudTargets::Domain(d) => d.clone(),
        CloudTargets::Static(t) => t
            .first()
            .map_or(public.to_string(), |t| t.addr.ip().to_string()),
    };
    let tcp = cfg.pbx_transport == Transport::Tcp;
    let softphones = signalling::Softphones::default();
    let call_limit = cfg
        .call_limit
        .map_or(spec.call_limit, |l| l.min(spec.call_limit)) as usize;
    let calls = CallsConfig {
        pbx: Local {
            via: format!("SIP/2.0/{} {lan}", if tcp { "TCP" } else { "UDP" }),
            contact: if tcp {
                format!("sip:pbxlink@{lan};transport=tcp")
            } else {
                format!("sip:pbxlink@{lan}")
            },
            domain: cfg.pbx_address.to_string(),
            scheme: "sip",
        },
        cloud: Local {
            via: format!("SIP/2.0/TLS {public}:5061"),
            contact: format!("sip:pbxlink@{public}:5061;transport=tls"),
            domain: cloud_domain,
            scheme: "sips",
        },
        pbx_addr: SocketAddr::new(cfg.pbx_address, cfg.pbx_port),
        pbx_tcp: tcp.then(|| Arc::new(Mutex::new(None))),
        lan_ip: cfg.lan_address,
        public_ip: public,
        networks: Networks::new(cfg.networks.clone()),
        suites: cfg.srtp_suites.clone(),
        media_timeout: cfg.media_timeout,
        call_limit,
        refuse_with: cfg.refuse_with,
        outbound_digits: cfg.outbound_digits.clone(),
        inbound_digits: cfg.inbound_digits.clone(),
        pbx_keepalive: std::time::Duration::from_secs(cfg.pbx_keepalive_seconds),
        pbx_credentials: cfg.pbx_auth.as_ref().map(|(_, c)| c.clone()),
        subscriber: cfg
            .subscriber
            .as_ref()
            .map(|s| signalling::SubscriberCalls {
                listen: s.listen,
                registrar: s.registrar,
                domain: s.domain.clone(),
                softphones: softphones.clone(),
            }),
        quality: cfg.quality,
    };
    let listen = SipListenArgs::for_gateway(&cfg, lan, args.seconds);
    let admin = crate::admin::AdminSetup::open(
        cfg.admin.clone(),
        &cfg.state_dir,
        &args.config,
        control.clone(),
        cfg.tunnel.as_ref().map(|t| t.account.clone()),
        Vec::new(),
        crate::admin::Watch {
            trace_ports: trace_ports(&cfg, sip_port, &spec.port_ranges),
            diagnostics: crate::diagnostics::Plan::for_config(&cfg),
        },
    )?;
    let wizard = admin.clone();
    let updater = crate::operations::update::Updater::new(
        &cfg.state_dir,
        cfg.update.clone(),
        control,
        launch.journal,
        Box::new(move || wizard.wizard.get().advanced.map(|a| a.update_time)),
    );
    services::serve(
        &listen,
        Some(B2buaSetup {
            plane,
            ports: PortPool::new(&spec.port_ranges)
                .starting_at(u32::from_be_bytes(crate::random::random()) as usize),
            config: calls,
            cdrs: cfg.cdr_file.clone(),
            capture: cfg.capture,
            drain: cfg.drain,
            admin: Some(admin),
            update: Some((updater, launch.rolled_back_now)),
            // The limit enforced: the file's, under the profile's.
            profile: (profile.name().to_owned(), call_limit),
            pbx_side: pbx_side(&cfg, softphones, profile.name())?,
            trust: Some(Trust {
                networks: Networks::new(cfg.trusted.clone()),
                registrar: cfg.subscriber.as_ref().map(|s| s.registrar.ip()),
                reject: cfg.reject_untrusted,
                auth: cfg.pbx_auth.clone().map(|(realm, creds)| {
                    Challenger::new(&realm, Algorithm::Md5, creds, crate::random::random())
                }),
            }),
        }),
    )
}

/// The users kept in the state directory, the CSTA link to the PBX and
/// the user-config API, from the configuration.
fn pbx_side(
    cfg: &config::Config,
    softphones: signalling::Softphones,
    profile_name: &str,
) -> anyhow::Result<PbxSide> {
    let store = crate::users::store::Store::new(&cfg.state_dir)?;
    let users_file = store.path().to_owned();
    let users = crate::users::Users::load(store)
        .with_context(|| format!("loading the users kept in {}", cfg.state_dir.display()))?;
    users.read(|d| {
        tracing::info!(
            "users: {} kept in {}, {} onboarded, {} with CTI or Softphone",
            d.users().count(),
            users_file.display(),
            d.onboarded(),
            d.cti_devices().len()
        )
    });
    if cfg.users_api.is_none() {
        tracing::info!(
            "users: the user-config API is off (set [users] push_password to let the PBX push its users)"
        );
    }
    let cti = cfg.csta.as_ref().map(|c| crate::cti::CtiConfig {
        servers: c.servers.clone(),
        session: pbxlink_csta::session::SessionConfig {
            login: c.login.clone(),
            request_timeout: c.timeout,
            edition: c.edition,
            ..pbxlink_csta::session::SessionConfig::default()
        },
        history: cfg.history_calls,
        connect_timeout: std::time::Duration::from_secs(5),
    });
    let subscriber = cfg
        .subscriber
        .clone()
        .map(|config| signalling::SubscriberSetup {
            config,
            users: users.softphones(),
            view: softphones,
        });
    let tunnel = cfg
        .tunnel
        .as_ref()
        .map(|t| crate::tunnel::TunnelConfig::from_settings(t, &cfg.state_dir, profile_name))
        .transpose()?;
    Ok(PbxSide {
        users,
        tunnel,
        cti,
        users_api: cfg
            .users_api
            .clone()
            .map(|a| (a, cfg.state_dir.clone(), Networks::new(cfg.trusted.clone()))),
        admin_token: cfg.admin.token.clone(),
        subscriber,
    })
}

/// What a call trace copies: the SIP ports (the PBX trunk's, the
/// subscriber side's, the cloud's) and the relays' port ranges.
fn trace_ports(
    cfg: &config::Config,
    sip_port: u16,
    media: &[std::ops::RangeInclusive<u16>],
) -> crate::operations::trace::TracePorts {
    let mut sip = vec![sip_port, cfg.pbx_port];
    if let Some(s) = &cfg.subscriber {
        sip.push(s.listen.port());
        sip.push(s.registrar.port());
    }
    match &cfg.cloud {
        CloudTargets::Static(t) => sip.extend(t.iter().map(|t| t.addr.port())),
        CloudTargets::Domain(_) => sip.push(5061),
    }
    sip.sort_unstable();
    sip.dedup();
    crate::operations::trace::TracePorts {
        sip,
        media: media.to_vec(),
    }
}

/// Asks each STUN server in turn (from the LAN address, as media leaves)
/// what address it sees (RFC 5389 Binding; the request sent again after
/// 0.5, 1 and 2 s); the first answer and who gave it.
fn public_by_stun(
    lan: std::net::IpAddr,
    servers: &[SocketAddr],
) -> Option<(std::net::IpAddr, SocketAddr)> {
    use pbxlink_sip::stun;
    let socket = std::net::UdpSocket::bind(SocketAddr::new(lan, 0)).ok()?;
    let mut buf = [0u8; 1500];
    for &server in servers {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).ok()?;
        let request = stun::binding_request(id);
        for wait in [500, 1000, 2000] {
            if socket.send_to(&request, server).is_err() {
                break;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait);
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                socket
                    .set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))
                    .ok()?;
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    break;
                };
                if from != server {
                    continue;
                }
                if let Ok(mapped) = stun::mapped_address(&buf[..n], id) {
                    return Some((mapped.ip(), server));
                }
            }
        }
    }
    None
}

/// Receive buffers per data-plane worker for a profile's calls: 32 a call
/// (a worker's whole share of 20 ms of both directions' packets, many
/// times over), a power of two from 1,024 (2 MiB, a Small site) to 4,096
/// (8 MiB, the most a worker's ring is given).
fn receive_buffers(call_limit: u32) -> u16 {
    // 128 calls already ask for the most (and `max`'s limit is no number
    // to multiply).
    (call_limit.min(128) * 32)
        .next_power_of_two()
        .clamp(1024, 4096) as u16
}

#[cfg(test)]
mod tests {
    #[test]
    fn receive_buffers_follow_the_profile() {
        assert_eq!(super::receive_buffers(25), 1024, "Small: 2 MiB");
        assert_eq!(super::receive_buffers(125), 4096);
        assert_eq!(super::receive_buffers(100_000), 4096, "never past 8 MiB");
        assert_eq!(super::receive_buffers(u32::MAX), 4096, "the max profile");
        assert_eq!(super::receive_buffers(0), 1024);
    }
}
