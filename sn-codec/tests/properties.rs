//! Property tests for the v1.2 codec: every message type round-trips through `encode`/`decode`
//! (plain and forwarder-encapsulated), arbitrary and mutated datagrams never make decoding panic
//! and re-encode stably, and encoding into a too-small buffer fails cleanly without writing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeSet;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sn_codec::v12::{
    Advertise, Connect, Disconnect, Forwarded, Frame, GwInfo, Packet, PubAck, Publish,
    PublishTopic, RegAck, Register, ReturnCode, SearchGw, SubAck, Subscribe, SubscribeTopic,
    Unsubscribe, WillTopic,
};
use sn_codec::{EncodeError, MsgType, QoS};

// ---------------------------------------------------------------------------------------------
// Owned descriptions of packets (a `Packet` borrows its byte fields, so the strategy generates
// these and the test body borrows a `Packet` from them).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum PubTopicSpec {
    Normal(u16),
    Predefined(u16),
    Short([u8; 2]),
    LongName(Vec<u8>),
}

#[derive(Debug, Clone)]
enum SubTopicSpec {
    Name(Vec<u8>),
    Predefined(u16),
    Short([u8; 2]),
}

#[derive(Debug, Clone)]
struct WillSpec {
    qos: QoS,
    retain: bool,
    topic: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Spec {
    /// A packet without borrowed fields.
    Fixed(Packet<'static>),
    GwInfo {
        gw_id: u8,
        gw_add: Vec<u8>,
    },
    Connect {
        will: bool,
        clean_session: bool,
        protocol_id: u8,
        duration: u16,
        client_id: Vec<u8>,
    },
    /// WILLTOPIC (`upd == false`) or WILLTOPICUPD (`upd == true`).
    WillTopic {
        upd: bool,
        will: Option<WillSpec>,
    },
    /// WILLMSG (`upd == false`) or WILLMSGUPD (`upd == true`).
    WillMsg {
        upd: bool,
        msg: Vec<u8>,
    },
    Register {
        topic_id: u16,
        msg_id: u16,
        topic_name: Vec<u8>,
    },
    Publish {
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: PubTopicSpec,
        msg_id: u16,
        data: Vec<u8>,
    },
    Subscribe {
        dup: bool,
        qos: QoS,
        msg_id: u16,
        topic: SubTopicSpec,
    },
    Unsubscribe {
        msg_id: u16,
        topic: SubTopicSpec,
    },
    PingReq {
        client_id: Vec<u8>,
    },
}

impl SubTopicSpec {
    fn topic(&self) -> SubscribeTopic<'_> {
        match self {
            SubTopicSpec::Name(name) => SubscribeTopic::Name(name),
            SubTopicSpec::Predefined(id) => SubscribeTopic::Predefined(*id),
            SubTopicSpec::Short(name) => SubscribeTopic::Short(*name),
        }
    }
}

impl Spec {
    fn packet(&self) -> Packet<'_> {
        match self {
            Spec::Fixed(p) => *p,
            Spec::GwInfo { gw_id, gw_add } => Packet::GwInfo(GwInfo {
                gw_id: *gw_id,
                gw_add,
            }),
            Spec::Connect {
                will,
                clean_session,
                protocol_id,
                duration,
                client_id,
            } => Packet::Connect(Connect {
                will: *will,
                clean_session: *clean_session,
                protocol_id: *protocol_id,
                duration: *duration,
                client_id,
            }),
            Spec::WillTopic { upd, will } => {
                let will = will.as_ref().map(|w| WillTopic {
                    qos: w.qos,
                    retain: w.retain,
                    topic: &w.topic,
                });
                if *upd {
                    Packet::WillTopicUpd(will)
                } else {
                    Packet::WillTopic(will)
                }
            }
            Spec::WillMsg { upd, msg } => {
                if *upd {
                    Packet::WillMsgUpd { msg }
                } else {
                    Packet::WillMsg { msg }
                }
            }
            Spec::Register {
                topic_id,
                msg_id,
                topic_name,
            } => Packet::Register(Register {
                topic_id: *topic_id,
                msg_id: *msg_id,
                topic_name,
            }),
            Spec::Publish {
                dup,
                qos,
                retain,
                topic,
                msg_id,
                data,
            } => Packet::Publish(Publish {
                dup: *dup,
                qos: *qos,
                retain: *retain,
                topic: match topic {
                    PubTopicSpec::Normal(id) => PublishTopic::Normal(*id),
                    PubTopicSpec::Predefined(id) => PublishTopic::Predefined(*id),
                    PubTopicSpec::Short(name) => PublishTopic::Short(*name),
                    PubTopicSpec::LongName(name) => PublishTopic::LongName(name),
                },
                msg_id: *msg_id,
                data,
            }),
            Spec::Subscribe {
                dup,
                qos,
                msg_id,
                topic,
            } => Packet::Subscribe(Subscribe {
                dup: *dup,
                qos: *qos,
                msg_id: *msg_id,
                topic: topic.topic(),
            }),
            Spec::Unsubscribe { msg_id, topic } => Packet::Unsubscribe(Unsubscribe {
                msg_id: *msg_id,
                topic: topic.topic(),
            }),
            Spec::PingReq { client_id } => Packet::PingReq { client_id },
        }
    }

