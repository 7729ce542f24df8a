//! A hundred calls at once (issue 7): sipp as the PBX places 100
//! concurrent G.711 calls (`uac_pcap`: about 8 s of audio each) through
//! `pbxlink run` (profile `max`) to baresip as the cloud over the TLS trunk
//! with SRTP; baresip answers every one and plays its tone back. Passes
//! only if sipp reports 100 successful calls and none failed, the data
//! plane ran 100 relays at once, every call's audio reached the cloud and
//! came back (each relay's final counters; every packet from the cloud
//! authenticated at the gateway, and baresip failed to decrypt none of
//! what it got), baresip's recordings hold the PBX's audio (one file per
//! second of answer, as its sndfile module names them), and the call
//! records are complete — one per call, answered, ended by the PBX — and
//! agree with the relays.
//!
//! All peers share one host here, so their media ports must not meet:
//! sipp names a port per call in its SDP without binding it; when baresip
//! had bound the same port for another call, the relay's plain RTP toward
//! "the PBX" reached baresip, which counted it as SRTP failures (found by
//! capturing every relay's output and decrypting it with libsrtp: all
//! valid).

use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::rig::{GatewayConfig, Workdir, media_count, run_gateway};
use std::collections::HashMap;
use std::process::{Command, Stdio};

const GW_SIP: u16 = 26_300;
const PBX_SIP: u16 = 26_310;
const CLOUD_SIP: u16 = 26_205; // baresip's TLS: 26_206
const CALLS: usize = 100;

