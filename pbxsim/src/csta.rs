//! pbxsim's CSTA servers: one TCP listener per configured port, all views
//! of the same PBX. Each connection opens an ECMA-354 application session
//! (the CTI login checked when one is configured), keeps it alive or is
//! closed when its timer runs out, is asked `SystemStatus` now and then,
//! monitors devices, and asks for services that act on the call model;
//! every event goes to every monitor of every device it concerns, on any
//! connection. A server can be taken down (its connections reset, as by a
//! crash), brought back, or stalled (it reads requests and answers none),
//! through the control API.

use crate::pbx::{Answering, Pbx, Refusal, SimEvent};
use crate::wire::{ACS, ED3, Request, conn, error_code, esc, frame, unframe};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// How the servers behave.
#[derive(Debug, Clone)]
pub struct CstaOptions {
    /// The CTI login the PBX wants (MiVoice Office 400), if any.
    pub login: Option<(String, String)>,
    /// How long an outside number takes to answer.
    pub answer_delay: Duration,
    /// Longest session life granted.
    pub session_max: u32,
    /// Seconds between `SystemStatus` requests (0: none).
    pub system_status: u64,
}

#[derive(Debug, Default)]
struct ServerStats {
    listening: bool,
    stalled: bool,
    listener: Option<AbortHandle>,
    accepted: u64,
    requests: u64,
    requests_unanswered: u64,
    system_status_sent: u64,
    system_status_answered: u64,
    sessions_expired: u64,
    logins_refused: u64,
}

struct Connection {
    port: u16,
    out: mpsc::UnboundedSender<Vec<u8>>,
    ns: String,
    session: Option<String>,
    expires: Option<Instant>,
    monitors: HashMap<String, String>,
    task: Option<AbortHandle>,
}

/// The PBX and its CSTA servers.
pub struct Sim {
    /// The call model.
    pub pbx: Pbx,
    options: CstaOptions,
    servers: BTreeMap<u16, ServerStats>,
    addrs: BTreeMap<u16, SocketAddr>,
    conns: HashMap<u64, Connection>,
    next_conn: u64,
    next_xref: u64,
    next_invoke: u16,
    events_sent: u64,
}

/// The simulator shared by its tasks.
pub type Shared = Arc<Mutex<Sim>>;

impl Sim {
    /// A simulator of `pbx` serving CSTA on `addrs`.
    pub fn new(pbx: Pbx, addrs: &[SocketAddr], options: CstaOptions) -> Shared {
        Arc::new(Mutex::new(Sim {
            pbx,
            options,
            servers: addrs
                .iter()
                .map(|a| (a.port(), ServerStats::default()))
                .collect(),
            addrs: addrs.iter().map(|a| (a.port(), *a)).collect(),
            conns: HashMap::new(),
            next_conn: 1,
            next_xref: 1,
            next_invoke: 1,
            events_sent: 0,
        }))
    }

    /// Sends `events` to every monitor of the devices they concern.
    pub fn deliver(&mut self, events: &[SimEvent]) {
        for e in events {
            for c in self.conns.values() {
                for (xref, device) in &c.monitors {
                    if e.devices.iter().any(|d| d == device) {
                        let _ = c.out.send(frame(9999, &e.render(xref, &c.ns)));
                        self.events_sent += 1;
                    }
                }
            }
        }
    }

