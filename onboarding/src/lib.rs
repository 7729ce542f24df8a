//! The onboarding wizard's model (SPEC §4): its steps in order — Gateway,
//! PBX, Connect, Deployment, Advanced — each a form checked field by field
//! (every problem named with the field it belongs to), the settings the
//! installer entered, and how they become the gateway's configuration: an
//! overlay of TOML keys laid over the operator's file when the gateway
//! starts (the gateway's `config::load_with`), so the file's own checks
//! judge them too. Also the PBX types ([`PbxType`]) and the admin
//! password's rules ([`password`]).
//!
//! Pure: no I/O (the gateway keeps the settings in its state directory
//! and applies them); fuzzed on the admin API's bodies (`fuzz/`).

pub mod password;
mod pbx_type;

pub use pbx_type::PbxType;
use pbxlink_b2bua::digits::is_dial_string;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// Problems by field name (`"lan.ip"`, `"pbx.csta_port"`, …).
pub type FieldErrors = BTreeMap<String, String>;

/// What the installer entered, as kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Onboarding {
    /// Step 1.
    pub gateway: Option<GatewayStep>,
    /// Step 2.
    pub pbx: Option<PbxStep>,
    /// Step 3: the user sync's schedule (minutes; 0: on pushes and on demand).
    pub sync_minutes: Option<u32>,
    /// Step 4: users a welcome message went to (by extension).
    #[serde(default)]
    pub welcome_sent: BTreeSet<String>,
    /// Step 4 seen (the installer moved past it).
    #[serde(default)]
    pub deployment_seen: bool,
    /// Step 5.
    pub advanced: Option<AdvancedStep>,
    /// The overview was confirmed: `Onboarding complete`.
    #[serde(default)]
    pub complete: bool,
}

/// Step 1: where the gateway is and how its LAN is set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStep {
    pub site: String,
    pub address: String,
    pub lan: Lan,
}

/// The LAN interface's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Lan {
    Dhcp,
    Static {
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        dns: Vec<IpAddr>,
    },
}

/// Step 2: the PBX.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PbxStep {
    /// `mivoice-5000`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// An IP address or a host name, as entered.
    pub address: String,
    /// Where it resolved when applied (the configuration takes addresses).
    pub address_ip: Option<IpAddr>,
    /// One port, or `3211;3212`.
    pub csta_ports: String,
    /// MiVoice Office 400's CloudLink system user.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Step 5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvancedStep {
    /// Put in front of cloud → PBX calls.
    pub inbound_digits: String,
    /// Taken off the front of PBX → cloud calls (what users dial to reach
    /// the cloud).
    pub outbound_digits: String,
    /// When automatic updates may run (`HH:MM`).
    pub update_time: String,
}

/// Step 1 as the page sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GatewayForm {
    pub site: String,
    pub address: String,
    pub lan_mode: String,
    pub ip: String,
    pub mask: String,
    pub gateway: String,
    /// Primary first; empty entries are ignored.
    pub dns: Vec<String>,
}

/// Step 2 as the page sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PbxForm {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub address: String,
    pub csta_port: String,
    pub username: String,
    pub password: String,
}

/// Step 3's form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConnectForm {
    pub sync_minutes: String,
}

/// Step 5 as the page sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AdvancedForm {
    pub inbound_digits: String,
    pub outbound_digits: String,
    pub update_time: String,
}

/// The PBX types with their labels and default CSTA ports, for the page.
pub fn pbx_types() -> Vec<(&'static str, &'static str, u16)> {
    PbxType::ALL
        .iter()
        .map(|(name, t)| (*name, t.label(), t.wizard_port()))
        .collect()
}

fn put(errors: &mut FieldErrors, field: &str, message: impl Into<String>) {
    errors
        .entry(field.to_owned())
        .or_insert_with(|| message.into());
}

fn text(errors: &mut FieldErrors, field: &str, v: &str, what: &str, max: usize) -> String {
    let v = v.trim();
    if v.is_empty() {
        put(errors, field, format!("enter the {what}"));
    } else if v.chars().count() > max {
        put(errors, field, format!("at most {max} characters"));
    } else if v.chars().any(char::is_control) {
        put(errors, field, "no control characters");
    }
    v.to_owned()
}

