//! INVITE client and server transactions (RFC 3261 §17.1.1, §17.2.1), with
//! RFC 6026's Accepted state on both sides: a 2xx does not end the
//! transaction at once, so retransmitted 2xx (client) and late ACK-less
//! INVITE retransmissions (server) are still matched and absorbed.

use super::state::{Event, Output, State, Transport};
use super::timers::{Backoff, Timers, earliest};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An INVITE client transaction.
#[derive(Debug)]
pub struct InviteClient {
    state: State,
    request: Vec<u8>,
    transport: Transport,
    timers: Timers,
    ack: Option<Vec<u8>>,
    a: Option<Backoff>,
    b: Option<Instant>,
    d: Option<Instant>,
    m: Option<Instant>,
    out: VecDeque<Output>,
}

impl InviteClient {
    /// Starts the transaction: the INVITE goes out at once.
    pub fn new(now: Instant, transport: Transport, timers: Timers, request: Vec<u8>) -> Self {
        let a = (transport == Transport::Unreliable).then(|| Backoff::new(now, timers.t1, None));
        let mut out = VecDeque::new();
        out.push_back(Output::Transmit(request.clone()));
        Self {
            state: State::Calling,
            request,
            transport,
            timers,
            ack: None,
            a,
            b: Some(now + 64 * timers.t1),
            d: None,
            m: None,
            out,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// A response arrived. For a 3xx–6xx final the transaction sends the
    /// ACK, which the transaction user builds (it knows the To tag).
    pub fn handle_response(&mut self, now: Instant, code: u16, ack: impl FnOnce() -> Vec<u8>) {
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.a = None;
                self.out.push_back(Output::Event(Event::Response(code)));
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                // RFC 6026: Accepted, Timer M absorbs 2xx retransmissions
                // (each still goes up: the TU acknowledges 2xx itself).
                self.state = State::Accepted;
                self.a = None;
                self.b = None;
                self.m = Some(now + 64 * self.timers.t1);
                self.out.push_back(Output::Event(Event::Response(code)));
            }
            (State::Accepted, 200..=299) => {
                self.out.push_back(Output::Event(Event::Response(code)))
            }
            (State::Calling | State::Proceeding, 300..=699) => {
                self.state = State::Completed;
                self.a = None;
                self.b = None;
                let ack = ack();
                self.out.push_back(Output::Event(Event::Response(code)));
                self.out.push_back(Output::Transmit(ack.clone()));
                self.ack = Some(ack);
                let d = if self.transport == Transport::Unreliable {
                    Duration::from_secs(32)
                } else {
                    Duration::ZERO
                };
                if d.is_zero() {
                    self.terminate();
                } else {
                    self.d = Some(now + d);
                }
            }
            (State::Completed, 300..=699) => {
                // A retransmitted final: the ACK was lost; send it again.
                if let Some(ack) = &self.ack {
                    self.out.push_back(Output::Transmit(ack.clone()));
                }
            }
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.a = None;
        self.b = None;
        self.d = None;
        self.m = None;
        self.out.push_back(Output::Event(Event::Terminated));
    }

    /// Fires whichever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.b.is_some_and(|b| now >= b) {
            self.out.push_back(Output::Event(Event::Timeout));
            self.terminate();
            return;
        }
        if self.d.is_some_and(|d| now >= d) || self.m.is_some_and(|m| now >= m) {
            self.terminate();
            return;
        }
        if let Some(a) = self.a.as_mut().filter(|a| now >= a.at) {
            a.next(now);
            self.out.push_back(Output::Transmit(self.request.clone()));
        }
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([self.a.map(|a| a.at), self.b, self.d, self.m])
    }

    /// The next thing to send or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct InviteServer {
    state: State,
    transport: Transport,
    timers: Timers,
    last_response: Option<Vec<u8>>,
    g: Option<Backoff>,
    h: Option<Instant>,
    i: Option<Instant>,
    l: Option<Instant>,
    out: VecDeque<Output>,
}

