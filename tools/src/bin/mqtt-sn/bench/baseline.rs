//! `--baseline`: the same load without the gateway, one direct MQTT connection (rumqttc) per
//! simulated mote to the same broker, so the gateway's cost shows as a ratio. Each client
//! follows a mote's script: connect on the same schedule, publish on the same topic at the
//! same QoS and pace with one message in flight (uplink), or subscribe and count (downlink).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::broker::{connect, mqtt_qos, new_client, options};
use super::options::Direction;
use super::payload::{self, Stamp};
use super::{Ctx, MoteOutcome, Phase};

/// Runs baseline client `id`; `permit` is its connection slot.
pub(crate) async fn run(ctx: Arc<Ctx>, id: u32, permit: OwnedSemaphorePermit) -> MoteOutcome {
    let mut out = MoteOutcome {
        id,
        ..MoteOutcome::default()
    };
    if let Err(e) = lifecycle(&ctx, id, &mut out).await {
        out.error = Some(e);
    }
    out.settle(&ctx);
    drop(permit);
    out
}

/// Polls the event loop until `wanted` accepts an event, or `deadline`.
async fn until(
    eventloop: &mut EventLoop,
    deadline: Instant,
    what: &str,
    mut wanted: impl FnMut(&Event) -> bool,
) -> Result<(), String> {
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| format!("no {what}"))?
            .map_err(|e| format!("broker connection: {e}"))?;
        if wanted(&event) {
            return Ok(());
        }
    }
}

async fn lifecycle(ctx: &Ctx, id: u32, out: &mut MoteOutcome) -> Result<(), String> {
    let plan = &ctx.plan;
    ctx.wait_connect_slot(id).await;
    let topic = plan.topic.name_for(id);
    let qos = mqtt_qos(plan.qos);
    let client_id = format!("b{:08x}-{}", ctx.run_id, id);
    // The same time budget as a mote's CONNECT with its resends.
    out.connect_started_ns = Some(ctx.clock.now_ns());
    let give_up = Instant::now() + plan.exchange_budget();
    let (client, mut eventloop) = loop {
        out.connect_attempts += 1;
        let (client, mut eventloop) = new_client(
            options(
                ctx,
                client_id.clone(),
                Duration::from_secs(u64::from(plan.keep_alive)),
            ),
            16,
        );
        match connect(&client, &mut eventloop, None, give_up).await {
            Ok(()) => break (client, eventloop),
            Err(e) if Instant::now() + plan.retry >= give_up => return Err(e),
            Err(_) => tokio::time::sleep(plan.retry).await,
        }
    };
    out.connected_ns = Some(ctx.clock.now_ns());
    ctx.live.connected.fetch_add(1, Relaxed);
    if plan.direction == Direction::Down {
        client
            .try_subscribe(topic.clone(), qos)
            .map_err(|e| e.to_string())?;
        until(
            &mut eventloop,
            Instant::now() + plan.exchange_budget(),
            "SUBACK",
            |e| matches!(e, Event::Incoming(Incoming::SubAck(_))),
        )
        .await?;
    }
    out.setup_done = true;
    ctx.live.ready.fetch_add(1, Relaxed);
    // The barrier (or, without one, the load phase that began at once).
    ctx.control.reached(Phase::Load).await;
    match plan.direction {
        Direction::Up => publish(ctx, id, out, &client, &mut eventloop, &topic, qos).await?,
        Direction::Down => receive(ctx, out, &mut eventloop).await?,
    }
    out.load_done = true;
    ctx.live.motes_done.fetch_add(1, Relaxed);
    ctx.control.reached(Phase::Finish).await;
    if plan.disconnect {
        let _ = client.try_disconnect();
        out.disconnected = until(
            &mut eventloop,
            Instant::now() + plan.retry,
            "DISCONNECT",
            |e| matches!(e, Event::Outgoing(Outgoing::Disconnect)),
        )
        .await
        .is_ok();
    }
    Ok(())
}

/// The uplink load: like a mote's, one message in flight.
async fn publish(
    ctx: &Ctx,
    id: u32,
    out: &mut MoteOutcome,
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topic: &str,
    qos: QoS,
) -> Result<(), String> {
    let plan = &ctx.plan;
    let load_start = ctx.control.load_start_ns();
    let load_end =
        load_start.saturating_add(u64::try_from(plan.duration.as_nanos()).unwrap_or(u64::MAX));
    let count = plan.count.unwrap_or(u64::MAX).min(u64::from(u32::MAX));
    let interval = (plan.rate > 0).then(|| f64::from(plan.motes) * 1e9 / plan.rate as f64);
    let mut next_due = interval.map_or(0.0, |iv| {
        let offset = iv * f64::from(id) / f64::from(plan.motes);
        (load_start as f64 + offset).max(ctx.clock.now_ns() as f64)
    });
    let mut payload = payload::buffer(plan.payload_size);
    loop {
        if u64::from(out.sent) >= count {
            return Ok(());
        }
        let now = ctx.clock.now_ns();
        if now >= load_end || ctx.control.phase() >= Phase::Drain {
            return Ok(());
        }
        if let Some(iv) = interval {
            if (now as f64) < next_due {
                let wake = (next_due as u64).min(load_end);
                tokio::time::sleep_until(ctx.clock.instant(wake)).await;
                continue;
            }
            next_due += iv;
        }
        let seq = out.sent;
        Stamp {
            run: ctx.run_id,
            mote: id,
            seq,
            sent_ns: ctx.clock.now_ns(),
        }
        .write(&mut payload);
        client
            .try_publish(topic, qos, false, payload.clone())
            .map_err(|e| e.to_string())?;
        out.sent += 1;
        ctx.live.sent.fetch_add(1, Relaxed);
        let what = match qos {
            QoS::AtMostOnce => "write of the PUBLISH",
            QoS::AtLeastOnce => "PUBACK",
            QoS::ExactlyOnce => "PUBCOMP",
        };
        let done = until(
            eventloop,
            Instant::now() + plan.exchange_budget(),
            what,
            |e| {
                matches!(
                    (qos, e),
                    (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                        | (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_)))
                        | (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_)))
                )
            },
        )
        .await;
        match done {
            Ok(()) => {
                if qos != QoS::AtMostOnce {
                    out.acked.insert(seq);
                    ctx.live.acked.fetch_add(1, Relaxed);
                }
                ctx.live.accepted.fetch_add(1, Relaxed);
            }
            Err(e) => {
                out.unacked += 1;
                return Err(e);
            }
        }
    }
}

/// The downlink load: count the broker publisher's messages until the finish phase.
async fn receive(
    ctx: &Ctx,
    out: &mut MoteOutcome,
    eventloop: &mut EventLoop,
) -> Result<(), String> {
    let finish = ctx.control.reached(Phase::Finish);
    tokio::pin!(finish);
    loop {
        let event = tokio::select! {
            biased;
            () = &mut finish => return Ok(()),
            event = eventloop.poll() => event.map_err(|e| format!("broker connection: {e}"))?,
        };
        if let Event::Incoming(Incoming::Publish(publish)) = event {
            out.record_downlink(ctx, Stamp::read(&publish.payload));
        }
    }
}
