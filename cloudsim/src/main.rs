//! `cloudsim`: the cloud platform, on loopback, for pbxlink's tests and
//! demo — the management tunnel's server with an account store
//! (docs/protocols-tunnel.md), a SIP-TLS endpoint answering and placing calls with
//! SDES-SRTP, NTP and STUN services, and a control API. Its certificates are made at start; the
//! CA is written where the gateway is told to trust it.

mod control;
mod ntp;
mod pki;
mod releases;
mod sip;
mod store;
mod stun;
mod tunnel;

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "cloudsim",
    version,
    about = "A simulated cloud platform: tunnel server, SIP-TLS endpoint, control API"
)]
struct Args {
    /// The management tunnel's TLS listener.
    #[arg(long)]
    tunnel: SocketAddr,
    /// The SIP-TLS endpoint (the gateway's cloud trunk target).
    #[arg(long)]
    sip: SocketAddr,
    /// The control API.
    #[arg(long)]
    control: SocketAddr,
    /// An account and its token, `NAME:TOKEN`; repeatable.
    #[arg(long = "account", required = true)]
    accounts: Vec<String>,
    /// Where the CA certificate the gateway must trust is written.
    #[arg(long)]
    ca_out: PathBuf,
    /// The time service (SNTP over UDP), if wanted.
    #[arg(long)]
    ntp: Option<SocketAddr>,
    /// A STUN service (Binding only) on UDP; repeatable.
    #[arg(long)]
    stun: Vec<SocketAddr>,
    /// First RTP port of its calls.
    #[arg(long, default_value_t = 48000)]
    rtp_base: u16,
    /// How many ports from --rtp-base its calls use, in turn (default: up
    /// to 65,534).
    #[arg(long, default_value_t = u16::MAX)]
    rtp_ports: u16,
    /// Where the public key its releases are signed with is written
    /// (minisign, base64: the gateway's `[update] public_key`).
    #[arg(long)]
    update_key_out: Option<PathBuf>,
    /// Exit after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
}

/// Answers each datagram on `socket` with what `answer` makes of it
/// (nothing: left unanswered), for as long as cloudsim runs.
async fn udp_service(
    socket: tokio::net::UdpSocket,
    answer: fn(&[u8], SocketAddr) -> Option<Vec<u8>>,
) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(a) = answer(&buf[..n], from) {
            let _ = socket.send_to(&a, from).await;
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let accounts = args
        .accounts
        .iter()
        .map(|a| {
            a.split_once(':')
                .map(|(n, t)| (n.to_owned(), t.to_owned()))
                .context("--account takes NAME:TOKEN")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tls = pki::make(&args.ca_out)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let platform = tunnel::Platform::new(store::Store::new(accounts));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let tunnel = tokio::net::TcpListener::bind(args.tunnel)
            .await
            .with_context(|| format!("binding the tunnel on {}", args.tunnel))?;
        tokio::spawn(tunnel::serve(tunnel, acceptor.clone(), platform.clone()));
        let sip = sip::SipEndpoint::new(
            args.sip,
            args.sip.ip(),
            simsip::RtpPorts::new(args.rtp_base, args.rtp_ports),
        );
        let sip_listener = tokio::net::TcpListener::bind(args.sip)
            .await
            .with_context(|| format!("binding SIP-TLS on {}", args.sip))?;
        tokio::spawn(sip.clone().serve(sip_listener, acceptor));
        let control = tokio::net::TcpListener::bind(args.control)
            .await
            .with_context(|| format!("binding the control API on {}", args.control))?;
        if let Some(at) = args.ntp {
            let socket = tokio::net::UdpSocket::bind(at)
                .await
                .with_context(|| format!("binding NTP on {at}"))?;
            println!("cloudsim: NTP on {at}");
            tokio::spawn(udp_service(socket, ntp::reply));
        }
        for at in args.stun {
            let socket = tokio::net::UdpSocket::bind(at)
                .await
                .with_context(|| format!("binding STUN on {at}"))?;
            println!("cloudsim: STUN on {at}");
            tokio::spawn(udp_service(socket, stun::answer));
        }
        let releases = releases::Store::new(args.update_key_out.as_deref())?;
        let app = control::router(platform.clone(), sip, releases);
        tokio::spawn(async move {
            let _ = axum::serve(control, app).await;
        });
        println!(
            "cloudsim: tunnel on {}, SIP-TLS on {}, control API on http://{}/status, CA in {}",
            args.tunnel,
            args.sip,
            args.control,
            args.ca_out.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = async {
                match args.seconds {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        println!(
            "cloudsim: final: {}",
            platform.lock().expect("platform").store.summary()
        );
        anyhow::Ok(())
    })
}