    /// A finer label than the MsgType, for the coverage test.
    fn kind(&self) -> String {
        let sub = |t: &SubTopicSpec| match t {
            SubTopicSpec::Name(_) => "Name",
            SubTopicSpec::Predefined(_) => "Predefined",
            SubTopicSpec::Short(_) => "Short",
        };
        let msg_type = self.packet().msg_type().name();
        let detail = match self {
            Spec::WillTopic { will, .. } => {
                if will.is_some() {
                    "Some"
                } else {
                    "None"
                }
            }
            Spec::Fixed(Packet::Disconnect(d)) => {
                if d.duration.is_some() {
                    "Some"
                } else {
                    "None"
                }
            }
            Spec::Publish { topic, .. } => match topic {
                PubTopicSpec::Normal(_) => "Normal",
                PubTopicSpec::Predefined(_) => "Predefined",
                PubTopicSpec::Short(_) => "Short",
                PubTopicSpec::LongName(_) => "LongName",
            },
            Spec::Subscribe { topic, .. } | Spec::Unsubscribe { topic, .. } => sub(topic),
            Spec::PingReq { client_id } => {
                if client_id.is_empty() {
                    "empty"
                } else {
                    "client_id"
                }
            }
            _ => "",
        };
        format!("{msg_type}/{detail}")
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Arbitrary bytes: mostly short, sometimes long enough to cross the 255/256 length boundary.
fn bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..64),
        2 => vec(any::<u8>(), 240..270),
        1 => vec(any::<u8>(), 0..=600),
    ]
    .boxed()
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::MinusOne),
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce),
    ]
}

fn qos_not_minus_one() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce),
    ]
}

fn return_code() -> impl Strategy<Value = ReturnCode> {
    any::<u8>().prop_map(ReturnCode::from_u8)
}

fn will_spec() -> impl Strategy<Value = Option<WillSpec>> {
    prop_oneof![
        Just(None),
        (qos(), any::<bool>(), bytes()).prop_map(|(qos, retain, topic)| Some(WillSpec {
            qos,
            retain,
            topic
        })),
    ]
}

fn sub_topic() -> impl Strategy<Value = SubTopicSpec> {
    prop_oneof![
        bytes().prop_map(SubTopicSpec::Name),
        any::<u16>().prop_map(SubTopicSpec::Predefined),
        any::<[u8; 2]>().prop_map(SubTopicSpec::Short),
    ]
}

