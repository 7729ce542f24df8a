//! The XML reader and message decoder on arbitrary bytes: no panic, and a
//! request we write from whatever strings the input holds reads back as
//! the same strings (escaping is complete).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_csta::message::{Edition, Outgoing, Service, decode};
use pbxlink_csta::xml;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = xml::parse(data) {
        let _ = decode(&root);
    }
    let text = String::from_utf8_lossy(data);
    let mid = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(i, _)| i);
    let (calling, called) = text.split_at(mid);
    // Leading and trailing white space is not significant in XML text.
    let (calling, called) = (calling.trim(), called.trim());
    let keep = |s: &str| s.chars().all(|c| !c.is_control() || c == '\t');
    if !keep(calling) || !keep(called) {
        return;
    }
    let x = Outgoing::Service(Service::MakeCall {
        calling: calling.into(),
        called: called.into(),
    })
    .to_xml(Edition::Ed3);
    let back = xml::parse(x.as_bytes()).expect("our own request is well-formed");
    assert_eq!(back.name, "MakeCall");
    assert_eq!(back.child("callingDevice").unwrap().text, calling);
    assert_eq!(back.child("calledDirectoryNumber").unwrap().text, called);
});
