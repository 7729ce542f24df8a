//! The gateway's configuration file (TOML), checked as a whole before
//! anything starts: every error names the file, the section and key, what
//! was found and what would do. `pbxlink check-config --config FILE`
//! prints the effective configuration or the errors.
//!
//! ```toml
//! [gateway]
//! lan_address = "192.168.1.20"        # the PBX reaches the gateway here (SIP, RTP)
//! public_address = "203.0.113.5"      # the cloud sees the gateway here (SDP on the cloud leg);
//!                                     # unset: learned by STUN ([cloud] stun), else the LAN address
//! profile = "auto"                    # auto | small | smallplus | medium | large | max
//! networks = ["192.168.1.0/24"]       # LAN media only to and from these
//! media_timeout_seconds = 60          # a call whose media stops this long is hung up
//! # call_limit = 25                   # fewer calls than the profile's limit (2 more kept for emergencies)
//! cdr_file = "/var/log/pbxlink/cdr.jsonl"  # one JSON line per call; rotated at 10 MiB, 5 kept
//! drain_seconds = 30                  # on SIGTERM: calls up may go on this long (new ones get
//!                                     # 503 with Retry-After), then are hung up; a second SIGTERM: at once
//! state_dir = "/var/lib/pbxlink"      # users pushed by the PBX, generated certificates
//!
//! [pbx]
//! type = "mivoice-5000"               # mivoice-5000 | mivoice-office-400 | mx-one | mivoice-business
//! address = "192.168.1.10"            # the PBX's SIP trunk
//! port = 5060
//! transport = "udp"                   # udp | tcp
//! csta = true                         # the CSTA (CTI) link to the PBX; false: none
//! csta_ports = [3211]                 # default by type (SPEC §3); or "3211;3212": users spread
//!                                     # across the servers, moved to the others when one drops
//! # csta_address = "192.168.1.10"     # default: the PBX's address
//! # csta_username = "cloudlink"       # MiVoice Office 400's CloudLink system user (<= 25
//! # csta_password = "…"               # characters; password <= 255): required for that type
//! csta_timeout_seconds = 5            # the PBX must answer each CSTA request within this
//! csta_edition = "ed3"                # ECMA-323 edition spoken until the PBX picks one
//! # trusted = ["192.168.1.10/32"]     # who may use the PBX trunk; default: the PBX's address
//! untrusted = "drop"                  # drop | reject (403): what anyone else gets
//! # auth_username = "officelinkmv5000" # set: the PBX's INVITEs must carry digest credentials
//! # auth_password = "…"               # (RFC 3261 §22.4, MD5; wrong ones get 403)
//! # auth_realm = "pbxlink"
//! keepalive_seconds = 30              # OPTIONS to the PBX; unanswered twice running:
//!                                     # status "Lost trunk connection to PBX" (0: none sent)
//!
//! [cloud]
//! domain = "sip.cloud.example"        # RFC 3263; or: targets = ["tls:198.51.100.10:5061"]
//! ca = "/etc/pbxlink/cloud-ca.pem"    # the cloud's certificate must chain to this
//! # server_name = "sip.cloud.example" # default: the domain (or the target's IP)
//! keepalive_seconds = 30
//! # srtp_suites = ["AES_CM_128_HMAC_SHA1_80"]  # offered in this order; default all, strongest first
//! # stun = ["198.51.100.10:3478"]     # STUN servers that tell the public address when it is not set;
//!                                     # also the start-up diagnostics' (default: the cloud's host, 3478 and 3479)
//! # ntp = "ntp.cloud.example:123"     # the diagnostics' NTP server; default: the cloud's host, port 123
//!
//! [sip]
//! role = "pbx-trunk"                  # pbx-trunk (5060/5061) | subscriber | embedded
//! # port = 5060                       # default: the role's
//! dscp = 24                           # CS3
//! refuse_with = 503                   # past the call limit: 503 (never with Retry-After), 486 or 480
//! idle_timeout = 120                  # seconds a TCP/TLS connection may stay silent
//! partial_timeout = 10                # seconds to finish a started message or a TLS handshake
//! max_connections = 1024              # accepted TCP/TLS connections at once (more: closed at once)
//!
//! [digits]                            # SPEC §4 Advanced; emergency numbers are never rewritten
//! outbound_strip = "9"                # PBX → cloud: taken off the front when there…
//! outbound_prepend = ""               # …then put in front
//! inbound_strip = ""                  # cloud → PBX, the same way
//! inbound_prepend = ""
//!
//! [admin]
//! listen = "192.168.1.20:80"          # the admin REST API (/api/status, /api/counters);
//!                                     # default: the LAN address, port 80; "off": none
//! # api_token = "…"                   # lets requests with "Authorization: Bearer TOKEN" run
//!                                     # commands (CTI services, deleting the PBX connection)
//! mdns_name = "pbxlink"               # advertised on the LAN as pbxlink.local (mDNS, the admin
//!                                     # page's address; never on loopback); "off": not advertised
//!
//! [subscriber]                        # Softphone users: the gateway is their phone on the PBX
//! # listen = "192.168.1.20:5070"      # the subscriber side (UDP); default: the LAN address, 5070; "off"
//! # registrar = "192.168.1.10:5060"   # where they register; default: the PBX's SIP address
//! # domain = "192.168.1.10"           # their addresses of record (sip:EXT@DOMAIN); default: the registrar's IP
//! expires_seconds = 300               # registration life asked for (refreshed at about half)
//! keepalive_seconds = 30              # OPTIONS to the registrar; lost, then back: all register again
//! registrations_per_second = 20       # new registrations are spread out, never a burst
//! # [[subscriber.user]]               # Softphone users besides those the PBX pushes (with their
//! # extension = "1000"                # sip_password): extension and SIP password
//! # password = "…"
//!
//! [tunnel]                            # management tunnel to the cloud platform (docs/tunnel.md)
//! # endpoint = "mgmt.cloud.example:443" # unset: no tunnel (events are not kept)
//! # server_name = "mgmt.cloud.example" # the name its certificate carries; default: the endpoint's host
//! # ca = "/etc/pbxlink/cloud-ca.pem"  # default: [cloud] ca
//! # account = "ACME"                  # given at linking, with the token
//! # token = "…"
//! # gateway_id = "gw-…"               # default: made at first start, kept in state_dir
//! outbox_events = 100000              # events kept for the platform until acknowledged
//! sync_minutes = 60                   # user sync schedule (also on every PBX push); 0: none
//!
//! [users]                             # the PBX's user-config API (HTTPS)
//! # listen = "192.168.1.20:8086"      # default: the LAN address, port 8086, once a password is set
//! push_username = "pbx"               # HTTP Basic credentials the PBX pushes with
//! # push_password = "…"               # at least 12 characters; unset: the API is off
//! # cert = "/etc/pbxlink/users.crt"   # default: made at first start in state_dir (users-api.crt)
//! # key = "/etc/pbxlink/users.key"
//! history_calls = 20                  # calls kept per CTI user
//!
//! [log]
//! level = "info"                      # error | warn | info | debug | trace: pbxlink's own
//!                                     # modules; dependencies log warnings only (RUST_LOG overrides)
//! ```

use pbxlink_b2bua::digits::{DigitRule, is_dial_string};
use pbxlink_dataplane::net::Prefix;
use pbxlink_dataplane::profile::Profile;
use pbxlink_dataplane::srtp::Suite;
use pbxlink_sip::digest::Credentials;
use pbxlink_sip::resolve::{Target, Transport};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    gateway: GatewaySection,
    pbx: PbxSection,
    cloud: CloudSection,
    #[serde(default)]
    sip: SipSection,
    #[serde(default)]
    digits: DigitsSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    users: UsersSection,
    #[serde(default)]
    subscriber: SubscriberSection,
    #[serde(default)]
    tunnel: TunnelSection,
    #[serde(default)]
    log: LogSection,
}

/// `[log]`: how much the gateway logs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    /// error, warn, info (default), debug or trace: pbxlink's own
    /// modules; its dependencies log warnings and errors only.
    level: Option<String>,
}

