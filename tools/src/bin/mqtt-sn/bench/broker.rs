//! The broker side of a run, over rumqttc: the subscriber that counts what the motes' messages
//! became upstream (uplink), and the publisher whose messages fan out to every mote (downlink).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, NetworkOptions, Outgoing, QoS,
    SubscribeReasonCode,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::payload::{self, Stamp, BROKER};
use super::stats::{Histogram, SeqSet};
use super::{Ctx, Phase};

/// Time allowed to connect to the broker and have the subscription granted.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest MQTT packet either way.
const MAX_PACKET: usize = 1 << 20;

/// MQTT QoS of an MQTT-SN QoS (-1 is published as 0).
pub(crate) fn mqtt_qos(qos: sn_codec::QoS) -> QoS {
    match qos.mqtt_level() {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// rumqttc options for one of the tool's connections to the broker.
pub(crate) fn options(ctx: &Ctx, client_id: String, keep_alive: Duration) -> MqttOptions {
    let broker = ctx.plan.broker;
    let mut options = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    options.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    options
}

/// A client and its event loop, with TCP_NODELAY so that the tool's own connections never
/// hold a small packet back (Nagle) and add their delay to the latencies measured.
pub(crate) fn new_client(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(SETUP_TIMEOUT.as_secs());
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Polls until CONNACK; then, if `filter` is given, subscribes and polls until SUBACK.
pub(crate) async fn connect(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    subscription: Option<(&str, QoS)>,
    deadline: Instant,
) -> Result<(), String> {
    let mut connected = false;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| {
                if connected {
                    "no SUBACK from the broker".to_owned()
                } else {
                    "no CONNACK from the broker".to_owned()
                }
            })?
            .map_err(|e| format!("broker connection failed: {e}"))?;
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => {
                connected = true;
                let Some((filter, qos)) = subscription else {
                    return Ok(());
                };
                client
                    .try_subscribe(filter, qos)
                    .map_err(|e| format!("cannot subscribe: {e}"))?;
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                return match ack.return_codes.first() {
                    Some(SubscribeReasonCode::Success(_)) => Ok(()),
                    _ => Err(format!(
                        "the broker refused the subscription: {:?}",
                        ack.return_codes
                    )),
                };
            }
            _ => {}
        }
    }
}

/// What the subscriber saw.
#[derive(Debug, Default)]
pub(crate) struct SubscriberResult {
    /// Sequence numbers received, per mote.
    pub(crate) per_mote: Vec<SeqSet>,
    /// Messages received more than once.
    pub(crate) duplicates: u64,
    /// Messages that are not from this run's motes.
    pub(crate) foreign: u64,
    /// Mote send → subscriber receipt.
    pub(crate) latency: Histogram,
    /// First and last new message, ns on the run clock.
    pub(crate) first_ns: Option<u64>,
    /// Last new message.
    pub(crate) last_ns: Option<u64>,
    /// Times the connection to the broker broke.
    pub(crate) reconnects: u64,
    /// The first error, if any.
    pub(crate) error: Option<String>,
}

