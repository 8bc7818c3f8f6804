//! `mqtt-sn pub`: CONNECT (with the Will handshake if asked), REGISTER the topic name, publish
//! each message with its QoS flow completed before the next (one in flight, §6.13), DISCONNECT.
//! At QoS -1 there is no connection at all: the PUBLISHes are simply sent.

use std::io::BufRead;
use std::time::Duration;

use sn_codec::v12::PublishTopic;
use sn_codec::QoS;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::cli::PubArgs;
use crate::common::{prepare, resolve_gateway, timing};
use crate::error::ClientError;
use crate::session::Session;

/// Where the topic of each PUBLISH comes from once the session is set up.
enum Topic {
    /// Needs REGISTER first (QoS 0/1/2 with -t).
    Name(String),
    /// Sent as it is.
    Predefined(u16),
    /// Sent as it is.
    Short([u8; 2]),
}

/// Lines of stdin, read on a plain thread: tokio's stdin needs a feature the package does not
/// enable, and a detached thread blocked in `read` cannot hold up the exit the way a
/// `spawn_blocking` task would hold up the runtime's shutdown.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let line = line.map(|mut l| {
                if l.ends_with('\r') {
                    l.pop();
                }
                l
            });
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `mqtt-sn pub`.
pub(crate) async fn run(args: PubArgs) -> Result<(), ClientError> {
    let conn = &args.connection;
    let topic = match (&args.topic.topic, &args.topic.predefined, args.topic.short) {
        (_, Some(p), _) => Topic::Predefined(p.id),
        (_, _, Some(short)) => Topic::Short(short),
        (Some(name), _, _) => Topic::Name(name.clone()),
        // clap's group makes one of the three required.
        (None, None, None) => {
            return Err(ClientError::Usage(
                "one of -t, --predefined or --short is required".to_owned(),
            ))
        }
    };
    let gateway = resolve_gateway(&conn.gateway).await?;
    let (dtls, options) = prepare(conn)?;
    let mut session = Session::open(gateway, timing(conn), false, dtls).await?;

    if args.qos == QoS::MinusOne {
        if conn.will_topic.is_some() {
            return Err(ClientError::Usage(
                "QoS -1 publishes without connecting, so there is no Will to send; drop --will-*"
                    .to_owned(),
            ));
        }
        let topic = match &topic {
            // Long-name form (§4.9): the name travels in the PUBLISH itself.
            Topic::Name(name) => PublishTopic::LongName(name.as_bytes()),
            Topic::Predefined(id) => PublishTopic::Predefined(*id),
            Topic::Short(short) => PublishTopic::Short(*short),
        };
        let publisher = Publisher {
            topic,
            args: &args,
            budget: args.timeout,
        };
        let published = publisher.publish_all(&mut session).await;
        session.close_channel().await;
        return published;
    }

    // Each exchange ends at --timeout, or sooner when --retry × (--retries + 1) has run out:
    // giving up after N_retry resends is what §6.13 asks of a client.
    let budget = args.timeout.min(timing(conn).budget());
    session.connect(&options, budget).await?;
    let topic = match topic {
        Topic::Name(name) => {
            let id = session.register(&name, budget).await?;
            debug!("topic '{name}' registered as id {id}");
            PublishTopic::Normal(id)
        }
        Topic::Predefined(id) => PublishTopic::Predefined(id),
        Topic::Short(short) => PublishTopic::Short(short),
    };
    let publisher = Publisher {
        topic,
        args: &args,
        budget,
    };
    publisher.publish_all(&mut session).await?;
    session.disconnect(budget).await
}

/// Publishes the messages the command line asks for, on one topic.
struct Publisher<'a> {
    topic: PublishTopic<'a>,
    args: &'a PubArgs,
    /// Time limit of each acknowledgement flow.
    budget: Duration,
}

impl Publisher<'_> {
    /// Whether a session was CONNECTed (every QoS but -1).
    fn connected(&self) -> bool {
        self.args.qos != QoS::MinusOne
    }

    /// One message, with its QoS flow completed before returning.
    async fn publish(&self, session: &mut Session, payload: &[u8]) -> Result<(), ClientError> {
        let args = self.args;
        if self.connected() {
            session
                .publish(self.topic, args.qos, args.retain, payload, self.budget)
                .await
        } else {
            session
                .publish_without_session(self.topic, args.retain, payload)
                .await
        }
    }

    /// Publishes `--count` messages from `-m` (with `{n}` replaced by the sequence number) or
    /// one per stdin line, keeping a connected session alive between them.
    async fn publish_all(&self, session: &mut Session) -> Result<(), ClientError> {
        let args = self.args;
        if args.stdin_lines {
            let mut lines = stdin_lines();
            loop {
                let line = if self.connected() {
                    // Answer the gateway (PINGREQ) and keep alive while waiting for input.
                    let idle = Instant::now() + Duration::from_secs(3600);
                    tokio::select! {
                        line = lines.recv() => line,
                        polled = session.poll(idle) => {
                            polled?;
                            continue;
                        }
                    }
                } else {
                    lines.recv().await
                };
                match line {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(ClientError::Stdin(e)),
                    Some(Ok(line)) => self.publish(session, line.as_bytes()).await?,
                }
            }
        }
        let template = args.message.as_deref().unwrap_or_default();
        for n in 0..args.count {
            let payload = template.replace("{n}", &n.to_string());
            self.publish(session, payload.as_bytes()).await?;
            if n + 1 < args.count && !args.interval.is_zero() {
                let until = Instant::now() + args.interval;
                if self.connected() {
                    session.idle_until(until).await?;
                } else {
                    tokio::time::sleep_until(until).await;
                }
            }
        }
        Ok(())
    }
}
