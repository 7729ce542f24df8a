//! CSTA messages as types: what the gateway asks of the PBX (ECMA-269
//! services in ECMA-323 XML, and ECMA-354 application-session requests),
//! and what the PBX sends back (responses, `CSTAErrorCode`, events, its own
//! `SystemStatus` requests). Owns the mapping between the XML tree and
//! these types; knows nothing of invoke ids, timers or connections.
//!
//! Reading is lenient where the field is: element names without prefixes,
//! any namespace edition, a device given as text or as a
//! `deviceIdentifier` child, unknown elements and private data ignored.
//! Writing is strict: one edition's namespace, everything escaped.

use crate::xml::{Element, escape};
use std::fmt;

/// A device as the PBX names it: usually a directory number (`1000`),
/// sometimes a richer form (`N<3021061290002>;noa=nk`, `tel:+3222220220`).
pub type DeviceId = String;

/// One device's part in one call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    /// The PBX's call id.
    pub call: String,
    /// The device (empty when the PBX named only the call).
    pub device: DeviceId,
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.call, self.device)
    }
}

/// The ECMA-323 edition, as named by its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// Second edition (2004).
    Ed2,
    /// Third edition (2005): what most PBXs speak.
    Ed3,
    /// Fourth edition (2006).
    Ed4,
    /// Fifth edition (2009).
    Ed5,
}

impl Edition {
    /// Its XML namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Edition::Ed2 => "http://www.ecma-international.org/standards/ecma-323/csta/ed2",
            Edition::Ed3 => "http://www.ecma-international.org/standards/ecma-323/csta/ed3",
            Edition::Ed4 => "http://www.ecma-international.org/standards/ecma-323/csta/ed4",
            Edition::Ed5 => "http://www.ecma-international.org/standards/ecma-323/csta/ed5",
        }
    }

    /// Its short name (`ed3`).
    pub fn name(self) -> &'static str {
        match self {
            Edition::Ed2 => "ed2",
            Edition::Ed3 => "ed3",
            Edition::Ed4 => "ed4",
            Edition::Ed5 => "ed5",
        }
    }

    /// The edition a namespace names.
    pub fn from_namespace(ns: &str) -> Option<Self> {
        let ns = ns.trim().trim_end_matches('/');
        [Edition::Ed2, Edition::Ed3, Edition::Ed4, Edition::Ed5]
            .into_iter()
            .find(|e| e.namespace() == ns)
    }
}

/// The ECMA-354 application-session namespace.
pub const SESSION_NAMESPACE: &str =
    "http://www.ecma-international.org/standards/ecma-354/appl_session";

/// A call-control service the cloud asks for on a user's behalf (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// Call `called` from `calling` (the user's phone rings or goes off
    /// hook, then the far end is called).
    MakeCall {
        /// The user's device.
        calling: DeviceId,
        /// The number to call.
        called: String,
    },
    /// Answer a call alerting at the connection's device.
    AnswerCall(ConnectionId),
    /// Hang up the connection's device from the call.
    ClearConnection(ConnectionId),
    /// Put the call on hold at the connection's device.
    HoldCall(ConnectionId),
    /// Take a held call back.
    RetrieveCall(ConnectionId),
    /// Hold `existing` and call `consulted` from the same device.
    ConsultationCall {
        /// The call to hold.
        existing: ConnectionId,
        /// Who to consult.
        consulted: String,
    },
    /// Join the held call and the active call, leaving the transferring
    /// device out.
    TransferCall {
        /// The held call.
        held: ConnectionId,
        /// The active (consultation) call.
        active: ConnectionId,
    },
    /// Turn a device's message-waiting lamp on or off.
    SetMessageWaiting {
        /// The device.
        device: DeviceId,
        /// Lamp on (messages waiting) or off.
        on: bool,
    },
}

impl Service {
    /// The ECMA-269 service name.
    pub fn name(&self) -> &'static str {
        match self {
            Service::MakeCall { .. } => "MakeCall",
            Service::AnswerCall(_) => "AnswerCall",
            Service::ClearConnection(_) => "ClearConnection",
            Service::HoldCall(_) => "HoldCall",
            Service::RetrieveCall(_) => "RetrieveCall",
            Service::ConsultationCall { .. } => "ConsultationCall",
            Service::TransferCall { .. } => "TransferCall",
            Service::SetMessageWaiting { .. } => "SetMessageWaitingIndicator",
        }
    }

    /// The device on whose behalf it acts (its CSTA server carries it).
    pub fn device(&self) -> &str {
        match self {
            Service::MakeCall { calling, .. } => calling,
            Service::AnswerCall(c)
            | Service::ClearConnection(c)
            | Service::HoldCall(c)
            | Service::RetrieveCall(c) => &c.device,
            Service::ConsultationCall { existing, .. } => &existing.device,
            Service::TransferCall { held, .. } => &held.device,
            Service::SetMessageWaiting { device, .. } => device,
        }
    }
}

