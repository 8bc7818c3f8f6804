//! Transparent mode in the runtime: the motes' own broker connections, by client id.
//!
//! The core asks for them with [`BrokerCommand`]s ([`Gateway::poll_mote`]); this opens, feeds
//! and closes one [`MoteLink`] per mote and hands their events back
//! ([`Gateway::handle_mote`]).
//!
//! Each link is given a generation number. A link that is replaced (a new `Connect` for the
//! same client id) or closed may still have events on their way; they carry the old
//! generation and are dropped here, so that the core never hears a stale `Disconnected`
//! about a connection that has already been replaced.
//!
//! [`Gateway::poll_mote`]: crate::core::Gateway::poll_mote
//! [`Gateway::handle_mote`]: crate::core::Gateway::handle_mote

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::broker::{
    MoteConnect, MoteConnector, MoteLink, MoteLinkError, MoteReport, TransparentSettings,
};
use crate::core::{BrokerCommand, BrokerEvent};

/// Events of all mote links waiting for the runtime; a full queue makes the links wait
/// (backpressure on reading from the broker).
const REPORT_QUEUE: usize = 4096;
/// How long [`TransparentLinks::shutdown`] waits for the DISCONNECTs to be written.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// One open link.
#[derive(Debug)]
struct Entry {
    generation: u64,
    link: MoteLink,
}

/// The motes' own broker connections (transparent mode).
#[derive(Debug)]
pub struct TransparentLinks {
    connector: Arc<MoteConnector>,
    links: HashMap<Arc<str>, Entry>,
    /// Links being closed, until they end: a new connection for the same client id waits
    /// for the old one to be gone.
    closing: HashMap<Arc<str>, JoinHandle<()>>,
    /// `closing` is swept of ended links when it reaches this size.
    sweep_at: usize,
    next_generation: u64,
    reports_tx: mpsc::Sender<MoteReport>,
    reports: mpsc::Receiver<MoteReport>,
}

impl TransparentLinks {
    /// Reads the TLS files and sets up the shared state; no connection is opened until the
    /// core asks. Errors name the file and the option.
    pub fn start(settings: &TransparentSettings) -> Result<TransparentLinks, MoteLinkError> {
        let connector = Arc::new(MoteConnector::new(settings)?);
        let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
        Ok(TransparentLinks {
            connector,
            links: HashMap::new(),
            closing: HashMap::new(),
            sweep_at: 64,
            next_generation: 0,
            reports_tx,
            reports,
        })
    }

    /// Carries out a command of the core for the mote `client_id`. A `Connect` replaces the
    /// mote's open connection (closed cleanly first); other commands for a mote without a
    /// connection are dropped (the core sends `Connect` first, and a refused connection's
    /// task has ended).
    pub fn send(&mut self, client_id: Arc<str>, command: BrokerCommand) {
        match command {
            BrokerCommand::Connect {
                keep_alive,
                clean_session,
                will,
                own_login,
            } => {
                let previous = match self.links.remove(&client_id) {
                    Some(old) => Some(old.link.close(true)),
                    None => self.closing.remove(&client_id),
                };
                self.next_generation += 1;
                let generation = self.next_generation;
                let connect = MoteConnect {
                    keep_alive,
                    clean_session,
                    will,
                    own_login,
                };
                let link = self.connector.open(
                    client_id.clone(),
                    generation,
                    connect,
                    previous,
                    self.reports_tx.clone(),
                );
                self.links.insert(client_id, Entry { generation, link });
            }
            BrokerCommand::Close { graceful } => match self.links.remove(&client_id) {
                Some(entry) => {
                    let task = entry.link.close(graceful);
                    self.closing.insert(client_id, task);
                    self.sweep();
                }
                None => debug!(%client_id, "no broker connection for this mote to close"),
            },
            command => {
                let sent = self
                    .links
                    .get(&client_id)
                    .is_some_and(|entry| entry.link.command(command));
                if !sent {
                    debug!(%client_id, "no broker connection for this mote; command dropped");
                    if let Some(entry) = self.links.remove(&client_id) {
                        self.closing.insert(client_id, entry.link.close(false));
                    }
                }
            }
        }
    }

    /// The next event of a current link (stale ones are dropped, see the module docs).
    pub async fn recv(&mut self) -> Option<(Arc<str>, BrokerEvent)> {
        loop {
            let report = self.reports.recv().await?;
            if let Some(event) = self.accept(report) {
                return Some(event);
            }
        }
    }

    /// Like [`TransparentLinks::recv`], without waiting.
    pub fn try_recv(&mut self) -> Option<(Arc<str>, BrokerEvent)> {
        loop {
            let report = self.reports.try_recv().ok()?;
            if let Some(event) = self.accept(report) {
                return Some(event);
            }
        }
    }

    /// Open links (connected, connecting or reconnecting).
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether no link is open.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Closes every link cleanly (DISCONNECT: the gateway stopping is not the motes being
    /// lost, so the broker discards their Wills), waits a few seconds for that, then drops
    /// whatever is left.
    pub async fn shutdown(mut self) {
        let mut tasks: Vec<JoinHandle<()>> = self.closing.drain().map(|(_, task)| task).collect();
        tasks.extend(self.links.drain().map(|(_, entry)| entry.link.close(true)));
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, all).await.is_err() {
            for abort in aborts {
                abort.abort();
            }
        }
    }

    fn accept(&mut self, report: MoteReport) -> Option<(Arc<str>, BrokerEvent)> {
        let current = self
            .links
            .get(&report.client_id)
            .is_some_and(|entry| entry.generation == report.generation);
        if !current {
            return None;
        }
        if let BrokerEvent::Refused(_) = report.event {
            // The link has given up and its task is ending.
            self.links.remove(&report.client_id);
        }
        Some((report.client_id, report.event))
    }

    /// Forgets closed links that have ended, once in a while.
    fn sweep(&mut self) {
        if self.closing.len() >= self.sweep_at {
            self.closing.retain(|_, task| !task.is_finished());
            self.sweep_at = (self.closing.len() * 2).max(64);
        }
    }
}
