//! What every transaction is and says: its transport, its states (RFC 3261
//! §17, RFC 6026), the events it reports and its outputs.

/// Whether the transport retransmits by itself (TCP, TLS) or not (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the transaction retransmits.
    Unreliable,
    /// TCP/TLS: no retransmission; wait timers are zero.
    Reliable,
}

/// Transaction states (RFC 3261 §17, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE client: request sent, nothing back.
    Calling,
    /// Non-INVITE: request sent (client) or received (server), no response.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response was received or sent; absorbing retransmissions.
    Completed,
    /// INVITE server: ACK received for a non-2xx final.
    Confirmed,
    /// INVITE (RFC 6026): a 2xx was received or sent; absorbing retransmissions.
    Accepted,
    /// Done; the transaction can be dropped.
    Terminated,
}

/// What a transaction reports to its user (the transaction user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response passed up (client), with its status code.
    Response(u16),
    /// A request retransmission was absorbed (server).
    Absorbed,
    /// Timer B/F: no final response in time (client), or Timer H: no ACK (server).
    Timeout,
    /// The ACK for a non-2xx final arrived (INVITE server).
    Acked,
    /// The transaction ended.
    Terminated,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes on the transaction's transport.
    Transmit(Vec<u8>),
    /// Tell the transaction user.
    Event(Event),
}