fn ipv4(errors: &mut FieldErrors, field: &str, v: &str, what: &str) -> Option<Ipv4Addr> {
    match v.trim().parse::<Ipv4Addr>() {
        Ok(ip) => Some(ip),
        Err(_) if v.trim().is_empty() => {
            put(errors, field, format!("enter the {what}"));
            None
        }
        Err(_) => {
            put(
                errors,
                field,
                format!("{:?} is not an IPv4 address (e.g. 192.168.1.20)", v.trim()),
            );
            None
        }
    }
}

/// A netmask as `255.255.255.0` or `/24` or `24`: its prefix length.
fn prefix(v: &str) -> Option<u8> {
    let v = v.trim().trim_start_matches('/');
    if let Ok(n) = v.parse::<u8>() {
        return (1..=32).contains(&n).then_some(n);
    }
    let m = u32::from(v.parse::<Ipv4Addr>().ok()?);
    let ones = m.leading_ones();
    (m.count_ones() == ones && (1..=32).contains(&ones)).then_some(ones as u8)
}

/// A host name (RFC 1123) or an IP address.
fn host(v: &str) -> bool {
    if v.parse::<IpAddr>().is_ok() {
        return true;
    }
    v.len() <= 253
        && !v.is_empty()
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        // All-numeric labels would be a mistyped address.
        && !v.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

impl GatewayForm {
    /// The step, or every problem by field.
    pub fn check(&self) -> Result<GatewayStep, FieldErrors> {
        let mut e = FieldErrors::new();
        let site = text(&mut e, "site", &self.site, "site's name", 64);
        let address = text(&mut e, "address", &self.address, "site's address", 200);
        let lan = match self.lan_mode.trim() {
            "dhcp" => Some(Lan::Dhcp),
            "static" => {
                let ip = ipv4(&mut e, "ip", &self.ip, "gateway's IP address");
                let prefix = match prefix(&self.mask) {
                    Some(p) => Some(p),
                    None => {
                        put(
                            &mut e,
                            "mask",
                            if self.mask.trim().is_empty() {
                                "enter the network mask (e.g. 255.255.255.0)".to_owned()
                            } else {
                                format!(
                                    "{:?} is not a network mask (e.g. 255.255.255.0 or /24)",
                                    self.mask.trim()
                                )
                            },
                        );
                        None
                    }
                };
                let gateway = ipv4(&mut e, "gateway", &self.gateway, "default gateway");
                if let (Some(ip), Some(p)) = (ip, prefix) {
                    let host_bits = u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
                    let h = u32::from(ip) & host_bits;
                    if p < 31 && (h == 0 || h == host_bits) {
                        put(
                            &mut e,
                            "ip",
                            format!("{ip} is the network's own or broadcast address"),
                        );
                    }
                    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() {
                        put(&mut e, "ip", format!("{ip} cannot be a LAN address"));
                    }
                    if let Some(g) = gateway {
                        let net = !host_bits;
                        if u32::from(g) & net != u32::from(ip) & net {
                            put(
                                &mut e,
                                "gateway",
                                format!("{g} is not in the gateway's network ({ip}/{p})"),
                            );
                        } else if g == ip {
                            put(&mut e, "gateway", "the default gateway is another machine");
                        }
                    }
                }
                let mut dns = Vec::new();
                for (i, d) in self.dns.iter().filter(|d| !d.trim().is_empty()).enumerate() {
                    match d.trim().parse::<IpAddr>() {
                        Ok(a) => dns.push(a),
                        Err(_) => put(
                            &mut e,
                            &format!("dns.{i}"),
                            format!("{:?} is not an IP address", d.trim()),
                        ),
                    }
                }
                if dns.is_empty() && !e.keys().any(|k| k.starts_with("dns")) {
                    put(&mut e, "dns.0", "enter at least one DNS server");
                }
                if dns.len() > 3 {
                    put(&mut e, "dns.3", "at most three DNS servers");
                }
                match (ip, prefix, gateway) {
                    (Some(ip), Some(prefix), Some(gateway)) => Some(Lan::Static {
                        ip,
                        prefix,
                        gateway,
                        dns,
                    }),
                    _ => None,
                }
            }
            _ => {
                put(&mut e, "lan_mode", "choose DHCP or a static address");
                None
            }
        };
        match lan {
            Some(lan) if e.is_empty() => Ok(GatewayStep { site, address, lan }),
            _ => Err(e),
        }
    }
}

impl PbxForm {
    /// The step, or every problem by field.
    pub fn check(&self) -> Result<PbxStep, FieldErrors> {
        let mut e = FieldErrors::new();
        let kind = PbxType::from_name(self.kind.trim());
        if kind.is_none() {
            put(
                &mut e,
                "type",
                "choose the PBX: MiVoice 5000, MiVoice Office 400, MX-ONE or MiVoice Business",
            );
        }
        let name = text(&mut e, "name", &self.name, "PBX's name", 64);
        let address = self.address.trim().to_owned();
        if address.is_empty() {
            put(&mut e, "address", "enter the PBX's IP address or host name");
        } else if !host(&address) {
            put(
                &mut e,
                "address",
                format!("{address:?} is neither an IP address nor a host name"),
            );
        }
        let ports_text = self.csta_port.trim();
        let ports: Vec<Option<u16>> = ports_text
            .split(';')
            .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p > 0))
            .collect();
        if ports_text.is_empty() {
            put(&mut e, "csta_port", "enter the CSTA port");
        } else if ports.iter().any(Option::is_none) || ports.len() > 8 {
            put(
                &mut e,
                "csta_port",
                format!("{ports_text:?}: a port (1-65535) or several as 3211;3212 (at most 8)"),
            );
        }
        let (username, password) = match kind {
            Some(PbxType::MiVoiceOffice400) => {
                let u = self.username.trim();
                if u.is_empty() {
                    put(
                        &mut e,
                        "username",
                        "MiVoice Office 400 needs its CloudLink system user",
                    );
                } else if u.chars().count() > 25 {
                    put(&mut e, "username", "at most 25 characters");
                }
                if self.password.is_empty() {
                    put(&mut e, "password", "enter the CloudLink user's password");
                } else if self.password.chars().count() > 255 {
                    put(&mut e, "password", "at most 255 characters");
                }
                (Some(u.to_owned()), Some(self.password.clone()))
            }
            _ => (None, None),
        };
        if !e.is_empty() {
            return Err(e);
        }
        Ok(PbxStep {
            kind: self.kind.trim().to_owned(),
            name,
            address_ip: address.parse().ok(),
            address,
            csta_ports: ports
                .iter()
                .flatten()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(";"),
            username,
            password,
        })
    }
}

