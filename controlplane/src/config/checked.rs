//! The configuration once checked: what the node is built from.

use super::admin::AdminSettings;
use super::capture::CaptureSettings;
use super::cloud::CloudTargets;
use super::pbx::{CstaConfig, PbxType};
use super::quality::QualitySettings;
use super::subscriber::SubscriberConfig;
use super::tunnel::TunnelSettings;
use super::users::UsersApiConfig;

use pbxlink_b2bua::digits::DigitRule;
use pbxlink_dataplane::net::Prefix;
use pbxlink_dataplane::profile::Profile;
use pbxlink_dataplane::srtp::Suite;
use pbxlink_sip::digest::Credentials;
use pbxlink_sip::resolve::Transport;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the PBX reaches the gateway.
    pub lan_address: IpAddr,
    /// What the cloud sees (None: not set; learning it by STUN is to come).
    pub public_address: Option<IpAddr>,
    /// A pinned profile, or None for automatic selection.
    pub profile: Option<Profile>,
    /// Networks LAN media may use.
    pub networks: Vec<Prefix>,
    /// Silence (in a direction that should flow) that ends a call.
    pub media_timeout: Duration,
    /// PBX family.
    pub pbx_type: PbxType,
    /// The PBX's SIP address.
    pub pbx_address: IpAddr,
    /// Its SIP port.
    pub pbx_port: u16,
    /// Its SIP transport.
    pub pbx_transport: Transport,
    /// The CSTA link (none: off).
    pub csta: Option<CstaConfig>,
    /// Who may use the PBX trunk (the PBX's address unless listed).
    pub trusted: Vec<Prefix>,
    /// Whether others get 403 (true) or nothing.
    pub reject_untrusted: bool,
    /// Credentials the PBX's INVITEs must carry, and their realm.
    pub pbx_auth: Option<(String, Credentials)>,
    /// Seconds between OPTIONS to the PBX (0: none sent).
    pub pbx_keepalive_seconds: u64,
    /// Calls carried at once, when fewer than the profile's.
    pub call_limit: Option<u32>,
    /// Where call records go (none: not kept).
    pub cdr_file: Option<PathBuf>,
    /// How long calls up may go on after SIGTERM.
    pub drain: Duration,
    /// The status past the call limit (503, 486 or 480).
    pub refuse_with: u16,
    /// Seconds a SIP connection may stay silent.
    pub sip_idle_timeout: u64,
    /// Seconds to finish a started SIP message or a TLS handshake.
    pub sip_partial_timeout: u64,
    /// Accepted SIP connections at once.
    pub sip_max_connections: usize,
    /// The cloud trunk's targets.
    pub cloud: CloudTargets,
    /// CA file for the cloud's certificate.
    pub cloud_ca: PathBuf,
    /// Name the cloud's certificate must carry, if not the domain.
    pub cloud_server_name: Option<String>,
    /// Seconds between trunk keep-alives.
    pub keepalive_seconds: u64,
    /// SRTP suites offered to the cloud, in order.
    pub srtp_suites: Vec<Suite>,
    /// STUN servers asked for the public address when it is not set.
    pub stun: Vec<std::net::SocketAddr>,
    /// The NTP server the start-up diagnostics ask (`host:port`; none:
    /// the cloud's host, port 123).
    pub ntp: Option<String>,
    /// Listener role (SPEC §3 ports).
    pub sip_role: String,
    /// The PBX-side listeners' port, when not the role's.
    pub sip_port: Option<u16>,
    /// DSCP on signalling.
    pub dscp: u8,
    /// What numbers dialled on PBX → cloud calls go through.
    pub outbound_digits: DigitRule,
    /// What numbers dialled on cloud → PBX calls go through.
    pub inbound_digits: DigitRule,
    /// The admin page and API.
    pub admin: AdminSettings,
    /// Where the gateway keeps what it must not forget.
    pub state_dir: PathBuf,
    /// The PBX's user-config API (none: off).
    pub users_api: Option<UsersApiConfig>,
    /// Calls kept per CTI user.
    pub history_calls: usize,
    /// The subscriber side (none: off).
    pub subscriber: Option<SubscriberConfig>,
    /// The tunnel to the cloud platform (none: off).
    pub tunnel: Option<TunnelSettings>,
    /// How calls are rated, and when poor ones raise the alarm.
    pub quality: QualitySettings,
    /// Where HEP3 copies of the signalling and RTCP go (none: off).
    pub capture: Option<CaptureSettings>,
    /// Signed software updates.
    pub update: super::update::UpdateSettings,
}