/// A PUBLISH topic with a QoS it may be sent with.
fn pub_topic_and_qos() -> impl Strategy<Value = (PubTopicSpec, QoS)> {
    prop_oneof![
        (any::<u16>(), qos_not_minus_one()).prop_map(|(id, q)| (PubTopicSpec::Normal(id), q)),
        (any::<u16>(), qos()).prop_map(|(id, q)| (PubTopicSpec::Predefined(id), q)),
        (any::<[u8; 2]>(), qos()).prop_map(|(n, q)| (PubTopicSpec::Short(n), q)),
        bytes().prop_map(|name| (PubTopicSpec::LongName(name), QoS::MinusOne)),
    ]
}

/// Every v1.2 message type with arbitrary (valid) fields.
fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        1 => (any::<u8>(), any::<u16>())
            .prop_map(|(gw_id, duration)| Spec::Fixed(Packet::Advertise(Advertise { gw_id, duration }))),
        1 => any::<u8>().prop_map(|radius| Spec::Fixed(Packet::SearchGw(SearchGw { radius }))),
        1 => (any::<u8>(), bytes()).prop_map(|(gw_id, gw_add)| Spec::GwInfo { gw_id, gw_add }),
        1 => (any::<bool>(), any::<bool>(), any::<u8>(), any::<u16>(), bytes()).prop_map(
            |(will, clean_session, protocol_id, duration, client_id)| Spec::Connect {
                will,
                clean_session,
                protocol_id,
                duration,
                client_id,
            }
        ),
        1 => return_code().prop_map(|return_code| Spec::Fixed(Packet::ConnAck { return_code })),
        1 => Just(Spec::Fixed(Packet::WillTopicReq)),
        1 => will_spec().prop_map(|will| Spec::WillTopic { upd: false, will }),
        1 => Just(Spec::Fixed(Packet::WillMsgReq)),
        1 => bytes().prop_map(|msg| Spec::WillMsg { upd: false, msg }),
        1 => (any::<u16>(), any::<u16>(), bytes()).prop_map(|(topic_id, msg_id, topic_name)| {
            Spec::Register {
                topic_id,
                msg_id,
                topic_name,
            }
        }),
        1 => (any::<u16>(), any::<u16>(), return_code()).prop_map(|(topic_id, msg_id, return_code)| {
            Spec::Fixed(Packet::RegAck(RegAck {
                topic_id,
                msg_id,
                return_code,
            }))
        }),
        // PUBLISH gets more weight: it has the most shapes.
        4 => (any::<bool>(), any::<bool>(), pub_topic_and_qos(), any::<u16>(), bytes()).prop_map(
            |(dup, retain, (topic, qos), msg_id, data)| Spec::Publish {
                dup,
                qos,
                retain,
                topic,
                msg_id,
                data,
            }
        ),
        1 => (any::<u16>(), any::<u16>(), return_code()).prop_map(|(topic_id, msg_id, return_code)| {
            Spec::Fixed(Packet::PubAck(PubAck {
                topic_id,
                msg_id,
                return_code,
            }))
        }),
        1 => any::<u16>().prop_map(|msg_id| Spec::Fixed(Packet::PubComp { msg_id })),
        1 => any::<u16>().prop_map(|msg_id| Spec::Fixed(Packet::PubRec { msg_id })),
        1 => any::<u16>().prop_map(|msg_id| Spec::Fixed(Packet::PubRel { msg_id })),
        2 => (any::<bool>(), qos(), any::<u16>(), sub_topic()).prop_map(|(dup, qos, msg_id, topic)| {
            Spec::Subscribe {
                dup,
                qos,
                msg_id,
                topic,
            }
        }),
        1 => (qos(), any::<u16>(), any::<u16>(), return_code()).prop_map(
            |(qos, topic_id, msg_id, return_code)| Spec::Fixed(Packet::SubAck(SubAck {
                qos,
                topic_id,
                msg_id,
                return_code,
            }))
        ),
        2 => (any::<u16>(), sub_topic()).prop_map(|(msg_id, topic)| Spec::Unsubscribe { msg_id, topic }),
        1 => any::<u16>().prop_map(|msg_id| Spec::Fixed(Packet::UnsubAck { msg_id })),
        1 => prop_oneof![Just(Vec::new()), bytes()].prop_map(|client_id| Spec::PingReq { client_id }),
        1 => Just(Spec::Fixed(Packet::PingResp)),
        1 => any::<Option<u16>>()
            .prop_map(|duration| Spec::Fixed(Packet::Disconnect(Disconnect { duration }))),
        1 => will_spec().prop_map(|will| Spec::WillTopic { upd: true, will }),
        1 => return_code().prop_map(|return_code| Spec::Fixed(Packet::WillTopicResp { return_code })),
        1 => bytes().prop_map(|msg| Spec::WillMsg { upd: true, msg }),
        1 => return_code().prop_map(|return_code| Spec::Fixed(Packet::WillMsgResp { return_code })),
    ]
}

