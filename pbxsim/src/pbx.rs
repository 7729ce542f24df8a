//! The simulated PBX's call model: its users (internal devices), calls and
//! each party's state, and the ECMA-269 events each change produces, in the
//! order a real PBX sends them. Pure: the CSTA servers and the SIP agent
//! drive it and deliver its events to the monitors of the devices involved.
//!
//! Numbers that are not users are the outside world: a call to one rings
//! there and is answered after a moment (the driver schedules it), unless
//! it is listed busy, in which case the call fails with `busy`.

use crate::wire::{conn, dev, esc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A party's state in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyState {
    /// Ringing.
    Alerting,
    /// Talking (or calling out).
    Connected,
    /// On hold.
    Held,
}

/// One device in one call.
#[derive(Debug, Clone)]
pub struct Party {
    /// Its number.
    pub device: String,
    /// Its state.
    pub state: PartyState,
}

/// A call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its parties.
    pub parties: Vec<Party>,
    /// Who called.
    pub calling: String,
    /// Who was called.
    pub called: String,
}

/// An event for the monitors of `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// Its root element (`DeliveredEvent`).
    pub kind: &'static str,
    /// Its elements after `monitorCrossRefID`.
    pub body: String,
    /// Whose monitors get it.
    pub devices: Vec<String>,
}

impl SimEvent {
    /// The XML for one monitor.
    pub fn render(&self, cross_ref: &str, ns: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{k} xmlns=\"{ns}\"><monitorCrossRefID>{}</monitorCrossRefID>{}</{k}>",
            esc(cross_ref),
            self.body,
            k = self.kind
        )
    }
}

/// Why a request is refused: `(category, value)` of a `CSTAErrorCode`.
pub type Refusal = (&'static str, &'static str);

const NO_SUCH_CALL: Refusal = ("operation", "invalidConnectionID");
const WRONG_STATE: Refusal = ("stateIncompatibility", "invalidObjectState");

/// An outside party that will answer a call: the driver calls
/// [`Pbx::answer`] for it after a moment.
pub type Answering = Option<(String, String)>;

/// The PBX.
#[derive(Debug, Default)]
pub struct Pbx {
    users: BTreeSet<String>,
    busy: HashSet<String>,
    calls: BTreeMap<String, Call>,
    next_call: u64,
    mwi: HashMap<String, bool>,
}