/// The log levels `[log] level` takes.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `[log] level` of a configuration file's table (info when not set);
/// read before the rest so that even a gateway in setup logs as asked.
pub fn log_level(table: &toml::Table) -> Result<&str, String> {
    match table
        .get("log")
        .and_then(|l| l.get("level"))
        .map(|v| v.as_str().ok_or(v))
    {
        None => Ok("info"),
        Some(Ok(l)) if LOG_LEVELS.contains(&l) => Ok(l),
        Some(Ok(l)) => Err(format!(
            "[log] level = {l:?}: use error, warn, info, debug or trace"
        )),
        Some(Err(v)) => Err(format!(
            "[log] level = {v}: use \"error\", \"warn\", \"info\", \"debug\" or \"trace\""
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelSection {
    endpoint: Option<String>,
    server_name: Option<String>,
    ca: Option<PathBuf>,
    account: Option<String>,
    token: Option<String>,
    gateway_id: Option<String>,
    #[serde(default = "outbox_events")]
    outbox_events: usize,
    #[serde(default = "sync_minutes")]
    sync_minutes: u64,
}

impl Default for TunnelSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            server_name: None,
            ca: None,
            account: None,
            token: None,
            gateway_id: None,
            outbox_events: outbox_events(),
            sync_minutes: sync_minutes(),
        }
    }
}

fn outbox_events() -> usize {
    100_000
}

fn sync_minutes() -> u64 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberSection {
    listen: Option<String>,
    registrar: Option<String>,
    domain: Option<String>,
    #[serde(default = "register_expires")]
    expires_seconds: u32,
    #[serde(default = "keepalive")]
    keepalive_seconds: u64,
    #[serde(default = "registrations_per_second")]
    registrations_per_second: u32,
    #[serde(default)]
    user: Vec<SubscriberUser>,
}

impl Default for SubscriberSection {
    fn default() -> Self {
        Self {
            listen: None,
            registrar: None,
            domain: None,
            expires_seconds: register_expires(),
            keepalive_seconds: keepalive(),
            registrations_per_second: registrations_per_second(),
            user: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberUser {
    extension: String,
    password: String,
}

fn register_expires() -> u32 {
    300
}

fn registrations_per_second() -> u32 {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    listen: Option<String>,
    https_listen: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    api_token: Option<String>,
    network_interface: Option<String>,
    #[serde(default = "resolv_conf")]
    resolv_conf: PathBuf,
    #[serde(default = "log_link_seconds")]
    log_link_seconds: u64,
    #[serde(default = "mdns_name")]
    mdns_name: String,
}

fn mdns_name() -> String {
    "pbxlink".into()
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: None,
            https_listen: None,
            cert: None,
            key: None,
            api_token: None,
            network_interface: None,
            resolv_conf: resolv_conf(),
            log_link_seconds: log_link_seconds(),
            mdns_name: mdns_name(),
        }
    }
}

fn log_link_seconds() -> u64 {
    300
}

fn resolv_conf() -> PathBuf {
    PathBuf::from("/etc/resolv.conf")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersSection {
    listen: Option<String>,
    #[serde(default = "push_username")]
    push_username: String,
    push_password: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default = "history_calls")]
    history_calls: usize,
}

impl Default for UsersSection {
    fn default() -> Self {
        Self {
            listen: None,
            push_username: push_username(),
            push_password: None,
            cert: None,
            key: None,
            history_calls: history_calls(),
        }
    }
}

fn push_username() -> String {
    "pbx".into()
}

fn history_calls() -> usize {
    20
}

/// CSTA ports as the file gives them: a list, or SPEC §3's `"3211;3212"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortList {
    List(Vec<u16>),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigitsSection {
    #[serde(default)]
    outbound_strip: String,
    #[serde(default)]
    outbound_prepend: String,
    #[serde(default)]
    inbound_strip: String,
    #[serde(default)]
    inbound_prepend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    lan_address: String,
    public_address: Option<String>,
    #[serde(default = "auto")]
    profile: String,
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default = "media_timeout")]
    media_timeout_seconds: u64,
    call_limit: Option<u32>,
    cdr_file: Option<PathBuf>,
    #[serde(default = "drain")]
    drain_seconds: u64,
    #[serde(default = "state_dir")]
    state_dir: PathBuf,
}

fn state_dir() -> PathBuf {
    PathBuf::from("/var/lib/pbxlink")
}

fn drain() -> u64 {
    30
}

fn media_timeout() -> u64 {
    60
}

fn auto() -> String {
    "auto".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PbxSection {
    #[serde(rename = "type")]
    kind: String,
    address: String,
    #[serde(default = "sip_port")]
    port: u16,
    #[serde(default = "udp")]
    transport: String,
    #[serde(default = "yes")]
    csta: bool,
    csta_ports: Option<PortList>,
    csta_address: Option<String>,
    csta_username: Option<String>,
    csta_password: Option<String>,
    #[serde(default = "csta_timeout")]
    csta_timeout_seconds: u64,
    #[serde(default = "ed3")]
    csta_edition: String,
    #[serde(default)]
    trusted: Vec<String>,
    #[serde(default = "untrusted_drop")]
    untrusted: String,
    auth_username: Option<String>,
    auth_password: Option<String>,
    #[serde(default = "realm")]
    auth_realm: String,
    #[serde(default = "keepalive")]
    keepalive_seconds: u64,
}

fn yes() -> bool {
    true
}

fn csta_timeout() -> u64 {
    5
}

fn ed3() -> String {
    "ed3".into()
}

fn realm() -> String {
    "pbxlink".into()
}

fn untrusted_drop() -> String {
    "drop".into()
}

fn sip_port() -> u16 {
    5060
}

fn udp() -> String {
    "udp".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudSection {
    domain: Option<String>,
    #[serde(default)]
    targets: Vec<String>,
    ca: PathBuf,
    server_name: Option<String>,
    #[serde(default = "keepalive")]
    keepalive_seconds: u64,
    srtp_suites: Option<Vec<String>>,
    #[serde(default)]
    stun: Vec<String>,
    ntp: Option<String>,
}

fn keepalive() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipSection {
    #[serde(default = "pbx_trunk")]
    role: String,
    port: Option<u16>,
    #[serde(default = "cs3")]
    dscp: u8,
    #[serde(default = "service_unavailable")]
    refuse_with: u16,
    #[serde(default = "idle_timeout")]
    idle_timeout: u64,
    #[serde(default = "partial_timeout")]
    partial_timeout: u64,
    #[serde(default = "max_connections")]
    max_connections: usize,
}

fn idle_timeout() -> u64 {
    120
}

fn partial_timeout() -> u64 {
    10
}

fn max_connections() -> usize {
    1024
}

fn service_unavailable() -> u16 {
    503
}

impl Default for SipSection {
    fn default() -> Self {
        Self {
            role: pbx_trunk(),
            port: None,
            dscp: cs3(),
            refuse_with: service_unavailable(),
            idle_timeout: idle_timeout(),
            partial_timeout: partial_timeout(),
            max_connections: max_connections(),
        }
    }
}

fn pbx_trunk() -> String {
    "pbx-trunk".into()
}

fn cs3() -> u8 {
    24
}

pub use pbxlink_onboarding::PbxType;

/// Where the cloud trunk's targets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudTargets {
    /// RFC 3263 resolution of this domain.
    Domain(String),
    /// A static list, in order.
    Static(Vec<Target>),
}

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
}

/// The tunnel's settings, checked.
#[derive(Clone)]
pub struct TunnelSettings {
    /// `host:port`.
    pub endpoint: String,
    /// The name the platform's certificate carries.
    pub server_name: String,
    /// The CA it chains to.
    pub ca: PathBuf,
    /// The account.
    pub account: String,
    /// The token.
    pub token: String,
    /// The gateway's id, when configured.
    pub gateway_id: Option<String>,
    /// Most events kept unacknowledged.
    pub outbox_events: usize,
    /// Between scheduled syncs (none: none).
    pub sync_every: Option<Duration>,
}