/// A forwarder node id (0..=40 bytes) and broadcast radius (0..=3).
fn forwarding() -> impl Strategy<Value = (Vec<u8>, u8)> {
    (vec(any::<u8>(), 0..=40), 0u8..=3)
}

/// Datagrams with a correct length header (either form), a MsgType that is usually known and
/// an arbitrary body: unlike uniformly random bytes, these mostly get past the header check.
fn framed_datagram() -> impl Strategy<Value = Vec<u8>> {
    let msg_type = prop_oneof![
        4 => 0u8..=0x1F,
        1 => Just(0xFE),
        1 => any::<u8>(),
    ];
    let body = prop_oneof![
        6 => vec(any::<u8>(), 0..12),
        2 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 240..270),
        1 => vec(any::<u8>(), 0..=600),
    ];
    (msg_type, body, any::<bool>(), forwarding(), any::<bool>()).prop_map(
        |(msg_type, body, long_form, (node_id, ctrl), forward)| {
            let short = body.len() + 2 <= 255 && !long_form;
            let mut out = Vec::new();
            if forward {
                out.push(u8::try_from(3 + node_id.len()).unwrap());
                out.push(0xFE);
                out.push(ctrl);
                out.extend_from_slice(&node_id);
            }
            if short {
                out.push(u8::try_from(body.len() + 2).unwrap());
            } else {
                out.push(0x01);
                out.extend_from_slice(&u16::try_from(body.len() + 4).unwrap().to_be_bytes());
            }
            out.push(msg_type);
            out.extend_from_slice(&body);
            out
        },
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, u8),
    Remove(Index),
    /// Rewrite the 1-byte length field to the current length, so the damage behind it gets
    /// past the header check.
    FixLength,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        2 => Just(Mutation::FixLength),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Truncate(i) if !bytes.is_empty() => {
            let len = i.index(bytes.len());
            bytes.truncate(len);
        }
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        Mutation::Remove(i) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes.remove(i);
        }
        Mutation::FixLength => {
            if let Ok(len) = u8::try_from(bytes.len()) {
                if len >= 2 && bytes[0] != 0x01 {
                    bytes[0] = len;
                }
            } else if let (Ok(len), Some(0x01)) = (u16::try_from(bytes.len()), bytes.first()) {
                if bytes.len() >= 4 {
                    bytes[1..3].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by several properties
// ---------------------------------------------------------------------------------------------

/// If `input` decodes (as a `Packet` or a `Frame`), re-encoding it is no longer than the input
/// and decodes to the same value (so it is a fixed point of decode→encode).
macro_rules! check_stable {
    ($ty:ident, $input:expr) => {{
        let input: &[u8] = $input;
        if let Ok(decoded) = $ty::decode(input) {
            let encoded = decoded.to_vec().map_err(|e| {
                TestCaseError::fail(format!("decoded {decoded:?} does not encode: {e}"))
            })?;
            prop_assert_eq!(encoded.len(), decoded.encoded_len());
            prop_assert!(
                encoded.len() <= input.len(),
                "re-encoded {} bytes from a {}-byte input",
                encoded.len(),
                input.len()
            );
            prop_assert_eq!($ty::decode(&encoded), Ok(decoded));
        }
    }};
}

fn check_decode(input: &[u8]) -> Result<(), TestCaseError> {
    check_stable!(Packet, input);
    check_stable!(Frame, input);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// 1. Every message type round-trips, plain and forwarder-encapsulated.
    #[test]
    fn round_trip(spec in spec(), (node_id, radius) in forwarding()) {
        let packet = spec.packet();
        let bytes = packet.to_vec().unwrap();
        prop_assert_eq!(bytes.len(), packet.encoded_len());
        prop_assert_eq!(bytes[0] == 0x01, bytes.len() > 255, "length form of {:02X?}", &bytes[..4]);
        if bytes.len() > 255 {
            prop_assert_eq!(usize::from(u16::from_be_bytes([bytes[1], bytes[2]])), bytes.len());
            prop_assert_eq!(bytes[3], packet.msg_type().to_u8());
        } else {
            prop_assert_eq!(usize::from(bytes[0]), bytes.len());
            prop_assert_eq!(bytes[1], packet.msg_type().to_u8());
        }
        prop_assert_eq!(Packet::decode(&bytes), Ok(packet));

        let plain = Frame::Packet(packet);
        prop_assert_eq!(plain.encoded_len(), bytes.len());
        prop_assert_eq!(&plain.to_vec().unwrap(), &bytes);
        prop_assert_eq!(Frame::decode(&bytes), Ok(plain));

        let fwd = Frame::Forwarded(Forwarded { radius, node_id: &node_id, packet });
        let fwd_bytes = fwd.to_vec().unwrap();
        prop_assert_eq!(fwd_bytes.len(), fwd.encoded_len());
        prop_assert_eq!(fwd_bytes.len(), 3 + node_id.len() + bytes.len());
        prop_assert_eq!(&fwd_bytes[3 + node_id.len()..], &bytes[..]);
        prop_assert_eq!(Frame::decode(&fwd_bytes), Ok(fwd));
    }

    /// 3. Flipped, truncated, extended or otherwise damaged encodings never make decoding panic,
    ///    and whatever still decodes re-encodes stably.
    #[test]
    fn mutated_encodings_never_panic(
        spec in spec(),
        forward in proptest::option::of(forwarding()),
        mutations in vec(mutation(), 1..6),
    ) {
        let packet = spec.packet();
        let mut bytes = match &forward {
            None => packet.to_vec().unwrap(),
            Some((node_id, radius)) => Frame::Forwarded(Forwarded {
                radius: *radius,
                node_id,
                packet,
            })
            .to_vec()
            .unwrap(),
        };
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_decode(&bytes)?;
    }

    /// 4. Encoding into a buffer that is too small fails with `BufferTooSmall` and writes
    ///    nothing; a buffer of exactly the right size takes the same bytes as `to_vec`.
    #[test]
    fn too_small_buffer_is_refused(
        spec in spec(),
        forward in proptest::option::of(forwarding()),
        short_by in any::<Index>(),
    ) {
        let packet = spec.packet();
        let frame = match &forward {
            None => Frame::Packet(packet),
            Some((node_id, radius)) => Frame::Forwarded(Forwarded {
                radius: *radius,
                node_id,
                packet,
            }),
        };
        let needed = frame.encoded_len();
        let room = short_by.index(needed); // 0..needed
        let mut storage = vec![0xA5u8; room];
        let mut buf: &mut [u8] = &mut storage;
        let result = frame.encode(&mut buf);
        prop_assert_eq!(result, Err(EncodeError::BufferTooSmall { needed, remaining: room }));
        prop_assert!(storage.iter().all(|&b| b == 0xA5), "bytes written on error");

        if forward.is_none() {
            let mut storage = vec![0xA5u8; room];
            let mut buf: &mut [u8] = &mut storage;
            let result = packet.encode(&mut buf);
            prop_assert_eq!(result, Err(EncodeError::BufferTooSmall { needed, remaining: room }));
            prop_assert!(storage.iter().all(|&b| b == 0xA5), "bytes written on error");
        }

        let mut exact = vec![0u8; needed];
        let mut buf: &mut [u8] = &mut exact;
        frame.encode(&mut buf).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(exact, frame.to_vec().unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// 2. Arbitrary bytes never make decoding panic; what decodes re-encodes stably and no longer.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        check_decode(&bytes)?;
    }

    /// 2b. The same for datagrams with a correct length header, which reach the body decoders.
    #[test]
    fn framed_bytes_never_panic(bytes in framed_datagram()) {
        check_decode(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage of the strategy itself
// ---------------------------------------------------------------------------------------------

fn sample_specs(n: usize) -> Vec<Spec> {
    let mut runner = TestRunner::deterministic();
    let strategy = spec();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

#[test]
fn strategy_covers_every_message_type() {
    let all: BTreeSet<u8> = (0..=u8::MAX)
        .filter_map(MsgType::from_u8)
        .filter(|t| *t != MsgType::Encapsulated)
        .map(MsgType::to_u8)
        .collect();
    assert_eq!(all.len(), 27, "MQTT-SN v1.2 has 27 message types");

    let specs = sample_specs(2000);
    let seen: BTreeSet<u8> = specs
        .iter()
        .map(|s| s.packet().msg_type().to_u8())
        .collect();
    let missing: Vec<_> = all
        .difference(&seen)
        .map(|&b| MsgType::from_u8(b).unwrap())
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
    assert_eq!(seen, all);

    let kinds: BTreeSet<String> = specs.iter().map(Spec::kind).collect();
    for kind in [
        "WILLTOPIC/None",
        "WILLTOPIC/Some",
        "WILLTOPICUPD/None",
        "WILLTOPICUPD/Some",
        "PUBLISH/Normal",
        "PUBLISH/Predefined",
        "PUBLISH/Short",
        "PUBLISH/LongName",
        "SUBSCRIBE/Name",
        "SUBSCRIBE/Predefined",
        "SUBSCRIBE/Short",
        "UNSUBSCRIBE/Name",
        "UNSUBSCRIBE/Predefined",
        "UNSUBSCRIBE/Short",
        "PINGREQ/empty",
        "PINGREQ/client_id",
        "DISCONNECT/None",
        "DISCONNECT/Some",
    ] {
        assert!(kinds.contains(kind), "never generated: {kind}");
    }

    // Both length forms, including packets right at the 255/256 boundary.
    let lens: Vec<usize> = specs.iter().map(|s| s.packet().encoded_len()).collect();
    assert!(
        lens.iter().any(|&l| l > 255),
        "no 3-byte length form generated"
    );
    assert!(
        lens.iter().any(|&l| (250..=255).contains(&l)),
        "nothing just below 256"
    );
    assert!(
        lens.iter().any(|&l| (258..=262).contains(&l)),
        "nothing just above 255"
    );
}

#[test]
fn strategy_respects_encoding_constraints() {
    for spec in sample_specs(2000) {
        if let Packet::Publish(p) = spec.packet() {
            match p.topic {
                PublishTopic::LongName(_) => assert_eq!(p.qos, QoS::MinusOne),
                PublishTopic::Normal(_) => assert_ne!(p.qos, QoS::MinusOne),
                _ => {}
            }
        }
        assert!(spec.packet().to_vec().is_ok(), "{spec:?} does not encode");
    }
}
