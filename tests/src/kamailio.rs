//! Kamailio (Debian `kamailio`) as the PBX's registrar and proxy for the
//! subscriber-side tests: a configuration written here — users and
//! passwords in a hash table, REGISTERs challenged (a wrong password gets
//! 403, as many PBXs answer), INVITEs from known users challenged too,
//! calls routed to registered contacts — run in the foreground on
//! loopback, and asked through `kamcmd` how many users are registered.

use crate::lines::Lines;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Kamailio.
#[derive(Debug)]
pub struct Kamailio {
    child: Option<Child>,
    lines: Lines,
    dir: PathBuf,
    /// Its SIP port on 127.0.0.1 (UDP).
    pub port: u16,
}

const MODULES: &[&str] = &[
    "kex",
    "corex",
    "tm",
    "sl",
    "rr",
    "pv",
    "maxfwd",
    "usrloc",
    "registrar",
    "textops",
    "siputils",
    "xlog",
    "auth",
    "htable",
    "ctl",
];

impl Kamailio {
    /// Writes the configuration for `users` (extension, password) in
    /// `dir` and starts Kamailio on 127.0.0.1:`port`.
    pub fn start(dir: &Path, port: u16, users: &[(String, String)]) -> Kamailio {
        std::fs::create_dir_all(dir).unwrap();
        let modules: String = MODULES
            .iter()
            .map(|m| format!("loadmodule \"{m}.so\"\n"))
            .collect();
        let passwords: String = users
            .iter()
            .map(|(u, p)| format!("    $sht(pw=>{u}) = \"{p}\";\n"))
            .collect();
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
listen=udp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
{modules}
modparam("ctl", "binrpc", "unix:{ctl}")
modparam("htable", "htable", "pw=>size=10;")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 60)
modparam("registrar", "max_expires", 3600)

event_route[htable:mod-init] {{
{passwords}}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route() || is_method("ACK|BYE|CANCEL|INFO|UPDATE|PRACK|INVITE")) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("REGISTER")) {{
        $var(pw) = $sht(pw=>$fU);
        if ($var(pw) == $null) {{
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        $var(rc) = pv_www_authenticate("$td", "$var(pw)", "0");
        if ($var(rc) == -2) {{
            xlog("L_INFO", "wrong password for $fU\n");
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        if ($var(rc) < 0) {{
            www_challenge("$td", "0");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        $var(pw) = $sht(pw=>$fU);
        if ($var(pw) != $null) {{
            $var(rc) = pv_proxy_authenticate("$fd", "$var(pw)", "0");
            if ($var(rc) == -2) {{
                sl_send_reply("403", "Forbidden");
                exit;
            }}
            if ($var(rc) < 0) {{
                proxy_challenge("$fd", "0");
                exit;
            }}
            consume_credentials();
            xlog("L_INFO", "call from $fU to $rU authenticated\n");
        }}
        record_route();
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#,
            ctl = dir.join("kamailio_ctl").display(),
        );
        std::fs::write(dir.join("kamailio.cfg"), cfg).unwrap();
        let mut k = Kamailio {
            child: None,
            lines: Lines::default(),
            dir: dir.to_owned(),
            port,
        };
        k.run();
        k
    }

    fn run(&mut self) {
        let mut child = Command::new("kamailio")
            .arg("-f")
            .arg(self.dir.join("kamailio.cfg"))
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-P")
            .arg(self.dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&self.dir)
            .arg("-w")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: its children go with it.
            .process_group(0)
            .spawn()
            .expect("kamailio runs (tests/run installs kamailio)");
        self.lines.capture(child.stdout.take().unwrap());
        self.lines.capture(child.stderr.take().unwrap());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.rpc("core.uptime").is_none() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                self.lines.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (its registrations are forgotten: they live in memory).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", c.id())])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            kill_group(&mut c);
        }
    }

    /// Starts it again with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// A `kamcmd` command's output.
    pub fn rpc(&self, command: &str) -> Option<String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.dir.join("kamailio_ctl").display()))
            .args(command.split(' '))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Users with a registered contact.
    pub fn registered(&self) -> usize {
        self.rpc("stats.get_statistics registered_users")
            .and_then(|s| {
                s.split('=')
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Contacts registered at `addr` (the gateway's subscriber side).
    pub fn contacts_at(&self, addr: std::net::SocketAddr) -> usize {
        self.rpc("ul.dump")
            .map_or(0, |d| d.matches(&format!("@{addr}")).count())
    }

    /// Everything it printed.
    pub fn output(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Waits until `n` users are registered.
    pub fn wait_registered(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.registered();
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kamailio has {got} of {n} users registered"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Kills a Kamailio and every process it forked.
fn kill_group(c: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", c.id())])
        .stderr(Stdio::null())
        .status();
    let _ = c.wait();
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}