impl fmt::Debug for TunnelSettings {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSettings")
            .field("endpoint", &self.endpoint)
            .field("server_name", &self.server_name)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// The subscriber side's settings: where the gateway registers Softphone
/// users and takes their calls.
#[derive(Clone)]
pub struct SubscriberConfig {
    /// Its UDP listener.
    pub listen: std::net::SocketAddr,
    /// Where users register.
    pub registrar: std::net::SocketAddr,
    /// Their addresses' domain.
    pub domain: String,
    /// Registration life asked for.
    pub expires: u32,
    /// Between OPTIONS to the registrar (zero: none).
    pub keepalive: Duration,
    /// Between two new registrations.
    pub spacing: Duration,
    /// Users configured here: (extension, SIP password).
    pub users: Vec<(String, String)>,
}

impl fmt::Debug for SubscriberConfig {
    /// Never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberConfig")
            .field("listen", &self.listen)
            .field("registrar", &self.registrar)
            .field("domain", &self.domain)
            .field("expires", &self.expires)
            .field("keepalive", &self.keepalive)
            .field("spacing", &self.spacing)
            .field(
                "users",
                &self.users.iter().map(|(e, _)| e).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The CSTA link's settings.
#[derive(Clone)]
pub struct CstaConfig {
    /// The servers (the PBX's CSTA address with each port), in order.
    pub servers: Vec<std::net::SocketAddr>,
    /// The CTI login (MiVoice Office 400).
    pub login: Option<(String, String)>,
    /// How long the PBX has to answer a request.
    pub timeout: Duration,
    /// The edition spoken until the PBX picks one.
    pub edition: pbxlink_csta::message::Edition,
}

impl fmt::Debug for CstaConfig {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CstaConfig")
            .field("servers", &self.servers)
            .field("login", &self.login.as_ref().map(|(u, _)| u))
            .field("timeout", &self.timeout)
            .field("edition", &self.edition)
            .finish()
    }
}

/// The user-config API's settings.
#[derive(Clone)]
pub struct UsersApiConfig {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// The PBX's credentials.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Certificate and key given by the operator (none: made and kept in
    /// the state directory).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for UsersApiConfig {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersApiConfig")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Everything wrong with a configuration file, one line each.
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {p}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |p: String| ConfigError {
        file: path.to_owned(),
        problems: vec![p],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|problems| ConfigError {
        file: path.to_owned(),
        problems,
    })
}

/// Checks a configuration's text; relative file names resolve from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<String>> {
    let file: File =
        toml::from_str(text).map_err(|e| vec![e.to_string().trim().replace('\n', " ")])?;
    let mut problems = Vec::new();
    let mut ip = |section: &str, key: &str, v: &str| -> Option<IpAddr> {
        v.parse()
            .map_err(|_| {
                problems.push(format!(
                    "[{section}] {key} = {v:?} is not an IP address (e.g. \"192.168.1.20\")"
                ))
            })
            .ok()
    };
    let lan_address = ip("gateway", "lan_address", &file.gateway.lan_address);
    let public_address = file
        .gateway
        .public_address
        .as_deref()
        .map(|v| ip("gateway", "public_address", v));
    let pbx_address = ip("pbx", "address", &file.pbx.address);
    let profile = match file.gateway.profile.as_str() {
        "auto" => None,
        p => match p.parse::<Profile>() {
            Ok(p) => Some(p),
            Err(_) => {
                problems.push(format!(
                    "[gateway] profile = {p:?}: use auto, small, smallplus, medium, large or max"
                ));
                None
            }
        },
    };
    let mut networks = Vec::new();
    for n in &file.gateway.networks {
        match n.parse::<Prefix>() {
            Ok(p) => networks.push(p),
            Err(_) => problems.push(format!(
                "[gateway] networks: {n:?} is not a network (e.g. \"192.168.1.0/24\")"
            )),
        }
    }
    if networks.is_empty() {
        // Media may only go where the PBX is.
        if let Some(a) = pbx_address {
            networks.push(a.to_string().parse().expect("an address is a prefix"));
        }
    }
    let pbx_type = PbxType::ALL
        .iter()
        .find(|(n, _)| *n == file.pbx.kind)
        .map(|(_, t)| *t);
    if pbx_type.is_none() {
        problems.push(format!(
            "[pbx] type = {:?}: use mivoice-5000, mivoice-office-400, mx-one or mivoice-business",
            file.pbx.kind
        ));
    }
    let pbx_transport = match file.pbx.transport.as_str() {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        other => {
            problems.push(format!("[pbx] transport = {other:?}: use udp or tcp"));
            None
        }
    };
    let cloud = match (&file.cloud.domain, file.cloud.targets.is_empty()) {
        (Some(d), true) if !d.is_empty() && !d.contains(char::is_whitespace) => {
            Some(CloudTargets::Domain(d.clone()))
        }
        (None, false) => {
            let mut list = Vec::new();
            for t in &file.cloud.targets {
                match t.parse::<Target>() {
                    Ok(t) if t.transport == Transport::Udp => problems.push(format!(
                        "[cloud] targets: {:?}: the cloud trunk runs over tls (or tcp for tests)",
                        t.to_string()
                    )),
                    Ok(t) => list.push(t),
                    Err(e) => problems.push(format!("[cloud] {e}")),
                }
            }
            Some(CloudTargets::Static(list))
        }
        (Some(_), false) => {
            problems.push("[cloud] give domain or targets, not both".into());
            None
        }
        _ => {
            problems.push(
                "[cloud] needs domain = \"sip.cloud.example\" or targets = [\"tls:ADDR:5061\"]"
                    .into(),
            );
            None
        }
    };
    let ca = if file.cloud.ca.is_absolute() {
        file.cloud.ca.clone()
    } else {
        base.join(&file.cloud.ca)
    };
    if let Err(e) = std::fs::metadata(&ca) {
        problems.push(format!("[cloud] ca = {:?}: {e}", ca.display().to_string()));
    }
    if !["pbx-trunk", "subscriber", "embedded"].contains(&file.sip.role.as_str()) {
        problems.push(format!(
            "[sip] role = {:?}: use pbx-trunk, subscriber or embedded",
            file.sip.role
        ));
    }
    if file.sip.dscp > 63 {
        problems.push(format!(
            "[sip] dscp = {}: a DSCP is 0 to 63 (CS3 is 24)",
            file.sip.dscp
        ));
    }
    let mut srtp_suites = Vec::new();
    match &file.cloud.srtp_suites {
        None => srtp_suites.extend(Suite::ALL),
        Some(names) => {
            for n in names {
                match Suite::from_sdp_name(n) {
                    Some(s) => srtp_suites.push(s),
                    None => problems.push(format!(
                        "[cloud] srtp_suites: {n:?}: use {}",
                        Suite::ALL.map(|s| s.sdp_name()).join(", ")
                    )),
                }
            }
            if names.is_empty() {
                problems.push("[cloud] srtp_suites: name at least one suite".into());
            }
        }
    }
    let mut trusted = Vec::new();
    for n in &file.pbx.trusted {
        match n.parse::<Prefix>() {
            Ok(p) => trusted.push(p),
            Err(_) => problems.push(format!(
                "[pbx] trusted: {n:?} is not a network (e.g. \"192.168.1.10/32\")"
            )),
        }
    }
    if trusted.is_empty() {
        if let Some(a) = pbx_address {
            trusted.push(a.to_string().parse().expect("an address is a prefix"));
        }
    }
    let reject_untrusted = match file.pbx.untrusted.as_str() {
        "drop" => false,
        "reject" => true,
        other => {
            problems.push(format!("[pbx] untrusted = {other:?}: use drop or reject"));
            false
        }
    };
    if ![503, 486, 480].contains(&file.sip.refuse_with) {
        problems.push(format!(
            "[sip] refuse_with = {}: use 503, 486 or 480",
            file.sip.refuse_with
        ));
    }
    if file.sip.idle_timeout == 0 || file.sip.partial_timeout == 0 {
        problems.push("[sip] idle_timeout and partial_timeout must be at least 1 second".into());
    }
    if file.sip.max_connections == 0 {
        problems.push("[sip] max_connections must be at least 1".into());
    }
    if file.gateway.call_limit == Some(0) {
        problems.push("[gateway] call_limit must be at least 1".into());
    }
    let mut stun = Vec::new();
    for s in &file.cloud.stun {
        match s.parse() {
            Ok(a) => stun.push(a),
            Err(_) => problems.push(format!(
                "[cloud] stun: {s:?} is not an address and port (e.g. \"198.51.100.10:3478\")"
            )),
        }
    }
    if let Some(ntp) = &file.cloud.ntp
        && !ntp
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    {
        problems.push(format!(
            "[cloud] ntp: {ntp:?} is not a host and port (e.g. \"ntp.cloud.example:123\")"
        ));
    }
    if let Some(l) = &file.log.level
        && !LOG_LEVELS.contains(&l.as_str())
    {
        problems.push(format!(
            "[log] level = {l:?}: use error, warn, info, debug or trace"
        ));
    }
    if !(1..=3600).contains(&file.gateway.media_timeout_seconds) {
        problems.push(format!(
            "[gateway] media_timeout_seconds = {}: use 1 to 3600 (60 is usual)",
            file.gateway.media_timeout_seconds
        ));
    }
    if file.gateway.drain_seconds > 3600 {
        problems.push(format!(
            "[gateway] drain_seconds = {}: use 0 to 3600 (30 is usual)",
            file.gateway.drain_seconds
        ));
    }
    if file.cloud.keepalive_seconds == 0 {
        problems.push("[cloud] keepalive_seconds must be at least 1".into());
    }
    let pbx_auth = match (&file.pbx.auth_username, &file.pbx.auth_password) {
        (None, None) => None,
        (Some(u), Some(p)) if !u.is_empty() && p.len() >= 8 && !u.contains(['"', '\\']) => Some((
            file.pbx.auth_realm.clone(),
            Credentials {
                username: u.clone(),
                password: p.clone().into(),
            },
        )),
        (Some(_), Some(_)) => {
            problems.push(
                "[pbx] auth_username must not be empty or hold quotes, and auth_password needs at least 8 characters"
                    .into(),
            );
            None
        }
        _ => {
            problems.push("[pbx] auth_username and auth_password go together".into());
            None
        }
    };
    if file.pbx.auth_realm.is_empty() || file.pbx.auth_realm.contains(['"', '\\']) {
        problems.push(format!(
            "[pbx] auth_realm = {:?}: a name without quotes (e.g. \"pbxlink\")",
            file.pbx.auth_realm
        ));
    }
    if file.pbx.keepalive_seconds > 3600 {
        problems.push(format!(
            "[pbx] keepalive_seconds = {}: use 1 to 3600 (30 is usual), or 0 for none",
            file.pbx.keepalive_seconds
        ));
    }
    let admin = admin_settings(&file.admin, lan_address, base, &mut problems);
    let d = &file.digits;
    for (key, v) in [
        ("outbound_strip", &d.outbound_strip),
        ("outbound_prepend", &d.outbound_prepend),
        ("inbound_strip", &d.inbound_strip),
        ("inbound_prepend", &d.inbound_prepend),
    ] {
        if !is_dial_string(v) || v.len() > 16 {
            problems.push(format!(
                "[digits] {key} = {v:?}: use up to 16 of 0-9 * # + (e.g. \"9\")"
            ));
        }
    }
    let csta = csta_settings(&file.pbx, pbx_type, pbx_address, &mut problems);
    let tunnel = tunnel_settings(&file.tunnel, &ca, base, &mut problems);
    let users_api = users_api(&file.users, lan_address, &mut problems);
    let subscriber = subscriber(
        &file.subscriber,
        lan_address,
        pbx_address.map(|a| std::net::SocketAddr::new(a, file.pbx.port)),
        &mut problems,
    );
    if !(1..=1000).contains(&file.users.history_calls) {
        problems.push(format!(
            "[users] history_calls = {}: use 1 to 1000 (20 is usual)",
            file.users.history_calls
        ));
    }
    if let Some(t) = &file.admin.api_token
        && (t.len() < 16 || t.chars().any(char::is_whitespace))
    {
        problems.push(
            "[admin] api_token needs at least 16 characters and no spaces (e.g. from `openssl rand -hex 16`)"
                .into(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let pbx_type = pbx_type.expect("checked");
    Ok(Config {
        lan_address: lan_address.expect("checked"),
        public_address: public_address.flatten(),
        profile,
        networks,
        media_timeout: Duration::from_secs(file.gateway.media_timeout_seconds),
        pbx_type,
        pbx_address: pbx_address.expect("checked"),
        pbx_port: file.pbx.port,
        pbx_transport: pbx_transport.expect("checked"),
        csta,
        trusted,
        reject_untrusted,
        pbx_auth,
        pbx_keepalive_seconds: file.pbx.keepalive_seconds,
        call_limit: file.gateway.call_limit,
        cdr_file: file.gateway.cdr_file.map(|f| base.join(f)),
        drain: Duration::from_secs(file.gateway.drain_seconds),
        refuse_with: file.sip.refuse_with,
        sip_idle_timeout: file.sip.idle_timeout,
        sip_partial_timeout: file.sip.partial_timeout,
        sip_max_connections: file.sip.max_connections,
        cloud: cloud.expect("checked"),
        cloud_ca: ca,
        cloud_server_name: file.cloud.server_name,
        keepalive_seconds: file.cloud.keepalive_seconds,
        srtp_suites,
        stun,
        ntp: file.cloud.ntp,
        sip_role: file.sip.role,
        sip_port: file.sip.port,
        dscp: file.sip.dscp,
        outbound_digits: DigitRule {
            strip: file.digits.outbound_strip,
            prepend: file.digits.outbound_prepend,
        },
        inbound_digits: DigitRule {
            strip: file.digits.inbound_strip,
            prepend: file.digits.inbound_prepend,
        },
        admin,
        state_dir: base.join(&file.gateway.state_dir),
        users_api,
        history_calls: file.users.history_calls,
        subscriber,
        tunnel,
    })
}

/// The admin page and API's settings (also read before the gateway is
/// onboarded, when only the admin runs).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Plain HTTP: health, readiness, metrics and the REST API (commands
    /// with the token); browsers are sent on to HTTPS. None: off.
    pub listen: Option<std::net::SocketAddr>,
    /// The admin page and its API over HTTPS. None: off.
    pub https_listen: Option<std::net::SocketAddr>,
    /// The page's certificate and key (none: made at first start).
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The bearer token that lets API requests run commands.
    pub token: Option<String>,
    /// The interface the wizard's static LAN settings are applied to
    /// (none: they are recorded, the system owns the network).
    pub network_interface: Option<String>,
    /// Where DNS servers are written when the interface is managed.
    pub resolv_conf: PathBuf,
    /// How long a log bundle's download link works.
    pub log_link: std::time::Duration,
    /// The name advertised by mDNS (`NAME.local`) and the address it
    /// stands for (none: not advertised).
    pub mdns: Option<(String, IpAddr)>,
}

fn listen_key(
    key: &str,
    v: Option<&str>,
    default: Option<std::net::SocketAddr>,
    problems: &mut Vec<String>,
) -> Option<std::net::SocketAddr> {
    match v {
        Some("off") => None,
        Some(a) => a
            .parse()
            .map_err(|_| {
                problems.push(format!(
                    "[admin] {key} = {a:?}: an address and port (e.g. \"192.168.1.20:80\") or \"off\""
                ))
            })
            .ok(),
        None => default,
    }
}

fn admin_settings(
    a: &AdminSection,
    lan: Option<IpAddr>,
    base: &Path,
    problems: &mut Vec<String>,
) -> AdminSettings {
    let at = |port| lan.map(|ip| std::net::SocketAddr::new(ip, port));
    let listen = listen_key("listen", a.listen.as_deref(), at(80), problems);
    let https_listen = listen_key("https_listen", a.https_listen.as_deref(), at(443), problems);
    let cert = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        _ => {
            problems.push("[admin] cert and key go together (or neither: one is made)".into());
            None
        }
    };
    if a.api_token.as_ref().is_some_and(|t| t.len() < 16) {
        problems.push("[admin] api_token: at least 16 characters".into());
    }
    if let Some(i) = &a.network_interface
        && (i.is_empty() || i.len() > 15 || i.contains(['/', ' ']))
    {
        problems.push(format!(
            "[admin] network_interface = {i:?}: an interface name (e.g. \"eth0\")"
        ));
    }
    if !(1..=86_400).contains(&a.log_link_seconds) {
        problems.push(format!(
            "[admin] log_link_seconds = {}: from 1 to 86400 (a log bundle's link expires after that)",
            a.log_link_seconds
        ));
    }
    let name = a.mdns_name.trim();
    let mdns = if name == "off" {
        None
    } else if name.is_empty()
        || name.len() > 63
        || name.starts_with('-')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        problems.push(format!(
            "[admin] mdns_name = {name:?}: letters, digits and '-', at most 63 (\"pbxlink\" for pbxlink.local), or \"off\""
        ));
        None
    } else {
        // Where the page is: its own address when it has one, else the LAN's.
        [https_listen, listen]
            .into_iter()
            .flatten()
            .map(|a| a.ip())
            .find(|ip| !ip.is_unspecified())
            .or(lan)
            .map(|ip| (name.to_ascii_lowercase(), ip))
    };
    AdminSettings {
        mdns,
        listen,
        https_listen,
        cert,
        token: a.api_token.clone(),
        network_interface: a.network_interface.clone(),
        resolv_conf: base.join(&a.resolv_conf),
        log_link: std::time::Duration::from_secs(a.log_link_seconds),
    }
}

/// What runs before the gateway is onboarded (no `[pbx]` or no `[cloud]`
/// yet): the admin page with its wizard.
#[derive(Debug, Clone)]
pub struct SetupConfig {
    /// Where the gateway keeps what it must not forget.
    pub state_dir: PathBuf,
    /// The admin page and API.
    pub admin: AdminSettings,
    /// The account's name (its admin password must not contain it).
    pub account: Option<String>,
    /// What is not configured yet.
    pub missing: Vec<String>,
    /// The tunnel to the cloud platform, when the file links the gateway
    /// already (a replacement relinks through it; none: off).
    pub tunnel: Option<TunnelSettings>,
    /// Why the tunnel is off although `[tunnel]` is there.
    pub tunnel_problems: Vec<String>,
}

/// The file as a table, with the wizard's `overlay` laid over it.
pub fn read_table(path: &Path, overlay: &toml::Table) -> Result<toml::Table, ConfigError> {
    let fail = |p: String| ConfigError {
        file: path.to_owned(),
        problems: vec![p],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| fail(e.to_string().trim().replace('\n', " ")))?;
    crate::onboarding::merge(&mut table, overlay);
    Ok(table)
}

/// The state directory a file names (before the rest is checked: the
/// wizard's settings are kept there).
pub fn state_dir_of(path: &Path) -> PathBuf {
    let base = path.parent().unwrap_or(Path::new("."));
    let named = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("gateway")?
                .get("state_dir")?
                .as_str()
                .map(PathBuf::from)
        });
    base.join(named.unwrap_or_else(state_dir))
}

