//! Softphone users (issue 17) against a real registrar: Kamailio (Debian
//! `kamailio`, configured by the test) as the PBX. The PBX pushes 200
//! Softphone users with their SIP passwords (and a 201st with a wrong
//! one); the gateway registers them from its subscriber side with digest,
//! spread out; the wrong one shows `failed: 403` while the others stay
//! registered. A
//! phone on the PBX (baresip, registered as 2000) calls user 1000 and the
//! call reaches the cloud (baresip over TLS/SRTP) with audio both ways;
//! the cloud calls 2000 as user 1000 and the gateway carries it to the PBX
//! as that extension (Kamailio checks 1000's credentials). Kamailio
//! restarted forgets everyone: they all register again. A user who loses
//! the Softphone role is unregistered.

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::http::{self, basic};
use pbxlink_tests::kamailio::Kamailio;
use pbxlink_tests::rig::{GatewayConfig, Workdir, run_gateway};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const GW_SIP: u16 = 23_600;
const KAMAILIO: u16 = 23_601;
const CLOUD_SIP: u16 = 23_602; // baresip's TLS: 23_603
const ADMIN: u16 = 23_604;
const USERS_API: u16 = 23_605;
const SUBSCRIBER: u16 = 23_606;
const PHONE: u16 = 23_607;

