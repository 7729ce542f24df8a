//! The running tunnel as the rest of the node holds it: ask for a user
//! sync, stop it, read its state. The driver (the parent module) owns the
//! other ends; this handle names nothing of the node's, so the admin page
//! and the operations it offers can hold one without importing the driver.

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(super) enum Ask {
    Sync(oneshot::Sender<Value>),
    Stop(oneshot::Sender<()>),
}

#[derive(Debug, Default)]
pub(super) struct View {
    pub(super) state: String,
    pub(super) session: Option<String>,
    pub(super) backlog: usize,
    pub(super) acked: u64,
    pub(super) last_id: u64,
    pub(super) dropped: u64,
    pub(super) write_failures: u64,
    pub(super) events_sent: u64,
    pub(super) acks_beyond_sent: u64,
    pub(super) commands: u64,
    pub(super) syncs: u64,
    pub(super) connects: u64,
}

/// The running tunnel, as the admin API holds it.
#[derive(Clone)]
pub struct Tunnel {
    pub(super) asks: mpsc::Sender<Ask>,
    pub(super) view: Arc<Mutex<View>>,
    pub(super) gateway: String,
}

impl Tunnel {
    /// Runs a user sync now; its report.
    pub async fn sync_now(&self) -> Option<Value> {
        let (tx, rx) = oneshot::channel();
        self.asks.send(Ask::Sync(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Writes what is queued to the outbox and stops (at shutdown).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.asks.send(Ask::Stop(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }

    /// Its state, for `/api/status` and `/api/tunnel`.
    pub fn json(&self) -> Value {
        let v = self.view.lock().expect("tunnel view");
        json!({
            "state": v.state,
            "gateway": self.gateway,
            "session": v.session,
            "backlog": v.backlog,
            "acked": v.acked,
            "last_id": v.last_id,
            "outbox_dropped": v.dropped,
            "outbox_write_failures": v.write_failures,
            "events_sent": v.events_sent,
            "acks_beyond_sent": v.acks_beyond_sent,
            "commands": v.commands,
            "syncs": v.syncs,
            "connects": v.connects,
        })
    }
}
