//! HEP3 capture (`[capture] hep`): a copy of every SIP message either side
//! sends or receives, and of each RTCP report the relays pass, sent over
//! UDP to the operator's Homer / heplify collector, each with the call's
//! correlation id (the PBX leg's Call-ID, for the cloud leg's messages
//! too). The packets are made by the sans-IO `pbxlink_hep` crate; this is
//! the thin loop around it: a bounded queue to one sender task, so a slow
//! or absent collector never holds a call up. What cannot be queued or
//! sent is counted, by reason, on `/metrics`.

use pbxlink_hep::{Packet, Transport, encode, proto, sip_call_id};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Copies waiting for the sender at most: past it, dropped and counted.
const QUEUE: usize = 1024;
/// Calls whose legs are correlated at once, at most (a call's entry goes
/// when it ends; this bounds a leak).
const CORRELATIONS: usize = 100_000;

/// What capture did, for `/metrics`.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    sent: AtomicU64,
    queue_full: AtomicU64,
    unencodable: AtomicU64,
    send_failed: AtomicU64,
}

impl CaptureCounters {
    /// The families in Prometheus text.
    pub fn prometheus(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(&format!(
            "# HELP pbxlink_hep_sent_total HEP3 copies sent to the collector.\n# TYPE pbxlink_hep_sent_total counter\npbxlink_hep_sent_total {}\n",
            get(&self.sent)
        ));
        out.push_str("# HELP pbxlink_hep_dropped_total HEP3 copies not sent, by reason.\n# TYPE pbxlink_hep_dropped_total counter\n");
        for (reason, n) in [
            ("queue_full", &self.queue_full),
            ("unencodable", &self.unencodable),
            ("send_failed", &self.send_failed),
        ] {
            out.push_str(&format!(
                "pbxlink_hep_dropped_total{{reason=\"{reason}\"}} {}\n",
                get(n)
            ));
        }
    }
}

/// The capture, running: cheap to clone.
#[derive(Debug, Clone)]
pub struct Capture {
    tx: mpsc::Sender<Vec<u8>>,
    counters: Arc<CaptureCounters>,
    capture_id: u32,
    /// Each call's other Call-IDs → its correlation id.
    correlations: Arc<Mutex<HashMap<String, String>>>,
}

