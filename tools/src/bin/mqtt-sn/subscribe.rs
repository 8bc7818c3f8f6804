//! `mqtt-sn sub`: CONNECT, SUBSCRIBE, then print every message the gateway delivers until
//! `--count`, `--timeout` or Ctrl-C. Acknowledgements, REGISTERs and pings are the session's job.

use std::io::Write as _;
use std::time::Duration;

use sn_codec::v12::SubscribeTopic;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::SubArgs;
use crate::common::{prepare, resolve_gateway, timing};
use crate::describe::qos_number;
use crate::error::ClientError;
use crate::output::render;
use crate::session::Session;

/// Far enough away to mean "no deadline" without overflowing `Instant` arithmetic.
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Reports each Ctrl-C. The listener is a task started before anything else, so the handler is
/// in place from the first network wait on: a Ctrl-C then always means a clean DISCONNECT, never
/// the default "killed by SIGINT". If the handler cannot be installed, the channel closes and the
/// run simply cannot be interrupted cleanly, which is no reason to stop it.
fn listen_for_interrupts() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                return;
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs `mqtt-sn sub`.
pub(crate) async fn run(args: SubArgs) -> Result<(), ClientError> {
    let mut interrupts = listen_for_interrupts();
    let started = Instant::now();
    let deadline = args.timeout.map(|t| started + t);
    let conn = &args.connection;
    let gateway = resolve_gateway(&conn.gateway).await?;
    let (dtls, options) = prepare(conn)?;
    let mut session = Session::open(gateway, timing(conn), true, dtls).await?;
    if let Some(p) = &args.topic.predefined {
        if let Some(name) = &p.name {
            session.name_predefined(p.id, name.clone());
        }
    }
    let (topic, shown) = match (&args.topic.topic, &args.topic.predefined, &args.topic.short) {
        (_, Some(p), _) => (
            SubscribeTopic::Predefined(p.id),
            format!("predefined id {}", p.id),
        ),
        (_, _, Some(short)) => (
            SubscribeTopic::Short(*short),
            format!("short topic '{}'", String::from_utf8_lossy(short)),
        ),
        (Some(name), _, _) => (SubscribeTopic::Name(name.as_bytes()), format!("'{name}'")),
        (None, None, None) => {
            return Err(ClientError::Usage(
                "one of -t, --predefined or --short is required".to_owned(),
            ))
        }
    };

    // Setting up waits for the retransmission schedule, or less if --timeout ends sooner.
    let budget = timing(conn).budget();
    let connect_budget = args.timeout.map_or(budget, |t| budget.min(t));
    let setup = async {
        session.connect(&options, connect_budget).await?;
        let subscribe_budget = deadline.map_or(budget, |d| {
            budget.min(d.saturating_duration_since(Instant::now()))
        });
        session.subscribe(topic, args.qos, subscribe_budget).await
    };
    let (granted, topic_id) = tokio::select! {
        done = setup => done?,
        Some(()) = interrupts.recv() => return Err(ClientError::Interrupted),
    };
    eprintln!(
        "subscribed to {shown}: granted QoS {}, topic id {topic_id}",
        qos_number(granted)
    );

    let mut received: u64 = 0;
    let end = deadline.unwrap_or_else(|| Instant::now() + NO_DEADLINE);
    loop {
        while let Some(message) = session.next_message() {
            print_line(&render(args.format, &message))?;
            received = received.saturating_add(1);
            if args.count.is_some_and(|count| received >= count) {
                return session.disconnect(budget).await;
            }
        }
        if Instant::now() >= end {
            session.disconnect(budget).await?;
            return match (args.count, args.timeout) {
                (Some(expected), Some(after)) => Err(ClientError::Incomplete {
                    after,
                    received,
                    expected,
                }),
                _ => Ok(()),
            };
        }
        tokio::select! {
            polled = session.poll(end) => polled?,
            Some(()) = interrupts.recv() => {
                // A second Ctrl-C while waiting for the gateway's DISCONNECT ends at once.
                tokio::select! {
                    done = session.disconnect(budget) => return done,
                    Some(()) = interrupts.recv() => return Ok(()),
                }
            }
        }
    }
}

/// Prints one line and flushes at once: tests and scripts read stdout through a pipe, where
/// it would otherwise sit in a buffer.
fn print_line(line: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(ClientError::Output)
}
