//! A call's outputs carried out: messages sent to their side, its relay
//! set up, changed or removed in the data plane, its record written.

use super::*;
use crate::cdr::{Cdr, Flow, rfc3339};
use crate::random::random;
use pbxlink_b2bua::call::{End, Output};
use pbxlink_b2bua::leg::Side;
use pbxlink_dataplane::MasterKey;
use pbxlink_dataplane::control::Command;
use pbxlink_dataplane::relay::{MediaDirection, RelaySpec};
use pbxlink_dataplane::srtp::Suite;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

impl Calls {
    /// Carries out what call `id` asked for. A message the cloud cannot
    /// be sent (its trunk down) ends the call at once: 503 to the PBX
    /// before an answer, BYE after. The data-plane commands go out with
    /// the messages, their workers woken once at the end: a forwarded
    /// answer is on its way before its relay's worker takes the CPU.
    pub(super) fn flush(&mut self, now: Instant, id: u64) {
        self.plane.hold_doorbells();
        self.carry_out(now, id);
        self.plane.ring_doorbells();
    }

    fn carry_out(&mut self, now: Instant, id: u64) {
        let mut ended = false;
        let mut unreachable = false;
        loop {
            let Some(a) = self.active.get_mut(&id) else {
                return;
            };
            let Some(o) = a.call.poll_output() else {
                if unreachable && !a.call.is_over() {
                    tracing::warn!("call {id}: the cloud trunk is down; ending the call");
                    a.call.abandon(503, "the cloud trunk is down");
                    continue;
                }
                break;
            };
            match o {
                Output::Request { to, bytes, .. } => {
                    unreachable |= !self.send(now, id, to, bytes, true);
                }
                Output::Response { to, bytes } => {
                    unreachable |= !self.send(now, id, to, bytes, false);
                }
                Output::RelayUp(m) => {
                    let a = self.active.get_mut(&id).expect("present");
                    a.pbx_media = Some(m.lan_remote);
                    a.cloud_media = Some(m.cloud_remote);
                    a.codec = m.types.codec.clone();
                    let spec = Suite::from_sdp_name(&m.suite).and_then(|suite| {
                        // The SDP's bare base64 (RFC 4568 key-params without the prefix).
                        let tx =
                            MasterKey::from_sdes(suite, &format!("inline:{}", *m.tx_key)).ok()?;
                        let rx =
                            MasterKey::from_sdes(suite, &format!("inline:{}", *m.rx_key)).ok()?;
                        let (lan_to_cloud, cloud_to_lan) = directions(&m.types);
                        Some(RelaySpec {
                            lan_remote: Some(m.lan_remote),
                            cloud_remote: Some(m.cloud_remote),
                            lan_to_cloud,
                            cloud_to_lan,
                            networks: self.cfg.networks.clone(),
                            media_timeout: self.cfg.media_timeout,
                            copy_rtcp: self.capture.is_some(),
                            ..RelaySpec::new(
                                id,
                                self.cfg.lan_ip,
                                a.lan_port,
                                a.cloud_port,
                                suite,
                                tx,
                                rx,
                            )
                        })
                    });
                    match spec.map(|s| self.plane.add_relay(s)) {
                        Some(Ok(_)) => {
                            a.relay = true;
                            a.relayed = true;
                        }
                        _ => {
                            self.counters.relays_failed.fetch_add(1, Ordering::Relaxed);
                            a.call.hang_up("relay could not be set up");
                        }
                    }
                }
                Output::RelayDirection {
                    lan_to_cloud,
                    cloud_to_lan,
                } => {
                    let direction = match (lan_to_cloud, cloud_to_lan) {
                        (true, true) => MediaDirection::SendRecv,
                        (true, false) => MediaDirection::SendOnly,
                        (false, true) => MediaDirection::RecvOnly,
                        (false, false) => MediaDirection::Inactive,
                    };
                    if self.active[&id].relay {
                        let ways = match direction {
                            MediaDirection::SendRecv => "both ways",
                            MediaDirection::SendOnly => "PBX to cloud only",
                            MediaDirection::RecvOnly => "cloud to PBX only",
                            MediaDirection::Inactive => "stopped (held both ways)",
                        };
                        tracing::info!("call {id}: media now {ways}");
                        let _ = self
                            .plane
                            .command(id, Command::SetDirection { id, direction });
                    }
                }
                Output::RelayDown => {
                    let a = self.active.get_mut(&id).expect("present");
                    if a.relay {
                        a.relay = false;
                        let _ = self.plane.command(id, Command::Remove { id });
                    }
                }
                Output::RelayUpdate {
                    lan_remote,
                    cloud_remote,
                    rx_key,
                    types,
                } => {
                    let mut moved = Vec::new();
                    if let Some(a) = self.active.get_mut(&id) {
                        a.pbx_media = lan_remote.or(a.pbx_media);
                        a.cloud_media = cloud_remote.or(a.cloud_media);
                        if let Some(t) = &types {
                            a.codec = t.codec.clone();
                        }
                    }
                    if let Some(t) = types {
                        moved.push(format!(
                            "payload types now {:?} to the cloud, {:?} to the PBX",
                            t.to_cloud, t.to_pbx
                        ));
                        let (l, c) = directions(&t);
                        let _ = self.plane.command(
                            id,
                            Command::SetPayloadTypes {
                                id,
                                lan_to_cloud: Box::new(l),
                                cloud_to_lan: Box::new(c),
                            },
                        );
                    }
                    for (lan, remote) in [(true, lan_remote), (false, cloud_remote)] {
                        if let Some(remote) = remote {
                            moved.push(format!(
                                "{} now at {remote}",
                                if lan { "PBX" } else { "cloud" }
                            ));
                            let _ = self
                                .plane
                                .command(id, Command::SetRemote { id, lan, remote });
                        }
                    }
                    let key = rx_key.and_then(|c| {
                        let suite = Suite::from_sdp_name(&c.suite)?;
                        let key =
                            MasterKey::from_sdes(suite, &format!("inline:{}", *c.key)).ok()?;
                        Some((suite, key))
                    });
                    if let Some((suite, key)) = key {
                        moved.push("the cloud's new key".into());
                        let _ = self.plane.command(
                            id,
                            Command::SetCloudKey {
                                id,
                                suite,
                                key: Box::new(key),
                            },
                        );
                    }
                    tracing::info!("call {id}: media changed: {}", moved.join(", "));
                }
                Output::SessionTimer { expires } => {
                    // RFC 4028 §10: give up min(32 s, a third) before expiry.
                    let margin = (expires / 3).min(Duration::from_secs(32));
                    let a = self.active.get_mut(&id).expect("present");
                    a.session_at = Some(now + expires - margin);
                }
                Output::RetryTimer { min, max } => {
                    // RFC 3261 §14.1: a random wait in 10 ms steps.
                    let steps = (max.saturating_sub(min).as_millis() / 10) as u64;
                    let pick = u64::from_be_bytes(random::<8>()) % (steps + 1);
                    let wait = min + Duration::from_millis(pick * 10);
                    tracing::info!(
                        "call {id}: glare (491), the re-INVITE tried again in {} ms",
                        wait.as_millis()
                    );
                    let a = self.active.get_mut(&id).expect("present");
                    a.retry_at = Some(now + wait);
                    self.counters.glare.fetch_add(1, Ordering::Relaxed);
                }
                Output::Ended(why) => {
                    tracing::info!("call {id}: ended ({why:?})");
                    let c = &self.counters;
                    let outcome = match why {
                        End::Hangup(_) => &c.calls_completed,
                        End::Cancelled => &c.calls_cancelled,
                        End::Rejected(_) => &c.calls_rejected,
                        End::Failed(_) => &c.calls_failed,
                    };
                    outcome.fetch_add(1, Ordering::Relaxed);
                    let a = &self.active[&id];
                    let (from, to) = a.call.parties();
                    let cdr = Cdr {
                        call: id,
                        direction: crate::cdr::direction(a.call.caller_side()),
                        pbx_call_id: a.call.call_id(Side::Pbx).to_owned(),
                        cloud_call_id: a.call.call_id(Side::Cloud).to_owned(),
                        from,
                        to,
                        codec: a.codec.clone(),
                        start: rfc3339(a.started),
                        answer: a.answered.map(rfc3339),
                        end: rfc3339(SystemTime::now()),
                        cause: format!("{why:?}"),
                        to_cloud: Flow::default(),
                        to_pbx: Flow::default(),
                        quality: None,
                    };
                    if a.relayed {
                        // Written when the relay's final counters come.
                        self.cdrs_pending.insert(id, cdr);
                    } else {
                        self.record(&cdr);
                    }
                    ended = true;
                }
            }
        }
        if let Some(a) = self.active.get_mut(&id) {
            if a.answered.is_none() && a.call.answered() {
                a.answered = Some(SystemTime::now());
            }
            let phase = a.call.phase();
            if phase != a.phase {
                a.phase = phase;
                a.phase_since = now;
            }
        }
        if ended {
            if let Some(a) = self.active.remove(&id) {
                if a.relay {
                    let _ = self.plane.command(id, Command::Remove { id });
                }
                for port in [a.lan_port, a.cloud_port] {
                    if port != 0 {
                        self.ports.give_back(now, port);
                    }
                }
                self.ports_changed();
                let ended = &mut self.ended;
                self.index.retain(|k, v| {
                    if *v == id {
                        ended.insert(k.clone(), now);
                    }
                    *v != id
                });
                self.counters.calls_ended.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