/// What the gateway sends the PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Opens the application session (ECMA-354).
    StartApplicationSession {
        /// Who we are.
        application_id: String,
        /// A CTI user and password, for PBXs that want them (MiVoice
        /// Office 400).
        login: Option<(String, String)>,
        /// Seconds the session lives without a reset.
        duration_s: u32,
        /// Editions we speak, preferred first.
        editions: Vec<Edition>,
    },
    /// Keeps the session alive.
    ResetApplicationSessionTimer {
        /// The session.
        session_id: String,
        /// Seconds asked for.
        duration_s: u32,
    },
    /// Closes the session.
    StopApplicationSession {
        /// The session.
        session_id: String,
    },
    /// Starts monitoring a device's calls.
    MonitorStart {
        /// The device.
        device: DeviceId,
    },
    /// Stops a monitor.
    MonitorStop {
        /// The monitor's cross reference id.
        cross_ref: String,
    },
    /// A call-control service.
    Service(Service),
    /// The answer to the PBX's `SystemStatus`.
    SystemStatusResponse,
}

impl Outgoing {
    /// The XML, in `edition`'s namespace.
    pub fn to_xml(&self, edition: Edition) -> String {
        let ns = edition.namespace();
        let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
        let conn = |tag: &str, c: &ConnectionId| {
            format!(
                "<{tag}><callID>{}</callID><deviceID>{}</deviceID></{tag}>",
                escape(&c.call),
                escape(&c.device)
            )
        };
        match self {
            Outgoing::StartApplicationSession {
                application_id,
                login,
                duration_s,
                editions,
            } => {
                let login = login.as_ref().map_or(String::new(), |(u, p)| {
                    format!(
                        "<applicationSpecificInfo><SessionLoginInfo><userName>{}</userName><password>{}</password></SessionLoginInfo></applicationSpecificInfo>",
                        escape(u),
                        escape(p)
                    )
                });
                let versions: String = editions
                    .iter()
                    .map(|e| format!("<protocolVersion>{}</protocolVersion>", e.namespace()))
                    .collect();
                format!(
                    "{head}<StartApplicationSession xmlns=\"{SESSION_NAMESPACE}\"><applicationInfo><applicationID>{}</applicationID>{login}</applicationInfo><requestedProtocolVersions>{versions}</requestedProtocolVersions><requestedSessionDuration>{duration_s}</requestedSessionDuration></StartApplicationSession>",
                    escape(application_id)
                )
            }
            Outgoing::ResetApplicationSessionTimer {
                session_id,
                duration_s,
            } => format!(
                "{head}<ResetApplicationSessionTimer xmlns=\"{SESSION_NAMESPACE}\"><sessionID>{}</sessionID><requestedSessionDuration>{duration_s}</requestedSessionDuration></ResetApplicationSessionTimer>",
                escape(session_id)
            ),
            Outgoing::StopApplicationSession { session_id } => format!(
                "{head}<StopApplicationSession xmlns=\"{SESSION_NAMESPACE}\"><sessionID>{}</sessionID><sessionEndReason><definedEndReason>normal</definedEndReason></sessionEndReason></StopApplicationSession>",
                escape(session_id)
            ),
            Outgoing::MonitorStart { device } => format!(
                "{head}<MonitorStart xmlns=\"{ns}\"><monitorObject><deviceObject>{}</deviceObject></monitorObject><monitorType>device</monitorType></MonitorStart>",
                escape(device)
            ),
            Outgoing::MonitorStop { cross_ref } => format!(
                "{head}<MonitorStop xmlns=\"{ns}\"><monitorCrossRefID>{}</monitorCrossRefID></MonitorStop>",
                escape(cross_ref)
            ),
            Outgoing::SystemStatusResponse => {
                format!("{head}<SystemStatusResponse xmlns=\"{ns}\"/>")
            }
            Outgoing::Service(s) => {
                let body = match s {
                    Service::MakeCall { calling, called } => format!(
                        "<callingDevice>{}</callingDevice><calledDirectoryNumber>{}</calledDirectoryNumber><autoOriginate>doNotPrompt</autoOriginate>",
                        escape(calling),
                        escape(called)
                    ),
                    Service::AnswerCall(c) => conn("callToBeAnswered", c),
                    Service::ClearConnection(c) => conn("connectionToBeCleared", c),
                    Service::HoldCall(c) => conn("callToBeHeld", c),
                    Service::RetrieveCall(c) => conn("callToBeRetrieved", c),
                    Service::ConsultationCall {
                        existing,
                        consulted,
                    } => format!(
                        "{}<consultedDevice>{}</consultedDevice>",
                        conn("existingCall", existing),
                        escape(consulted)
                    ),
                    Service::TransferCall { held, active } => {
                        format!("{}{}", conn("heldCall", held), conn("activeCall", active))
                    }
                    Service::SetMessageWaiting { device, on } => format!(
                        "<device>{}</device><messageWaitingOn>{on}</messageWaitingOn>",
                        escape(device)
                    ),
                };
                format!("{head}<{0} xmlns=\"{ns}\">{body}</{0}>", s.name())
            }
        }
    }
}

