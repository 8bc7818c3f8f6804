//! The broker side of a test: an MQTT 3.1.1 client (rumqttc) on the test's mosquitto, to
//! subscribe and collect what the gateway forwards, and to publish what motes should receive.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A message received from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage {
    /// The topic name.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The QoS it was delivered with (0..=2).
    pub qos: u8,
    /// The retain flag.
    pub retain: bool,
}

impl MqttMessage {
    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn level(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// An MQTT client whose event loop runs on its own task, reconnecting (every 100 ms) after a
/// lost connection, e.g. while the test restarts mosquitto.
#[derive(Debug)]
pub struct MqttClient {
    client: AsyncClient,
    client_id: String,
    messages: mpsc::UnboundedReceiver<MqttMessage>,
    control: mpsc::UnboundedReceiver<Incoming>,
    task: JoinHandle<()>,
}

impl MqttClient {
    /// Connects to `127.0.0.1:port` with CleanSession=1 and waits for the CONNACK.
    pub async fn connect(port: u16, client_id: &str) -> MqttClient {
        MqttClient::connect_with(port, client_id, true).await
    }

    /// Connects with the given CleanSession (false: a persistent session the broker keeps
    /// while the client is away) and waits for the CONNACK.
    pub async fn connect_with(port: u16, client_id: &str, clean_session: bool) -> MqttClient {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(clean_session)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (control_tx, control) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(eventloop, messages_tx, control_tx));
        let mut mqtt = MqttClient {
            client,
            client_id: client_id.to_string(),
            messages,
            control,
            task,
        };
        mqtt.expect_control("CONNACK", |p| {
            matches!(p, Incoming::ConnAck(_)).then_some(())
        })
        .await;
        mqtt
    }

    async fn expect_control<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&Incoming) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + crate::WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.control.recv()).await {
                Ok(Some(packet)) => {
                    if let Some(found) = f(&packet) {
                        return found;
                    }
                }
                Ok(None) => panic!("{}: MQTT event loop ended", self.client_id),
                Err(_) => panic!(
                    "{}: no {what} from the broker within {:?}",
                    self.client_id,
                    crate::WAIT
                ),
            }
        }
    }

    /// Connects (CleanSession=1) and subscribes to `filter` at QoS 1; fails the test unless
    /// the broker grants QoS 1. The collector of most tests.
    pub async fn subscribed(port: u16, client_id: &str, filter: &str) -> MqttClient {
        let mut client = MqttClient::connect(port, client_id).await;
        assert_eq!(client.subscribe(filter, 1).await, 1);
        client
    }

    /// Subscribes and waits for the SUBACK; returns the granted QoS (fails the test on a
    /// refusal).
    pub async fn subscribe(&mut self, filter: &str, qos_level: u8) -> u8 {
        self.client
            .subscribe(filter, qos(qos_level))
            .await
            .expect("queue SUBSCRIBE");
        let code = self
            .expect_control("SUBACK", |p| match p {
                Incoming::SubAck(ack) => ack.return_codes.first().cloned(),
                _ => None,
            })
            .await;
        match code {
            SubscribeReasonCode::Success(granted) => level(granted),
            SubscribeReasonCode::Failure => panic!("the broker refused SUBSCRIBE {filter}"),
        }
    }

    /// Publishes; at QoS 1 and 2 waits until the broker acknowledged (PUBACK / PUBCOMP).
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos_level: u8, retain: bool) {
        self.client
            .publish(topic, qos(qos_level), retain, payload.to_vec())
            .await
            .expect("queue PUBLISH");
        match qos_level {
            0 => {}
            1 => {
                self.expect_control("PUBACK", |p| matches!(p, Incoming::PubAck(_)).then_some(()))
                    .await;
            }
            _ => {
                self.expect_control("PUBCOMP", |p| {
                    matches!(p, Incoming::PubComp(_)).then_some(())
                })
                .await;
            }
        }
    }

    /// The next message, or `None` after `timeout`.
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<MqttMessage> {
        tokio::time::timeout(timeout, self.messages.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next message; fails the test after [`crate::WAIT`].
    pub async fn recv(&mut self) -> MqttMessage {
        match self.try_recv(crate::WAIT).await {
            Some(m) => m,
            None => panic!(
                "{}: no MQTT message within {:?}",
                self.client_id,
                crate::WAIT
            ),
        }
    }

    /// The next message, on whatever topic (nothing is skipped); fails the test after
    /// `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> MqttMessage {
        match self.try_recv(timeout).await {
            Some(m) => m,
            None => panic!("{}: no MQTT message within {timeout:?}", self.client_id),
        }
    }

    /// The next message on `topic`, skipping others; fails the test after `timeout`.
    pub async fn recv_on(&mut self, topic: &str, timeout: Duration) -> MqttMessage {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left).await {
                Some(m) if m.topic == topic => return m,
                Some(_) => {}
                None => panic!(
                    "{}: no MQTT message on {topic} within {timeout:?}",
                    self.client_id
                ),
            }
        }
    }

    /// Disconnects cleanly (best effort).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.task.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for MqttClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The event loop: messages to one channel, other incoming packets to another; reconnects
/// after errors.
async fn drive(
    mut eventloop: EventLoop,
    messages: mpsc::UnboundedSender<MqttMessage>,
    control: mpsc::UnboundedSender<Incoming>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let message = MqttMessage {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    qos: level(p.qos),
                    retain: p.retain,
                };
                if messages.send(message).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Incoming::Disconnect)) => return,
            Ok(Event::Incoming(other)) => {
                if control.send(other).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(Event::Outgoing(_)) => {}
            Err(_) => {
                if messages.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
