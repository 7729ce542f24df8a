//! baresip (Debian `baresip-core`, installed by `tests/run`) as a test
//! peer: a TLS user agent on 127.0.0.1 that auto-answers with SRTP
//! mandatory, plays a WAV file (`aufile`) and records what it decodes and
//! encodes (`sndfile`). Its configuration lives in a directory of its own;
//! stopped when dropped.

use crate::lines::Lines;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where a peer runs: a network namespace (none: the test's own) and the
/// address it is pinned to there.
#[derive(Debug, Clone)]
pub struct Place {
    /// `ip netns` name.
    pub netns: Option<String>,
    /// Address to bind.
    pub addr: std::net::IpAddr,
}

impl Default for Place {
    fn default() -> Self {
        Place {
            netns: None,
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }
}

impl Place {
    /// `program` to be run there.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        }
    }
}

/// G.711 only: the gateway relays without transcoding.
/// baresip's RTP ports: away from the gateway's relay ports (profile
/// `max`: 16384-32767, 61000-65534) and from the media ports sipp names in
/// its SDP without binding them (`-mp` and up, 2 per call), which baresip
/// could otherwise bind and then receive another call's plain RTP.
const RTP_PORTS: &str = "40000-40999";
const CODECS: &str = "audio_codecs=PCMA/8000/1,PCMU/8000/1";

/// A running baresip.
#[derive(Debug)]
pub struct Baresip {
    child: Child,
    lines: Lines,
    /// Where it records (`dump-…-dec.wav`: what it decoded).
    pub recordings: PathBuf,
}

/// A mono 16-bit WAV file of a `freq` Hz tone at 8 kHz, `seconds` long.
pub fn tone_wav(path: &Path, freq: f64, seconds: u32) {
    let n = 8000 * seconds;
    let mut w = Vec::with_capacity(44 + 2 * n as usize);
    let data_len = 2 * n;
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..n {
        let s = (8000.0 * (2.0 * std::f64::consts::PI * freq * f64::from(i) / 8000.0).sin()) as i16;
        w.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, w).expect("write tone");
}

/// The 16-bit samples and rate of a PCM WAV file.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let b = std::fs::read(path).expect("read wav");
    let rate = u32::from_le_bytes(b[24..28].try_into().unwrap());
    // Find the data chunk (libsndfile may add others).
    let mut at = 12;
    while at + 8 <= b.len() {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        if &b[at..at + 4] == b"data" {
            let end = (at + 8 + len).min(b.len());
            let samples = b[at + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (samples, rate);
        }
        at += 8 + len;
    }
    (Vec::new(), rate)
}

/// The share (0..1) of the samples' energy at `freq` Hz (Goertzel over
/// 20 ms blocks, each block's tone power against its total power, summed):
/// near 1 for a pure tone at `freq`, near 0 for another tone or silence.
pub fn tone_share(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let block = (rate / 50) as usize;
    let k = (freq * block as f64 / f64::from(rate)).round();
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * k / block as f64).cos();
    let (mut tone, mut total) = (0.0, 0.0);
    for chunk in samples.chunks_exact(block) {
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in chunk {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        // |X(k)|² of a real block; a pure tone of amplitude A gives
        // (A·N/2)², and its energy Σx² = A²·N/2: normalise to match.
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        tone += 2.0 * power / block as f64;
        total += chunk.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    }
    if total == 0.0 { 0.0 } else { tone / total }
}

/// Root-mean-square level of samples.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

impl Baresip {
    /// Starts baresip in `dir` listening for TLS on 127.0.0.1:`port`+1
    /// (baresip's TLS port is its SIP port plus one), presenting
    /// `cert_and_key` (PEM), answering calls to `sips:user@127.0.0.1`
    /// with SRTP mandatory: the cloud's side.
    pub fn start(
        dir: &Path,
        port: u16,
        cert_and_key: &Path,
        ca: &Path,
        user: &str,
        play: &Path,
    ) -> Baresip {
        Baresip::cloud_at(&Place::default(), dir, port, cert_and_key, ca, user, play)
    }

    /// [`Baresip::start`] at another place: in a network namespace, on
    /// one of its addresses.
    pub fn cloud_at(
        place: &Place,
        dir: &Path,
        port: u16,
        cert_and_key: &Path,
        ca: &Path,
        user: &str,
        play: &Path,
    ) -> Baresip {
        let tls = format!(
            "sip_certificate {}\nsip_cafile {}\n",
            cert_and_key.display(),
            ca.display()
        );
        let account = format!(
            "<sip:{user}@{};transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand;{CODECS}",
            place.addr
        );
        Baresip::spawn(place, dir, port, &tls, &account, play)
    }

    /// Starts baresip in `dir` on 127.0.0.1:`port` over UDP with plain
    /// RTP, answering calls to `sip:user@127.0.0.1`: a phone behind the
    /// PBX, on the LAN side.
    pub fn lan(dir: &Path, port: u16, user: &str, play: &Path) -> Baresip {
        let account =
            format!("<sip:{user}@127.0.0.1;transport=udp>;regint=0;answermode=auto;{CODECS}");
        Baresip::spawn(&Place::default(), dir, port, "", &account, play)
    }

    /// Starts baresip in `dir` on 127.0.0.1:`port` over UDP with plain
    /// RTP, registered to `registrar` as `user` with `password` (a phone
    /// on the PBX), answering its calls.
    pub fn registered(
        dir: &Path,
        port: u16,
        user: &str,
        registrar: std::net::SocketAddr,
        password: &str,
        play: &Path,
    ) -> Baresip {
        let account = format!(
            "<sip:{user}@{registrar};transport=udp>;auth_pass={password};regint=600;answermode=auto;{CODECS}"
        );
        Baresip::spawn(&Place::default(), dir, port, "", &account, play)
    }

    fn spawn(
        place: &Place,
        dir: &Path,
        port: u16,
        tls: &str,
        account: &str,
        play: &Path,
    ) -> Baresip {
        let addr = place.addr;
        let recordings = dir.join("rec");
        std::fs::create_dir_all(&recordings).unwrap();
        let config = format!(
            "poll_method epoll\nsip_listen {addr}:{port}\ncall_max_calls 128\nrtp_ports {RTP_PORTS}\n{tls}\
             audio_player aufile,/dev/null\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
             module_path /usr/lib/baresip/modules\nmodule stdio.so\nmodule g711.so\nmodule srtp.so\n\
             module aufile.so\nmodule sndfile.so\nmodule_app account.so\nmodule_app menu.so\nsnd_path {}\n",
            play.display(),
            recordings.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
        let mut child = place
            .command("baresip")
            .arg("-f")
            .arg(dir)
            .args(["-n", &addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baresip runs (tests/run installs baresip-core)");
        let lines = Lines::default();
        lines.capture(child.stdout.take().unwrap());
        lines.capture(child.stderr.take().unwrap());
        let b = Baresip {
            child,
            lines,
            recordings,
        };
        b.wait_for("baresip is ready", Duration::from_secs(20));
        b
    }

    /// Types a command (`/dial URI`, `/hangup`) at its console.
    pub fn command(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").expect("baresip reads commands");
        stdin.flush().expect("flush");
    }

    /// Everything it printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        self.lines.wait_for("baresip", needle, within)
    }

    /// Waits until `n` lines containing `needle` were printed.
    pub fn wait_count(&self, needle: &str, n: usize, within: Duration) {
        self.lines.wait_count("baresip", needle, n, within);
    }

    /// The recordings of what it decoded, one per call.
    pub fn decoded(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.recordings)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.to_string_lossy().ends_with("-dec.wav"));
        v.sort();
        v
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_share_tells_tones_apart() {
        let path = std::env::temp_dir().join(format!("tone-share-{}.wav", std::process::id()));
        tone_wav(&path, 1000.0, 1);
        let (samples, rate) = read_wav(&path);
        let _ = std::fs::remove_file(&path);
        assert!(tone_share(&samples, rate, 1000.0) > 0.99);
        assert!(tone_share(&samples, rate, 400.0) < 0.01);
        assert_eq!(tone_share(&[0; 800], 8000, 400.0), 0.0);
    }
}