/// The category of a `CSTAErrorCode` (ECMA-269 §12.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCategory {
    /// The request itself is wrong (a device or call the PBX does not know).
    Operation,
    /// Not allowed for this application or device.
    Security,
    /// The call or device is not in a state that allows it.
    StateIncompatibility,
    /// The PBX lacks a resource right now.
    SystemResourceAvailability,
    /// The device or subscription lacks a feature.
    SubscribedResourceAvailability,
    /// The PBX is overloaded.
    PerformanceManagement,
    /// Vendor-specific.
    PrivateData,
    /// No category given.
    Unspecified,
}

impl ErrorCategory {
    const NAMES: [(&'static str, ErrorCategory); 8] = [
        ("operation", ErrorCategory::Operation),
        ("security", ErrorCategory::Security),
        ("stateIncompatibility", ErrorCategory::StateIncompatibility),
        (
            "systemResourceAvailability",
            ErrorCategory::SystemResourceAvailability,
        ),
        (
            "subscribedResourceAvailability",
            ErrorCategory::SubscribedResourceAvailability,
        ),
        (
            "performanceManagement",
            ErrorCategory::PerformanceManagement,
        ),
        ("privateData", ErrorCategory::PrivateData),
        ("unspecified", ErrorCategory::Unspecified),
    ];

    /// Its XML name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("unspecified", |(n, _)| n)
    }

    fn from_name(n: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(x, _)| *x == n).map(|(_, c)| *c)
    }
}

/// A `CSTAErrorCode`: the PBX refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CstaError {
    /// Its category.
    pub category: ErrorCategory,
    /// The value within it (`invalidCalledDevice`), as sent.
    pub value: String,
}

impl CstaError {
    /// What it means for an operator.
    pub fn meaning(&self) -> &'static str {
        match (self.category, self.value.as_str()) {
            (ErrorCategory::Operation, "invalidCallingDevice" | "invalidDeviceID") => {
                "the PBX does not know this device"
            }
            (
                ErrorCategory::Operation,
                "invalidCalledDevice" | "invalidDestination" | "invalidDestinationDevice",
            ) => "the number called is not valid",
            (ErrorCategory::Operation, "invalidConnectionID" | "invalidCallID") => {
                "no such call at that device (it may have ended)"
            }
            (ErrorCategory::Operation, "invalidMonitorObject" | "invalidMonitorCrossRefID") => {
                "the PBX cannot monitor this device"
            }
            (ErrorCategory::StateIncompatibility, _) => {
                "the call or device is not in a state that allows this"
            }
            (ErrorCategory::Security, _) => {
                "the PBX does not allow this: check the CTI user's rights on the PBX"
            }
            (
                ErrorCategory::SystemResourceAvailability | ErrorCategory::PerformanceManagement,
                _,
            ) => "the PBX is busy: try again",
            (ErrorCategory::SubscribedResourceAvailability, _) => {
                "the device lacks this feature on the PBX"
            }
            _ => "the PBX refused the request",
        }
    }
}

impl fmt::Display for CstaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({})",
            self.category.name(),
            self.value,
            self.meaning()
        )
    }
}

