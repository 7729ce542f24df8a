//! The admin page advertised on the LAN by multicast DNS (SPEC §1: ours
//! is `pbxlink.local`): an installer's browser finds the gateway by name
//! before anyone knows its address. `NAME.local` answers with the page's
//! address, and the page is announced as an `_http._tcp` service (port
//! 80 sends browsers on to HTTPS).
//!
//! Only the interface holding that address answers and announces:
//! mdns-sd joins the mDNS group on every interface as it starts, and the
//! others are dropped before anything is announced. Nothing at all on
//! loopback (there is no LAN to find the gateway on). mdns-sd runs its
//! own thread; its failures are logged and the gateway goes on without
//! the name.

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use std::net::IpAddr;

/// The mDNS responder, while advertising.
pub struct Advertised(ServiceDaemon);

impl std::fmt::Debug for Advertised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Advertised")
    }
}

impl Drop for Advertised {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// Advertises `name.local` for `addr` with the page on `port`; none
/// when there is nothing to do (loopback) or mDNS could not start (said
/// in the log).
pub fn advertise(name: &str, addr: IpAddr, port: u16) -> Option<Advertised> {
    if addr.is_loopback() || addr.is_unspecified() {
        tracing::info!(
            "admin: {name}.local is not advertised: the page is on {addr}, not on a LAN"
        );
        return None;
    }
    match start(name, addr, port) {
        Ok(d) => {
            tracing::info!("admin: advertised on the LAN as {name}.local ({addr}, mDNS)");
            Some(Advertised(d))
        }
        Err(e) => {
            tracing::info!("admin: {name}.local could not be advertised: {e}");
            None
        }
    }
}

fn start(name: &str, addr: IpAddr, port: u16) -> Result<ServiceDaemon, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    // The daemon carries out commands in order: the interfaces are
    // narrowed before anything is announced.
    daemon.disable_interface(IfKind::All)?;
    daemon.enable_interface(IfKind::Addr(addr))?;
    let host = format!("{name}.local.");
    let page = ServiceInfo::new(
        "_http._tcp.local.",
        name,
        &host,
        addr,
        port,
        &[("path", "/")][..],
    )?;
    daemon.register(page)?;
    Ok(daemon)
}
