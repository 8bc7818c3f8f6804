//! Mote → broker: PUBLISH at QoS -1, 0, 1 and 2 with registered, predefined and short topics,
//! checked at an MQTT subscriber on a real mosquitto.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_tests::{Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, Topic};

/// A broker, a gateway (with `predefined` topics) and an MQTT subscriber to `#` at QoS 2.
async fn setup(predefined: &[(u16, &str)]) -> (Mosquitto, Gateway, MqttClient) {
    let broker = Mosquitto::running().await;
    let mut builder = Gateway::builder(broker.port());
    for (id, name) in predefined {
        builder = builder.predefined(*id, name);
    }
    let gateway = builder.start().await;
    // QoS 0 and -1 are dropped while the broker link is still coming up.
    gateway.wait_for_broker().await;
    let mut sub = MqttClient::connect(broker.port(), "publish-sub").await;
    assert_eq!(sub.subscribe("#", 2).await, 2);
    (broker, gateway, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_on_a_registered_topic_reach_the_mqtt_subscriber() {
    let (_broker, gateway, mut sub) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "pub-registered").await;

    for (qos, level, topic) in [
        (QoS::AtMostOnce, 0, "sensors/q0"),
        (QoS::AtLeastOnce, 1, "sensors/q1"),
        (QoS::ExactlyOnce, 2, "sensors/q2"),
    ] {
        let id = mote.register(topic).await;
        let payload = format!("payload at qos {level}");
        let code = mote
            .publish(Topic::Normal(id), qos, false, payload.as_bytes())
            .await;
        assert_eq!(code, ReturnCode::Accepted, "{topic}");
        let message = sub.recv_on(topic, Duration::from_secs(10)).await;
        assert_eq!(message.text(), payload);
        assert_eq!(message.qos, level, "forwarded at the mote's QoS");
        assert!(!message.retain);
    }

    // The same name registers to the same id; a second message on it arrives as well.
    let id = mote.register("sensors/q1").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"again")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        sub.recv_on("sensors/q1", Duration::from_secs(10))
            .await
            .payload,
        b"again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_and_the_retain_flag_arrive_unchanged() {
    let (broker, gateway, mut sub) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "pub-binary").await;
    let id = mote.register("binary/retained").await;
    let payload: Vec<u8> = (0..=255).collect();
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, true, &payload)
            .await,
        ReturnCode::Accepted
    );
    let live = sub
        .recv_on("binary/retained", Duration::from_secs(10))
        .await;
    assert_eq!(live.payload, payload);

    // The broker kept it as its retained message: a new subscriber gets it with retain set.
    let mut late = MqttClient::connect(broker.port(), "publish-late").await;
    late.subscribe("binary/retained", 1).await;
    let retained = late.recv().await;
    assert_eq!(retained.payload, payload);
    assert!(retained.retain, "the mote's Retain=1 reached the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predefined_topic_from_the_config_needs_no_register() {
    let (_broker, gateway, mut sub) = setup(&[(42, "plant/boiler/temp")]).await;
    let mut mote = Mote::connected(gateway.addr(), "pub-predefined").await;
    for (qos, level) in [
        (QoS::AtMostOnce, 0),
        (QoS::AtLeastOnce, 1),
        (QoS::ExactlyOnce, 2),
    ] {
        let payload = format!("21.5 C at qos {level}");
        assert_eq!(
            mote.publish(Topic::Predefined(42), qos, false, payload.as_bytes())
                .await,
            ReturnCode::Accepted
        );
        let message = sub
            .recv_on("plant/boiler/temp", Duration::from_secs(10))
            .await;
        assert_eq!(message.text(), payload);
        assert_eq!(message.qos, level);
    }

    // An id the config does not define: PUBACK 0x02 (invalid topic id).
    assert_eq!(
        mote.publish(Topic::Predefined(43), QoS::AtLeastOnce, false, b"x")
            .await,
        ReturnCode::InvalidTopicId
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_topic_is_the_topic_name_upstream() {
    let (_broker, gateway, mut sub) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "pub-short").await;
    for (qos, level) in [
        (QoS::AtMostOnce, 0),
        (QoS::AtLeastOnce, 1),
        (QoS::ExactlyOnce, 2),
    ] {
        let payload = format!("short at qos {level}");
        assert_eq!(
            mote.publish(Topic::short("ab"), qos, false, payload.as_bytes())
                .await,
            ReturnCode::Accepted
        );
        let message = sub.recv_on("ab", Duration::from_secs(10)).await;
        assert_eq!(message.text(), payload);
        assert_eq!(message.qos, level);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_minus_one_from_a_peer_that_never_connected() {
    let (_broker, gateway, mut sub) = setup(&[(7, "field/rain")]).await;
    // Never connects: QoS -1 needs no CONNECT, REGISTER or SUBSCRIBE.
    let mut mote = Mote::new(gateway.addr(), "never-connected").await;

    mote.publish(Topic::Predefined(7), QoS::MinusOne, false, b"predefined")
        .await;
    let message = sub.recv_on("field/rain", Duration::from_secs(10)).await;
    assert_eq!(message.payload, b"predefined");
    assert_eq!(message.qos, 0, "QoS -1 is published at QoS 0");

    mote.publish(Topic::short("zz"), QoS::MinusOne, false, b"short")
        .await;
    let message = sub.recv_on("zz", Duration::from_secs(10)).await;
    assert_eq!(message.payload, b"short");
    assert_eq!(message.qos, 0);

    mote.publish(
        Topic::LongName("field/long/name".into()),
        QoS::MinusOne,
        false,
        b"long",
    )
    .await;
    let message = sub
        .recv_on("field/long/name", Duration::from_secs(10))
        .await;
    assert_eq!(message.payload, b"long");
    assert_eq!(message.qos, 0);

    // QoS -1 is never acknowledged. A PINGREQ from this unknown peer is answered with
    // DISCONNECT; datagrams are handled in order, so an answer to any of the PUBLISHes would
    // arrive before it.
    mote.send(sn_tests::Packet::PingReq { client_id: &[] })
        .await;
    let (answer, _) = mote
        .recv_raw(Duration::from_secs(10))
        .await
        .expect("DISCONNECT for the PINGREQ of an unknown peer");
    assert!(
        matches!(
            sn_tests::Packet::decode(&answer),
            Ok(sn_tests::Packet::Disconnect(_))
        ),
        "the first answer must be the DISCONNECT for the PINGREQ, got {:?}",
        sn_tests::Packet::decode(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_qos2_publish_is_forwarded_once() {
    use sn_tests::Packet;
    let (_broker, gateway, mut sub) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "pub-qos2-dup").await;
    let id = mote.register("exactly/once").await;
    let msg_id = mote.next_msg_id();
    let publish = |dup| {
        Packet::Publish(sn_codec::v12::Publish {
            dup,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: sn_codec::v12::PublishTopic::Normal(id),
            msg_id,
            data: b"once",
        })
    };
    let pubrec =
        |p: &Packet<'_>| matches!(p, Packet::PubRec { msg_id: m } if *m == msg_id).then_some(());
    mote.send(publish(false)).await;
    mote.expect("PUBREC", pubrec).await;
    // Our PUBREC "was lost": the mote sends the PUBLISH again, twice.
    mote.send(publish(true)).await;
    mote.expect("PUBREC for the DUP", pubrec).await;
    mote.send(publish(true)).await;
    mote.expect("PUBREC for the second DUP", pubrec).await;
    mote.send(Packet::PubRel { msg_id }).await;
    mote.expect("PUBCOMP", |p| {
        matches!(p, Packet::PubComp { msg_id: m } if *m == msg_id).then_some(())
    })
    .await;

    // Published after, on the same gateway connection: if it comes next, no copy followed.
    let fence = mote.register("exactly/fence").await;
    mote.publish(Topic::Normal(fence), QoS::AtLeastOnce, false, b"fence")
        .await;
    let first = sub.recv().await;
    assert_eq!(
        (first.topic.as_str(), first.payload.as_slice()),
        ("exactly/once", &b"once"[..])
    );
    let second = sub.recv().await;
    assert_eq!(
        (second.topic.as_str(), second.payload.as_slice()),
        ("exactly/fence", &b"fence"[..]),
        "the QoS 2 message was forwarded more than once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_topic_id_never_registered_gets_invalid_topic_id() {
    let (_broker, gateway, _sub) = setup(&[]).await;
    let mut mote = Mote::connected(gateway.addr(), "pub-stale-id").await;
    assert_eq!(
        mote.publish(Topic::Normal(0x4242), QoS::AtLeastOnce, false, b"x")
            .await,
        ReturnCode::InvalidTopicId
    );
    assert_eq!(
        mote.publish(Topic::Normal(0x4242), QoS::ExactlyOnce, false, b"x")
            .await,
        ReturnCode::InvalidTopicId
    );
    // Ids are per session: another mote's id means nothing here. The other mote registers
    // a topic; this mote, which has registered none, publishes with that id: refused, while
    // the same id is valid in the other mote's session.
    let mut other = Mote::connected(gateway.addr(), "pub-other").await;
    let id = other.register("private/topic").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"x")
            .await,
        ReturnCode::InvalidTopicId,
        "another session's topic id {id} was accepted"
    );
    assert_eq!(
        other
            .publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"x")
            .await,
        ReturnCode::Accepted,
        "the id is valid in the session that registered it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_use_the_three_byte_length_and_oversize_ones_are_dropped() {
    let (broker, gateway, mut sub) = setup(&[]).await;
    let mut publisher = MqttClient::connect(broker.port(), "long-publisher").await;
    let mut mote = Mote::connected(gateway.addr(), "pub-long").await;

    // Uplink: 600 bytes of payload needs the 3-byte length form.
    let id = mote.register("long/up").await;
    let payload: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, &payload)
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        sub.recv_on("long/up", Duration::from_secs(10))
            .await
            .payload,
        payload
    );

    // Downlink: the same length reaches the mote; one over max_packet_size (1024) is
    // dropped, and the message after it still comes.
    let ack = mote
        .subscribe(sn_tests::SubTopic::name("long/down"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    publisher.publish("long/down", &payload, 1, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, payload);
    publisher.publish("long/down", &[7u8; 2000], 1, false).await;
    publisher.publish("long/down", b"after", 1, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"after", "an oversize message reached the mote");
}

/// `motes` motes publish `each` messages at once (QoS per message from `qos_of`), with
/// broker.max_inflight = `inflight`; every message must be acknowledged within `op_timeout`
/// and arrive at the MQTT subscriber.
async fn many_motes_at_once(
    motes: usize,
    each: usize,
    inflight: u16,
    op_timeout: Duration,
    qos_of: fn(usize) -> QoS,
) {
    let broker = Mosquitto::running().await;
    let mut builder = Gateway::builder(broker.port());
    builder
        .config_mut()
        .broker
        .as_mut()
        .expect("a broker")
        .max_inflight = inflight;
    let gateway = builder.start().await;
    let mut sub = MqttClient::connect(broker.port(), "many-sub").await;
    sub.subscribe("many/#", 1).await;

    let mut tasks = Vec::new();
    for m in 0..motes {
        let addr = gateway.addr();
        tasks.push(tokio::spawn(async move {
            let mut mote = Mote::connected(addr, &format!("many-{m}")).await;
            mote.op_timeout = op_timeout;
            let id = mote.register(&format!("many/{m}")).await;
            for i in 0..each {
                mote.publish_reliably(
                    Topic::Normal(id),
                    qos_of(i),
                    false,
                    format!("{i}").as_bytes(),
                )
                .await;
            }
        }));
    }
    let mut stalled = 0;
    for task in tasks {
        if tokio::time::timeout(op_timeout + Duration::from_secs(30), task)
            .await
            .expect("every mote finished or failed in time")
            .is_err()
        {
            stalled += 1;
        }
    }
    assert_eq!(
        stalled, 0,
        "{stalled} of {motes} motes got no acknowledgement for a PUBLISH within {op_timeout:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < motes * each {
        let Some(m) = sub.try_recv(Duration::from_secs(10)).await else {
            break;
        };
        let text = m.text();
        seen.insert((m.topic, text));
    }
    assert_eq!(
        seen.len(),
        motes * each,
        "acknowledged messages missing at the subscriber"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_motes_publishing_at_once_beyond_the_broker_inflight_window_lose_nothing() {
    // 30 motes, 5 broker in-flight slots: the broker link queues the rest.
    many_motes_at_once(30, 20, 5, Duration::from_secs(20), |_| QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_motes_mixing_qos1_and_qos2_beyond_the_broker_inflight_window_are_all_acknowledged() {
    many_motes_at_once(30, 20, 5, Duration::from_secs(10), |i| {
        if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_link_on_loopback_works_both_ways() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::builder(broker.port())
        .bind("[::1]:0".parse().unwrap())
        .start()
        .await;
    assert!(gateway.addr().is_ipv6());
    let mut sub = MqttClient::connect(broker.port(), "v6-sub").await;
    sub.subscribe("v6/up", 1).await;
    let mut publisher = MqttClient::connect(broker.port(), "v6-publisher").await;

    let mut mote = Mote::connected(gateway.addr(), "v6-mote").await;
    assert!(mote.local_addr().is_ipv6());
    let id = mote.register("v6/up").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"over ::1")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        sub.recv_on("v6/up", Duration::from_secs(10)).await.payload,
        b"over ::1"
    );
    mote.subscribe(sn_tests::SubTopic::name("v6/down"), QoS::AtLeastOnce)
        .await;
    publisher.publish("v6/down", b"back", 1, false).await;
    assert_eq!(mote.recv_publish().await.data, b"back");
}