/// Why the PBX refused the application session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    /// The CTI user or password is wrong.
    WrongCredential,
    /// Any other reason, as the PBX gave it.
    Other(String),
}

impl fmt::Display for SessionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionRefusal::WrongCredential => f.write_str("wrong credential"),
            SessionRefusal::Other(r) => write!(f, "session refused: {r}"),
        }
    }
}

/// What an event reports (ECMA-269 §17 call control, §21 logical device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The device went off hook or a service started a call there.
    ServiceInitiated,
    /// The device is calling out.
    Originated,
    /// A device is alerting (ringing).
    Delivered,
    /// A device answered.
    Established,
    /// A device put the call on hold.
    Held,
    /// A device took the held call back.
    Retrieved,
    /// A device left the call.
    ConnectionCleared,
    /// The whole call ended.
    CallCleared,
    /// A device transferred the call.
    Transferred,
    /// Calls were joined into a conference.
    Conferenced,
    /// The call went elsewhere (forwarding, pickup).
    Diverted,
    /// The call could not reach its destination (busy, unreachable).
    Failed,
    /// A device's message-waiting lamp changed.
    MessageWaiting,
    /// Another event, by name.
    Other(String),
}

impl EventKind {
    fn from_root(name: &str) -> Option<Self> {
        let base = name.strip_suffix("Event")?;
        Some(match base {
            "ServiceInitiated" => EventKind::ServiceInitiated,
            "Originated" => EventKind::Originated,
            "Delivered" => EventKind::Delivered,
            "Established" => EventKind::Established,
            "Held" => EventKind::Held,
            "Retrieved" => EventKind::Retrieved,
            "ConnectionCleared" => EventKind::ConnectionCleared,
            "CallCleared" => EventKind::CallCleared,
            // ECMA-269 spells it with one r; some PBXs with two.
            "Transfered" | "Transferred" => EventKind::Transferred,
            "Conferenced" => EventKind::Conferenced,
            "Diverted" => EventKind::Diverted,
            "Failed" => EventKind::Failed,
            "MessageWaiting" => EventKind::MessageWaiting,
            _ => EventKind::Other(name.to_owned()),
        })
    }

    /// A short name (`delivered`).
    pub fn name(&self) -> &str {
        match self {
            EventKind::ServiceInitiated => "service_initiated",
            EventKind::Originated => "originated",
            EventKind::Delivered => "delivered",
            EventKind::Established => "established",
            EventKind::Held => "held",
            EventKind::Retrieved => "retrieved",
            EventKind::ConnectionCleared => "connection_cleared",
            EventKind::CallCleared => "call_cleared",
            EventKind::Transferred => "transferred",
            EventKind::Conferenced => "conferenced",
            EventKind::Diverted => "diverted",
            EventKind::Failed => "failed",
            EventKind::MessageWaiting => "message_waiting",
            EventKind::Other(n) => n,
        }
    }
}

/// An unsolicited event from a monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The monitor it came from.
    pub cross_ref: String,
    /// The connection it is about (for a transfer: the primary old call).
    pub connection: Option<ConnectionId>,
    /// The device that acted or changed (alerting, answering, holding,
    /// releasing, failing, transferring device; MWI target).
    pub subject: Option<DeviceId>,
    /// The calling device, when given.
    pub calling: Option<DeviceId>,
    /// The called device, when given.
    pub called: Option<DeviceId>,
    /// The cause (`newCall`, `normalClearing`, `busy`, `transfer`, …).
    pub cause: Option<String>,
    /// A transfer's secondary old call.
    pub secondary: Option<ConnectionId>,
    /// Where a transfer went.
    pub transferred_to: Option<DeviceId>,
    /// A transfer's or conference's resulting connections.
    pub new_connections: Vec<ConnectionId>,
    /// A message-waiting event's lamp.
    pub message_waiting: Option<bool>,
}