/// Reads and checks `path` with the wizard's `overlay` laid over it. An
/// empty overlay reads the file as [`load`] does.
pub fn load_with(path: &Path, overlay: &toml::Table) -> Result<Config, ConfigError> {
    if overlay.is_empty() {
        return load(path);
    }
    let table = read_table(path, overlay)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_table(table, base).map_err(|problems| ConfigError {
        file: path.to_owned(),
        problems,
    })
}

/// Checks a configuration given as a table.
pub fn parse_table(table: toml::Table, base: &Path) -> Result<Config, Vec<String>> {
    let text = toml::to_string(&table).map_err(|e| vec![e.to_string()])?;
    parse(&text, base)
}

/// Whether the file configures the PBX (its address) or the cloud (a
/// `[cloud]` section): site details such as `[pbx] port` may be given
/// before the wizard names the PBX.
pub fn configured(table: &toml::Table, what: &str) -> bool {
    match what {
        "pbx" => table.get("pbx").and_then(|p| p.get("address")).is_some(),
        other => table.contains_key(other),
    }
}

/// When the merged file lacks what calls need (`[pbx]`, `[cloud]`): what
/// runs meanwhile, or the problems with the little it needs.
pub fn setup_config(path: &Path, table: &toml::Table) -> Result<Option<SetupConfig>, ConfigError> {
    let missing: Vec<String> = [
        (
            "pbx",
            "the PBX (the wizard's PBX step, or [pbx] in the file)",
        ),
        (
            "cloud",
            "the cloud platform ([cloud], given when the gateway is linked)",
        ),
    ]
    .iter()
    .filter(|(k, _)| !configured(table, k))
    .map(|(_, what)| (*what).to_owned())
    .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct SetupFile {
        gateway: GatewaySection,
        #[serde(default)]
        admin: AdminSection,
        #[serde(default)]
        tunnel: TunnelSection,
        #[serde(default, rename = "log")]
        _log: LogSection,
    }
    let fail = |problems: Vec<String>| ConfigError {
        file: path.to_owned(),
        problems,
    };
    let mut only = toml::Table::new();
    for k in ["gateway", "admin", "tunnel", "log"] {
        if let Some(v) = table.get(k) {
            only.insert(k.into(), v.clone());
        }
    }
    let file: SetupFile = toml::Value::Table(only)
        .try_into()
        .map_err(|e: toml::de::Error| fail(vec![e.to_string().trim().replace('\n', " ")]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let lan_address = file.gateway.lan_address.parse::<IpAddr>().map_err(|_| {
        fail(vec![format!(
            "[gateway] lan_address = {:?} is not an IP address (e.g. \"192.168.1.20\")",
            file.gateway.lan_address
        )])
    })?;
    let admin = admin_settings(&file.admin, Some(lan_address), base, &mut problems);
    // The tunnel's CA defaults to the cloud trunk's, when [cloud] names one.
    let cloud_ca = table
        .get("cloud")
        .and_then(|c| c.get("ca"))
        .and_then(toml::Value::as_str)
        .map_or_else(PathBuf::new, |c| base.join(c));
    // In setup the tunnel's problems leave it off rather than stopping
    // the page the installer needs.
    let mut tunnel_problems = Vec::new();
    let tunnel = tunnel_settings(&file.tunnel, &cloud_ca, base, &mut tunnel_problems)
        .filter(|_| tunnel_problems.is_empty());
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(Some(SetupConfig {
        state_dir: base.join(&file.gateway.state_dir),
        admin,
        account: table
            .get("tunnel")
            .and_then(|t| t.get("account"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned),
        missing,
        tunnel,
        tunnel_problems,
    }))
}

/// The tunnel's settings, or the problems with them.
fn tunnel_settings(
    t: &TunnelSection,
    cloud_ca: &Path,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<TunnelSettings> {
    let endpoint = t.endpoint.clone()?;
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        problems.push(format!(
            "[tunnel] endpoint = {endpoint:?}: host:port (e.g. \"mgmt.cloud.example:443\")"
        ));
        return None;
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        problems.push(format!(
            "[tunnel] endpoint = {endpoint:?}: host:port (e.g. \"mgmt.cloud.example:443\")"
        ));
    }
    let (Some(account), Some(token)) = (&t.account, &t.token) else {
        problems.push("[tunnel] needs account and token (given when the gateway is linked)".into());
        return None;
    };
    if token.len() < 16 {
        problems.push("[tunnel] token: at least 16 characters".into());
    }
    if !(1..=10_000_000).contains(&t.outbox_events) {
        problems.push(format!(
            "[tunnel] outbox_events = {}: use 1 to 10000000 (100000 is usual)",
            t.outbox_events
        ));
    }
    let ca =
        t.ca.as_ref()
            .map_or_else(|| cloud_ca.to_owned(), |c| base.join(c));
    if let Err(e) = std::fs::metadata(&ca) {
        problems.push(format!("[tunnel] ca = {:?}: {e}", ca.display().to_string()));
    }
    Some(TunnelSettings {
        server_name: t
            .server_name
            .clone()
            .unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned()),
        endpoint,
        ca,
        account: account.clone(),
        token: token.clone(),
        gateway_id: t.gateway_id.clone(),
        outbox_events: t.outbox_events,
        sync_every: (t.sync_minutes > 0).then(|| Duration::from_secs(60 * t.sync_minutes)),
    })
}

/// The subscriber side's settings, or the problems with them.
fn subscriber(
    sub: &SubscriberSection,
    lan: Option<IpAddr>,
    pbx: Option<std::net::SocketAddr>,
    problems: &mut Vec<String>,
) -> Option<SubscriberConfig> {
    let addr = |key: &str, v: &str, problems: &mut Vec<String>| {
        v.parse::<std::net::SocketAddr>()
            .map_err(|_| {
                problems.push(format!(
                    "[subscriber] {key} = {v:?}: an address and port (e.g. \"192.168.1.10:5060\")"
                ))
            })
            .ok()
    };
    let listen = match sub.listen.as_deref() {
        Some("off") => return None,
        Some(v) => addr("listen", v, problems),
        None => lan.map(|ip| std::net::SocketAddr::new(ip, 5070)),
    };
    let registrar = match sub.registrar.as_deref() {
        Some(v) => addr("registrar", v, problems),
        None => pbx,
    };
    if !(60..=86_400).contains(&sub.expires_seconds) {
        problems.push(format!(
            "[subscriber] expires_seconds = {}: use 60 to 86400 (300 is usual)",
            sub.expires_seconds
        ));
    }
    if sub.keepalive_seconds > 3600 {
        problems.push(format!(
            "[subscriber] keepalive_seconds = {}: use 1 to 3600, or 0 for none",
            sub.keepalive_seconds
        ));
    }
    if !(1..=1000).contains(&sub.registrations_per_second) {
        problems.push(format!(
            "[subscriber] registrations_per_second = {}: use 1 to 1000 (20 is usual)",
            sub.registrations_per_second
        ));
    }
    let mut users = Vec::new();
    for u in &sub.user {
        if u.extension.is_empty()
            || u.extension.len() > 16
            || !u
                .extension
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
        {
            problems.push(format!(
                "[[subscriber.user]] extension = {:?}: up to 16 of 0-9 * #",
                u.extension
            ));
        } else if u.password.is_empty() || u.password.contains(['"', '\\']) {
            problems.push(format!(
                "[[subscriber.user]] {}: a password without quotes or backslashes",
                u.extension
            ));
        } else if users.iter().any(|(e, _)| e == &u.extension) {
            problems.push(format!(
                "[[subscriber.user]] extension {:?} is given twice",
                u.extension
            ));
        } else {
            users.push((u.extension.clone(), u.password.clone()));
        }
    }
    let (listen, registrar) = (listen?, registrar?);
    Some(SubscriberConfig {
        listen,
        registrar,
        domain: sub
            .domain
            .clone()
            .unwrap_or_else(|| registrar.ip().to_string()),
        expires: sub.expires_seconds,
        keepalive: Duration::from_secs(sub.keepalive_seconds),
        spacing: Duration::from_secs(1) / sub.registrations_per_second.max(1),
        users,
    })
}

/// The CSTA link's settings, or the problems with them.
fn csta_settings(
    pbx: &PbxSection,
    kind: Option<PbxType>,
    pbx_address: Option<IpAddr>,
    problems: &mut Vec<String>,
) -> Option<CstaConfig> {
    let ports: Vec<u16> = match &pbx.csta_ports {
        None => kind.map(|t| vec![t.csta_port()]).unwrap_or_default(),
        Some(PortList::List(l)) => l.clone(),
        Some(PortList::Text(t)) => {
            let mut l = Vec::new();
            for p in t.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) => l.push(n),
                    Err(_) => problems.push(format!(
                        "[pbx] csta_ports = {t:?}: {p:?} is not a port (e.g. \"3211;3212\")"
                    )),
                }
            }
            l
        }
    };
    if pbx.csta && ports.is_empty() && kind.is_some() {
        problems.push("[pbx] csta_ports: name at least one port (or csta = false)".into());
    }
    if ports.contains(&0) {
        problems.push("[pbx] csta_ports: 0 is not a port".into());
    }
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != ports.len() {
        problems.push("[pbx] csta_ports: a port is named twice".into());
    }
    let address = match &pbx.csta_address {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(format!(
                    "[pbx] csta_address = {a:?} is not an IP address (e.g. \"192.168.1.10\")"
                ));
                None
            }
        },
        None => pbx_address,
    };
    let login = match (&pbx.csta_username, &pbx.csta_password) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            if u.is_empty() || u.chars().count() > 25 {
                problems.push("[pbx] csta_username: 1 to 25 characters".into());
            }
            if p.is_empty() || p.chars().count() > 255 {
                problems.push("[pbx] csta_password: 1 to 255 characters".into());
            }
            Some((u.clone(), p.clone()))
        }
        _ => {
            problems.push("[pbx] csta_username and csta_password go together".into());
            None
        }
    };
    if pbx.csta && kind == Some(PbxType::MiVoiceOffice400) && login.is_none() {
        problems.push(
            "[pbx] type = \"mivoice-office-400\" needs csta_username and csta_password (the CloudLink system user on the PBX)"
                .into(),
        );
    }
    if !(1..=60).contains(&pbx.csta_timeout_seconds) {
        problems.push(format!(
            "[pbx] csta_timeout_seconds = {}: use 1 to 60 (5 is usual)",
            pbx.csta_timeout_seconds
        ));
    }
    use pbxlink_csta::message::Edition;
    let edition = match pbx.csta_edition.as_str() {
        "ed2" => Edition::Ed2,
        "ed3" => Edition::Ed3,
        "ed4" => Edition::Ed4,
        "ed5" => Edition::Ed5,
        other => {
            problems.push(format!(
                "[pbx] csta_edition = {other:?}: use ed2, ed3, ed4 or ed5"
            ));
            Edition::Ed3
        }
    };
    (pbx.csta).then(|| CstaConfig {
        servers: address
            .map(|ip| {
                ports
                    .iter()
                    .map(|p| std::net::SocketAddr::new(ip, *p))
                    .collect()
            })
            .unwrap_or_default(),
        login,
        timeout: Duration::from_secs(pbx.csta_timeout_seconds),
        edition,
    })
}