impl ConnectForm {
    /// The sync schedule, or the problem.
    pub fn check(&self) -> Result<u32, FieldErrors> {
        match self.sync_minutes.trim().parse::<u32>() {
            Ok(m) if m <= 1440 => Ok(m),
            _ => Err(FieldErrors::from([(
                "sync_minutes".to_owned(),
                "minutes between user syncs: 0 (only on PBX pushes and on demand) to 1440"
                    .to_owned(),
            )])),
        }
    }
}

impl AdvancedForm {
    /// The step, or every problem by field.
    pub fn check(&self) -> Result<AdvancedStep, FieldErrors> {
        let mut e = FieldErrors::new();
        for (field, v) in [
            ("inbound_digits", &self.inbound_digits),
            ("outbound_digits", &self.outbound_digits),
        ] {
            let v = v.trim();
            if !is_dial_string(v) || v.len() > 10 {
                put(&mut e, field, format!("{v:?}: up to 10 of 0-9, *, # and +"));
            }
        }
        let t = self.update_time.trim();
        let ok = t.split_once(':').is_some_and(|(h, m)| {
            h.len() == 2
                && m.len() == 2
                && h.parse::<u8>().is_ok_and(|h| h < 24)
                && m.parse::<u8>().is_ok_and(|m| m < 60)
        });
        if !ok {
            put(
                &mut e,
                "update_time",
                "a time of day as HH:MM (00:00-23:59)",
            );
        }
        if !e.is_empty() {
            return Err(e);
        }
        Ok(AdvancedStep {
            inbound_digits: self.inbound_digits.trim().to_owned(),
            outbound_digits: self.outbound_digits.trim().to_owned(),
            update_time: t.to_owned(),
        })
    }
}

