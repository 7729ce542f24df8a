//! The admin API's wizard bodies and password rules on arbitrary bytes:
//! the first byte picks the body (Gateway, PBX, Connect, Advanced step,
//! or a password with a company name), the rest is the JSON a browser or
//! a script could send. No panic; a body that parses and passes its
//! checks makes settings whose configuration overlay serialises and, laid
//! over a file, keeps what it says; a refused body names at least one
//! field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_onboarding::{
    AdvancedForm, ConnectForm, GatewayForm, Onboarding, PbxForm, merge, password,
};

fn settled(o: &Onboarding) {
    let overlay = o.overlay();
    let text = toml::to_string(&overlay).expect("an overlay serialises");
    let mut file: toml::Table = toml::from_str("[gateway]\nlan_address = \"192.0.2.1\"\n").unwrap();
    merge(&mut file, &overlay);
    for (section, keys) in &overlay {
        if let Some(keys) = keys.as_table() {
            for (k, v) in keys {
                assert_eq!(file[section.as_str()][k.as_str()], *v, "{text}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let mut o = Onboarding::default();
    match pick % 5 {
        0 => {
            let Ok(f) = serde_json::from_slice::<GatewayForm>(body) else { return };
            match f.check() {
                Ok(step) => o.gateway = Some(step),
                Err(e) => return assert!(!e.is_empty()),
            }
        }
        1 => {
            let Ok(f) = serde_json::from_slice::<PbxForm>(body) else { return };
            match f.check() {
                Ok(step) => o.pbx = Some(step),
                Err(e) => return assert!(!e.is_empty()),
            }
        }
        2 => {
            let Ok(f) = serde_json::from_slice::<ConnectForm>(body) else { return };
            match f.check() {
                Ok(m) => o.sync_minutes = Some(m),
                Err(e) => return assert!(!e.is_empty()),
            }
        }
        3 => {
            let Ok(f) = serde_json::from_slice::<AdvancedForm>(body) else { return };
            match f.check() {
                Ok(step) => o.advanced = Some(step),
                Err(e) => return assert!(!e.is_empty()),
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let (pw, company) = text.split_once('\n').unwrap_or((&text, ""));
            let _ = password::problems(pw, &[company]);
            return;
        }
    }
    settled(&o);
});