/// The user-config API's settings, or the problems with them.
fn users_api(
    users: &UsersSection,
    lan: Option<IpAddr>,
    problems: &mut Vec<String>,
) -> Option<UsersApiConfig> {
    let listen = match users.listen.as_deref() {
        Some("off") => return None,
        Some(a) => match a.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "[users] listen = {a:?}: an address and port (e.g. \"192.168.1.20:8086\") or \"off\""
                ));
                return None;
            }
        },
        None => lan.map(|ip| std::net::SocketAddr::new(ip, 8086)),
    };
    let Some(password) = &users.push_password else {
        if users.listen.is_some() {
            problems.push(
                "[users] listen needs push_password: the PBX must authenticate its pushes".into(),
            );
        }
        return None;
    };
    if password.chars().count() < 12 {
        problems.push("[users] push_password needs at least 12 characters".into());
    }
    if users.push_username.is_empty() || users.push_username.contains(':') {
        problems.push("[users] push_username: not empty, without ':'".into());
    }
    let tls = match (&users.cert, &users.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            problems.push("[users] cert and key go together".into());
            None
        }
    };
    Some(UsersApiConfig {
        listen: listen?,
        username: users.push_username.clone(),
        password: password.clone(),
        tls,
    })
}

impl fmt::Display for Config {
    /// The effective configuration, one line per setting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gateway: LAN {}, public {}, profile {}, media networks {}, media timeout {} s",
            self.lan_address,
            self.public_address
                .map_or("not set".to_owned(), |a| a.to_string()),
            self.profile.map_or("auto", |p| p.name()),
            self.networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.media_timeout.as_secs()
        )?;
        writeln!(
            f,
            "pbx: {} at {}:{} over {}, {}, keep-alive every {} s, {}",
            self.pbx_type.name(),
            self.pbx_address,
            self.pbx_port,
            self.pbx_transport,
            match &self.pbx_auth {
                Some((realm, c)) => format!("digest auth as {:?} in {realm:?}", c.username),
                None => "no digest auth".into(),
            },
            self.pbx_keepalive_seconds,
            match &self.csta {
                None => "no CSTA link".to_owned(),
                Some(c) => format!(
                    "CSTA {}{}",
                    c.servers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(";"),
                    c.login
                        .as_ref()
                        .map_or(String::new(), |(u, _)| format!(" as {u:?}"))
                ),
            }
        )?;
        let targets = match &self.cloud {
            CloudTargets::Domain(d) => format!("{d} (RFC 3263)"),
            CloudTargets::Static(l) => l
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let name = match (&self.cloud_server_name, &self.cloud) {
            (Some(n), _) => n.clone(),
            (None, CloudTargets::Domain(d)) => d.clone(),
            (None, CloudTargets::Static(_)) => "the target's IP".into(),
        };
        writeln!(
            f,
            "cloud: {targets}, certificate by {} naming {name}, keep-alive every {} s",
            self.cloud_ca.display(),
            self.keepalive_seconds
        )?;
        writeln!(f, "sip: role {}, DSCP {}", self.sip_role, self.dscp)?;
        writeln!(
            f,
            "admin: {}{}",
            self.admin.listen.map_or("off".to_owned(), |a| format!(
                "API on http://{a}/api/status"
            )) + &self
                .admin
                .https_listen
                .map_or(String::new(), |a| format!(", page on https://{a}/")),
            if self.admin.token.is_some() {
                ", commands with the API token"
            } else {
                ", read-only"
            }
        )?;
        writeln!(
            f,
            "subscriber: {}",
            self.subscriber
                .as_ref()
                .map_or("off".to_owned(), |s| format!(
                    "on {}, users register to {} as sip:EXT@{}, {} configured here",
                    s.listen,
                    s.registrar,
                    s.domain,
                    s.users.len()
                ))
        )?;
        writeln!(
            f,
            "tunnel: {}",
            self.tunnel.as_ref().map_or("off".to_owned(), |t| format!(
                "to {} (certificate by {} naming {}) for account {:?}, outbox {} events, sync {}",
                t.endpoint,
                t.ca.display(),
                t.server_name,
                t.account,
                t.outbox_events,
                t.sync_every
                    .map_or("on push and on demand".to_owned(), |d| format!(
                        "every {} min and on push",
                        d.as_secs() / 60
                    ))
            ))
        )?;
        writeln!(
            f,
            "users: {}, kept in {}",
            self.users_api.as_ref().map_or(
                "user-config API off (set [users] push_password)".to_owned(),
                |u| format!(
                    "user-config API on https://{}/api/v1/users for {:?}",
                    u.listen, u.username
                )
            ),
            self.state_dir.display()
        )?;
        let rule = |r: &DigitRule| match (r.strip.as_str(), r.prepend.as_str()) {
            ("", "") => "as dialled".to_owned(),
            (s, p) => format!("strip {s:?} then prepend {p:?}"),
        };
        write!(
            f,
            "digits: to the cloud {}, to the PBX {} (emergency numbers as dialled)",
            rule(&self.outbound_digits),
            rule(&self.inbound_digits)
        )
    }
}