/// The uplink subscriber: subscribes to the motes' topics, reports `ready`, then counts until
/// `stop`.
pub(crate) async fn subscriber(
    ctx: Arc<Ctx>,
    ready: oneshot::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) -> SubscriberResult {
    let mut result = SubscriberResult {
        per_mote: vec![SeqSet::default(); ctx.plan.motes as usize],
        ..SubscriberResult::default()
    };
    let filter = ctx.plan.topic.filter();
    let qos = mqtt_qos(ctx.plan.broker_qos);
    let options = options(
        &ctx,
        format!("mqtt-sn-bench-sub-{:08x}", ctx.run_id),
        Duration::from_secs(30),
    );
    let (client, mut eventloop) = new_client(options, 16);
    let setup = connect(
        &client,
        &mut eventloop,
        Some((&filter, qos)),
        Instant::now() + SETUP_TIMEOUT,
    )
    .await;
    let failed = setup.is_err();
    let _ = ready.send(setup);
    if failed {
        return result;
    }
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut stop => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                record(&ctx, &mut result, &publish.payload);
            }
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                // Reconnected with a clean session: subscribe again.
                let _ = client.try_subscribe(filter.clone(), qos);
            }
            Ok(_) => {}
            Err(e) => {
                result.reconnects += 1;
                result.error.get_or_insert_with(|| e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = client.try_disconnect();
    result
}

fn record(ctx: &Ctx, result: &mut SubscriberResult, payload: &[u8]) {
    let stamp = Stamp::read(payload).filter(|s| s.run == ctx.run_id);
    let Some((stamp, seen)) =
        stamp.and_then(|s| Some((s, result.per_mote.get_mut(s.mote as usize)?)))
    else {
        result.foreign += 1;
        return;
    };
    match seen.insert(stamp.seq) {
        Some(true) => {
            let now = ctx.clock.now_ns();
            result.latency.record(now.saturating_sub(stamp.sent_ns));
            result.first_ns.get_or_insert(now);
            result.last_ns = Some(now);
            ctx.live.delivered.fetch_add(1, Relaxed);
            ctx.live.last_delivery_ns.fetch_max(now, Relaxed);
        }
        Some(false) => {
            result.duplicates += 1;
            ctx.live.duplicates.fetch_add(1, Relaxed);
        }
        None => result.foreign += 1,
    }
}

/// What the downlink publisher did.
#[derive(Debug, Default)]
pub(crate) struct PublisherResult {
    /// PUBLISHes handed to the broker connection.
    pub(crate) published: u64,
    /// Of those, acknowledged by the broker (QoS 1/2) or written (QoS 0).
    pub(crate) acked: u64,
    /// When the first and last were published, ns on the run clock.
    pub(crate) first_ns: Option<u64>,
    /// Last publish.
    pub(crate) last_ns: Option<u64>,
    /// The first error, if any.
    pub(crate) error: Option<String>,
}

/// The downlink publisher: connects, reports `ready`, publishes from the load phase on at
/// --rate (or as fast as the connection takes them) until --count or --duration, then waits
/// (until the finish phase at most) for the broker's acknowledgements.
pub(crate) async fn publisher(
    ctx: Arc<Ctx>,
    ready: oneshot::Sender<Result<(), String>>,
) -> PublisherResult {
    let mut result = PublisherResult::default();
    let plan = &ctx.plan;
    let qos = mqtt_qos(plan.broker_qos);
    let mut options = options(
        &ctx,
        format!("mqtt-sn-bench-pub-{:08x}", ctx.run_id),
        Duration::from_secs(30),
    );
    options.set_inflight(1000);
    let (client, mut eventloop) = new_client(options, 1024);
    let setup = connect(
        &client,
        &mut eventloop,
        None,
        Instant::now() + SETUP_TIMEOUT,
    )
    .await;
    let failed = setup.is_err();
    let _ = ready.send(setup);
    if failed {
        return result;
    }
    // The event loop runs beside the publishing loop and counts acknowledgements.
    let acked = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut driver = tokio::spawn(drive(eventloop, qos, acked.clone(), stop_rx));

    ctx.control.reached(Phase::Load).await;
    let topic = plan.topic.name_for(0);
    let load_start = ctx.control.load_start_ns();
    let load_end =
        load_start.saturating_add(u64::try_from(plan.duration.as_nanos()).unwrap_or(u64::MAX));
    let count = plan.count.unwrap_or(u64::MAX).min(u64::from(u32::MAX));
    let interval = (plan.rate > 0).then(|| 1e9 / plan.rate as f64);
    let mut next_due = load_start as f64;
    let mut buffer = payload::buffer(plan.payload_size);
    let mut seq: u32 = 0;
    while u64::from(seq) < count && ctx.control.phase() < Phase::Drain {
        let now = ctx.clock.now_ns();
        if now >= load_end {
            break;
        }
        if let Some(iv) = interval {
            if (now as f64) < next_due {
                tokio::time::sleep_until(ctx.clock.instant((next_due as u64).min(load_end))).await;
                continue;
            }
            next_due += iv;
        }
        Stamp {
            run: ctx.run_id,
            mote: BROKER,
            seq,
            sent_ns: ctx.clock.now_ns(),
        }
        .write(&mut buffer);
        if let Err(e) = client
            .publish(topic.clone(), qos, false, buffer.clone())
            .await
        {
            result.error = Some(e.to_string());
            break;
        }
        result.first_ns.get_or_insert(now);
        result.last_ns = Some(now);
        seq += 1;
        ctx.live.published.fetch_add(1, Relaxed);
    }
    result.published = u64::from(seq);
    ctx.live.publishing_done.store(1, Relaxed);
    // Wait for the broker to take everything, but not past the finish phase.
    let finish = ctx.control.reached(Phase::Finish);
    tokio::pin!(finish);
    loop {
        if acked.load(Relaxed) >= result.published {
            break;
        }
        tokio::select! {
            () = &mut finish => break,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    result.acked = acked.load(Relaxed);
    let _ = client.try_disconnect();
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(2), &mut driver).await {
        Ok(Ok(Some(error))) => {
            result.error.get_or_insert(error);
        }
        Ok(_) => {}
        Err(_) => driver.abort(),
    }
    result
}

/// Runs the publisher's event loop until `stop`, counting acknowledged publishes. Returns the
/// first connection error.
async fn drive(
    mut eventloop: EventLoop,
    qos: QoS,
    acked: Arc<AtomicU64>,
    stop: oneshot::Receiver<()>,
) -> Option<String> {
    let mut error = None;
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut stop => return error,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::PubAck(_))) if qos == QoS::AtLeastOnce => {
                acked.fetch_add(1, Relaxed);
            }
            Ok(Event::Incoming(Incoming::PubComp(_))) if qos == QoS::ExactlyOnce => {
                acked.fetch_add(1, Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                acked.fetch_add(1, Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return error,
            Ok(_) => {}
            Err(e) => {
                error.get_or_insert_with(|| e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
