//! The rumqttc connection that transparent mode's per-mote links (`mote_link.rs`) run on: a
//! rumqttc client and event loop per connection, their event loop polled by a task of its own.
//! (The aggregating link runs on the gateway's own codec loop, `connection.rs`; the mote links
//! stay here until they move too.)
//!
//! Each connection gets a brand-new rumqttc client and event loop. rumqttc's own replay of
//! unacknowledged publishes on reconnect is thereby never used: measured, it silently drops
//! its queue when the broker reports no session, and its open issues #1014/#1056 can leave an
//! event loop reconnecting without ever publishing again. The core replays everything
//! unacknowledged after each `Connected`, so a fresh client per connection loses nothing and
//! cannot livelock on stale state. A watchdog reconnects when acknowledgements stop coming.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::link::{valid_request, End};
use crate::core::{BrokerCommand, BrokerEvent, DeliveryId, MqttQoS, PublishId};

pub(super) fn to_rumqttc(qos: MqttQoS) -> QoS {
    match qos {
        MqttQoS::AtMostOnce => QoS::AtMostOnce,
        MqttQoS::AtLeastOnce => QoS::AtLeastOnce,
        MqttQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn from_rumqttc(qos: QoS) -> MqttQoS {
    match qos {
        QoS::AtMostOnce => MqttQoS::AtMostOnce,
        QoS::AtLeastOnce => MqttQoS::AtLeastOnce,
        QoS::ExactlyOnce => MqttQoS::ExactlyOnce,
    }
}

/// What the owner of a [`Connection`] (a mote's link, `mote_link.rs`) sends it.
pub(super) enum Input {
    /// A command from the core.
    Command(BrokerCommand),
    /// Hand what is queued to the broker, send DISCONNECT, and end.
    Disconnect,
}

/// How long a clean close may take to write DISCONNECT before the connection is dropped.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What rumqttc's event loop reported, in order, from the task that polls it.
type Polled = Result<Event, rumqttc::ConnectionError>;

/// Events queued between the polling task and the connection; a full queue makes the poller
/// wait, which stops reading from the broker (backpressure), never drops.
const POLLED_CAPACITY: usize = 32;

/// Polls rumqttc's event loop in a task of its own, forwarding every result, until the
/// connection fails or the receiver is gone.
///
/// Why a task: `EventLoop::poll` is not cancel-safe. It takes a request from its channel and
/// then awaits room in the socket's send buffer; dropping the future there (as a `select!`
/// does when another branch wins) drops the request: a QoS 0 message vanishes, a QoS 1/2
/// message is written nowhere yet reported as sent. Measured: about 0.1 % of QoS 0 messages
/// lost under overload (docs/benchmarks.md). Here the poll is never cancelled; the
/// connection's own `select!` waits on the channel, which is.
fn spawn_poller(mut eventloop: EventLoop) -> (mpsc::Receiver<Polled>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(POLLED_CAPACITY);
    let task = tokio::spawn(async move {
        loop {
            let polled = eventloop.poll().await;
            let failed = polled.is_err();
            if tx.send(polled).await.is_err() || failed {
                return;
            }
        }
    });
    (rx, task)
}

/// One live connection and the bookkeeping that maps rumqttc's packet ids to the core's ids.
pub(super) struct Connection {
    client: AsyncClient,
    /// What the polling task (see [`spawn_poller`]) reports.
    polled: mpsc::Receiver<Polled>,
    /// The polling task; aborted with the connection, which closes the socket.
    poller: JoinHandle<()>,
    /// Core ids of the publishes handed to rumqttc, in order; rumqttc reports each one's
    /// packet id, in the same order, as `Outgoing::Publish` when it writes it.
    publish_order: VecDeque<Option<PublishId>>,
    /// Packet id → core id of publishes awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    unacked: HashMap<u16, PublishId>,
    /// Packet id → core ids of QoS 2 publishes between PUBREC and PUBCOMP, oldest first:
    /// an id can be in release while a newer publish uses the same number.
    releasing: HashMap<u16, VecDeque<PublishId>>,
    /// Most QoS 1/2 publishes outstanding at once (broker.max_inflight).
    window: usize,
    subscribe_order: VecDeque<Arc<str>>,
    subscribes: HashMap<u16, Arc<str>>,
    /// Broker QoS 1/2 messages the core has not yet said it holds.
    deliveries: HashMap<u64, rumqttc::Publish>,
    next_delivery: u64,
    /// Commands rumqttc had no room for yet.
    backlog: VecDeque<BrokerCommand>,
    /// Last acknowledgement from the broker, for the watchdog.
    last_progress: Instant,
    stall_timeout: Duration,
    /// Transparent mode's small packet-id space (rumqttc's in-flight limit), `None` for the
    /// aggregating link's whole space: see [`Connection::pkid_blocked`].
    pkid_space: Option<u16>,
    /// The packet id rumqttc gave last (it counts 1, 2, ... `pkid_space`, then 1 again).
    last_pkid: u16,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The poller owns the socket: a dropped connection must not linger.
        self.poller.abort();
    }
}

impl Connection {
    /// A connection whose rumqttc client was made with `set_inflight(pkid_space)` (transparent
    /// mode: a small window per mote keeps 10 000 connections small).
    pub(super) fn with_limits(
        client: AsyncClient,
        eventloop: EventLoop,
        pkid_space: u16,
        stall_timeout: Duration,
    ) -> Self {
        let (polled, poller) = spawn_poller(eventloop);
        Connection {
            client,
            polled,
            poller,
            publish_order: VecDeque::new(),
            unacked: HashMap::new(),
            releasing: HashMap::new(),
            window: usize::from(pkid_space.max(1)),
            subscribe_order: VecDeque::new(),
            subscribes: HashMap::new(),
            deliveries: HashMap::new(),
            next_delivery: 0,
            backlog: VecDeque::new(),
            last_progress: Instant::now(),
            stall_timeout,
            pkid_space: Some(pkid_space.max(1)),
            last_pkid: 0,
        }
    }

    /// Runs the connection until it is lost, the owner is gone, or it was asked to close.
    /// `input` and `output` adapt the owner's channels (a mote link's carry [`Input`]s and
    /// events with its client id).
    pub(super) async fn run_with<C, E>(
        mut self,
        commands: &mut mpsc::UnboundedReceiver<C>,
        input: impl Fn(C) -> Input,
        events: &mpsc::Sender<E>,
        output: impl Fn(BrokerEvent) -> E,
    ) -> End {
        loop {
            self.flush_backlog();
            let waiting = self.outstanding() > 0;
            if !waiting {
                self.last_progress = Instant::now();
            }
            let stall_at = self.last_progress + self.stall_timeout;
            tokio::select! {
                polled = self.polled.recv() => match polled {
                    Some(Ok(event)) => {
                        if let Some(out) = self.on_event(event) {
                            if events.send(output(out)).await.is_err() {
                                return End::Shutdown;
                            }
                        }
                    }
                    None => return End::Reconnect,
                    Some(Err(error)) => {
                        if self.pkid_space.is_some() {
                            // A mote's link: one line per mote would flood the log when the
                            // broker goes away under 10 000 of them.
                            debug!(%error, "mote's broker connection lost");
                        } else {
                            warn!(%error, "broker connection lost; reconnecting");
                        }
                        return End::Reconnect;
                    }
                },
                command = commands.recv(), if self.backlog.is_empty() => match command.map(&input) {
                    Some(Input::Command(command)) => self.backlog.push_back(command),
                    // The backlog is empty: everything before it is with rumqttc already.
                    Some(Input::Disconnect) => return self.disconnect().await,
                    None => {
                        let _ = self.client.try_disconnect();
                        return End::Shutdown;
                    }
                },
                _ = tokio::time::sleep_until(stall_at), if waiting => {
                    warn!(
                        timeout = ?self.stall_timeout,
                        unacked = self.outstanding(),
                        "broker acknowledged nothing for too long; reconnecting"
                    );
                    return End::Reconnect;
                }
            }
        }
    }

    /// Sends DISCONNECT after what rumqttc holds, waits until it is written (or the
    /// connection fails, or [`DISCONNECT_TIMEOUT`]), and ends. Events meanwhile are dropped:
    /// the owner is done with this connection.
    pub(super) async fn disconnect(mut self) -> End {
        let deadline = Instant::now() + DISCONNECT_TIMEOUT;
        let mut queued = false;
        loop {
            // rumqttc's request queue may be full; polling the event loop drains it.
            if !queued {
                queued = self.client.try_disconnect().is_ok();
            }
            tokio::select! {
                polled = self.polled.recv() => match polled {
                    Some(Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) | None => {
                        return End::Disconnected
                    }
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep_until(deadline) => return End::Disconnected,
            }
        }
    }

    /// Transparent mode only: whether the next packet id rumqttc will give is still in use
    /// upstream. rumqttc frees a QoS 2 packet id at PUBREC and hands it out again before
    /// PUBCOMP; with a small id space it would come round while the first is in release (the
    /// broker then drops the new PUBLISH as a duplicate). rumqttc gives ids in the order of
    /// the requests, so the next one is known; a request that would get a busy id waits in
    /// the backlog until it is free.
    fn pkid_blocked(&self) -> bool {
        match self.pkid_space {
            None => false,
            Some(_) => {
                let next = self.last_pkid.wrapping_add(1);
                self.releasing.contains_key(&next) || self.unacked.contains_key(&next)
            }
        }
    }

    /// Transparent mode only: a request that takes a packet id went to rumqttc.
    fn pkid_taken(&mut self) {
        if let Some(space) = self.pkid_space {
            let next = self.last_pkid.wrapping_add(1);
            self.last_pkid = if next >= space { 0 } else { next };
        }
    }

    /// QoS 1/2 publishes handed to rumqttc and not yet complete.
    fn outstanding(&self) -> usize {
        self.publish_order.iter().filter(|id| id.is_some()).count()
            + self.unacked.len()
            + self.releasing.values().map(VecDeque::len).sum::<usize>()
    }

    /// Hands queued commands to rumqttc while it has room and the window allows.
    fn flush_backlog(&mut self) {
        while let Some(command) = self.backlog.pop_front() {
            let takes_pkid = match &command {
                BrokerCommand::Publish(publish) => publish.qos != MqttQoS::AtMostOnce,
                BrokerCommand::Subscribe { .. } | BrokerCommand::Unsubscribe { .. } => true,
                BrokerCommand::Ack { .. }
                | BrokerCommand::Connect { .. }
                | BrokerCommand::Close { .. } => false,
            };
            let accepted = match &command {
                BrokerCommand::Publish(publish)
                    if publish.id.is_some() && self.outstanding() >= self.window =>
                {
                    false
                }
                _ if takes_pkid && self.pkid_blocked() => false,
                // rumqttc refuses an invalid topic or filter with the same error as a full
                // queue: retried, it would block every later command for good. The core
                // refuses such names before they get here; were one to slip through, it is
                // dropped and logged rather than stall the link.
                _ if !valid_request(&command) => {
                    error!(?command, "dropped a broker request with an invalid MQTT topic or filter (a gateway bug: the core should have refused it)");
                    continue;
                }
                BrokerCommand::Publish(publish) => {
                    let sent = self
                        .client
                        .try_publish(
                            &*publish.topic,
                            to_rumqttc(publish.qos),
                            publish.retain,
                            publish.payload.to_vec(),
                        )
                        .is_ok();
                    if sent {
                        self.publish_order.push_back(publish.id);
                    }
                    sent
                }
                BrokerCommand::Subscribe { filter, qos } => {
                    let sent = self
                        .client
                        .try_subscribe(&**filter, to_rumqttc(*qos))
                        .is_ok();
                    if sent {
                        self.subscribe_order.push_back(filter.clone());
                    }
                    sent
                }
                BrokerCommand::Unsubscribe { filter } => {
                    self.client.try_unsubscribe(&**filter).is_ok()
                }
                BrokerCommand::Ack { delivery } => match self.deliveries.remove(&delivery.0) {
                    Some(publish) => {
                        let sent = self.client.try_ack(&publish).is_ok();
                        if !sent {
                            self.deliveries.insert(delivery.0, publish);
                        }
                        sent
                    }
                    // From an earlier connection: the broker redelivers it if it must.
                    None => true,
                },
                // The connection's own lifecycle is the runtime's (it opens and closes the
                // link); the core sends these only on a mote's route, where the runtime
                // carries them out before they could reach an open connection.
                BrokerCommand::Connect { .. } | BrokerCommand::Close { .. } => {
                    debug!("connection command on an open connection: ignored");
                    true
                }
            };
            if !accepted {
                self.backlog.push_front(command);
                return;
            }
            if takes_pkid {
                self.pkid_taken();
            }
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }
}

impl Connection {
    fn on_event(&mut self, event: Event) -> Option<BrokerEvent> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(Some(id)) = self.publish_order.pop_front() {
                    if pkid != 0 {
                        self.unacked.insert(pkid, id);
                    }
                }
                None
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(filter) = self.subscribe_order.pop_front() {
                    self.subscribes.insert(pkid, filter);
                }
                None
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                self.progress();
                self.unacked
                    .remove(&ack.pkid)
                    .map(|id| BrokerEvent::PublishAcked { id })
            }
            Event::Incoming(Incoming::PubRec(rec)) => {
                self.progress();
                if let Some(id) = self.unacked.remove(&rec.pkid) {
                    self.releasing.entry(rec.pkid).or_default().push_back(id);
                }
                None
            }
            // QoS 2 counts as held once complete: if the connection dropped between PUBREC
            // and PUBCOMP, replaying it risks a duplicate, never a loss.
            Event::Incoming(Incoming::PubComp(comp)) => {
                self.progress();
                let queue = self.releasing.get_mut(&comp.pkid)?;
                let id = queue.pop_front();
                if queue.is_empty() {
                    self.releasing.remove(&comp.pkid);
                }
                id.map(|id| BrokerEvent::PublishAcked { id })
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                self.progress();
                let filter = self.subscribes.remove(&ack.pkid)?;
                let granted = match ack.return_codes.first() {
                    Some(SubscribeReasonCode::Success(qos)) => Some(from_rumqttc(*qos)),
                    _ => None,
                };
                if granted.is_none() {
                    warn!(%filter, "broker refused the subscription");
                }
                Some(BrokerEvent::SubAck { filter, granted })
            }
            Event::Incoming(Incoming::Publish(publish)) => {
                let delivery = if publish.qos == QoS::AtMostOnce {
                    None
                } else {
                    self.next_delivery += 1;
                    self.deliveries.insert(self.next_delivery, publish.clone());
                    Some(DeliveryId(self.next_delivery))
                };
                // The payload stays a slice of rumqttc's read buffer: measured with 100 000
                // sleeping motes, copying it out costs more memory (a shared allocation per
                // message once cloned for its targets) than the buffers it would free.
                Some(BrokerEvent::Message {
                    topic: Arc::from(publish.topic.as_str()),
                    payload: publish.payload,
                    qos: from_rumqttc(publish.qos),
                    retain: publish.retain,
                    delivery,
                })
            }
            _ => None,
        }
    }
}
