//! A whole site on loopback for the end-to-end tests that run the product
//! as shipped: pbxsim as the PBX, cloudsim as the cloud platform, and
//! `pbxlink run` between them, their ports laid out from one base port
//! (gateway SIP, PBX SIP, cloud SIP-TLS, tunnel, admin API, pbxsim's and
//! cloudsim's control APIs, CSTA: base … base + 7).

use crate::cloudsim::CloudSim;
use crate::pbxsim::PbxSim;
use crate::rig::{GatewayConfig, Workdir};
use std::net::SocketAddr;
use std::path::Path;

/// The account's token at cloudsim.
pub const TOKEN: &str = "acme-token-0123456789";
/// The admin API's token in [`Site::tunnel_sections`].
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The site's ports, and the configuration lines that name them.
#[derive(Debug)]
pub struct Site {
    base: u16,
    csta_line: String,
    admin_section: String,
}

impl Site {
    /// The site whose ports start at `base`.
    pub fn at(base: u16) -> Site {
        Site {
            base,
            csta_line: format!("csta_ports = [{}]", base + 7),
            admin_section: format!(
                "[admin]\nlisten = \"{}\"\nhttps_listen = \"off\"\napi_token = \"{ADMIN_TOKEN}\"\n",
                at(base + 4)
            ),
        }
    }

    /// The gateway's PBX-side SIP.
    pub fn gateway_sip(&self) -> SocketAddr {
        at(self.base)
    }
    /// pbxsim's SIP.
    pub fn pbx_sip(&self) -> SocketAddr {
        at(self.base + 1)
    }
    /// cloudsim's SIP-TLS.
    pub fn cloud_sip(&self) -> SocketAddr {
        at(self.base + 2)
    }
    /// cloudsim's management tunnel.
    pub fn tunnel(&self) -> SocketAddr {
        at(self.base + 3)
    }
    /// The gateway's admin API (plain HTTP).
    pub fn admin(&self) -> SocketAddr {
        at(self.base + 4)
    }
    /// pbxsim's CSTA server.
    pub fn csta(&self) -> SocketAddr {
        at(self.base + 7)
    }

    /// cloudsim with its CA in `work`'s directory.
    pub fn cloudsim(&self, work: &Workdir) -> CloudSim {
        self.cloudsim_with(work, &[])
    }

    /// [`Site::cloudsim`] with more arguments (`--rtp-base PORT`).
    pub fn cloudsim_with(&self, work: &Workdir, extra: &[&str]) -> CloudSim {
        CloudSim::start_with(
            &work.dir,
            self.tunnel(),
            self.cloud_sip(),
            at(self.base + 6),
            TOKEN,
            extra,
        )
    }

    /// pbxsim with `users` users, its RTP from `rtp_base`, and `extra`
    /// arguments.
    pub fn pbxsim(&self, users: u32, rtp_base: u16, extra: &[&str]) -> PbxSim {
        let (csta, sip, gateway) = (
            self.csta().to_string(),
            self.pbx_sip().to_string(),
            self.gateway_sip().to_string(),
        );
        let (users, rtp_base) = (users.to_string(), rtp_base.to_string());
        let mut args = vec![
            "--csta",
            &csta,
            "--users",
            &users,
            "--sip",
            &sip,
            "--gateway-sip",
            &gateway,
            "--rtp-base",
            &rtp_base,
        ];
        args.extend_from_slice(extra);
        PbxSim::start(at(self.base + 5), &args)
    }

    /// The gateway's configuration for this site (the cloud's CA `ca`,
    /// pbxsim's CSTA, the admin API on its port without HTTPS): change
    /// fields with struct update syntax, then `write`.
    pub fn gateway_config<'a>(&'a self, ca: &'a Path) -> GatewayConfig<'a> {
        GatewayConfig {
            pbx_extra: &self.csta_line,
            cloud_extra: "server_name = \"cloud.test\"",
            sections: &self.admin_section,
            ..GatewayConfig::loopback(
                ca,
                self.base,
                self.pbx_sip().port(),
                self.cloud_sip().port(),
            )
        }
    }

    /// `[admin]` and `[tunnel]` sections for a gateway whose tunnel goes to
    /// `endpoint` (cloudsim's tunnel, or a proxy in front of it) as the
    /// site's account, trusting the cloud's CA `ca`.
    pub fn tunnel_sections(&self, endpoint: SocketAddr, ca: &Path) -> String {
        format!(
            "{}\n\
             [tunnel]\nendpoint = \"{endpoint}\"\nserver_name = \"cloud.test\"\nca = \"{}\"\naccount = \"ACME\"\ntoken = \"{TOKEN}\"\n",
            self.admin_section,
            ca.display()
        )
    }

    /// The admin API's `/api/tunnel`.
    pub fn tunnel_status(&self) -> serde_json::Value {
        self.admin_get("/api/tunnel")
    }

    /// The admin API's `/api/counters`.
    pub fn counters(&self) -> serde_json::Value {
        self.admin_get("/api/counters")
    }

    /// A read of the admin API, with the API token (only `/healthz`,
    /// `/ready`, `/metrics` and `/api/status` answer without one).
    pub fn admin_get(&self, path: &str) -> serde_json::Value {
        crate::http::get_with_token(self.admin(), path, ADMIN_TOKEN).json
    }
}
