//! Broker → mote: SUBSCRIBE by name, wildcard, predefined id and short name; granted QoS;
//! retained messages; UNSUBSCRIBE. Messages are published on a real mosquitto.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_tests::{Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic};

async fn setup(predefined: &[(u16, &str)]) -> (Mosquitto, Gateway, MqttClient) {
    let broker = Mosquitto::running().await;
    let mut builder = Gateway::builder(broker.port());
    for (id, name) in predefined {
        builder = builder.predefined(*id, name);
    }
    let gateway = builder.start().await;
    let publisher = MqttClient::connect(broker.port(), "subscribe-publisher").await;
    (broker, gateway, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_by_name_delivers_on_the_subacked_id_at_the_granted_qos() {
    let (_broker, gateway, mut publisher) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "sub-name").await;

    for (topic, requested, sn_qos) in [
        ("home/temp", 0, QoS::AtMostOnce),
        ("home/lamp", 1, QoS::AtLeastOnce),
        ("home/door", 2, QoS::ExactlyOnce),
    ] {
        let ack = mote.subscribe(SubTopic::name(topic), sn_qos).await;
        assert_eq!(ack.return_code, ReturnCode::Accepted, "{topic}");
        assert_eq!(ack.qos, sn_qos, "granted QoS for {topic}");
        assert_ne!(ack.topic_id, 0, "a name without wildcards gets a topic id");

        // Published at QoS 2: delivered at the granted QoS.
        let payload = format!("to {topic}");
        publisher.publish(topic, payload.as_bytes(), 2, false).await;
        let got = mote.recv_publish().await;
        assert_eq!(got.topic, Topic::Normal(ack.topic_id), "{topic}");
        assert_eq!(got.topic_name.as_deref(), Some(topic));
        assert_eq!(got.data, payload.as_bytes());
        assert_eq!(
            got.qos, sn_qos,
            "delivered at min(granted, published) for {requested}"
        );
        assert!(!got.retain);
    }

    // Published at QoS 0 on a QoS 2 subscription: delivered at QoS 0.
    publisher.publish("home/door", b"qos0", 0, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"qos0");
    assert_eq!(got.qos, QoS::AtMostOnce);
    assert!(
        mote.registers().is_empty(),
        "ids from SUBACK need no REGISTER: {:?}",
        mote.registers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_subscription_registers_each_topic_before_its_first_publish() {
    let (_broker, gateway, mut publisher) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "sub-wildcard").await;

    let ack = mote
        .subscribe(SubTopic::name("home/+/state"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    assert_eq!(ack.topic_id, 0, "SUBACK for a wildcard carries topic id 0");
    assert_eq!(ack.qos, QoS::AtLeastOnce);

    publisher
        .publish("home/kitchen/state", b"1", 1, false)
        .await;
    publisher.publish("home/garage/state", b"2", 1, false).await;
    publisher
        .publish("home/kitchen/state", b"3", 1, false)
        .await;
    publisher
        .publish("home/kitchen/other", b"no", 1, false)
        .await;

    let mut got = Vec::new();
    for _ in 0..3 {
        let d = mote.recv_publish().await;
        let Topic::Normal(id) = d.topic else {
            panic!("expected a normal topic id, got {:?}", d.topic)
        };
        // topic_name is only known if the REGISTER came before this PUBLISH.
        let name = d
            .topic_name
            .clone()
            .unwrap_or_else(|| panic!("PUBLISH on id {id} without a REGISTER before it"));
        got.push((name, String::from_utf8(d.data).unwrap(), id));
    }
    assert_eq!(got[0].0, "home/kitchen/state");
    assert_eq!(got[0].1, "1");
    assert_eq!(got[1].0, "home/garage/state");
    assert_eq!(got[1].1, "2");
    assert_eq!(got[2].0, "home/kitchen/state");
    assert_eq!(got[2].1, "3");
    assert_eq!(got[0].2, got[2].2, "the same topic keeps its id");
    assert_ne!(got[0].2, got[1].2, "different topics get different ids");
    let registers: Vec<&str> = mote.registers().iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        registers,
        ["home/kitchen/state", "home/garage/state"],
        "one REGISTER per concrete topic, none for a topic already registered"
    );
    let extra = mote.try_recv_publish(Duration::from_millis(300)).await;
    assert!(extra.is_none(), "non-matching topic delivered: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_by_predefined_id_and_by_short_name() {
    let (_broker, gateway, mut publisher) = setup(&[(77, "plant/alarm")]).await;
    let mut mote = Mote::connected(gateway.addr(), "sub-predefined").await;
    mote.know_predefined(77, "plant/alarm");

    let ack = mote
        .subscribe(SubTopic::Predefined(77), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    assert_eq!(ack.topic_id, 77, "SUBACK echoes the predefined id");
    assert_eq!(ack.qos, QoS::AtLeastOnce);
    publisher
        .publish("plant/alarm", b"overheat", 1, false)
        .await;
    let got = mote.recv_publish().await;
    assert_eq!(got.topic, Topic::Predefined(77));
    assert_eq!(got.data, b"overheat");
    assert_eq!(got.qos, QoS::AtLeastOnce);

    let ack = mote
        .subscribe(SubTopic::short("sh"), QoS::ExactlyOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    assert_eq!(ack.qos, QoS::ExactlyOnce);
    publisher.publish("sh", b"short", 2, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(got.topic, Topic::short("sh"));
    assert_eq!(got.data, b"short");
    assert_eq!(got.qos, QoS::ExactlyOnce);

    // An unknown predefined id: SUBACK 0x02.
    let ack = mote
        .subscribe(SubTopic::Predefined(78), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::InvalidTopicId);
    assert!(mote.registers().is_empty(), "{:?}", mote.registers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_is_delivered_with_retain_right_after_subscribing() {
    let (_broker, gateway, mut publisher) = setup(&[]).await;
    publisher.publish("status/gw", b"online", 1, true).await;
    publisher.publish("status/node7", b"asleep", 1, true).await;

    // By name.
    let mut mote = Mote::connected(gateway.addr(), "sub-retained").await;
    let ack = mote
        .subscribe(SubTopic::name("status/gw"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let got = mote.recv_publish().await;
    assert_eq!(got.topic, Topic::Normal(ack.topic_id));
    assert_eq!(got.data, b"online");
    assert!(got.retain, "a retained message is sent with Retain=1");

    // A live message afterwards is not retained.
    publisher
        .publish("status/gw", b"still online", 1, false)
        .await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"still online");
    assert!(!got.retain);

    // By wildcard, from another mote: REGISTER, then the retained PUBLISH.
    let mut other = Mote::connected(gateway.addr(), "sub-retained-wild").await;
    let ack = other
        .subscribe(SubTopic::name("status/+"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let mut got = vec![other.recv_publish().await, other.recv_publish().await];
    got.sort_by(|a, b| a.topic_name.cmp(&b.topic_name));
    assert_eq!(got[0].topic_name.as_deref(), Some("status/gw"));
    // "still online" was not retained: the broker still holds "online".
    assert_eq!(got[0].data, b"online");
    assert_eq!(got[1].topic_name.as_deref(), Some("status/node7"));
    assert_eq!(got[1].data, b"asleep");
    assert!(got.iter().all(|d| d.retain), "{got:?}");
}

/// Another mote subscribing to `new_filter` makes the broker send its retained messages again,
/// on the gateway's one connection; a mote that subscribed earlier to `old_filter` must not
/// get them a second time (it did not subscribe anew; the gateway's own rule in
/// `Subscription::generation`).
async fn retained_not_resent_to_earlier_subscriber(old_filter: &str, new_filter: &str) {
    let (_broker, gateway, mut publisher) = setup(&[]).await;
    publisher.publish("status/gw", b"online", 1, true).await;

    let mut early = Mote::connected(gateway.addr(), "retained-early").await;
    let ack = early
        .subscribe(SubTopic::name(old_filter), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let got = early.recv_publish().await;
    assert_eq!(got.data, b"online");
    assert!(got.retain);

    let mut late = Mote::connected(gateway.addr(), "retained-late").await;
    let ack = late
        .subscribe(SubTopic::name(new_filter), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let got = late.recv_publish().await;
    assert_eq!(got.data, b"online");
    assert!(got.retain);

    publisher.publish("status/gw", b"fence", 1, false).await;
    let next = early.recv_publish().await;
    assert_eq!(
        next.data, b"fence",
        "the early subscriber ({old_filter}) got the retained message again when another \
         mote subscribed to {new_filter}: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_not_resent_to_an_exact_subscriber_when_another_mote_subscribes_a_wildcard(
) {
    retained_not_resent_to_earlier_subscriber("status/gw", "status/+").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_not_resent_to_a_wildcard_subscriber_when_another_mote_subscribes_by_name(
) {
    retained_not_resent_to_earlier_subscriber("status/+", "status/gw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let (_broker, gateway, mut publisher) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "sub-unsubscribe").await;
    for filter in ["u/name", "u/wild/#", "u/fence"] {
        let ack = mote
            .subscribe(SubTopic::name(filter), QoS::AtLeastOnce)
            .await;
        assert_eq!(ack.return_code, ReturnCode::Accepted, "{filter}");
    }
    publisher.publish("u/name", b"before", 1, false).await;
    assert_eq!(mote.recv_publish().await.data, b"before");
    publisher.publish("u/wild/x", b"before", 1, false).await;
    assert_eq!(mote.recv_publish().await.data, b"before");

    mote.unsubscribe(SubTopic::name("u/name")).await;
    mote.unsubscribe(SubTopic::name("u/wild/#")).await;

    // Published in this order on one connection: if "fence" arrives first, the others are
    // not coming.
    publisher.publish("u/name", b"after", 1, false).await;
    publisher.publish("u/wild/x", b"after", 1, false).await;
    publisher.publish("u/fence", b"fence", 1, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(
        got.topic_name.as_deref(),
        Some("u/fence"),
        "delivered after UNSUBSCRIBE: {got:?}"
    );

    // UNSUBACK also for something never subscribed (it has no return code).
    mote.unsubscribe(SubTopic::name("never/subscribed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn motes_sharing_a_filter_get_their_own_qos_and_one_unsubscribing_leaves_the_other() {
    let (_broker, gateway, mut publisher) = setup(&[]).await;
    let mut low = Mote::connected(gateway.addr(), "shared-low").await;
    let mut high = Mote::connected(gateway.addr(), "shared-high").await;
    let ack = low
        .subscribe(SubTopic::name("shared/t"), QoS::AtMostOnce)
        .await;
    assert_eq!(ack.qos, QoS::AtMostOnce);
    low.subscribe(SubTopic::name("shared/fence"), QoS::AtLeastOnce)
        .await;
    let ack = high
        .subscribe(SubTopic::name("shared/t"), QoS::ExactlyOnce)
        .await;
    assert_eq!(ack.qos, QoS::ExactlyOnce);

    publisher.publish("shared/t", b"both", 2, false).await;
    let got = low.recv_publish().await;
    assert_eq!(
        (got.data.as_slice(), got.qos),
        (&b"both"[..], QoS::AtMostOnce)
    );
    let got = high.recv_publish().await;
    assert_eq!(
        (got.data.as_slice(), got.qos),
        (&b"both"[..], QoS::ExactlyOnce)
    );

    // The upstream subscription is shared: one mote leaving must not end it for the other.
    low.unsubscribe(SubTopic::name("shared/t")).await;
    publisher.publish("shared/t", b"high only", 2, false).await;
    publisher.publish("shared/fence", b"fence", 1, false).await;
    let got = high.recv_publish().await;
    assert_eq!(got.data, b"high only");
    assert_eq!(got.qos, QoS::ExactlyOnce);
    let got = low.recv_publish().await;
    assert_eq!(got.data, b"fence", "delivered after UNSUBSCRIBE: {got:?}");

    // The other way round: the high-QoS mote leaves, the QoS 0 one subscribes again.
    low.subscribe(SubTopic::name("shared/t"), QoS::AtMostOnce)
        .await;
    high.unsubscribe(SubTopic::name("shared/t")).await;
    publisher.publish("shared/t", b"low only", 1, false).await;
    let got = low.recv_publish().await;
    assert_eq!(
        (got.data.as_slice(), got.qos),
        (&b"low only"[..], QoS::AtMostOnce)
    );
}