impl InviteServer {
    /// An INVITE arrived and created the transaction (the TU should send a
    /// 100 Trying at once or within 200 ms).
    pub fn new(transport: Transport, timers: Timers) -> Self {
        Self {
            state: State::Proceeding,
            transport,
            timers,
            last_response: None,
            g: None,
            h: None,
            i: None,
            l: None,
            out: VecDeque::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The INVITE arrived again: resend the last provisional or final.
    pub fn handle_retransmission(&mut self) {
        match self.state {
            State::Proceeding | State::Completed => match &self.last_response {
                Some(r) => self.out.push_back(Output::Transmit(r.clone())),
                None => self.out.push_back(Output::Event(Event::Absorbed)),
            },
            // Accepted: the TU's 2xx retransmissions handle it (RFC 6026).
            State::Accepted | State::Confirmed => {
                self.out.push_back(Output::Event(Event::Absorbed))
            }
            _ => {}
        }
    }

    /// An ACK for this transaction arrived (non-2xx finals only; the ACK
    /// for a 2xx is its own transaction and goes to the TU).
    pub fn handle_ack(&mut self, now: Instant) {
        if self.state != State::Completed {
            return;
        }
        self.state = State::Confirmed;
        self.g = None;
        self.h = None;
        self.out.push_back(Output::Event(Event::Acked));
        let i = if self.transport == Transport::Unreliable {
            self.timers.t4
        } else {
            Duration::ZERO
        };
        if i.is_zero() {
            self.terminate();
        } else {
            self.i = Some(now + i);
        }
    }

    /// The TU sends a response.
    pub fn send_response(&mut self, now: Instant, code: u16, response: Vec<u8>) {
        if self.state != State::Proceeding {
            return;
        }
        self.out.push_back(Output::Transmit(response.clone()));
        self.last_response = Some(response);
        match code {
            100..=199 => {}
            200..=299 => {
                self.state = State::Accepted;
                self.l = Some(now + 64 * self.timers.t1);
            }
            _ => {
                self.state = State::Completed;
                if self.transport == Transport::Unreliable {
                    self.g = Some(Backoff::new(now, self.timers.t1, Some(self.timers.t2)));
                }
                self.h = Some(now + 64 * self.timers.t1);
            }
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.g = None;
        self.h = None;
        self.i = None;
        self.l = None;
        self.out.push_back(Output::Event(Event::Terminated));
    }

    /// Fires whichever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.h.is_some_and(|h| now >= h) {
            self.out.push_back(Output::Event(Event::Timeout));
            self.terminate();
            return;
        }
        if self.i.is_some_and(|i| now >= i) || self.l.is_some_and(|l| now >= l) {
            self.terminate();
            return;
        }
        if let Some(g) = self.g.as_mut().filter(|g| now >= g.at) {
            g.next(now);
            if let Some(r) = &self.last_response {
                self.out.push_back(Output::Transmit(r.clone()));
            }
        }
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([self.g.map(|g| g.at), self.h, self.i, self.l])
    }

    /// The next thing to send or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, t: Instant) -> u128 {
        (t - t0).as_millis()
    }

    #[test]
    fn client_timer_a_doubles_until_b() {
        let t0 = Instant::now();
        let mut c = InviteClient::new(
            t0,
            Transport::Unreliable,
            Timers::default(),
            b"INVITE".to_vec(),
        );
        assert_eq!(c.poll_output(), Some(Output::Transmit(b"INVITE".to_vec())));
        let mut sent = Vec::new();
        while let Some(t) = c.poll_timeout() {
            c.handle_timeout(t);
            while let Some(o) = c.poll_output() {
                match o {
                    Output::Transmit(_) => sent.push(ms(t0, t)),
                    Output::Event(e) => sent.push(1_000_000 + matches!(e, Event::Timeout) as u128),
                }
            }
        }
        // A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B = 32 s: timeout, terminated.
        assert_eq!(
            sent,
            vec![500, 1500, 3500, 7500, 15500, 31500, 1_000_001, 1_000_000]
        );
    }