/// Options of `pbxlink check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
}

/// Runs `pbxlink check-config`: the effective configuration, or every
/// problem found (exit status 2).
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    match load(&args.config) {
        Ok(c) => {
            println!("{c}");
            println!("{}: ok", args.config.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_log_level_is_one_of_five_and_info_by_default() {
        let t = |text: &str| text.parse::<toml::Table>().unwrap();
        assert_eq!(log_level(&t("")), Ok("info"));
        assert_eq!(log_level(&t("[log]\nlevel = \"debug\"")), Ok("debug"));
        assert!(
            log_level(&t("[log]\nlevel = \"loud\""))
                .unwrap_err()
                .contains("use error, warn")
        );
        assert!(log_level(&t("[log]\nlevel = 3")).is_err());
    }

    use super::*;

    const GOOD: &str = r#"
[gateway]
lan_address = "192.168.1.20"
public_address = "203.0.113.5"
networks = ["192.168.1.0/24"]

[pbx]
type = "mivoice-5000"
address = "192.168.1.10"

[cloud]
domain = "sip.cloud.example"
ca = "Cargo.toml"
"#;

    fn base() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn setup_keeps_a_linked_tunnel_and_advertises_the_page() {
        let setup = |extra: &str| {
            let text = format!(
                "[gateway]\nlan_address = \"192.168.1.20\"\n{extra}\n[tunnel]\n\
                 endpoint = \"mgmt.cloud.example:443\"\naccount = \"ACME\"\ntoken = \"0123456789abcdef\"\n"
            );
            let table: toml::Table = toml::from_str(&text).unwrap();
            setup_config(&base().join("pbxlink.toml"), &table)
                .unwrap()
                .expect("setup: no [pbx]")
        };
        let linked = setup("[cloud]\nca = \"Cargo.toml\"\n");
        let t = linked.tunnel.expect("the tunnel runs in setup");
        assert_eq!(t.ca, base().join("Cargo.toml"), "the cloud's CA");
        assert_eq!(
            linked.admin.mdns,
            Some(("pbxlink".to_owned(), "192.168.1.20".parse().unwrap()))
        );
        // No CA anywhere: the page still runs, the tunnel stays off, why said.
        let unlinked = setup("");
        assert!(unlinked.tunnel.is_none());
        assert!(unlinked.tunnel_problems[0].starts_with("[tunnel] ca"));
        let off = setup("[admin]\nmdns_name = \"off\"\n");
        assert_eq!(off.admin.mdns, None);
        let table: toml::Table = toml::from_str(
            "[gateway]\nlan_address = \"192.168.1.20\"\n[admin]\nmdns_name = \"pbx link\"\n",
        )
        .unwrap();
        let e = setup_config(&base().join("pbxlink.toml"), &table).unwrap_err();
        assert!(e.problems[0].contains("mdns_name"), "{e:?}");
    }

    #[test]
    fn a_good_file_gets_its_defaults() {
        let c = parse(GOOD, base()).unwrap();
        assert_eq!(
            c.csta.as_ref().unwrap().servers,
            ["192.168.1.10:3211".parse().unwrap()],
            "by PBX type"
        );
        assert_eq!(c.pbx_port, 5060);
        assert_eq!(c.pbx_transport, Transport::Udp);
        assert_eq!(c.cloud, CloudTargets::Domain("sip.cloud.example".into()));
        assert_eq!(
            (c.sip_role.as_str(), c.dscp, c.keepalive_seconds),
            ("pbx-trunk", 24, 30)
        );
        assert!(c.profile.is_none());
        assert_eq!(c.admin.listen, Some("192.168.1.20:80".parse().unwrap()));
        assert_eq!(
            c.admin.https_listen,
            Some("192.168.1.20:443".parse().unwrap())
        );
        assert_eq!(c.media_timeout, Duration::from_secs(60));
        assert_eq!(c.trusted, ["192.168.1.10".parse().unwrap()], "the PBX only");
        assert!(!c.reject_untrusted && c.refuse_with == 503 && c.call_limit.is_none());
        let shown = c.to_string();
        assert!(
            shown.contains("pbx: mivoice-5000 at 192.168.1.10:5060 over udp, no digest auth, keep-alive every 30 s, CSTA 192.168.1.10:3211"),
            "{shown}"
        );
    }

    #[test]
    fn digest_credentials_are_shown_by_user_never_by_password() {
        let with = GOOD.replace(
            "mivoice-5000\"",
            "mivoice-5000\"\nauth_username = \"officelinkmv5000\"\nauth_password = \"Pbx-trunk-9\"",
        );
        let c = parse(&with, base()).unwrap();
        let (realm, creds) = c.pbx_auth.as_ref().unwrap();
        assert_eq!(
            (realm.as_str(), creds.username.as_str()),
            ("pbxlink", "officelinkmv5000")
        );
        let shown = format!("{c} {c:?}");
        assert!(
            shown.contains("digest auth as \"officelinkmv5000\""),
            "{shown}"
        );
        assert!(!shown.contains("Pbx-trunk-9"), "{shown}");
        let short = with.replace("Pbx-trunk-9", "short");
        assert!(parse(&short, base()).unwrap_err()[0].contains("at least 8 characters"));
    }

    #[test]
    fn the_csta_link_and_the_user_api_are_configured_and_checked() {
        let c = parse(
            &GOOD.replace(
                "mivoice-5000\"",
                "mivoice-5000\"\ncsta_ports = \"3211; 3212\"\ncsta_address = \"192.168.1.11\"",
            ),
            base(),
        )
        .unwrap();
        let csta = c.csta.as_ref().unwrap();
        assert_eq!(
            csta.servers,
            [
                "192.168.1.11:3211".parse().unwrap(),
                "192.168.1.11:3212".parse().unwrap()
            ]
        );
        assert!(c.users_api.is_none(), "off until a password is set");
        assert_eq!(c.state_dir, Path::new("/var/lib/pbxlink"));
        let with_users = format!(
            "{GOOD}\n[users]\npush_password = \"Push-secret-42\"\n[admin]\napi_token = \"0123456789abcdef\"\n"
        );
        let c = parse(&with_users, base()).unwrap();
        let api = c.users_api.as_ref().unwrap();
        assert_eq!(api.listen, "192.168.1.20:8086".parse().unwrap());
        let shown = format!("{c} {c:?}");
        assert!(shown.contains("user-config API on https://192.168.1.20:8086/api/v1/users"));
        assert!(!shown.contains("Push-secret-42"), "{shown}");
        let office = GOOD.replace("mivoice-5000", "mivoice-office-400");
        assert!(
            parse(&office, base()).unwrap_err()[0]
                .contains("needs csta_username and csta_password")
        );
        let office = office.replace(
            "mivoice-office-400\"",
            "mivoice-office-400\"\ncsta_username = \"cloudlink\"\ncsta_password = \"Op3n-sesame\"",
        );
        let c = parse(&office, base()).unwrap();
        assert_eq!(c.csta.as_ref().unwrap().servers[0].port(), 7001);
        assert!(!format!("{c:?}").contains("Op3n-sesame"));
        let off = GOOD.replace("mivoice-5000\"", "mivoice-5000\"\ncsta = false");
        assert!(parse(&off, base()).unwrap().csta.is_none());
        let bad = GOOD.replace(
            "mivoice-5000\"",
            "mivoice-5000\"\ncsta_ports = \"3211;x\"\ncsta_username = \"a-name-that-is-far-too-long-for-it\"\ncsta_password = \"p\"\ncsta_edition = \"ed9\"",
        ) + "\n[users]\nlisten = \"192.168.1.20:8086\"\n[admin]\napi_token = \"short\"\n";
        let all = parse(&bad, base()).unwrap_err().join("\n");
        for want in [
            "[pbx] csta_ports = \"3211;x\": \"x\" is not a port",
            "[pbx] csta_username: 1 to 25 characters",
            "[pbx] csta_edition = \"ed9\"",
            "[users] listen needs push_password",
            "[admin] api_token needs at least 16 characters",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn the_subscriber_side_defaults_to_the_pbx_and_checks_its_users() {
        let c = parse(GOOD, base()).unwrap();
        let sub = c.subscriber.as_ref().unwrap();
        assert_eq!(sub.listen, "192.168.1.20:5070".parse().unwrap());
        assert_eq!(sub.registrar, "192.168.1.10:5060".parse().unwrap());
        assert_eq!((sub.domain.as_str(), sub.expires), ("192.168.1.10", 300));
        assert_eq!(sub.spacing, Duration::from_millis(50));
        let off = format!("{GOOD}\n[subscriber]\nlisten = \"off\"\n");
        assert!(parse(&off, base()).unwrap().subscriber.is_none());
        let users = format!(
            "{GOOD}\n[subscriber]\nregistrar = \"192.168.1.11:5070\"\ndomain = \"pbx.example\"\n\
             [[subscriber.user]]\nextension = \"1000\"\npassword = \"Sip-pw-1\"\n"
        );
        let c = parse(&users, base()).unwrap();
        let sub = c.subscriber.as_ref().unwrap();
        assert_eq!(sub.users, [("1000".to_owned(), "Sip-pw-1".to_owned())]);
        assert!(
            !format!("{sub:?} {c}").contains("Sip-pw-1"),
            "no password shown"
        );
        let bad = format!(
            "{GOOD}\n[subscriber]\nregistrar = \"pbx\"\nexpires_seconds = 5\n\
             [[subscriber.user]]\nextension = \"10a\"\npassword = \"x\"\n"
        );
        let all = parse(&bad, base()).unwrap_err().join("\n");
        for want in [
            "[subscriber] registrar = \"pbx\": an address and port",
            "[subscriber] expires_seconds = 5",
            "[[subscriber.user]] extension = \"10a\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn every_problem_is_named_with_what_would_do() {
        let bad = GOOD
            .replace("\"192.168.1.20\"", "\"gateway.local\"")
            .replace(
                "mivoice-5000\"",
                "mivoice-9000\"\nuntrusted = \"ignore\"\nauth_username = \"officelinkmv5000\"",
            )
            .replace(
                "domain = \"sip.cloud.example\"",
                "targets = [\"udp:192.0.2.1:5060\", \"tls:nowhere\"]",
            )
            .replace(
                "Cargo.toml\"",
                "missing-ca.pem\"\nstun = [\"stun.example\"]",
            )
            .replace(
                "[\"192.168.1.0/24\"]",
                "[\"192.168.1.0/33\"]\nmedia_timeout_seconds = 0",
            )
            + "\n[digits]\noutbound_strip = \"9a\"\n";
        let problems = parse(&bad, base()).unwrap_err();
        let all = problems.join("\n");
        for want in [
            "[gateway] lan_address = \"gateway.local\" is not an IP address",
            "[gateway] networks: \"192.168.1.0/33\" is not a network",
            "[pbx] type = \"mivoice-9000\": use mivoice-5000",
            "[cloud] targets: \"udp:192.0.2.1:5060\": the cloud trunk runs over tls",
            "[cloud] target \"tls:nowhere\": expected",
            "missing-ca.pem",
            "[gateway] media_timeout_seconds = 0: use 1 to 3600",
            "[cloud] stun: \"stun.example\" is not an address and port",
            "[pbx] untrusted = \"ignore\": use drop or reject",
            "[digits] outbound_strip = \"9a\": use up to 16 of 0-9 * # +",
            "[pbx] auth_username and auth_password go together",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert_eq!(problems.len(), 11, "{all}");
        let unknown = parse(&format!("{GOOD}\n[sip]\ndscpp = 3\n"), base()).unwrap_err();
        assert!(unknown[0].contains("unknown field `dscpp`"), "{unknown:?}");
        let both = GOOD.replace("domain =", "targets = [\"tls:192.0.2.1:5061\"]\ndomain =");
        assert_eq!(
            parse(&both, base()).unwrap_err(),
            ["[cloud] give domain or targets, not both"]
        );
    }
}