const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn softphones() -> Value {
    http::get_with_token(at(ADMIN), "/api/softphones", ADMIN_TOKEN).json
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn push(work: &Workdir, users: &Value) -> http::Answer {
    http::request_tls(
        at(USERS_API),
        &work.dir.join("state/users-api.crt"),
        "POST",
        "/api/v1/users",
        &[("Authorization", &basic("pbx", "Push-secret-4242"))],
        &users.to_string(),
    )
    .unwrap()
}

fn user(dn: u32, role: u32, password: &str) -> Value {
    json!({
        "directory_number": dn.to_string(),
        "first_name": "User",
        "email": format!("u{dn}@example.com"),
        "role": role,
        "sip_password": password,
    })
}

#[test]
fn softphone_users_register_with_digest_and_carry_calls_both_ways() {
    let work = Workdir::new("softphone");
    let mut accounts: Vec<(String, String)> = (1000..1201)
        .map(|d| (d.to_string(), format!("pw{d}")))
        .collect();
    accounts.push(("2000".into(), "pw2000".into()));
    let mut kamailio = Kamailio::start(&work.dir.join("kamailio"), KAMAILIO, &accounts);
    // The cloud: baresip answering as user 1000 (the Softphone user's app).
    let (ca, cloud_pem) = work.cloud_pki(at(0).ip());
    let cloud_tone = work.tone("cloud.wav", 1000.0);
    let mut cloud = Baresip::start(
        &work.dir.join("cloud"),
        CLOUD_SIP,
        &cloud_pem,
        &ca,
        "1000",
        &cloud_tone,
    );
    let sections = format!(
        "[admin]\nlisten = \"{}\"\napi_token = \"{ADMIN_TOKEN}\"\n\n[users]\nlisten = \"{}\"\npush_password = \"Push-secret-4242\"\n\n\
         [subscriber]\nlisten = \"{}\"\nkeepalive_seconds = 2\nregistrations_per_second = 100\n",
        at(ADMIN),
        at(USERS_API),
        at(SUBSCRIBER)
    );
    let config = GatewayConfig {
        pbx_extra: "csta = false",
        sections: &sections,
        ..GatewayConfig::loopback(&ca, GW_SIP, KAMAILIO, CLOUD_SIP + 1)
    }
    .write(&work.dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);

    // 200 Softphone users, and a 201st (1200) with a wrong password.
    let users: Vec<Value> = (1000..1201)
        .map(|d| {
            user(
                d,
                2,
                &if d == 1200 {
                    "wrong".into()
                } else {
                    format!("pw{d}")
                },
            )
        })
        .collect();
    let pushed = push(&work, &json!({ "users": users }));
    assert_eq!(pushed.status, 200, "{}", pushed.text);
    let started = Instant::now();
    kamailio.wait_registered(200, Duration::from_secs(30));
    println!("200 users registered in {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "spread over time, not a burst"
    );
    wait(
        "the gateway shows 200 registered and 1200 failed",
        Duration::from_secs(10),
        || {
            let s = softphones();
            s["registered"] == 200
                && s["softphones"].as_array().unwrap().iter().any(|u| {
                    u["extension"] == "1200"
                        && u["state"].as_str().unwrap().starts_with("failed: 403")
                })
        },
    );
    assert_eq!(kamailio.contacts_at(at(SUBSCRIBER)), 200);

    // A phone on the PBX.
    let phone_tone = work.tone("phone.wav", 400.0);
    let mut phone = Baresip::registered(
        &work.dir.join("phone"),
        PHONE,
        "2000",
        at(KAMAILIO),
        "pw2000",
        &phone_tone,
    );
    kamailio.wait_registered(201, Duration::from_secs(15));

    // The phone calls Softphone user 1000: it reaches the cloud.
    phone.command(&format!("/dial sip:1000@127.0.0.1:{KAMAILIO}"));
    phone.wait_count("Call established", 1, Duration::from_secs(15));
    cloud.wait_count("Call established", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(4));
    phone.command("/hangup");
    cloud.wait_count("terminated", 1, Duration::from_secs(10));

    // The cloud calls 2000 as user 1000: to the PBX as that extension.
    cloud.command(&format!("/dial 2000@{trunk_end}"));
    cloud.wait_count("Call established", 2, Duration::from_secs(15));
    phone.wait_count("Call established", 2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(4));
    cloud.command("/hangup");
    phone.wait_count("terminated", 2, Duration::from_secs(10));
    let kam = kamailio.output().join("\n");
    assert!(
        kam.contains("call from 1000 to 2000 authenticated"),
        "Kamailio checked 1000's credentials:\n{kam}"
    );

    // Audio both ways on both calls.
    for (who, b, freq) in [("the cloud", &cloud, 400.0), ("the phone", &phone, 1000.0)] {
        let decoded = b.decoded();
        assert_eq!(decoded.len(), 2, "{who}: {decoded:?}");
        for path in &decoded {
            let (samples, rate) = baresip::read_wav(path);
            let share = baresip::tone_share(&samples, rate, freq);
            assert!(
                samples.len() as f64 / f64::from(rate) >= 2.0,
                "{who}: {path:?}"
            );
            assert!(
                share > 0.8,
                "{who} did not hear {freq} Hz ({share}) in {path:?}"
            );
        }
    }
    assert!(!cloud.output().join("\n").contains("failed to decrypt"));

    // Someone who is neither the registrar nor the PBX calls registered
    // Softphone user 1001 straight at the subscriber side: no answer, no
    // call, counted untrusted.
    let counters = || http::get_with_token(at(ADMIN), "/api/counters", ADMIN_TOKEN).json;
    let before = counters();
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let me = stranger.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:1001@{sub} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKforeign\r\n\
         Max-Forwards: 70\r\nFrom: <sip:666@127.0.0.2>;tag=f\r\nTo: <sip:1001@{sub}>\r\n\
         Call-ID: foreign@127.0.0.2\r\nCSeq: 1 INVITE\r\nContact: <sip:666@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        sub = at(SUBSCRIBER),
    );
    stranger.send_to(invite.as_bytes(), at(SUBSCRIBER)).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        stranger.recv(&mut buf).is_err(),
        "a foreign source got an answer from the subscriber side"
    );
    let after = counters();
    assert_eq!(
        after["untrusted"].as_u64().unwrap(),
        before["untrusted"].as_u64().unwrap() + 1,
        "counted untrusted"
    );
    assert_eq!(after["calls"], before["calls"], "no call");

    // Kamailio restarted forgets every registration: all come back.
    kamailio.stop();
    gw.wait_for("does not answer", Duration::from_secs(15));
    kamailio.restart();
    gw.wait_for("answers again", Duration::from_secs(15));
    let back = Instant::now();
    wait(
        "every user registered again",
        Duration::from_secs(30),
        || kamailio.contacts_at(at(SUBSCRIBER)) == 200,
    );
    println!(
        "200 users registered again {:?} after the registrar came back",
        back.elapsed()
    );
    assert_eq!(softphones()["registered"], 200);

    // 1199 loses the Softphone role (CTI now): unregistered.
    assert_eq!(
        push(&work, &json!({ "users": [user(1199, 1, "pw1199")] })).status,
        200
    );
    gw.wait_for("1199: unregistered", Duration::from_secs(10));
    wait("1199's contact removed", Duration::from_secs(10), || {
        kamailio.contacts_at(at(SUBSCRIBER)) == 199
    });
    let lines = gw.stop();
    let fin = pbxlink_tests::gateway::final_line(&lines);
    assert_eq!(
        pbxlink_tests::gateway::field(fin, "calls_completed"),
        2,
        "{fin}"
    );
    drop((phone, cloud, kamailio));
}