impl Onboarding {
    /// Each step: done or not.
    pub fn steps(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("gateway", self.gateway.is_some()),
            ("pbx", self.pbx.is_some()),
            ("connect", self.sync_minutes.is_some()),
            ("deployment", self.deployment_seen),
            ("advanced", self.advanced.is_some()),
        ]
    }

    /// The first step not done (none: all are).
    pub fn next_step(&self) -> Option<&'static str> {
        self.steps()
            .into_iter()
            .find(|(_, done)| !done)
            .map(|(s, _)| s)
    }

    /// The TOML keys the wizard's settings set, laid over the operator's
    /// file: `[pbx]` (type, address, CSTA ports and credentials),
    /// `[gateway] lan_address` (a static address), `[tunnel]
    /// sync_minutes`, `[digits]`.
    pub fn overlay(&self) -> toml::Table {
        let mut root = toml::Table::new();
        fn section<'a>(root: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
            root.entry(name.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("a table")
        }
        if let Some(GatewayStep {
            lan: Lan::Static { ip, .. },
            ..
        }) = &self.gateway
        {
            section(&mut root, "gateway").insert("lan_address".into(), ip.to_string().into());
        }
        if let Some(p) = &self.pbx {
            let pbx = section(&mut root, "pbx");
            pbx.insert("type".into(), p.kind.clone().into());
            let address = p.address_ip.map_or(p.address.clone(), |ip| ip.to_string());
            pbx.insert("address".into(), address.into());
            pbx.insert("csta_ports".into(), p.csta_ports.clone().into());
            if let (Some(u), Some(pw)) = (&p.username, &p.password) {
                pbx.insert("csta_username".into(), u.clone().into());
                pbx.insert("csta_password".into(), pw.clone().into());
            }
        }
        if let Some(m) = self.sync_minutes {
            section(&mut root, "tunnel").insert("sync_minutes".into(), i64::from(m).into());
        }
        if let Some(a) = &self.advanced {
            let d = section(&mut root, "digits");
            d.insert("outbound_strip".into(), a.outbound_digits.clone().into());
            d.insert("inbound_prepend".into(), a.inbound_digits.clone().into());
        }
        root
    }
}

