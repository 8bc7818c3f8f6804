//! Bad input: a garbage flood from one peer costs another mote nothing; a peer the gateway does
//! not know is told to reconnect (DISCONNECT).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use sn_codec::v12::{Packet, Publish, PublishTopic, Register, Subscribe, SubscribeTopic};
use sn_tests::{Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic, XorShift};
use tokio::net::UdpSocket;

const GARBAGE: usize = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_from_one_peer_changes_nothing_for_another_mote() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut up = MqttClient::connect(broker.port(), "flood-up").await;
    up.subscribe("flood/up", 1).await;
    let mut publisher = MqttClient::connect(broker.port(), "flood-publisher").await;

    let mut mote = Mote::connected(gateway.addr(), "steady").await;
    let up_id = mote.register("flood/up").await;
    let ack = mote
        .subscribe(SubTopic::name("flood/down"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);

    let flood = {
        let target = gateway.addr();
        tokio::spawn(async move {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let mut rng = XorShift::new(0x5EED_F100D);
            for i in 0..GARBAGE {
                let len = 1 + rng.below(80) as usize;
                let mut datagram = rng.bytes(len);
                // A third start with a plausible length byte, so that they get past the
                // framing and into the message decoders.
                if i % 3 == 0 {
                    if let Some(first) = datagram.first_mut() {
                        *first = len as u8;
                    }
                }
                socket.send_to(&datagram, target).await.unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };

    let mut rounds = 0;
    let mut during_flood = 0;
    while rounds < 20 || !flood.is_finished() {
        if !flood.is_finished() {
            during_flood += 1;
        }
        let up_payload = format!("up-{rounds}");
        assert_eq!(
            mote.publish(
                Topic::Normal(up_id),
                QoS::AtLeastOnce,
                false,
                up_payload.as_bytes()
            )
            .await,
            ReturnCode::Accepted,
            "round {rounds}"
        );
        let down_payload = format!("down-{rounds}");
        publisher
            .publish("flood/down", down_payload.as_bytes(), 1, false)
            .await;
        let got = mote.recv_publish().await;
        assert_eq!(got.data, down_payload.as_bytes(), "round {rounds}");
        rounds += 1;
        assert!(rounds < 10_000, "the flood never finished");
    }
    flood.await.unwrap();
    assert!(during_flood > 0, "no round ran while the flood was on");
    for round in 0..rounds {
        let message = up.recv_on("flood/up", Duration::from_secs(10)).await;
        assert_eq!(message.text(), format!("up-{round}"));
    }
    mote.ping().await;
    println!(
        "{rounds} publish/receive rounds, {during_flood} of them during a flood of {GARBAGE} \
         garbage datagrams"
    );
}

/// The next datagram at `peer` must be a DISCONNECT from the gateway at `gateway`.
async fn expect_disconnect(peer: &mut Mote, gateway: SocketAddr, what: &str) {
    let (datagram, from) = peer
        .recv_raw(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no answer to {what} from an unknown peer"));
    assert_eq!(from, gateway);
    assert!(
        matches!(Packet::decode(&datagram), Ok(Packet::Disconnect(_))),
        "{what} from an unknown peer: expected DISCONNECT, got {:?}",
        Packet::decode(&datagram)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_peer_gets_disconnect() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let gw = gateway.addr();
    // Make sure the gateway is fully up (broker connected) with a real session beside.
    let _known = Mote::connected(gateway.addr(), "known").await;

    let mut stranger = Mote::new(gateway.addr(), "stranger").await;
    stranger
        .send(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(1),
            msg_id: 1,
            data: b"who am I",
        }))
        .await;
    expect_disconnect(&mut stranger, gw, "PUBLISH QoS 1").await;

    stranger.send(Packet::PingReq { client_id: &[] }).await;
    expect_disconnect(&mut stranger, gw, "PINGREQ").await;

    stranger
        .send(Packet::PingReq {
            client_id: b"nobody",
        })
        .await;
    expect_disconnect(&mut stranger, gw, "PINGREQ with an unknown client id").await;

    stranger
        .send(Packet::Register(Register {
            topic_id: 0,
            msg_id: 2,
            topic_name: b"a/b",
        }))
        .await;
    expect_disconnect(&mut stranger, gw, "REGISTER").await;

    stranger
        .send(Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: 3,
            topic: SubscribeTopic::Name(b"a/#"),
        }))
        .await;
    expect_disconnect(&mut stranger, gw, "SUBSCRIBE").await;

    // A DISCONNECTed mote is unknown too once its session is gone.
    let mut gone = Mote::connected(gateway.addr(), "gone").await;
    gone.disconnect().await;
    gone.send(Packet::PingReq { client_id: &[] }).await;
    expect_disconnect(&mut gone, gw, "PINGREQ after DISCONNECT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_from_a_connected_mote_do_not_end_its_session() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut sub = MqttClient::connect(broker.port(), "malformed-sub").await;
    sub.subscribe("malformed/#", 1).await;
    let mut mote = Mote::connected(gateway.addr(), "clumsy").await;
    let id = mote.register("malformed/ok").await;
    for garbage in [
        &[][..],
        &[0x00],
        &[0x01],
        &[0x05, 0x0C],                               // length says 5, 2 bytes received
        &[0x02, 0x0C],                               // PUBLISH without a body
        &[0x01, 0x00, 0x03, 0x16],                   // 3-byte length form, length 3 < 4
        &[0x03, 0xFE, 0x00],                         // encapsulation without an inner message
        &[0x04, 0x04, 0x00, 0x02],                   // CONNECT cut short
        &[0x07, 0x0B, 0x00, 0x01, 0x00, 0x01, 0x05], // REGACK nobody asked for
        &[0x02, 0x11],                               // reserved type
    ] {
        mote.send_raw(garbage).await;
    }
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"still here")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        sub.recv_on("malformed/ok", Duration::from_secs(10))
            .await
            .payload,
        b"still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_mote_costs_the_others_nothing() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut publisher = MqttClient::connect(broker.port(), "vanish-publisher").await;

    // Subscribed, then its socket closes: every send to it now ends in ICMP port unreachable.
    let mut ghost = Mote::connected(gateway.addr(), "ghost").await;
    ghost
        .subscribe(SubTopic::name("vanish/all"), QoS::AtMostOnce)
        .await;
    ghost
        .subscribe(SubTopic::name("vanish/q1"), QoS::AtLeastOnce)
        .await;
    drop(ghost);

    let mut alive = Mote::connected(gateway.addr(), "alive").await;
    alive
        .subscribe(SubTopic::name("vanish/all"), QoS::AtMostOnce)
        .await;
    publisher
        .publish("vanish/q1", b"never acked", 1, false)
        .await;
    for i in 0..50 {
        let payload = format!("m{i}");
        publisher
            .publish("vanish/all", payload.as_bytes(), 1, false)
            .await;
        // Each message arrives, in order; a round may take long on a loaded machine, but not
        // the seconds a gateway stalled on the vanished mote would cost: 5 s, 10 x the
        // former bound.
        let start = std::time::Instant::now();
        let got = alive.recv_publish().await;
        assert_eq!(got.data, payload.as_bytes(), "round {i}: out of order");
        alive.ping().await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "round {i} took {:?} while the gateway sent to a closed port",
            start.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_the_documented_return_codes() {
    use sn_codec::v12::{Connect, WillTopic};
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    // Wait for the broker link, so that refusals below are about the request, not congestion.
    let mut mote = Mote::connected(gateway.addr(), "strict").await;

    let connect_with = |protocol_id, will, clean_session, client_id: &'static [u8]| {
        Packet::Connect(Connect {
            will,
            clean_session,
            protocol_id,
            duration: 60,
            client_id,
        })
    };
    let connect = |protocol_id, will, client_id| connect_with(protocol_id, will, true, client_id);
    let connack = |p: &Packet<'_>| match p {
        Packet::ConnAck { return_code } => Some(*return_code),
        _ => None,
    };
    let mut other = Mote::new(gateway.addr(), "other").await;
    for (what, packet) in [
        ("ProtocolId 2", connect(2, false, b"other")),
        // With CleanSession=1 one is assigned (tests below); with 0 nobody could resume it.
        (
            "an empty client id and CleanSession=0",
            connect_with(1, false, false, b""),
        ),
        ("a 65-byte client id", connect(1, false, &[b'x'; 65])),
    ] {
        other.send(packet).await;
        assert_eq!(
            other.expect("CONNACK", connack).await,
            ReturnCode::NotSupported,
            "CONNECT with {what}"
        );
    }

    // An empty client id with CleanSession=1 (cc.mqttsn's client apps send none by default)
    // gets one assigned, as MQTT 3.1.1 servers do: accepted.
    other.send(connect(1, false, b"")).await;
    assert_eq!(
        other.expect("CONNACK", connack).await,
        ReturnCode::Accepted,
        "CONNECT with an empty client id and CleanSession=1"
    );

    // A Will topic with a wildcard cannot be published: CONNACK 0x03.
    other.send(connect(1, true, b"other")).await;
    other
        .expect("WILLTOPICREQ", |p| {
            matches!(p, Packet::WillTopicReq).then_some(())
        })
        .await;
    other
        .send(Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: b"wills/#",
        })))
        .await;
    assert_eq!(
        other.expect("CONNACK", connack).await,
        ReturnCode::NotSupported
    );

    // An empty WILLTOPIC: no Will, CONNACK at once without WILLMSGREQ.
    other.send(connect(1, true, b"other")).await;
    other
        .expect("WILLTOPICREQ", |p| {
            matches!(p, Packet::WillTopicReq).then_some(())
        })
        .await;
    other.send(Packet::WillTopic(None)).await;
    let answer = other
        .expect("CONNACK or WILLMSGREQ", |p| match p {
            Packet::ConnAck { return_code } => Some(Some(*return_code)),
            Packet::WillMsgReq => Some(None),
            _ => None,
        })
        .await;
    assert_eq!(
        answer,
        Some(ReturnCode::Accepted),
        "empty WILLTOPIC is answered with CONNACK"
    );

    // Connected requests with bad topics.
    let msg_id = mote.next_msg_id();
    mote.send(Packet::Register(Register {
        topic_id: 0,
        msg_id,
        topic_name: b"a/+",
    }))
    .await;
    let regack = mote
        .expect("REGACK", |p| match p {
            Packet::RegAck(a) if a.msg_id == msg_id => Some(*a),
            _ => None,
        })
        .await;
    assert_eq!(regack.return_code, ReturnCode::NotSupported, "REGISTER a/+");
    assert_eq!(regack.topic_id, 0);

    let ack = mote
        .subscribe(SubTopic::name("a/#/b"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::NotSupported, "SUBSCRIBE a/#/b");

    let id = mote.register("strict/ok").await;
    mote.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(id),
        msg_id: 0,
        data: b"no msg id",
    }))
    .await;
    let puback = mote
        .expect("PUBACK", |p| match p {
            Packet::PubAck(a) => Some(*a),
            _ => None,
        })
        .await;
    assert_eq!(
        puback.return_code,
        ReturnCode::NotSupported,
        "QoS 1 with MsgId 0"
    );

    // After all that, the session works.
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"fine")
            .await,
        ReturnCode::Accepted
    );
}
