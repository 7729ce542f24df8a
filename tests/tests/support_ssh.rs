//! Support's SSH window, with OpenSSH on both ends, inside network
//! namespaces the test makes (as root; never on the machine's own
//! interfaces): the gateway in one, on 10.77.0.1, a support engineer's
//! machine in the other, on 10.77.0.2, a veth pair between them.
//!
//! The admin API opens the window for the support key (the window made
//! 20 s long by `[support] window_seconds`). The real `ssh` client logs
//! in with that key as the gateway's account; another key, a password and
//! root are refused; nothing answers on the gateway's loopback. The
//! gateway restarts: the window goes on for what is left. When it ends,
//! nothing answers any more. Opened again and closed early from the API:
//! nothing answers at once. Every start, stop and login is in the log as
//! the `support_ssh` event the platform gets.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::rig::Workdir;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-token-0123456789";
const GATEWAY: &str = "10.77.0.1";
const SUPPORT_PC: &str = "10.77.0.2";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Two namespaces joined by a veth pair; removed when dropped.
struct Link {
    gateway: String,
    pc: String,
}

impl Link {
    fn new() -> Link {
        let id = std::process::id();
        let link = Link {
            gateway: format!("pbxl-sshgw-{id}"),
            pc: format!("pbxl-sshpc-{id}"),
        };
        for ns in [&link.gateway, &link.pc] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &link.gateway,
            "link",
            "add",
            "lan0",
            "type",
            "veth",
            "peer",
            "name",
            "pc0",
            "netns",
            &link.pc,
        ]);
        ip(&[
            "-n",
            &link.gateway,
            "addr",
            "add",
            &format!("{GATEWAY}/24"),
            "dev",
            "lan0",
        ]);
        ip(&[
            "-n",
            &link.pc,
            "addr",
            "add",
            &format!("{SUPPORT_PC}/24"),
            "dev",
            "pc0",
        ]);
        ip(&["-n", &link.gateway, "link", "set", "lan0", "up"]);
        ip(&["-n", &link.pc, "link", "set", "pc0", "up"]);
        link
    }

    /// `ssh -i KEY USER@ADDR id -un` from `ns` with extra options: its
    /// output (stdout, stderr) and whether it succeeded.
    fn ssh(&self, ns: &str, key: &Path, user: &str, addr: &str, extra: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ssh", "-i"])
            .arg(key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=3",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .args(extra)
            .arg(format!("{user}@{addr}"))
            .args(["id", "-un"])
            .output()
            .expect("ssh runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        )
    }

    /// The admin API from the support PC's namespace (curl).
    fn api(&self, method: &str, body: Option<&Value>) -> (u16, Value) {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns", "exec", &self.pc, "curl", "-s", "-m", "5", "-X", method,
        ])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        let out = cmd
            .arg(format!("http://{GATEWAY}:8080/api/operations/support-ssh"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.gateway, &self.pc] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    let key = dir.join(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(ok.success());
    key
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn support_logs_in_with_its_key_only_for_the_window_across_a_restart() {
    let account = Command::new("id").arg("pbxlink").output().unwrap();
    assert!(
        account.status.success(),
        "the account support logs in as, pbxlink, is missing (tests/run makes it as the package does)"
    );
    let work = Workdir::new("support-ssh");
    // sshd, running as pbxlink, reads its files in the state directory.
    let state = work.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    Command::new("chmod")
        .args(["755"])
        .arg(&work.dir)
        .status()
        .unwrap();
    let support = keygen(&work.dir, "support");
    let other = keygen(&work.dir, "other");
    let link = Link::new();
    let config = work.dir.join("pbxlink.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlan_address = \"{GATEWAY}\"\nstate_dir = \"{}\"\n\
             [admin]\nlisten = \"{GATEWAY}:8080\"\nhttps_listen = \"off\"\napi_token = \"{TOKEN}\"\nmdns_name = \"off\"\n\
             [support]\nwindow_seconds = 20\n",
            state.display()
        ),
    )
    .unwrap();
    let start = || {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &link.gateway])
            .arg(pbxlink_tests::gateway::binary())
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--seconds",
                "120",
            ]);
        let gw = Gateway::spawn(cmd);
        gw.wait_for("admin: API on", Duration::from_secs(20));
        gw
    };
    let gw = start();
    let (code, closed) = link.api("GET", None);
    assert_eq!((code, &closed["enabled"]), (200, &json!(false)), "{closed}");
    let refused_before = link.ssh(&link.pc, &support, "pbxlink", GATEWAY, &[]);
    assert!(
        !refused_before.0,
        "nothing answers before: {}",
        refused_before.1
    );

    let key = std::fs::read_to_string(support.with_extension("pub")).unwrap();
    let (code, open) = link.api("POST", Some(&json!({ "key": key.trim() })));
    assert_eq!(code, 200, "{open}");
    assert_eq!(open["enabled"], true);
    assert_eq!(open["listen"], format!("{GATEWAY}:22"));
    let opened = Instant::now();
    let left = open["seconds_left"].as_u64().unwrap();
    assert!((18..=20).contains(&left), "{open}");

    // The support key, as the gateway's account.
    let (ok, out) = link.ssh(&link.pc, &support, "pbxlink", GATEWAY, &[]);
    assert!(
        ok,
        "logged in with the support key: {out}\n{}",
        gw.output().join("\n")
    );
    assert_eq!(out, "pbxlink");
    gw.wait_for("\"event\":\"login\"", Duration::from_secs(5));
    // Another key, a password, root: refused.
    let (ok, out) = link.ssh(&link.pc, &other, "pbxlink", GATEWAY, &[]);
    assert!(
        !ok && out.contains("Permission denied (publickey)"),
        "another key: {out}"
    );
    let (ok, out) = link.ssh(
        &link.pc,
        &support,
        "pbxlink",
        GATEWAY,
        &[
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ],
    );
    assert!(
        !ok && out.contains("Permission denied (publickey)"),
        "a password: {out}"
    );
    let (ok, out) = link.ssh(&link.pc, &support, "root", GATEWAY, &[]);
    assert!(!ok && out.contains("Permission denied"), "root: {out}");
    // The LAN address only.
    let (ok, out) = link.ssh(&link.gateway, &support, "pbxlink", "127.0.0.1", &[]);
    assert!(
        !ok && out.contains("refused"),
        "on the gateway's loopback: {out}"
    );

    // A restart: the window goes on.
    gw.stop();
    let gw = start();
    gw.wait_for("a restart (the window goes on)", Duration::from_secs(5));
    let (_, after) = link.api("GET", None);
    assert_eq!(after["enabled"], true, "{after}");
    assert!(after["seconds_left"].as_u64().unwrap() < left, "{after}");
    let (ok, out) = link.ssh(&link.pc, &support, "pbxlink", GATEWAY, &[]);
    assert!(ok, "after the restart: {out}");

    // Its end.
    wait("the window's end", Duration::from_secs(30), || {
        link.api("GET", None).1["enabled"] == false
    });
    let lasted = opened.elapsed();
    assert!(lasted >= Duration::from_secs(19), "ended after {lasted:?}");
    gw.wait_for("the window ended", Duration::from_secs(5));
    let (ok, out) = link.ssh(&link.pc, &support, "pbxlink", GATEWAY, &[]);
    assert!(!ok && out.contains("refused"), "after the window: {out}");
    assert!(
        !state.join("support-ssh/authorized_keys").exists(),
        "the key forgotten"
    );

    // Opened again, closed early.
    let (code, _) = link.api("POST", Some(&json!({ "key": key.trim() })));
    assert_eq!(code, 200);
    assert!(link.ssh(&link.pc, &support, "pbxlink", GATEWAY, &[]).0);
    let (code, off) = link.api("DELETE", None);
    assert_eq!((code, &off["enabled"]), (200, &json!(false)), "{off}");
    let (ok, out) = link.ssh(&link.pc, &support, "pbxlink", GATEWAY, &[]);
    assert!(!ok && out.contains("refused"), "closed early: {out}");
    gw.wait_for("closed from the admin page", Duration::from_secs(5));
    // A key that is not one: refused with why.
    let (code, bad) = link.api("POST", Some(&json!({ "key": "ssh-ed25519 not-base64" })));
    assert_eq!(code, 422, "{bad}");
    let events = gw
        .output()
        .into_iter()
        .filter(|l| l.contains("support ssh: {"))
        .collect::<Vec<_>>();
    println!("support ssh events:\n{}", events.join("\n"));
    gw.stop();
}