/// Lays `over` onto `base`, table by table (`over` wins).
pub fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(f: impl FnOnce(&mut GatewayForm)) -> Result<GatewayStep, FieldErrors> {
        let mut g = GatewayForm {
            site: "Paris HQ".into(),
            address: "1 rue de la Paix, Paris".into(),
            lan_mode: "static".into(),
            ip: "192.168.1.20".into(),
            mask: "255.255.255.0".into(),
            gateway: "192.168.1.1".into(),
            dns: vec!["192.168.1.1".into(), "9.9.9.9".into()],
        };
        f(&mut g);
        g.check()
    }

    fn fields(r: Result<impl std::fmt::Debug, FieldErrors>) -> Vec<String> {
        r.unwrap_err().into_keys().collect()
    }

    #[test]
    fn the_gateway_step_names_each_bad_field() {
        assert_eq!(
            gateway(|_| {}).unwrap().lan,
            Lan::Static {
                ip: "192.168.1.20".parse().unwrap(),
                prefix: 24,
                gateway: "192.168.1.1".parse().unwrap(),
                dns: vec!["192.168.1.1".parse().unwrap(), "9.9.9.9".parse().unwrap()],
            }
        );
        assert_eq!(fields(gateway(|g| g.site = " ".into())), ["site"]);
        assert_eq!(
            fields(gateway(|g| g.address = "x".repeat(201))),
            ["address"]
        );
        assert_eq!(
            fields(gateway(|g| g.lan_mode = "auto".into())),
            ["lan_mode"]
        );
        assert_eq!(fields(gateway(|g| g.ip = "192.168.1.300".into())), ["ip"]);
        assert_eq!(fields(gateway(|g| g.ip = "192.168.1.255".into())), ["ip"]);
        assert_eq!(fields(gateway(|g| g.mask = "255.0.255.0".into())), ["mask"]);
        assert_eq!(
            fields(gateway(|g| g.gateway = "10.0.0.1".into())),
            ["gateway"]
        );
        assert_eq!(
            fields(gateway(|g| g.dns = vec!["dns.example".into()])),
            ["dns.0"]
        );
        assert_eq!(fields(gateway(|g| g.dns = vec![])), ["dns.0"]);
        assert_eq!(gateway(|g| g.mask = "/24".into()).unwrap().site, "Paris HQ");
        let dhcp = gateway(|g| {
            g.lan_mode = "dhcp".into();
            g.ip = "nonsense".into();
        });
        assert_eq!(
            dhcp.unwrap().lan,
            Lan::Dhcp,
            "static fields are not read for DHCP"
        );
    }

    fn pbx(f: impl FnOnce(&mut PbxForm)) -> Result<PbxStep, FieldErrors> {
        let mut p = PbxForm {
            kind: "mivoice-5000".into(),
            name: "Main PBX".into(),
            address: "pbx.example.com".into(),
            csta_port: "3211;3212".into(),
            ..PbxForm::default()
        };
        f(&mut p);
        p.check()
    }

    #[test]
    fn the_pbx_step_names_each_bad_field() {
        let ok = pbx(|_| {}).unwrap();
        assert_eq!((ok.csta_ports.as_str(), ok.address_ip), ("3211;3212", None));
        assert_eq!(fields(pbx(|p| p.kind = "asterisk".into())), ["type"]);
        assert_eq!(fields(pbx(|p| p.name = String::new())), ["name"]);
        assert_eq!(
            fields(pbx(|p| p.address = "pbx..example".into())),
            ["address"]
        );
        assert_eq!(
            fields(pbx(|p| p.address = "10.0.0.300".into())),
            ["address"]
        );
        assert_eq!(
            fields(pbx(|p| p.csta_port = "3211;x".into())),
            ["csta_port"]
        );
        assert_eq!(fields(pbx(|p| p.csta_port = "0".into())), ["csta_port"]);
        let mivo400 = |u: &str, pw: &str| {
            let (u, pw) = (u.to_owned(), pw.to_owned());
            pbx(move |p| {
                p.kind = "mivoice-office-400".into();
                p.username = u;
                p.password = pw;
            })
        };
        assert_eq!(fields(mivo400("", "")), ["password", "username"]);
        assert_eq!(fields(mivo400(&"u".repeat(26), "pw")), ["username"]);
        assert_eq!(fields(mivo400("cloudlink", &"p".repeat(256))), ["password"]);
        assert!(mivo400(&"u".repeat(25), &"p".repeat(255)).is_ok());
    }

    #[test]
    fn connect_and_advanced_steps_check_their_fields() {
        let c = |m: &str| {
            ConnectForm {
                sync_minutes: m.into(),
            }
            .check()
        };
        assert_eq!(c("60"), Ok(60));
        assert!(c("1441").is_err() && c("soon").is_err());
        let a = |i: &str, o: &str, t: &str| {
            AdvancedForm {
                inbound_digits: i.into(),
                outbound_digits: o.into(),
                update_time: t.into(),
            }
            .check()
        };
        assert!(a("0", "9", "03:00").is_ok());
        assert!(a("", "", "23:59").is_ok());
        assert_eq!(fields(a("0a", "9", "03:00")), ["inbound_digits"]);
        assert_eq!(fields(a("0", "12345678901", "03:00")), ["outbound_digits"]);
        assert_eq!(fields(a("0", "9", "24:00")), ["update_time"]);
        assert_eq!(fields(a("0", "9", "3:00")), ["update_time"]);
    }

    #[test]
    fn the_overlay_sets_what_the_wizard_owns_and_wins() {
        let o = Onboarding {
            pbx: Some(PbxStep {
                address_ip: Some("10.0.0.2".parse().unwrap()),
                ..pbx(|p| p.csta_port = "3211".into()).unwrap()
            }),
            sync_minutes: Some(15),
            advanced: Some(AdvancedStep {
                inbound_digits: "0".into(),
                outbound_digits: "9".into(),
                update_time: "03:00".into(),
            }),
            ..Onboarding::default()
        };
        let mut base: toml::Table =
            toml::from_str("[pbx]\ntype = \"mx-one\"\naddress = \"10.9.9.9\"\nport = 5062\n")
                .unwrap();
        merge(&mut base, &o.overlay());
        assert_eq!(base["pbx"]["type"].as_str(), Some("mivoice-5000"));
        assert_eq!(base["pbx"]["address"].as_str(), Some("10.0.0.2"));
        assert_eq!(
            base["pbx"]["port"].as_integer(),
            Some(5062),
            "the file's other keys stay"
        );
        assert_eq!(base["tunnel"]["sync_minutes"].as_integer(), Some(15));
        assert_eq!(base["digits"]["outbound_strip"].as_str(), Some("9"));
        assert_eq!(o.next_step(), Some("gateway"));
    }
}
