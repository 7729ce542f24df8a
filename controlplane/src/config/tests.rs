use super::file::parse;
use super::*;
use pbxlink_sip::resolve::Transport;
use std::path::Path;
use std::time::Duration;

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
        parse(&office, base()).unwrap_err()[0].contains("needs csta_username and csta_password")
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

/// `pbxlink.example.toml`, the documented example at the top of the
/// repository, with the files it names pointed at ones that exist here.
fn example(every_key: bool) -> String {
    let text = std::fs::read_to_string(base().join("../pbxlink.example.toml"))
        .expect("pbxlink.example.toml at the top of the repository");
    let here = base().join("Cargo.toml").display().to_string();
    let mut out = String::new();
    for line in text.lines() {
        // The cloud is named by a domain or by targets, never both: with
        // every key, by its targets.
        if every_key && line.starts_with("domain = ") {
            continue;
        }
        let mut line = line.to_owned();
        // A commented key or table header: taken in with every key.
        let commented = line.strip_prefix("# ").filter(|rest| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        });
        if every_key && let Some(rest) = commented {
            line = rest.to_owned();
        }
        for file in [
            "cloud-ca.pem",
            "users.crt",
            "users.key",
            "admin.crt",
            "admin.key",
        ] {
            line = line.replace(&format!("/etc/pbxlink/{file}"), &here);
        }
        // Secrets are written as "…": a long enough one instead.
        line = line.replace('…', "example-secret-0123456789");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn the_example_file_is_a_configuration_the_gateway_takes() {
    let c = parse(&example(false), base()).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        c.lan_address,
        "192.168.1.20".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        c.pbx_address,
        "192.168.1.10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(c.dscp, 24);
    assert_eq!(c.drain, Duration::from_secs(30));
    assert_eq!(
        c.outbound_digits.strip, "",
        "written out: the defaults only"
    );
    // Every key the example shows commented out is a key the gateway
    // knows, with a value it takes.
    let every = example(true);
    assert!(
        every.contains("\nauth_username = "),
        "keys were uncommented"
    );
    match parse(&every, base()) {
        Ok(c) => assert_eq!(c.outbound_digits.strip, "9"),
        Err(problems) => panic!("the example with every key: {problems:#?}"),
    }
}

/// The keys the code takes in `[section]` (none: the sections), as its
/// refusal of an unknown one lists them.
fn keys_taken(section: Option<&str>) -> Vec<String> {
    let text = match section {
        None => "[not_a_section]\n".to_owned(),
        Some(s) if s.contains('.') => format!("[[{s}]]\nnot_a_key = 1\n"),
        Some(s) => format!("[{s}]\nnot_a_key = 1\n"),
    };
    let problems = parse(&text, base()).unwrap_err();
    let listed = problems[0]
        .split("unknown field `not_a")
        .nth(1)
        .and_then(|rest| rest.split(", expected ").nth(1))
        .unwrap_or_else(|| panic!("{section:?}: {problems:?}"));
    listed
        .split(',')
        .filter_map(|k| k.split('`').nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_example_file_shows_every_key_the_code_takes() {
    // The example's keys by section, commented out or not.
    let mut shown: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut section = String::new();
    let (written, every) = (example(false), example(true));
    for line in written.lines().chain(every.lines()) {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            // An array of tables is a key of its parent section too.
            if let Some((parent, key)) = name.rsplit_once('.') {
                shown
                    .entry(parent.to_owned())
                    .or_default()
                    .push(key.to_owned());
            }
            section = name.to_owned();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            shown
                .entry(section.clone())
                .or_default()
                .push(key.trim().to_owned());
        }
    }
    let mut missing = Vec::new();
    let mut sections = keys_taken(None);
    sections.push("subscriber.user".into());
    for s in sections {
        for key in keys_taken(Some(&s)) {
            if !shown.get(&s).is_some_and(|keys| keys.contains(&key)) {
                missing.push(format!("[{s}] {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "pbxlink.example.toml does not show: {missing:?}"
    );
}

/// Each key the example writes out (not commented), besides those the
/// smallest file needs, shows the code's default: the smallest file with
/// that one line added is the same configuration as without it. (So the
/// reference's "default" column, made from the example, is the code's.)
#[test]
fn the_example_writes_out_defaults_only() {
    let here = base().join("Cargo.toml").display().to_string();
    let minimal = std::fs::read_to_string(base().join("../docs/reference/minimal.toml"))
        .expect("docs/reference/minimal.toml")
        .replace("\"cloud-ca.pem\"", &format!("{here:?}"));
    let plain = format!("{:?}", parse(&minimal, base()).expect("the smallest file"));
    let mut section = String::new();
    let mut not_defaults = Vec::new();
    let mut checked = 0;
    for line in example(false).lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = name.to_owned();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if line.starts_with(['#', ' ']) {
            continue;
        }
        let header = format!("[{section}]\n");
        let required = minimal.split(&header).nth(1).is_some_and(|rest| {
            rest.split("\n[")
                .next()
                .unwrap_or("")
                .contains(&format!("{key} = "))
        });
        if required {
            continue;
        }
        let with = if minimal.contains(&header) {
            minimal.replacen(&header, &format!("{header}{line}\n"), 1)
        } else {
            format!("{minimal}\n{header}{line}\n")
        };
        checked += 1;
        match parse(&with, base()) {
            Ok(c) if format!("{c:?}") == plain => {}
            Ok(_) => not_defaults.push(format!("[{section}] {line}")),
            Err(p) => not_defaults.push(format!("[{section}] {line}: {p:?}")),
        }
    }
    assert!(checked > 30, "only {checked} keys written out");
    assert!(
        not_defaults.is_empty(),
        "pbxlink.example.toml writes out values that are not the defaults (comment them out): {not_defaults:#?}"
    );
}

/// The Debian package's /etc/pbxlink/pbxlink.toml: the setup page on every
/// address (no mDNS name for "0.0.0.0"), and no calls until the LAN
/// address is a real one.
#[test]
fn the_packaged_file_starts_the_setup_page_and_waits_for_a_lan_address() {
    let packaged = include_str!("../../debian/pbxlink.toml");
    let table: toml::Table = toml::from_str(packaged).unwrap();
    let setup = setup_config(Path::new("/etc/pbxlink/pbxlink.toml"), &table)
        .unwrap()
        .expect("setup mode: no [pbx], no [cloud]");
    assert_eq!(setup.state_dir, Path::new("/var/lib/pbxlink"));
    assert_eq!(setup.admin.listen, Some("0.0.0.0:80".parse().unwrap()));
    assert_eq!(
        setup.admin.https_listen,
        Some("0.0.0.0:443".parse().unwrap())
    );
    assert_eq!(setup.admin.mdns, None, "no address to advertise yet");
    let linked = format!(
        "{packaged}\n[pbx]\ntype = \"mivoice-5000\"\naddress = \"192.168.1.10\"\n\
         [cloud]\ndomain = \"sip.cloud.example\"\nca = \"Cargo.toml\"\n"
    );
    let problems = parse(&linked, base()).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("[gateway] lan_address = \"0.0.0.0\": calls need")),
        "{problems:?}"
    );
    let set = linked.replace("\"0.0.0.0\"", "\"192.168.1.20\"");
    assert!(parse(&set, base()).is_ok());
}
