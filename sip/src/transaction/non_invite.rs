//! Non-INVITE client and server transactions (RFC 3261 §17.1.2, §17.2.2).

use super::state::{Event, Output, State, Transport};
use super::timers::{Backoff, Timers, earliest};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A non-INVITE client transaction: sends a request, retransmits it over
/// UDP (Timer E), gives up after Timer F, absorbs late responses (Timer K).
#[derive(Debug)]
pub struct NonInviteClient {
    state: State,
    request: Vec<u8>,
    transport: Transport,
    timers: Timers,
    e: Option<Backoff>,
    f: Option<Instant>,
    k: Option<Instant>,
    out: VecDeque<Output>,
}

impl NonInviteClient {
    /// Starts the transaction: the request goes out at once.
    pub fn new(now: Instant, transport: Transport, timers: Timers, request: Vec<u8>) -> Self {
        let e = (transport == Transport::Unreliable)
            .then(|| Backoff::new(now, timers.t1, Some(timers.t2)));
        let mut out = VecDeque::new();
        out.push_back(Output::Transmit(request.clone()));
        Self {
            state: State::Trying,
            request,
            transport,
            timers,
            e,
            f: Some(now + 64 * timers.t1),
            k: None,
            out,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// A response with status `code` arrived.
    pub fn handle_response(&mut self, now: Instant, code: u16) {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.out.push_back(Output::Event(Event::Response(code)));
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.out.push_back(Output::Event(Event::Response(code)));
                self.e = None;
                self.f = None;
                let k = if self.transport == Transport::Unreliable {
                    self.timers.t4
                } else {
                    Duration::ZERO
                };
                self.k = Some(now + k);
                if k.is_zero() {
                    self.terminate();
                }
            }
            // Completed: retransmitted finals are absorbed.
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.e = None;
        self.f = None;
        self.k = None;
        self.out.push_back(Output::Event(Event::Terminated));
    }

    /// Fires whichever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.f.is_some_and(|f| now >= f) {
            self.out.push_back(Output::Event(Event::Timeout));
            self.terminate();
            return;
        }
        if self.k.is_some_and(|k| now >= k) {
            self.terminate();
            return;
        }
        if let Some(e) = self.e.as_mut().filter(|e| now >= e.at) {
            // In Proceeding, retransmit every T2 (§17.1.2.2).
            if self.state == State::Proceeding {
                e.interval = self.timers.t2;
                e.at = now + self.timers.t2;
            } else {
                e.next(now);
            }
            self.out.push_back(Output::Transmit(self.request.clone()));
        }
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([self.e.map(|e| e.at), self.f, self.k])
    }

    /// The next thing to send or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

/// A non-INVITE server transaction: absorbs request retransmissions,
/// resends the last response to them, and lingers for Timer J.
#[derive(Debug)]
pub struct NonInviteServer {
    state: State,
    transport: Transport,
    timers: Timers,
    last_response: Option<Vec<u8>>,
    j: Option<Instant>,
    out: VecDeque<Output>,
}

impl NonInviteServer {
    /// A request arrived and created the transaction.
    pub fn new(transport: Transport, timers: Timers) -> Self {
        Self {
            state: State::Trying,
            transport,
            timers,
            last_response: None,
            j: None,
            out: VecDeque::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The same request arrived again.
    pub fn handle_retransmission(&mut self) {
        match self.state {
            State::Trying => self.out.push_back(Output::Event(Event::Absorbed)),
            State::Proceeding | State::Completed => {
                if let Some(r) = &self.last_response {
                    self.out.push_back(Output::Transmit(r.clone()));
                }
            }
            _ => {}
        }
    }

    /// The transaction user sends a response with status `code`.
    pub fn send_response(&mut self, now: Instant, code: u16, response: Vec<u8>) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        self.out.push_back(Output::Transmit(response.clone()));
        self.last_response = Some(response);
        if (100..=199).contains(&code) {
            self.state = State::Proceeding;
            return;
        }
        self.state = State::Completed;
        let j = if self.transport == Transport::Unreliable {
            64 * self.timers.t1
        } else {
            Duration::ZERO
        };
        if j.is_zero() {
            self.terminate();
        } else {
            self.j = Some(now + j);
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.j = None;
        self.out.push_back(Output::Event(Event::Terminated));
    }

    /// Fires Timer J when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.j.is_some_and(|j| now >= j) {
            self.terminate();
        }
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.j
    }