impl Capture {
    /// Starts the sender toward `collector` (a task on the current tokio
    /// runtime), counting into `counters`.
    pub fn start(
        collector: SocketAddr,
        capture_id: u32,
        counters: Arc<CaptureCounters>,
    ) -> std::io::Result<Capture> {
        let bind: SocketAddr = if collector.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let c = counters.clone();
        tokio::spawn(async move {
            while let Some(packet) = rx.recv().await {
                let counter = match socket.send_to(&packet, collector).await {
                    Ok(_) => &c.sent,
                    Err(_) => &c.send_failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        tracing::info!("capture: HEP3 to {collector} as capture agent {capture_id}");
        Ok(Capture {
            tx,
            counters,
            capture_id,
            correlations: Arc::default(),
        })
    }

    /// The copies of `call_id`'s messages carry `correlation` (a call's
    /// other leg: its PBX leg's Call-ID).
    pub fn correlate(&self, call_id: &str, correlation: &str) {
        let mut map = self.correlations.lock().expect("correlations");
        if map.len() < CORRELATIONS {
            map.insert(call_id.to_owned(), correlation.to_owned());
        }
    }

    /// `call_id`'s call is over.
    pub fn forget(&self, call_id: &str) {
        self.correlations
            .lock()
            .expect("correlations")
            .remove(call_id);
    }

    /// A SIP message from `src` to `dst`. Anything without a Call-ID (a
    /// keep-alive) is not copied.
    pub fn sip(&self, src: SocketAddr, dst: SocketAddr, transport: Transport, msg: &[u8]) {
        let Some(call_id) = sip_call_id(msg) else {
            return;
        };
        let correlation = self
            .correlations
            .lock()
            .expect("correlations")
            .get(call_id)
            .cloned();
        let correlation = correlation.as_deref().unwrap_or(call_id);
        self.send(src, dst, transport, proto::SIP, correlation, msg);
    }

    /// An RTCP report, as Homer's JSON, of the call `correlation`.
    pub fn rtcp(&self, src: SocketAddr, dst: SocketAddr, correlation: &str, json: &str) {
        self.send(
            src,
            dst,
            Transport::Udp,
            proto::RTCP_JSON,
            correlation,
            json.as_bytes(),
        );
    }

    fn send(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
        proto_type: u8,
        correlation: &str,
        payload: &[u8],
    ) {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(payload.len() + 128);
        let packet = Packet {
            src,
            dst,
            transport,
            secs: since.as_secs() as u32,
            usecs: since.subsec_micros(),
            proto_type,
            capture_id: self.capture_id,
            auth_key: None,
            correlation: Some(correlation),
            payload,
        };
        if encode(&packet, &mut out).is_err() {
            self.counters.unencodable.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.try_send(out).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The first SR or RR of an RTCP compound as Homer's RTCP JSON (what
/// heplify and rtpengine send as HEP protocol type 5): the sender's SSRC,
/// the packet type and report count, an SR's sender information, and
/// each report block. None when the datagram holds no valid SR or RR.
pub fn rtcp_json(datagram: &[u8]) -> Option<String> {
    use pbxlink_dataplane::rtcp::Packets;
    let p = Packets::new(datagram)
        .map_while(Result::ok)
        .find(|p| p.packet_type == 200 || p.packet_type == 201)?;
    let word = |at: usize| {
        datagram
            .get(p.offset + at..p.offset + at + 4)
            .and_then(|w| w.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let blocks: Vec<serde_json::Value> = p
        .report_blocks(datagram)
        .map(|b| {
            serde_json::json!({
                "source_ssrc": b.ssrc,
                "fraction_lost": b.fraction_lost,
                "packets_lost": b.cumulative_lost,
                "highest_seq_no": b.highest_seq,
                "ia_jitter": b.jitter,
                "lsr": b.lsr,
                "dlsr": b.dlsr,
            })
        })
        .collect();
    let mut json = serde_json::json!({
        "ssrc": word(4)?,
        "type": p.packet_type,
        "report_count": p.count,
        "report_blocks": blocks,
    });
    if p.packet_type == 200 {
        let frac = u64::from(word(12)?);
        json["sender_information"] = serde_json::json!({
            "ntp_timestamp_sec": word(8)?,
            "ntp_timestamp_usec": (frac * 1_000_000) >> 32,
            "rtp_timestamp": word(16)?,
            "packets": word(20)?,
            "octets": word(24)?,
        });
    }
    Some(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rr_and_an_sr_become_homers_rtcp_json() {
        // RR from 0x77 on 0x42: 8/256 lost, 12 in all, highest 1000,
        // jitter 400, LSR 0x23456789, DLSR 1310.
        let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 0x77, 0, 0, 0, 0x42];
        rr.extend_from_slice(&((8u32 << 24) | 12).to_be_bytes());
        for w in [1000u32, 400, 0x2345_6789, 1310] {
            rr.extend_from_slice(&w.to_be_bytes());
        }
        let v: serde_json::Value = serde_json::from_str(&rtcp_json(&rr).unwrap()).unwrap();
        assert_eq!(
            (v["ssrc"].as_u64(), v["type"].as_u64()),
            (Some(0x77), Some(201))
        );
        let b = &v["report_blocks"][0];
        assert_eq!(b["source_ssrc"], 0x42);
        assert_eq!(
            (b["fraction_lost"].as_u64(), b["packets_lost"].as_i64()),
            (Some(8), Some(12))
        );
        assert_eq!(
            (b["ia_jitter"].as_u64(), b["dlsr"].as_u64()),
            (Some(400), Some(1310))
        );
        assert!(v.get("sender_information").is_none());
        // SR with no blocks: NTP 5.5 s, RTP 160, 10 packets, 1600 octets.
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 0x42, 0, 0, 0, 5, 0x80, 0, 0, 0];
        for w in [160u32, 10, 1600] {
            sr.extend_from_slice(&w.to_be_bytes());
        }
        let v: serde_json::Value = serde_json::from_str(&rtcp_json(&sr).unwrap()).unwrap();
        let si = &v["sender_information"];
        assert_eq!(
            (
                si["ntp_timestamp_sec"].as_u64(),
                si["ntp_timestamp_usec"].as_u64()
            ),
            (Some(5), Some(500_000))
        );
        assert_eq!(
            (si["packets"].as_u64(), si["octets"].as_u64()),
            (Some(10), Some(1600))
        );
        assert_eq!(rtcp_json(b"not rtcp"), None);
    }
}