/// What the PBX sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The application session is open.
    SessionStarted {
        /// Its id.
        session_id: String,
        /// Seconds it lives without a reset, when the PBX says.
        duration_s: Option<u32>,
        /// The edition the PBX chose, when it says.
        edition: Option<Edition>,
    },
    /// The PBX refused the session.
    SessionRefused(SessionRefusal),
    /// The session timer was reset.
    TimerReset {
        /// Seconds granted, when the PBX says.
        duration_s: Option<u32>,
    },
    /// The PBX refused to reset the timer (the session is gone).
    TimerRefused(String),
    /// The session was stopped (by us or the PBX).
    SessionStopped,
    /// A monitor started.
    MonitorStarted {
        /// Its cross reference id.
        cross_ref: String,
    },
    /// A monitor stopped.
    MonitorStopped,
    /// A service's positive response.
    Done {
        /// The response's name (`MakeCallResponse`).
        name: String,
        /// The call it made, for MakeCall and ConsultationCall.
        call: Option<ConnectionId>,
    },
    /// The PBX refused a request.
    Error(CstaError),
    /// An event.
    Event(Box<Event>),
    /// The PBX asks whether we are alive (answer `SystemStatusResponse`).
    SystemStatus {
        /// Its status (`normal`, `initializing`, …).
        status: String,
    },
    /// A message the gateway does not use, by name.
    Unknown {
        /// Its root element's name.
        name: String,
    },
}

/// Why a well-formed message still cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A field the message cannot be used without.
    #[error("{message} without {field}")]
    Missing {
        /// The message.
        message: String,
        /// The missing element.
        field: &'static str,
    },
    /// A field with a value that does not parse.
    #[error("{message}: {field} {value:?} is not valid")]
    Invalid {
        /// The message.
        message: String,
        /// The element.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// A device element's identifier: its text, or its `deviceIdentifier`
/// child's; none for `notKnown`/`notRequired`/empty.
fn device(e: &Element) -> Option<DeviceId> {
    if !e.text.is_empty() {
        return Some(e.text.clone());
    }
    [
        "deviceIdentifier",
        "deviceID",
        "deviceNumber",
        "implicitPublic",
        "explicitPublic",
    ]
    .iter()
    .find_map(|n| e.find(n).filter(|d| !d.text.is_empty()))
    .map(|d| d.text.clone())
}

fn device_at(root: &Element, name: &str) -> Option<DeviceId> {
    root.child(name).and_then(device)
}

fn connection(e: &Element) -> Option<ConnectionId> {
    let call = e.text_at(&["callID"])?.to_owned();
    let device = e.child("deviceID").and_then(device).unwrap_or_default();
    Some(ConnectionId { call, device })
}

fn connection_at(root: &Element, name: &str) -> Option<ConnectionId> {
    root.child(name).and_then(connection)
}

fn seconds(root: &Element, name: &str) -> Result<Option<u32>, MessageError> {
    match root.text_at(&[name]) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| MessageError::Invalid {
            message: root.name.clone(),
            field: "a duration",
            value: v.chars().take(40).collect(),
        }),
    }
}

/// What the message `root` says.
pub fn decode(root: &Element) -> Result<Incoming, MessageError> {
    let name = root.name.as_str();
    let missing = |field: &'static str| MessageError::Missing {
        message: name.to_owned(),
        field,
    };
    Ok(match name {
        "StartApplicationSessionPosResponse" => Incoming::SessionStarted {
            session_id: root
                .text_at(&["sessionID"])
                .ok_or_else(|| missing("sessionID"))?
                .to_owned(),
            duration_s: seconds(root, "actualSessionDuration")?,
            edition: root
                .text_at(&["actualProtocolVersion"])
                .and_then(Edition::from_namespace),
        },
        "StartApplicationSessionNegResponse" => {
            Incoming::SessionRefused(refusal(root.child("errorCode").unwrap_or(root)))
        }
        "ResetApplicationSessionTimerPosResponse" => Incoming::TimerReset {
            duration_s: seconds(root, "actualSessionDuration")?,
        },
        "ResetApplicationSessionTimerNegResponse" => {
            Incoming::TimerRefused(refusal(root.child("errorCode").unwrap_or(root)).to_string())
        }
        "StopApplicationSession" | "StopApplicationSessionPosResponse" => Incoming::SessionStopped,
        "MonitorStartResponse" => Incoming::MonitorStarted {
            cross_ref: root
                .text_at(&["monitorCrossRefID"])
                .ok_or_else(|| missing("monitorCrossRefID"))?
                .to_owned(),
        },
        "MonitorStopResponse" => Incoming::MonitorStopped,
        "CSTAErrorCode" => {
            let (category, value) = match root.children.first() {
                Some(c) => (
                    ErrorCategory::from_name(&c.name).unwrap_or(ErrorCategory::Unspecified),
                    if c.text.is_empty() {
                        c.children
                            .first()
                            .map_or("generic".to_owned(), |v| v.name.clone())
                    } else {
                        c.text.clone()
                    },
                ),
                None => (ErrorCategory::Unspecified, "generic".to_owned()),
            };
            Incoming::Error(CstaError { category, value })
        }
        "SystemStatus" => Incoming::SystemStatus {
            status: root
                .text_at(&["systemStatus"])
                .unwrap_or("normal")
                .to_owned(),
        },
        "MakeCallResponse" => Incoming::Done {
            name: name.to_owned(),
            call: Some(
                connection_at(root, "callingDevice").ok_or_else(|| missing("callingDevice"))?,
            ),
        },
        "ConsultationCallResponse" => Incoming::Done {
            name: name.to_owned(),
            call: Some(
                connection_at(root, "initiatedCall").ok_or_else(|| missing("initiatedCall"))?,
            ),
        },
        "TransferCallResponse" => Incoming::Done {
            name: name.to_owned(),
            call: connection_at(root, "transferredCall"),
        },
        n if n.ends_with("Response") => Incoming::Done {
            name: n.to_owned(),
            call: None,
        },
        n => match EventKind::from_root(n) {
            Some(kind) => Incoming::Event(Box::new(
                event(root, kind).ok_or_else(|| missing("monitorCrossRefID"))?,
            )),
            None => Incoming::Unknown { name: n.to_owned() },
        },
    })
}

