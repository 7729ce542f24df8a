//! The gateway's own connection to a PBX whose trunk runs over TCP
//! (`[pbx] transport = "tcp"`): dialled at start and again whenever it
//! closes, kept alive with CRLF pings (RFC 5626 §3.5.1), served like any
//! connection (the PBX's responses and requests come back on it), and
//! published for the calls toward the PBX. While it is down, calls from
//! the cloud are refused (503) rather than sent where the PBX does not
//! listen.

use super::counters::Counters;
use super::dscp::set_dscp;
use super::paths::PbxPath;
use super::stream::{self, Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpSocket;

/// Between a failed or closed connection and the next attempt.
const REDIAL: Duration = Duration::from_secs(2);
/// Between CRLF keep-alive pings.
const PING: Duration = Duration::from_secs(20);

/// Keeps the connection to `pbx` for as long as the node runs.
pub async fn run(pbx: SocketAddr, shared: Shared, path: PbxPath, dscp: u8, c: Arc<Counters>) {
    loop {
        match dial(pbx, dscp, shared.partial).await {
            Err(e) => tracing::warn!("pbx: connecting to {pbx} over TCP failed: {e}"),
            Ok(tcp) => {
                let local = tcp.local_addr().ok();
                tracing::info!(
                    "pbx: connected to {pbx} over TCP from {}",
                    local.map_or("?".into(), |l| l.to_string())
                );
                let ends = stream::ends(&tcp);
                let mut conn = stream::spawn(tcp, ends, shared.clone(), None);
                *path.lock().expect("pbx path") = Some(conn.out.clone());
                let mut ping = tokio::time::interval(PING);
                ping.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut conn.reader => break,
                        _ = ping.tick() => {
                            if !stream::queue(&conn.out, b"\r\n\r\n".to_vec(), &c) {
                                break;
                            }
                        }
                    }
                }
                *path.lock().expect("pbx path") = None;
                tracing::info!("pbx: connection to {pbx} closed");
            }
        }
        tokio::time::sleep(REDIAL).await;
    }
}

async fn dial(
    pbx: SocketAddr,
    dscp: u8,
    within: Duration,
) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = match pbx {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    set_dscp(&socket, pbx.is_ipv6(), dscp)?;
    Ok(tokio::time::timeout(within, socket.connect(pbx))
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))??)
}
