//! RFC 3263 lookup of the cloud's targets over DNS (hickory-resolver):
//! NAPTR picks the transports, SRV the hosts and ports, A/AAAA the
//! addresses. The ordering rules are the sans-IO ones in
//! [`pbxlink_sip::resolve`]; this module only asks DNS.

use anyhow::Context;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use pbxlink_sip::resolve::{Naptr, Srv, Target, Transport, naptr_services, srv_names, srv_order};
use std::net::SocketAddr;

/// A resolver asking `server` (or the system's resolvers when `None`).
pub fn resolver(server: Option<SocketAddr>) -> anyhow::Result<TokioResolver> {
    let provider = TokioConnectionProvider::default();
    let builder = match server {
        Some(addr) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            TokioResolver::builder_with_config(config, provider)
        }
        None => {
            TokioResolver::builder(provider).context("reading the system's DNS configuration")?
        }
    };
    let mut opts = ResolverOpts::default();
    opts.attempts = 2;
    Ok(builder.with_options(opts).build())
}

/// A small xorshift: SRV weighting needs randomness, not secrecy.
fn picker() -> impl FnMut(u32) -> u32 {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.subsec_nanos() | 1);
    move |n| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if n == 0 { 0 } else { x % (n + 1) }
    }
}

/// The targets for `domain` over `supported` transports, in the order to
/// try them (RFC 3263 §4.1–4.2), and how they were found.
pub async fn targets(
    resolver: &TokioResolver,
    domain: &str,
    supported: &[Transport],
) -> anyhow::Result<(Vec<Target>, &'static str)> {
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    let naptr: Vec<Naptr> = match resolver.lookup(fqdn.as_str(), RecordType::NAPTR).await {
        Ok(l) => l
            .iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order(),
                    preference: n.preference(),
                    flags: String::from_utf8_lossy(n.flags()).into_owned(),
                    service: String::from_utf8_lossy(n.services()).into_owned(),
                    replacement: n.replacement().to_utf8(),
                }),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut how = "NAPTR, SRV, A";
    let mut services = naptr_services(&naptr, supported);
    if services.is_empty() {
        how = "SRV, A";
        services = srv_names(domain.trim_end_matches('.'), supported);
    }
    let mut pick = picker();
    let mut out = Vec::new();
    for (transport, name) in services {
        let Ok(srv) = resolver.srv_lookup(format!("{name}.")).await else {
            continue;
        };
        let records: Vec<Srv> = srv
            .iter()
            .map(|s| Srv {
                priority: s.priority(),
                weight: s.weight(),
                port: s.port(),
                target: s.target().to_utf8(),
            })
            .collect();
        for s in srv_order(&records, &mut pick) {
            if let Ok(ips) = resolver.lookup_ip(s.target.as_str()).await {
                out.extend(ips.iter().map(|ip| Target {
                    transport,
                    addr: SocketAddr::new(ip, s.port),
                }));
            }
        }
    }
    if out.is_empty() {
        // No SRV: the domain's own addresses on the default port (§4.2).
        how = "A";
        let transport = *supported.first().context("no transport to use")?;
        let ips = resolver
            .lookup_ip(fqdn.as_str())
            .await
            .with_context(|| format!("{domain}: no NAPTR, SRV or A records"))?;
        out.extend(ips.iter().map(|ip| Target {
            transport,
            addr: SocketAddr::new(ip, transport.default_port()),
        }));
    }
    Ok((out, how))
}