#[test]
fn a_hundred_concurrent_calls_cross_with_audio_and_complete_records() {
    let work = Workdir::new("hundred");
    let dir = &work.dir;
    let (cloud, ca_file) = work.cloud(CLOUD_SIP);
    let config = GatewayConfig {
        gateway: "cdr_file = \"cdr.jsonl\"",
        ..GatewayConfig::loopback(&ca_file, GW_SIP, PBX_SIP, CLOUD_SIP + 1)
    }
    .write(dir);
    let (gw, _) = run_gateway(&Default::default(), &config);

    // 100 calls placed at 20 per second, each about 9 s long: all up at once.
    let pbx = Command::new("sipp")
        .args(["-i", "127.0.0.1", "-p", &PBX_SIP.to_string()])
        // sipp names a media port per call from -mp up (2 apart) without
        // binding it: outside the gateway's relay ports and baresip's.
        .args(["-mp", "44000", "-nostdin", "-aa"])
        .args(["-sn", "uac_pcap", "-s", "cloud"])
        .args(["-m", &CALLS.to_string(), "-l", &CALLS.to_string()])
        .args(["-r", "20", "-timeout", "60s", "-timeout_error"])
        .arg(format!("127.0.0.1:{GW_SIP}"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipp runs (tests/run installs sip-tester)");
    let out = pbx.wait_with_output().expect("sipp ends");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("Successful call") || l.contains("Failed call"))
        .collect();
    println!("{}", summary.join("\n"));
    if !out.status.success() {
        // What the gateway says of the calls that did not end as placed.
        for l in gw.output() {
            if (l.contains("ended (") && !l.contains("Hangup(Pbx)")) || l.contains("relay could") {
                println!("{l}");
            }
        }
    }
    sipp_passes_report(out.status.success(), &report);
    let cumulative = |label: &str| -> u64 {
        summary
            .iter()
            .rev()
            .find(|l| l.contains(label))
            .and_then(|l| l.rsplit('|').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    assert_eq!(cumulative("Successful call"), CALLS as u64, "{report}");
    assert_eq!(cumulative("Failed call"), 0, "{report}");

    gw.wait_relays_gone("the PBX's BYEs");
    let lines = gw.stop();
    let fin = final_line(&lines);
    println!("{fin}");
    assert_eq!(field(fin, "calls"), CALLS as u64, "{fin}");
    assert_eq!(field(fin, "calls_ended"), CALLS as u64, "{fin}");
    assert_eq!(field(fin, "calls_refused"), 0, "{fin}");
    assert_eq!(field(fin, "calls_completed"), CALLS as u64, "{fin}");
    assert_eq!(field(fin, "responses_unmatched"), 0, "{fin}");
    let peak = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data plane: "))
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    println!("relays running at once, at most: {peak}");
    assert_eq!(peak, CALLS as u64, "all calls up at once");

    // Every call's media, from the relay's final counters.
    let media: HashMap<u64, (u64, u64)> = lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("call ")?;
            let (n, rest) = rest.split_once(": media to cloud ")?;
            Some((
                n.parse().ok()?,
                (
                    rest.split_whitespace().next()?.parse().ok()?,
                    media_count(rest, "to PBX "),
                ),
            ))
        })
        .collect();
    assert_eq!(media.len(), CALLS, "a media line per call");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(": media to cloud") && l.contains("auth_failed")),
        "an SRTP authentication failure at the gateway"
    );
    for (n, (to_cloud, to_pbx)) in &media {
        assert!(*to_cloud >= 200, "call {n}: {to_cloud} RTP to the cloud");
        assert!(*to_pbx >= 200, "call {n}: {to_pbx} RTP back to the PBX");
    }
    let total_to_cloud: u64 = media.values().map(|m| m.0).sum();
    let total_to_pbx: u64 = media.values().map(|m| m.1).sum();
    println!("RTP relayed: {total_to_cloud} to the cloud, {total_to_pbx} to the PBX");

    // baresip decoded the PBX's audio (its recordings hold it); SRTP never
    // failed there.
    let decoded = cloud.decoded();
    assert!(!decoded.is_empty(), "baresip recorded nothing");
    for wav in &decoded {
        let (samples, rate) = pbxlink_tests::baresip::read_wav(wav);
        let level = pbxlink_tests::baresip::rms(&samples);
        println!(
            "{}: {} s, RMS {level:.0}",
            wav.display(),
            samples.len() as u32 / rate
        );
        assert!(
            samples.len() as u32 >= 4 * rate && level > 500.0,
            "{}: {} samples, RMS {level}",
            wav.display(),
            samples.len()
        );
    }
    let out = cloud.output();
    let failures: Vec<&String> = out
        .iter()
        .filter(|l| l.contains("srtp") && (l.contains("fail") || l.contains("error")))
        .collect();
    println!("baresip SRTP failures: {}", failures.len());
    for l in failures.iter().take(3) {
        println!("baresip: {l}");
    }
    assert!(failures.is_empty(), "baresip failed to decrypt packets");

    // One record per call, consistent with the relays.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("cdr.jsonl"))
        .expect("the CDR file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(records.len(), CALLS, "a record per call");
    let mut cloud_reports = 0;
    for r in &records {
        let n = r["call"].as_u64().expect("numbered");
        let (to_cloud, to_pbx) = media[&n];
        assert_eq!(r["to_cloud"]["rtp"].as_u64(), Some(to_cloud), "{r}");
        assert_eq!(r["to_pbx"]["rtp"].as_u64(), Some(to_pbx), "{r}");
        // Each leg's inbound stream as the gateway received it: at least
        // every packet it relayed (a packet dropped after it was counted,
        // a late duplicate, is not relayed); on loopback next to no loss
        // (a busy 2-core machine may drop one in 100).
        let q = &r["quality"];
        let received = |leg: &str| q[leg]["inbound"]["packets"].as_u64().expect("packets");
        assert!(received("pbx_leg") >= to_cloud, "{r}");
        assert!(received("cloud_leg") >= to_pbx, "{r}");
        for leg in ["pbx_leg", "cloud_leg"] {
            let loss = q[leg]["inbound"]["loss_percent"].as_f64().expect("loss");
            assert!(loss < 1.0, "{leg}: {r}");
            assert!(q[leg]["inbound"]["jitter_ms"].as_f64().is_some(), "{r}");
        }
        // On loopback both directions rate as clean G.711 (G.107: 4.41
        // with no loss or delay).
        for way in ["to_cloud", "to_pbx"] {
            let mos = q[way]["mos"].as_f64().expect("a MOS");
            assert!((4.0..=4.5).contains(&mos), "{way}: {r}");
        }
        if q["cloud_leg"]["outbound"].is_object() {
            cloud_reports += 1;
        }
        assert_eq!(r["cause"], "Hangup(Pbx)", "{r}");
        assert_eq!(r["to"], "cloud", "{r}");
        assert!(
            r["answer"].is_string() && r["cloud_call_id"].is_string(),
            "{r}"
        );
    }
    // baresip sends RTCP reports every few seconds; sipp's pcap none.
    println!("calls whose record holds baresip's RTCP reports: {cloud_reports} of {CALLS}");
    let mut numbers: Vec<u64> = records.iter().filter_map(|r| r["call"].as_u64()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), CALLS, "each call once");
}

/// sipp's verdict, with the tail of its report when it failed.
fn sipp_passes_report(ok: bool, report: &str) {
    assert!(
        ok,
        "sipp's 100 calls failed:\n{}",
        report.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
}