fn refusal(error: &Element) -> SessionRefusal {
    let text = error
        .text_at(&["definedError"])
        .or_else(|| error.text_at(&["applicationSpecific"]))
        .map(str::to_owned)
        .or_else(|| {
            error.children.first().map(|c| {
                if c.text.is_empty() {
                    c.name.clone()
                } else {
                    c.text.clone()
                }
            })
        })
        .unwrap_or_else(|| "no reason given".to_owned());
    let lower = text.to_ascii_lowercase();
    if text == "invalidApplicationInfo"
        || lower.contains("credential")
        || lower.contains("password")
        || lower.contains("authenticat")
    {
        SessionRefusal::WrongCredential
    } else {
        SessionRefusal::Other(text.chars().take(200).collect())
    }
}

fn event(root: &Element, kind: EventKind) -> Option<Event> {
    let cross_ref = root.text_at(&["monitorCrossRefID"])?.to_owned();
    let first_connection = |names: &[&str]| names.iter().find_map(|n| connection_at(root, n));
    let first_device = |names: &[&str]| names.iter().find_map(|n| device_at(root, n));
    let (connection, subject) = match &kind {
        EventKind::ServiceInitiated => (
            first_connection(&["initiatedConnection", "connection"]),
            first_device(&["initiatingDevice"]),
        ),
        EventKind::Originated => (
            first_connection(&["originatedConnection", "connection"]),
            first_device(&["callingDevice"]),
        ),
        EventKind::Delivered => (
            first_connection(&["connection"]),
            first_device(&["alertingDevice"]),
        ),
        EventKind::Established => (
            first_connection(&["establishedConnection", "connection"]),
            first_device(&["answeringDevice"]),
        ),
        EventKind::Held => (
            first_connection(&["heldConnection", "connection"]),
            first_device(&["holdingDevice"]),
        ),
        EventKind::Retrieved => (
            first_connection(&["retrievedConnection", "connection"]),
            first_device(&["retrievingDevice"]),
        ),
        EventKind::ConnectionCleared => (
            first_connection(&["droppedConnection", "connection"]),
            first_device(&["releasingDevice"]),
        ),
        EventKind::CallCleared => (first_connection(&["clearedCall", "connection"]), None),
        EventKind::Transferred => (
            first_connection(&["primaryOldCall"]),
            first_device(&["transferringDevice"]),
        ),
        EventKind::Conferenced => (
            first_connection(&["primaryOldCall"]),
            first_device(&["conferencingDevice"]),
        ),
        EventKind::Diverted => (
            first_connection(&["connection"]),
            first_device(&["divertingDevice", "newDestination"]),
        ),
        EventKind::Failed => (
            first_connection(&["failedConnection", "connection"]),
            first_device(&["failingDevice"]),
        ),
        EventKind::MessageWaiting => (None, first_device(&["targetDevice", "device"])),
        EventKind::Other(_) => (first_connection(&["connection"]), None),
    };
    let new_connections = root
        .child("transferredConnections")
        .or_else(|| root.child("conferenceConnections"))
        .map(|list| {
            list.children_named("connectionListItem")
                .filter_map(|item| connection_at(item, "newConnection"))
                .collect()
        })
        .unwrap_or_default();
    Some(Event {
        cross_ref,
        connection,
        subject,
        calling: device_at(root, "callingDevice"),
        called: device_at(root, "calledDevice"),
        cause: root.text_at(&["cause"]).map(str::to_owned),
        secondary: connection_at(root, "secondaryOldCall"),
        transferred_to: device_at(root, "transferredToDevice"),
        new_connections,
        message_waiting: root
            .text_at(&["messageWaitingOn"])
            .map(|v| v == "true" || v == "1"),
        kind,
    })
}