    /// What the control API shows.
    pub fn status(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|(port, s)| {
                let conns: Vec<&Connection> =
                    self.conns.values().filter(|c| c.port == *port).collect();
                json!({
                    "port": port,
                    "listening": s.listening,
                    "stalled": s.stalled,
                    "accepted": s.accepted,
                    "connections": conns.len(),
                    "sessions": conns.iter().filter(|c| c.session.is_some()).count(),
                    "monitors": conns.iter().map(|c| c.monitors.len()).sum::<usize>(),
                    "requests": s.requests,
                    "requests_unanswered": s.requests_unanswered,
                    "system_status_sent": s.system_status_sent,
                    "system_status_answered": s.system_status_answered,
                    "sessions_expired": s.sessions_expired,
                    "logins_refused": s.logins_refused,
                })
            })
            .collect();
        let mut monitored: BTreeMap<&str, usize> = BTreeMap::new();
        for c in self.conns.values() {
            for d in c.monitors.values() {
                *monitored.entry(d.as_str()).or_default() += 1;
            }
        }
        json!({
            "servers": servers,
            "users": self.pbx.users().count(),
            "monitored_devices": monitored.len(),
            "monitors_total": monitored.values().sum::<usize>(),
            "calls": self.pbx.calls().len(),
            "events_sent": self.events_sent,
        })
    }

    /// The calls in progress, for the control API.
    pub fn calls(&self) -> Value {
        json!(
            self.pbx
                .calls()
                .iter()
                .map(|(id, c)| json!({
                    "call": id,
                    "calling": c.calling,
                    "called": c.called,
                    "parties": c.parties.iter().map(|p| json!({
                        "device": p.device,
                        "state": format!("{:?}", p.state).to_lowercase(),
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        )
    }
}

/// Starts listening on every configured port.
pub async fn start_all(sim: &Shared) -> anyhow::Result<()> {
    let addrs: Vec<SocketAddr> = sim.lock().expect("sim").addrs.values().copied().collect();
    for a in addrs {
        up(sim, a.port()).await?;
    }
    Ok(())
}

/// Brings the server on `port` up (listening again).
pub async fn up(sim: &Shared, port: u16) -> anyhow::Result<()> {
    let addr = {
        let s = sim.lock().expect("sim");
        match s.servers.get(&port) {
            Some(st) if st.listening => return Ok(()),
            Some(_) => s.addrs[&port],
            None => anyhow::bail!("no CSTA server on port {port}"),
        }
    };
    let listener = bind(addr).await?;
    println!("pbxsim: CSTA server listening on {addr}");
    let task = tokio::spawn(accept(sim.clone(), port, listener));
    let mut s = sim.lock().expect("sim");
    let st = s.servers.get_mut(&port).expect("checked");
    st.listening = true;
    st.listener = Some(task.abort_handle());
    Ok(())
}

/// Binds, retrying a moment while the port is still held by the server
/// just taken down.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        let socket = if addr.is_ipv6() {
            tokio::net::TcpSocket::new_v6()?
        } else {
            tokio::net::TcpSocket::new_v4()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return Ok(socket.listen(128)?),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("binding {addr}: {}", last.expect("tried")))
}

/// Takes the server on `port` down as a crash would: the listener closes
/// and every connection is reset.
pub fn down(sim: &Shared, port: u16) -> bool {
    let mut s = sim.lock().expect("sim");
    let Some(st) = s.servers.get_mut(&port) else {
        return false;
    };
    if let Some(l) = st.listener.take() {
        l.abort();
    }
    st.listening = false;
    // What comes back after a crash is a fresh server.
    st.stalled = false;
    let gone: Vec<u64> = s
        .conns
        .iter()
        .filter(|(_, c)| c.port == port)
        .map(|(id, _)| *id)
        .collect();
    for id in gone {
        if let Some(c) = s.conns.remove(&id)
            && let Some(t) = c.task
        {
            t.abort();
        }
    }
    println!("pbxsim: CSTA server on port {port} taken down");
    true
}

/// Stalls (or frees) the server on `port`: it keeps reading requests but
/// answers none.
pub fn stall(sim: &Shared, port: u16, on: bool) -> bool {
    let mut s = sim.lock().expect("sim");
    match s.servers.get_mut(&port) {
        Some(st) => {
            st.stalled = on;
            true
        }
        None => false,
    }
}

async fn accept(sim: Shared, port: u16, listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        // A crash resets connections rather than closing them politely.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut s = sim.lock().expect("sim");
            let id = s.next_conn;
            s.next_conn += 1;
            s.servers.get_mut(&port).expect("server").accepted += 1;
            s.conns.insert(
                id,
                Connection {
                    port,
                    out: tx,
                    ns: ED3.to_owned(),
                    session: None,
                    expires: None,
                    monitors: HashMap::new(),
                    task: None,
                },
            );
            id
        };
        println!("pbxsim: port {port}: connection from {peer}");
        let task = tokio::spawn(connection(sim.clone(), id, port, stream, rx));
        if let Some(c) = sim.lock().expect("sim").conns.get_mut(&id) {
            c.task = Some(task.abort_handle());
        }
    }
}

async fn connection(
    sim: Shared,
    id: u64,
    port: u16,
    stream: TcpStream,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    };
    let reader = {
        let sim = sim.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut since_status = Instant::now();
            loop {
                tokio::select! {
                    r = rd.read(&mut chunk) => {
                        let n = match r {
                            Ok(0) | Err(_) => return "closed by the client",
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        match unframe(&mut buf) {
                            Ok(msgs) => {
                                for (invoke, xml) in msgs {
                                    if handle(&sim, id, invoke, &xml) {
                                        return "session stopped";
                                    }
                                }
                            }
                            Err(e) => {
                                println!("pbxsim: port {port}: framing lost ({e}): closing");
                                return "framing lost";
                            }
                        }
                    }
                    _ = tick.tick() => {
                        let mut s = sim.lock().expect("sim");
                        let every = s.options.system_status;
                        let expired = s.conns.get(&id).and_then(|c| c.expires).is_some_and(|t| t <= Instant::now());
                        if expired {
                            s.servers.get_mut(&port).expect("server").sessions_expired += 1;
                            println!("pbxsim: port {port}: session expired (no ResetApplicationSessionTimer): closing");
                            return "session expired";
                        }
                        let up = s.conns.get(&id).is_some_and(|c| c.session.is_some());
                        if every > 0 && up && since_status.elapsed() >= Duration::from_secs(every) {
                            since_status = Instant::now();
                            let invoke = s.next_invoke;
                            s.next_invoke = if invoke >= 9998 { 1 } else { invoke + 1 };
                            let ns = s.conns[&id].ns.clone();
                            let _ = s.conns[&id].out.send(frame(invoke, &format!(
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SystemStatus xmlns=\"{ns}\"><systemStatus>normal</systemStatus></SystemStatus>"
                            )));
                            s.servers.get_mut(&port).expect("server").system_status_sent += 1;
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        why = reader => {
            println!("pbxsim: port {port}: connection {id} ended: {why}");
        }
    }
    sim.lock().expect("sim").conns.remove(&id);
}

/// Answers one request; whether the connection is to close.
fn handle(sim: &Shared, id: u64, invoke: u16, xml: &str) -> bool {
    let mut s = sim.lock().expect("sim");
    let Some(c) = s.conns.get(&id) else {
        return true;
    };
    let (port, ns, out) = (c.port, c.ns.clone(), c.out.clone());
    let send = |x: String| {
        let _ = out.send(frame(invoke, &x));
    };
    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    let req = match Request::parse(xml) {
        Ok(r) => r,
        Err(_) => {
            send(error_code(&ns, "operation", "generic"));
            return false;
        }
    };
    if req.name == "SystemStatusResponse" {
        s.servers
            .get_mut(&port)
            .expect("server")
            .system_status_answered += 1;
        return false;
    }
    let st = s.servers.get_mut(&port).expect("server");
    st.requests += 1;
    if st.stalled {
        st.requests_unanswered += 1;
        return false;
    }
    let started = s.conns[&id].session.is_some();
    match req.name.as_str() {
        "StartApplicationSession" => {
            let given = (
                req.get(&["applicationSpecificInfo", "userName"])
                    .unwrap_or_default(),
                req.get(&["applicationSpecificInfo", "password"])
                    .unwrap_or_default(),
            );
            if let Some((u, p)) = &s.options.login
                && (given.0 != *u || given.1 != *p)
            {
                s.servers.get_mut(&port).expect("server").logins_refused += 1;
                send(format!(
                    "{head}<StartApplicationSessionNegResponse xmlns=\"{ACS}\"><errorCode><applicationSpecific>wrong credential</applicationSpecific></errorCode></StartApplicationSessionNegResponse>"
                ));
                return false;
            }
            let asked: u32 = req
                .get(&["requestedSessionDuration"])
                .and_then(|d| d.parse().ok())
                .unwrap_or(180);
            let granted = asked.clamp(10, s.options.session_max);
            let edition = req
                .get(&["protocolVersion"])
                .filter(|v| v.contains("ecma-323/csta/ed"))
                .unwrap_or_else(|| ED3.to_owned());
            let session = format!("P{port}S{id}");
            let c = s.conns.get_mut(&id).expect("present");
            c.ns = edition.clone();
            c.session = Some(session.clone());
            c.expires = Some(Instant::now() + Duration::from_secs(granted.into()));
            send(format!(
                "{head}<StartApplicationSessionPosResponse xmlns=\"{ACS}\"><sessionID>{session}</sessionID><actualProtocolVersion>{edition}</actualProtocolVersion><actualSessionDuration>{granted}</actualSessionDuration></StartApplicationSessionPosResponse>"
            ));
            println!("pbxsim: port {port}: session {session} started ({edition}, {granted} s)");
        }
        _ if !started => send(error_code(&ns, "security", "generic")),
        "ResetApplicationSessionTimer" => {
            let max = s.options.session_max;
            let asked: u32 = req
                .get(&["requestedSessionDuration"])
                .and_then(|d| d.parse().ok())
                .unwrap_or(180);
            let granted = asked.clamp(10, max);
            s.conns.get_mut(&id).expect("present").expires =
                Some(Instant::now() + Duration::from_secs(granted.into()));
            send(format!(
                "{head}<ResetApplicationSessionTimerPosResponse xmlns=\"{ACS}\"><actualSessionDuration>{granted}</actualSessionDuration></ResetApplicationSessionTimerPosResponse>"
            ));
        }
        "StopApplicationSession" => {
            send(format!(
                "{head}<StopApplicationSessionPosResponse xmlns=\"{ACS}\"/>"
            ));
            return true;
        }
        "MonitorStart" => {
            let device = req
                .get(&["monitorObject", "deviceObject"])
                .unwrap_or_default();
            if !s.pbx.is_user(&device) {
                send(error_code(&ns, "operation", "invalidMonitorObject"));
            } else {
                let xref = format!("{port}-{}", s.next_xref);
                s.next_xref += 1;
                s.conns
                    .get_mut(&id)
                    .expect("present")
                    .monitors
                    .insert(xref.clone(), device);
                send(format!(
                    "{head}<MonitorStartResponse xmlns=\"{ns}\"><monitorCrossRefID>{xref}</monitorCrossRefID></MonitorStartResponse>"
                ));
            }
        }
        "MonitorStop" => {
            let xref = req.get(&["monitorCrossRefID"]).unwrap_or_default();
            if s.conns
                .get_mut(&id)
                .expect("present")
                .monitors
                .remove(&xref)
                .is_some()
            {
                send(format!("{head}<MonitorStopResponse xmlns=\"{ns}\"/>"));
            } else {
                send(error_code(&ns, "operation", "invalidMonitorCrossRefID"));
            }
        }
        "MakeCall" => {
            let calling = req.get(&["callingDevice"]).unwrap_or_default();
            let called = req.get(&["calledDirectoryNumber"]).unwrap_or_default();
            let r = s.pbx.make_call(&calling, &called);
            act(
                sim,
                &mut s,
                &send,
                r.map(|(call, ev, ans)| {
                    (
                        format!(
                            "{head}<MakeCallResponse xmlns=\"{ns}\">{}</MakeCallResponse>",
                            conn("callingDevice", &call, &calling)
                        ),
                        ev,
                        ans,
                    )
                }),
                &ns,
            );
        }
        "ConsultationCall" => {
            let call = req.get(&["existingCall", "callID"]).unwrap_or_default();
            let device = req.get(&["existingCall", "deviceID"]).unwrap_or_default();
            let consulted = req.get(&["consultedDevice"]).unwrap_or_default();
            let r = s.pbx.consult(&call, &device, &consulted);
            act(sim, &mut s, &send, r.map(|(new, ev, ans)| {
                (
                    format!("{head}<ConsultationCallResponse xmlns=\"{ns}\">{}</ConsultationCallResponse>", conn("initiatedCall", &new, &device)),
                    ev,
                    ans,
                )
            }), &ns);
        }
        "TransferCall" => {
            let held = req.get(&["heldCall", "callID"]).unwrap_or_default();
            let active = req.get(&["activeCall", "callID"]).unwrap_or_default();
            let device = req.get(&["heldCall", "deviceID"]).unwrap_or_default();
            let r = s.pbx.transfer(&held, &active, &device);
            act(sim, &mut s, &send, r.map(|(new, ev)| {
                (
                    format!("{head}<TransferCallResponse xmlns=\"{ns}\"><transferredCall><callID>{}</callID></transferredCall></TransferCallResponse>", esc(&new)),
                    ev,
                    None,
                )
            }), &ns);
        }
        "AnswerCall" | "ClearConnection" | "HoldCall" | "RetrieveCall" => {
            let tag = match req.name.as_str() {
                "AnswerCall" => "callToBeAnswered",
                "ClearConnection" => "connectionToBeCleared",
                "HoldCall" => "callToBeHeld",
                _ => "callToBeRetrieved",
            };
            let call = req.get(&[tag, "callID"]).unwrap_or_default();
            let device = req.get(&[tag, "deviceID"]).unwrap_or_default();
            let r = match req.name.as_str() {
                "AnswerCall" => s.pbx.answer(&call, &device),
                "ClearConnection" => s.pbx.clear(&call, &device),
                "HoldCall" => s.pbx.hold(&call, &device),
                _ => s.pbx.retrieve(&call, &device),
            };
            let name = req.name.clone();
            act(
                sim,
                &mut s,
                &send,
                r.map(|ev| (format!("{head}<{name}Response xmlns=\"{ns}\"/>"), ev, None)),
                &ns,
            );
        }
        "SetMessageWaitingIndicator" => {
            let device = req.get(&["device"]).unwrap_or_default();
            let on = req.get(&["messageWaitingOn"]).is_some_and(|v| v == "true");
            let r = s.pbx.set_mwi(&device, on);
            act(
                sim,
                &mut s,
                &send,
                r.map(|ev| {
                    (
                        format!("{head}<SetMessageWaitingIndicatorResponse xmlns=\"{ns}\"/>"),
                        ev,
                        None,
                    )
                }),
                &ns,
            );
        }
        _ => send(error_code(&ns, "operation", "generic")),
    }
    false
}

/// Sends a service's response, then its events; schedules an outside
/// party's answer.
fn act(
    sim: &Shared,
    s: &mut Sim,
    send: &dyn Fn(String),
    r: Result<(String, Vec<SimEvent>, Answering), Refusal>,
    ns: &str,
) {
    match r {
        Ok((response, events, answering)) => {
            send(response);
            s.deliver(&events);
            if let Some((call, device)) = answering {
                schedule_answer(sim, s.options.answer_delay, call, device);
            }
        }
        Err((category, value)) => send(error_code(ns, category, value)),
    }
}

/// An outside party answers after `delay` (if still ringing then).
pub fn schedule_answer(sim: &Shared, delay: Duration, call: String, device: String) {
    let sim = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut s = sim.lock().expect("sim");
        if let Ok(events) = s.pbx.answer(&call, &device) {
            s.deliver(&events);
        }
    });
}