    /// The next thing to send or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<F: FnMut() -> Option<Output>>(mut f: F) -> Vec<Output> {
        std::iter::from_fn(&mut f).collect()
    }

    /// Drives a client on the fake clock until `until`, returning when it
    /// retransmitted (ms after start).
    fn retransmissions(c: &mut NonInviteClient, t0: Instant, until: Duration) -> Vec<u128> {
        let mut at = Vec::new();
        while let Some(t) = c.poll_timeout() {
            if t > t0 + until {
                break;
            }
            c.handle_timeout(t);
            for o in drain(|| c.poll_output()) {
                if matches!(o, Output::Transmit(_)) {
                    at.push((t - t0).as_millis());
                }
            }
        }
        at
    }

    #[test]
    fn client_over_udp_retransmits_with_timer_e_and_times_out_with_f() {
        let t0 = Instant::now();
        let mut c = NonInviteClient::new(
            t0,
            Transport::Unreliable,
            Timers::default(),
            b"OPTIONS".to_vec(),
        );
        assert_eq!(c.poll_output(), Some(Output::Transmit(b"OPTIONS".to_vec())));
        let at = retransmissions(&mut c, t0, Duration::from_secs(40));
        // E: 500, 1500, 3500, 7500, then every T2 (4 s) up to F = 32 s.
        assert_eq!(
            at,
            vec![
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(c.state(), State::Terminated);
    }

    #[test]
    fn client_timer_f_reports_timeout() {
        let t0 = Instant::now();
        let mut c = NonInviteClient::new(
            t0,
            Transport::Reliable,
            Timers::default(),
            b"OPTIONS".to_vec(),
        );
        c.poll_output();
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "only F over TCP"
        );
        c.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(
            drain(|| c.poll_output()),
            vec![
                Output::Event(Event::Timeout),
                Output::Event(Event::Terminated)
            ]
        );
    }

    #[test]
    fn client_proceeding_then_completed_absorbs_and_k_expires() {
        let t0 = Instant::now();
        let mut c = NonInviteClient::new(
            t0,
            Transport::Unreliable,
            Timers::default(),
            b"BYE".to_vec(),
        );
        c.poll_output();
        c.handle_response(t0 + Duration::from_millis(100), 180);
        assert_eq!(c.state(), State::Proceeding);
        // In Proceeding, E keeps firing but at T2.
        c.handle_timeout(t0 + Duration::from_millis(500));
        c.handle_timeout(t0 + Duration::from_millis(1000));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(4500)));
        c.handle_response(t0 + Duration::from_secs(2), 200);
        assert_eq!(c.state(), State::Completed);
        let outs = drain(|| c.poll_output());
        assert!(
            outs.contains(&Output::Event(Event::Response(180)))
                && outs.contains(&Output::Event(Event::Response(200)))
        );
        c.handle_response(t0 + Duration::from_secs(3), 200);
        assert_eq!(
            drain(|| c.poll_output()),
            vec![],
            "retransmitted final absorbed"
        );
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Duration::from_secs(7)),
            "K = T4"
        );
        c.handle_timeout(t0 + Duration::from_secs(7));
        assert_eq!(c.state(), State::Terminated);
    }

    #[test]
    fn client_over_tcp_terminates_on_final() {
        let t0 = Instant::now();
        let mut c =
            NonInviteClient::new(t0, Transport::Reliable, Timers::default(), b"BYE".to_vec());
        c.handle_response(t0, 200);
        assert_eq!(c.state(), State::Terminated, "K is zero over TCP");
    }

    #[test]
    fn server_absorbs_then_resends_the_last_response() {
        let t0 = Instant::now();
        let mut s = NonInviteServer::new(Transport::Unreliable, Timers::default());
        s.handle_retransmission();
        assert_eq!(s.poll_output(), Some(Output::Event(Event::Absorbed)));
        s.send_response(t0, 100, b"100".to_vec());
        assert_eq!(s.state(), State::Proceeding);
        s.handle_retransmission();
        assert_eq!(
            drain(|| s.poll_output()),
            vec![
                Output::Transmit(b"100".to_vec()),
                Output::Transmit(b"100".to_vec())
            ]
        );
        s.send_response(t0, 200, b"200".to_vec());
        assert_eq!(s.state(), State::Completed);
        s.handle_retransmission();
        assert_eq!(
            drain(|| s.poll_output()),
            vec![
                Output::Transmit(b"200".to_vec()),
                Output::Transmit(b"200".to_vec())
            ]
        );
        s.send_response(t0, 500, b"500".to_vec());
        assert_eq!(drain(|| s.poll_output()), vec![], "only one final");
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "J = 64*T1"
        );
        s.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn server_over_tcp_terminates_on_final() {
        let mut s = NonInviteServer::new(Transport::Reliable, Timers::default());
        s.send_response(Instant::now(), 200, b"200".to_vec());
        assert_eq!(s.state(), State::Terminated, "J is zero over TCP");
    }
}