impl Pbx {
    /// A PBX with these users; calls to `busy` numbers fail busy.
    pub fn new(
        users: impl IntoIterator<Item = String>,
        busy: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            users: users.into_iter().collect(),
            busy: busy.into_iter().collect(),
            next_call: 1,
            ..Self::default()
        }
    }

    /// Whether `device` is one of its users.
    pub fn is_user(&self, device: &str) -> bool {
        self.users.contains(device)
    }

    /// Its users.
    pub fn users(&self) -> impl Iterator<Item = &String> {
        self.users.iter()
    }

    /// Calls in progress.
    pub fn calls(&self) -> &BTreeMap<String, Call> {
        &self.calls
    }

    fn new_call_id(&mut self) -> String {
        let id = format!("{}", 4700 + self.next_call);
        self.next_call += 1;
        id
    }

    fn internal(&self, call: &str) -> Vec<String> {
        self.calls.get(call).map_or_else(Vec::new, |c| {
            c.parties
                .iter()
                .map(|p| p.device.clone())
                .filter(|d| self.users.contains(d))
                .collect()
        })
    }

    fn party(&self, call: &str, device: &str) -> Result<&Party, Refusal> {
        self.calls
            .get(call)
            .and_then(|c| c.parties.iter().find(|p| p.device == device))
            .ok_or(NO_SUCH_CALL)
    }

    fn set_state(&mut self, call: &str, device: &str, state: PartyState) {
        if let Some(p) = self
            .calls
            .get_mut(call)
            .and_then(|c| c.parties.iter_mut().find(|p| p.device == device))
        {
            p.state = state;
        }
    }

    /// Starts a call from `calling` (a user, whose phone goes off hook by
    /// itself) to `called`.
    pub fn make_call(
        &mut self,
        calling: &str,
        called: &str,
    ) -> Result<(String, Vec<SimEvent>, Answering), Refusal> {
        if !self.users.contains(calling) {
            return Err(("operation", "invalidCallingDevice"));
        }
        if called.is_empty() || called == calling {
            return Err(("operation", "invalidCalledDevice"));
        }
        let call = self.new_call_id();
        self.calls.insert(
            call.clone(),
            Call {
                parties: vec![Party {
                    device: calling.to_owned(),
                    state: PartyState::Connected,
                }],
                calling: calling.to_owned(),
                called: called.to_owned(),
            },
        );
        let mut events = vec![
            SimEvent {
                kind: "ServiceInitiatedEvent",
                body: format!(
                    "{}{}<localConnectionInfo>initiated</localConnectionInfo><cause>makeCall</cause>",
                    conn("initiatedConnection", &call, calling),
                    dev("initiatingDevice", calling)
                ),
                devices: vec![calling.to_owned()],
            },
            SimEvent {
                kind: "OriginatedEvent",
                body: format!(
                    "{}{}{}<localConnectionInfo>connected</localConnectionInfo><cause>normal</cause>",
                    conn("originatedConnection", &call, calling),
                    dev("callingDevice", calling),
                    dev("calledDevice", called)
                ),
                devices: vec![calling.to_owned()],
            },
        ];
        let answering = self.ring(&call, called, &mut events);
        Ok((call, events, answering))
    }

    /// `called` rings in `call` (or fails busy).
    fn ring(&mut self, call: &str, called: &str, events: &mut Vec<SimEvent>) -> Answering {
        let calling = self.calls[call].calling.clone();
        if self.busy.contains(called) {
            events.push(SimEvent {
                kind: "FailedEvent",
                body: format!(
                    "{}{}{}{}<localConnectionInfo>connected</localConnectionInfo><cause>busy</cause>",
                    conn("failedConnection", call, called),
                    dev("failingDevice", called),
                    dev("callingDevice", &calling),
                    dev("calledDevice", called)
                ),
                devices: self.internal(call),
            });
            return None;
        }
        if let Some(c) = self.calls.get_mut(call) {
            c.parties.push(Party {
                device: called.to_owned(),
                state: PartyState::Alerting,
            });
        }
        events.push(SimEvent {
            kind: "DeliveredEvent",
            body: format!(
                "{}{}{}{}<lastRedirectionDevice><notRequired/></lastRedirectionDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause>",
                conn("connection", call, called),
                dev("alertingDevice", called),
                dev("callingDevice", &calling),
                dev("calledDevice", called)
            ),
            devices: self.internal(call),
        });
        (!self.users.contains(called)).then(|| (call.to_owned(), called.to_owned()))
    }

    /// A call from outside (`from`) to user `to`.
    pub fn incoming(&mut self, from: &str, to: &str) -> Result<(String, Vec<SimEvent>), Refusal> {
        if !self.users.contains(to) {
            return Err(("operation", "invalidCalledDevice"));
        }
        let call = self.new_call_id();
        self.calls.insert(
            call.clone(),
            Call {
                parties: vec![Party {
                    device: from.to_owned(),
                    state: PartyState::Connected,
                }],
                calling: from.to_owned(),
                called: to.to_owned(),
            },
        );
        let mut events = Vec::new();
        self.ring(&call, to, &mut events);
        Ok((call, events))
    }

    /// `device` answers `call`.
    pub fn answer(&mut self, call: &str, device: &str) -> Result<Vec<SimEvent>, Refusal> {
        if self.party(call, device)?.state != PartyState::Alerting {
            return Err(WRONG_STATE);
        }
        self.set_state(call, device, PartyState::Connected);
        let c = &self.calls[call];
        Ok(vec![SimEvent {
            kind: "EstablishedEvent",
            body: format!(
                "{}{}{}{}<lastRedirectionDevice><notRequired/></lastRedirectionDevice><localConnectionInfo>connected</localConnectionInfo><cause>normal</cause>",
                conn("establishedConnection", call, device),
                dev("answeringDevice", device),
                dev("callingDevice", &c.calling),
                dev("calledDevice", &c.called)
            ),
            devices: self.internal(call),
        }])
    }

    /// `device` leaves `call`; a party left alone is cleared too.
    pub fn clear(&mut self, call: &str, device: &str) -> Result<Vec<SimEvent>, Refusal> {
        self.party(call, device)?;
        let mut events = Vec::new();
        let mut leaving = vec![device.to_owned()];
        while let Some(d) = leaving.pop() {
            let notify = self.internal(call);
            events.push(SimEvent {
                kind: "ConnectionClearedEvent",
                body: format!(
                    "{}{}<localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause>",
                    conn("droppedConnection", call, &d),
                    dev("releasingDevice", &d)
                ),
                devices: notify,
            });
            let c = self.calls.get_mut(call).expect("checked");
            c.parties.retain(|p| p.device != d);
            if c.parties.len() == 1 {
                leaving.push(c.parties[0].device.clone());
            }
            if c.parties.is_empty() {
                self.calls.remove(call);
                break;
            }
        }
        Ok(events)
    }

    /// `device` puts `call` on hold.
    pub fn hold(&mut self, call: &str, device: &str) -> Result<Vec<SimEvent>, Refusal> {
        self.change(
            call,
            device,
            PartyState::Connected,
            PartyState::Held,
            ("HeldEvent", "heldConnection", "holdingDevice", "hold"),
        )
    }

    /// `device` takes `call` back.
    pub fn retrieve(&mut self, call: &str, device: &str) -> Result<Vec<SimEvent>, Refusal> {
        self.change(
            call,
            device,
            PartyState::Held,
            PartyState::Connected,
            (
                "RetrievedEvent",
                "retrievedConnection",
                "retrievingDevice",
                "connected",
            ),
        )
    }

    /// Moves `device` in `call` from state `from` to `to`, reporting it as
    /// `(event, connection element, device element, local state)`.
    fn change(
        &mut self,
        call: &str,
        device: &str,
        from: PartyState,
        to: PartyState,
        (kind, conn_tag, dev_tag, local): (&'static str, &str, &str, &str),
    ) -> Result<Vec<SimEvent>, Refusal> {
        if self.party(call, device)?.state != from {
            return Err(WRONG_STATE);
        }
        self.set_state(call, device, to);
        Ok(vec![SimEvent {
            kind,
            body: format!(
                "{}{}<localConnectionInfo>{local}</localConnectionInfo><cause>normal</cause>",
                conn(conn_tag, call, device),
                dev(dev_tag, device)
            ),
            devices: self.internal(call),
        }])
    }

    /// `device` holds `call` and calls `consulted`.
    pub fn consult(
        &mut self,
        call: &str,
        device: &str,
        consulted: &str,
    ) -> Result<(String, Vec<SimEvent>, Answering), Refusal> {
        let mut events = self.hold(call, device)?;
        let (new, more, answering) = match self.make_call(device, consulted) {
            Ok(x) => x,
            Err(e) => {
                // Undo the hold: the request as a whole failed.
                self.set_state(call, device, PartyState::Connected);
                return Err(e);
            }
        };
        events.extend(more);
        Ok((new, events, answering))
    }

    /// `device` joins its held call and its active call and leaves.
    pub fn transfer(
        &mut self,
        held: &str,
        active: &str,
        device: &str,
    ) -> Result<(String, Vec<SimEvent>), Refusal> {
        if held == active || self.party(held, device)?.state != PartyState::Held {
            return Err(WRONG_STATE);
        }
        self.party(active, device)?;
        let notify: Vec<String> = self
            .internal(held)
            .into_iter()
            .chain(self.internal(active))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let h = self.calls.remove(held).expect("checked");
        let a = self.calls.remove(active).expect("checked");
        let others_held: Vec<Party> = h
            .parties
            .into_iter()
            .filter(|p| p.device != device)
            .collect();
        let others_active: Vec<Party> = a
            .parties
            .into_iter()
            .filter(|p| p.device != device)
            .collect();
        let to = others_active
            .first()
            .map_or(String::new(), |p| p.device.clone());
        let new = self.new_call_id();
        let mut list = String::new();
        for (old_call, p) in others_held
            .iter()
            .map(|p| (held, p))
            .chain(others_active.iter().map(|p| (active, p)))
        {
            list.push_str(&format!(
                "<connectionListItem>{}{}</connectionListItem>",
                conn("newConnection", &new, &p.device),
                conn("oldConnection", old_call, &p.device)
            ));
        }
        let mut parties = others_held;
        parties.extend(others_active);
        // The held side was on hold only toward the transferrer.
        for p in &mut parties {
            if p.state == PartyState::Held {
                p.state = PartyState::Connected;
            }
        }
        let calling = parties.first().map_or(String::new(), |p| p.device.clone());
        self.calls.insert(
            new.clone(),
            Call {
                parties,
                calling,
                called: to.clone(),
            },
        );
        Ok((
            new,
            vec![SimEvent {
                kind: "TransferedEvent",
                body: format!(
                    "{}{}{}{}<transferredConnections>{list}</transferredConnections><localConnectionInfo>null</localConnectionInfo><cause>transfer</cause>",
                    conn("primaryOldCall", held, device),
                    conn("secondaryOldCall", active, device),
                    dev("transferringDevice", device),
                    dev("transferredToDevice", &to)
                ),
                devices: notify,
            }],
        ))
    }

    /// Turns `device`'s message-waiting lamp on or off.
    pub fn set_mwi(&mut self, device: &str, on: bool) -> Result<Vec<SimEvent>, Refusal> {
        if !self.users.contains(device) {
            return Err(("operation", "invalidDeviceID"));
        }
        self.mwi.insert(device.to_owned(), on);
        Ok(vec![SimEvent {
            kind: "MessageWaitingEvent",
            body: format!(
                "{}<messageWaitingOn>{on}</messageWaitingOn>",
                dev("targetDevice", device)
            ),
            devices: vec![device.to_owned()],
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pbx() -> Pbx {
        Pbx::new(
            ["1000", "1001", "1002"].map(String::from),
            ["0999".to_string()],
        )
    }

    fn kinds(e: &[SimEvent]) -> Vec<&str> {
        e.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn an_internal_call_rings_answers_holds_and_clears_in_order() {
        let mut p = pbx();
        let (c, e, ans) = p.make_call("1000", "1001").unwrap();
        assert!(ans.is_none(), "a user answers by CTI or by hand");
        assert_eq!(
            kinds(&e),
            ["ServiceInitiatedEvent", "OriginatedEvent", "DeliveredEvent"]
        );
        assert_eq!(e[2].devices, ["1000", "1001"]);
        assert_eq!(p.answer(&c, "1000"), Err(WRONG_STATE));
        assert_eq!(kinds(&p.answer(&c, "1001").unwrap()), ["EstablishedEvent"]);
        assert_eq!(kinds(&p.hold(&c, "1000").unwrap()), ["HeldEvent"]);
        assert_eq!(p.hold(&c, "1000"), Err(WRONG_STATE));
        assert_eq!(kinds(&p.retrieve(&c, "1000").unwrap()), ["RetrievedEvent"]);
        let cleared = p.clear(&c, "1001").unwrap();
        assert_eq!(
            kinds(&cleared),
            ["ConnectionClearedEvent", "ConnectionClearedEvent"]
        );
        assert!(cleared[1].body.contains("<deviceID>1000</deviceID>"));
        assert!(p.calls().is_empty());
        assert_eq!(p.clear(&c, "1000"), Err(NO_SUCH_CALL));
    }

    #[test]
    fn outside_numbers_answer_or_are_busy() {
        let mut p = pbx();
        let (c, _, ans) = p.make_call("1000", "0612345678").unwrap();
        assert_eq!(ans, Some((c.clone(), "0612345678".into())));
        let (_, e, ans) = p.make_call("1001", "0999").unwrap();
        assert_eq!(kinds(&e)[2], "FailedEvent");
        assert!(ans.is_none());
        assert_eq!(
            p.make_call("2000", "1"),
            Err(("operation", "invalidCallingDevice"))
        );
    }

    #[test]
    fn consultation_then_transfer_leaves_the_others_talking() {
        let mut p = pbx();
        let (c1, _, _) = p.make_call("1001", "1000").unwrap();
        p.answer(&c1, "1000").unwrap();
        let (c2, e, _) = p.consult(&c1, "1000", "1002").unwrap();
        assert_eq!(
            kinds(&e),
            [
                "HeldEvent",
                "ServiceInitiatedEvent",
                "OriginatedEvent",
                "DeliveredEvent"
            ]
        );
        p.answer(&c2, "1002").unwrap();
        let (c3, e) = p.transfer(&c1, &c2, "1000").unwrap();
        assert_eq!(kinds(&e), ["TransferedEvent"]);
        assert_eq!(e[0].devices, ["1000", "1001", "1002"]);
        let call = &p.calls()[&c3];
        let devices: Vec<&str> = call.parties.iter().map(|p| p.device.as_str()).collect();
        assert_eq!(devices, ["1001", "1002"]);
        assert_eq!(p.transfer(&c1, &c2, "1000"), Err(NO_SUCH_CALL));
    }
}
