//! Events for the cloud platform: what calls, the CSTA link and alarms
//! hand over, and the tunnel takes from. A type below all of them, so
//! producers name it without naming the tunnel.

use serde_json::Value;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where producers put events for the platform. Never blocks, never
/// drops: the outbox's bound applies once they are written.
#[derive(Debug, Clone)]
pub struct EventSink(mpsc::UnboundedSender<(String, u64, Value)>);

impl EventSink {
    /// A sink and the driver's end of it.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<(String, u64, Value)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// An event of `kind` with `body`, now.
    pub fn emit(&self, kind: &str, body: Value) {
        let _ = self.0.send((kind.to_owned(), unix_ms(), body));
    }
}