/// The dialable number in a device id: `N<3021061290002>;noa=nk` →
/// `3021061290002`, `tel:+3222220220` → `+3222220220`,
/// `sip:1000@pbx` → `1000`; plain numbers as they are.
pub fn number(device: &str) -> &str {
    let d = device.trim();
    if let Some(rest) = d.strip_prefix("N<") {
        return rest.split('>').next().unwrap_or(rest);
    }
    let d = d
        .strip_prefix("tel:")
        .or_else(|| d.strip_prefix("sip:"))
        .or_else(|| d.strip_prefix("sips:"))
        .unwrap_or(d);
    d.split(['@', ';']).next().unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn incoming(xml: &str) -> Incoming {
        decode(&parse(xml.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn requests_are_written_in_the_chosen_edition_and_escaped() {
        let x = Outgoing::Service(Service::MakeCall {
            calling: "1000".into(),
            called: "0<9>&".into(),
        })
        .to_xml(Edition::Ed4);
        assert!(x.contains(
            "<MakeCall xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed4\">"
        ));
        assert!(x.contains("<calledDirectoryNumber>0&lt;9&gt;&amp;</calledDirectoryNumber>"));
        // Our own writing reads back.
        let back = parse(x.as_bytes()).unwrap();
        assert_eq!(back.text_at(&["calledDirectoryNumber"]), Some("0<9>&"));
        let s = Outgoing::StartApplicationSession {
            application_id: "pbxlink".into(),
            login: Some(("cloudlink".into(), "p<w".into())),
            duration_s: 180,
            editions: vec![Edition::Ed3],
        }
        .to_xml(Edition::Ed3);
        let s = parse(s.as_bytes()).unwrap();
        assert_eq!(s.namespace.as_deref(), Some(SESSION_NAMESPACE));
        assert_eq!(s.find("password").unwrap().text, "p<w");
    }

    #[test]
    fn an_error_code_is_typed_and_explained() {
        let Incoming::Error(e) = incoming(
            "<CSTAErrorCode xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><operation>invalidCalledDevice</operation></CSTAErrorCode>",
        ) else {
            panic!()
        };
        assert_eq!(e.category, ErrorCategory::Operation);
        assert_eq!(
            e.to_string(),
            "operation/invalidCalledDevice (the number called is not valid)"
        );
        let Incoming::Error(e) = incoming(
            "<CSTAErrorCode><privateErrorCode>URM Denied</privateErrorCode></CSTAErrorCode>",
        ) else {
            panic!()
        };
        assert_eq!(
            (e.category, e.value.as_str()),
            (ErrorCategory::Unspecified, "URM Denied")
        );
    }

    #[test]
    fn a_response_missing_what_it_must_carry_is_an_error_not_a_guess() {
        let e = decode(
            &parse(b"<MakeCallResponse><calledDevice>1001</calledDevice></MakeCallResponse>")
                .unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "MakeCallResponse without callingDevice");
        let e = decode(
            &parse(b"<DeliveredEvent><connection><callID>1</callID></connection></DeliveredEvent>")
                .unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "DeliveredEvent without monitorCrossRefID");
        let e = decode(&parse(b"<StartApplicationSessionPosResponse><sessionID>1</sessionID><actualSessionDuration>ever</actualSessionDuration></StartApplicationSessionPosResponse>").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("\"ever\" is not valid"), "{e}");
    }

    #[test]
    fn numbers_are_found_in_richer_device_ids() {
        assert_eq!(number("N<3021061290002>;noa=nk"), "3021061290002");
        assert_eq!(number("tel:+3222220220"), "+3222220220");
        assert_eq!(number("sip:1000@pbx.example;user=phone"), "1000");
        assert_eq!(number(" 1000 "), "1000");
    }
}