    #[test]
    fn client_non_2xx_final_acks_and_reacks_retransmissions() {
        let t0 = Instant::now();
        let mut c = InviteClient::new(
            t0,
            Transport::Unreliable,
            Timers::default(),
            b"INVITE".to_vec(),
        );
        c.poll_output();
        c.handle_response(t0, 180, Vec::new);
        assert_eq!(c.state(), State::Proceeding);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "A stops in Proceeding"
        );
        c.handle_response(t0, 486, || b"ACK".to_vec());
        assert_eq!(c.state(), State::Completed);
        let outs: Vec<_> = std::iter::from_fn(|| c.poll_output()).collect();
        assert_eq!(outs[outs.len() - 1], Output::Transmit(b"ACK".to_vec()));
        c.handle_response(t0 + Duration::from_secs(1), 486, || unreachable!());
        assert_eq!(c.poll_output(), Some(Output::Transmit(b"ACK".to_vec())));
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "D = 32 s over UDP"
        );
        c.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(c.state(), State::Terminated);
    }

    #[test]
    fn client_2xx_enters_accepted_and_passes_retransmissions_up() {
        let t0 = Instant::now();
        let mut c = InviteClient::new(
            t0,
            Transport::Reliable,
            Timers::default(),
            b"INVITE".to_vec(),
        );
        c.poll_output();
        c.handle_response(t0, 200, Vec::new);
        assert_eq!(c.state(), State::Accepted);
        c.poll_output();
        c.handle_response(t0 + Duration::from_secs(1), 200, Vec::new);
        assert_eq!(c.poll_output(), Some(Output::Event(Event::Response(200))));
        c.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(c.state(), State::Terminated, "Timer M");
    }

    #[test]
    fn server_retransmits_non_2xx_with_g_until_ack_or_h() {
        let t0 = Instant::now();
        let mut s = InviteServer::new(Transport::Unreliable, Timers::default());
        s.handle_retransmission();
        assert_eq!(s.poll_output(), Some(Output::Event(Event::Absorbed)));
        s.send_response(t0, 100, b"100".to_vec());
        s.handle_retransmission();
        assert_eq!(
            std::iter::from_fn(|| s.poll_output()).count(),
            2,
            "100 sent, then resent"
        );
        s.send_response(t0, 486, b"486".to_vec());
        assert_eq!(s.state(), State::Completed);
        s.poll_output();
        let mut at = Vec::new();
        while let Some(t) = s.poll_timeout() {
            if t >= t0 + Duration::from_secs(10) {
                break;
            }
            s.handle_timeout(t);
            while let Some(Output::Transmit(_)) = s.poll_output() {
                at.push(ms(t0, t));
            }
        }
        // G: 0.5, 1.5, 3.5, then every T2.
        assert_eq!(at, vec![500, 1500, 3500, 7500]);
        s.handle_ack(t0 + Duration::from_secs(10));
        assert_eq!(s.state(), State::Confirmed);
        assert_eq!(s.poll_output(), Some(Output::Event(Event::Acked)));
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(15)),
            "I = T4"
        );
        s.handle_timeout(t0 + Duration::from_secs(15));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn server_timer_h_reports_a_missing_ack() {
        let t0 = Instant::now();
        let mut s = InviteServer::new(Transport::Reliable, Timers::default());
        s.send_response(t0, 603, b"603".to_vec());
        s.poll_output();
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "no G over TCP, only H"
        );
        s.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(s.poll_output(), Some(Output::Event(Event::Timeout)));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn server_2xx_accepted_absorbs_then_l_ends_it() {
        let t0 = Instant::now();
        let mut s = InviteServer::new(Transport::Unreliable, Timers::default());
        s.send_response(t0, 200, b"200".to_vec());
        assert_eq!(s.state(), State::Accepted);
        s.poll_output();
        s.handle_retransmission();
        assert_eq!(s.poll_output(), Some(Output::Event(Event::Absorbed)));
        s.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(s.state(), State::Terminated, "Timer L");
    }
}
