//! The test vectors of section 8 of `shared/docs/mqtt-sn-reference.md` (V01–V36, X1–X4), the
//! QoS -1 long-name example of section 4.9, the forwarder examples of section 3, and malformed
//! datagrams with the exact [`DecodeError`] each must give.
//!
//! Every valid vector is checked in both directions: decoding the bytes gives exactly the
//! expected typed packet, and encoding that packet gives exactly the bytes (and
//! `encoded_len()` agrees).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::num::NonZeroU16;

use sn_codec::v12::{
    Advertise, Connect, Disconnect, Forwarded, Frame, GwInfo, Packet, PubAck, Publish,
    PublishTopic, RegAck, Register, ReturnCode, SearchGw, SubAck, Subscribe, SubscribeTopic,
    Unsubscribe, WillTopic,
};
use sn_codec::{DecodeError, Expected, MsgType, ProtocolVersion, QoS};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses space-separated hex such as `"09 04 0C 01"`.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|byte| {
            u8::from_str_radix(byte, 16).unwrap_or_else(|e| panic!("bad hex byte {byte:?}: {e}"))
        })
        .collect()
}

/// Checks a plain (not forwarded) vector in both directions, through `Packet` and `Frame`.
fn check_packet(bytes: &[u8], expected: Packet<'_>) {
    // Bytes -> packet.
    assert_eq!(Packet::decode(bytes), Ok(expected), "Packet::decode");
    assert_eq!(
        Frame::decode(bytes),
        Ok(Frame::Packet(expected)),
        "Frame::decode of a plain packet"
    );

    // Packet -> bytes.
    assert_eq!(expected.encoded_len(), bytes.len(), "encoded_len");
    assert_eq!(expected.to_vec().unwrap(), bytes, "Packet::to_vec");
    let mut buf = Vec::new();
    expected.encode(&mut buf).unwrap();
    assert_eq!(buf, bytes, "Packet::encode");

    let frame = Frame::Packet(expected);
    assert_eq!(frame.encoded_len(), bytes.len(), "Frame::encoded_len");
    assert_eq!(frame.to_vec().unwrap(), bytes, "Frame::to_vec");
    let mut buf = Vec::new();
    frame.encode(&mut buf).unwrap();
    assert_eq!(buf, bytes, "Frame::encode");
    assert_eq!(frame.packet(), &expected);
}

/// Checks a forwarder-encapsulated vector in both directions.
fn check_frame(bytes: &[u8], expected: Frame<'_>) {
    assert_eq!(Frame::decode(bytes), Ok(expected), "Frame::decode");
    assert_eq!(expected.encoded_len(), bytes.len(), "Frame::encoded_len");
    assert_eq!(expected.to_vec().unwrap(), bytes, "Frame::to_vec");
    let mut buf = Vec::new();
    expected.encode(&mut buf).unwrap();
    assert_eq!(buf, bytes, "Frame::encode");
}

/// The byte offset every [`DecodeError`] variant carries.
fn offset(err: &DecodeError) -> usize {
    match *err {
        DecodeError::TooShort { at, .. }
        | DecodeError::ZeroLength { at }
        | DecodeError::LongLengthTooSmall { at, .. }
        | DecodeError::LengthMismatch { at, .. }
        | DecodeError::ReservedMsgType { at, .. }
        | DecodeError::BodyLength { at, .. }
        | DecodeError::ReservedTopicIdType { at, .. }
        | DecodeError::TopicNameOverrun { at, .. }
        | DecodeError::EncapsulationLength { at, .. }
        | DecodeError::UnexpectedEncapsulation { at } => at,
        ref other => panic!("unknown DecodeError variant {other:?}"),
    }
}

/// Checks that an error's Display text is non-empty and names its byte offset.
fn check_display(err: &DecodeError) {
    let text = err.to_string();
    assert!(!text.is_empty(), "empty Display for {err:?}");
    let at = offset(err);
    assert!(
        text.contains(&format!("byte {at}")),
        "Display {text:?} does not mention byte {at}"
    );
}

/// Checks that `Frame::decode` refuses `bytes` with exactly `expected`, and, when the datagram
/// is not a forwarder encapsulation, that `Packet::decode` gives the same error.
fn check_error(bytes: &[u8], expected: DecodeError) {
    assert_eq!(Frame::decode(bytes), Err(expected.clone()), "Frame::decode");
    let forwarded = matches!(bytes, [len, 0xFE, ..] if *len != 0x01);
    if !forwarded {
        assert_eq!(
            Packet::decode(bytes),
            Err(expected.clone()),
            "Packet::decode"
        );
    }
    check_display(&expected);
}

/// PUBLISH QoS 0, normal TopicId 1, MsgId 0, `n` bytes of 0x41 (V35, V36).
fn long_publish_bytes(len_field: &[u8], n: usize) -> Vec<u8> {
    let mut bytes = len_field.to_vec();
    bytes.extend_from_slice(&hex("0C 00 00 01 00 00"));
    bytes.extend(std::iter::repeat_n(0x41, n));
    bytes
}

fn qos0_publish(data: &[u8]) -> Packet<'_> {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Normal(1),
        msg_id: 0,
        data,
    })
}

// ---------------------------------------------------------------------------------------------
// V01–V36
// ---------------------------------------------------------------------------------------------

#[test]
fn v01_pingresp() {
    check_packet(&hex("02 17"), Packet::PingResp);
}

#[test]
fn v02_advertise() {
    check_packet(
        &hex("05 00 01 03 84"),
        Packet::Advertise(Advertise {
            gw_id: 1,
            duration: 900,
        }),
    );
}

#[test]
fn v03_searchgw_radius0() {
    check_packet(&hex("03 01 00"), Packet::SearchGw(SearchGw { radius: 0 }));
}

#[test]
fn v04_gwinfo_from_gateway() {
    check_packet(
        &hex("03 02 01"),
        Packet::GwInfo(GwInfo {
            gw_id: 1,
            gw_add: &[],
        }),
    );
}

#[test]
fn v05_gwinfo_from_client_with_gwadd() {
    check_packet(
        &hex("05 02 01 12 34"),
        Packet::GwInfo(GwInfo {
            gw_id: 1,
            gw_add: &[0x12, 0x34],
        }),
    );
}

#[test]
fn v06_connect_clean_no_will() {
    let expected = Connect {
        will: false,
        clean_session: true,
        protocol_id: 1,
        duration: 60,
        client_id: b"abc",
    };
    check_packet(
        &hex("09 04 04 01 00 3C 61 62 63"),
        Packet::Connect(expected),
    );
    assert_eq!(expected.version(), Some(ProtocolVersion::V1_2));
}

#[test]
fn v07_connect_clean_with_will() {
    let expected = Connect {
        will: true,
        clean_session: true,
        protocol_id: 1,
        duration: 60,
        client_id: b"abc",
    };
    check_packet(
        &hex("09 04 0C 01 00 3C 61 62 63"),
        Packet::Connect(expected),
    );
    assert_eq!(expected.version(), Some(ProtocolVersion::V1_2));
}

#[test]
fn v08_connack_accepted() {
    check_packet(
        &hex("03 05 00"),
        Packet::ConnAck {
            return_code: ReturnCode::Accepted,
        },
    );
}

#[test]
fn v09_willtopic_qos1_retain() {
    check_packet(
        &hex("06 07 30 77 2F 74"),
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: b"w/t",
        })),
    );
}

#[test]
fn v10_willtopic_empty() {
    check_packet(&hex("02 07"), Packet::WillTopic(None));
}

#[test]
fn v11_willmsg() {
    check_packet(&hex("05 09 62 79 65"), Packet::WillMsg { msg: b"bye" });
}

#[test]
fn v12_register_from_client() {
    check_packet(
        &hex("09 0A 00 00 00 01 61 2F 62"),
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 1,
            topic_name: b"a/b",
        }),
    );
}

#[test]
fn v13_regack_accepted() {
    check_packet(
        &hex("07 0B 00 01 00 01 00"),
        Packet::RegAck(RegAck {
            topic_id: 1,
            msg_id: 1,
            return_code: ReturnCode::Accepted,
        }),
    );
}

#[test]
fn v14_register_from_gateway() {
    check_packet(
        &hex("09 0A 00 05 00 02 73 2F 31"),
        Packet::Register(Register {
            topic_id: 5,
            msg_id: 2,
            topic_name: b"s/1",
        }),
    );
}

#[test]
fn v15_publish_qos0_normal() {
    check_packet(&hex("09 0C 00 00 01 00 00 68 69"), qos0_publish(b"hi"));
}

#[test]
fn v16_publish_qos1_retain() {
    check_packet(
        &hex("09 0C 30 00 01 00 02 68 69"),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: PublishTopic::Normal(1),
            msg_id: 2,
            data: b"hi",
        }),
    );
}

#[test]
fn v17_publish_dup_qos2_predefined() {
    check_packet(
        &hex("08 0C C1 00 10 00 03 01"),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: PublishTopic::Predefined(0x0010),
            msg_id: 3,
            data: &[0x01],
        }),
    );
}

#[test]
fn v18_publish_qos_minus1_short_name() {
    check_packet(
        &hex("08 0C 62 61 62 00 00 78"),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: false,
            topic: PublishTopic::Short(*b"ab"),
            msg_id: 0,
            data: b"x",
        }),
    );
}

#[test]
fn v19_publish_qos_minus1_predefined() {
    check_packet(
        &hex("08 0C 61 00 01 00 00 78"),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: false,
            topic: PublishTopic::Predefined(1),
            msg_id: 0,
            data: b"x",
        }),
    );
}

#[test]
fn v20_puback_accepted() {
    check_packet(
        &hex("07 0D 00 01 00 02 00"),
        Packet::PubAck(PubAck {
            topic_id: 1,
            msg_id: 2,
            return_code: ReturnCode::Accepted,
        }),
    );
}

#[test]
fn v21_puback_invalid_topic_id() {
    check_packet(
        &hex("07 0D 00 01 00 02 02"),
        Packet::PubAck(PubAck {
            topic_id: 1,
            msg_id: 2,
            return_code: ReturnCode::InvalidTopicId,
        }),
    );
}

#[test]
fn v22_pubrec() {
    check_packet(&hex("04 0F 00 03"), Packet::PubRec { msg_id: 3 });
}

#[test]
fn v23_pubrel() {
    check_packet(&hex("04 10 00 03"), Packet::PubRel { msg_id: 3 });
}

#[test]
fn v24_pubcomp() {
    check_packet(&hex("04 0E 00 03"), Packet::PubComp { msg_id: 3 });
}

#[test]
fn v25_subscribe_qos1_name() {
    check_packet(
        &hex("08 12 20 00 04 61 2F 23"),
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: 4,
            topic: SubscribeTopic::Name(b"a/#"),
        }),
    );
}

#[test]
fn v26_suback_wildcard() {
    check_packet(
        &hex("08 13 20 00 00 00 04 00"),
        Packet::SubAck(SubAck {
            qos: QoS::AtLeastOnce,
            topic_id: 0,
            msg_id: 4,
            return_code: ReturnCode::Accepted,
        }),
    );
}

#[test]
fn v27_subscribe_qos0_predefined() {
    check_packet(
        &hex("07 12 01 00 05 00 10"),
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtMostOnce,
            msg_id: 5,
            topic: SubscribeTopic::Predefined(0x0010),
        }),
    );
}

#[test]
fn v28_subscribe_qos2_short_name() {
    check_packet(
        &hex("07 12 42 00 06 61 62"),
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::ExactlyOnce,
            msg_id: 6,
            topic: SubscribeTopic::Short(*b"ab"),
        }),
    );
}

#[test]
fn v29_suback_qos0_topic1() {
    check_packet(
        &hex("08 13 00 00 01 00 07 00"),
        Packet::SubAck(SubAck {
            qos: QoS::AtMostOnce,
            topic_id: 1,
            msg_id: 7,
            return_code: ReturnCode::Accepted,
        }),
    );
}

#[test]
fn v30_unsubscribe_name() {
    check_packet(
        &hex("08 14 00 00 08 61 2F 62"),
        Packet::Unsubscribe(Unsubscribe {
            msg_id: 8,
            topic: SubscribeTopic::Name(b"a/b"),
        }),
    );
}

#[test]
fn v31_pingreq_with_client_id() {
    check_packet(
        &hex("05 16 63 6C 31"),
        Packet::PingReq { client_id: b"cl1" },
    );
}

#[test]
fn v32_disconnect_sleep_300() {
    let expected = Disconnect {
        duration: Some(300),
    };
    check_packet(&hex("04 18 01 2C"), Packet::Disconnect(expected));
    assert_eq!(expected.sleep_duration(), NonZeroU16::new(300));
}

#[test]
fn v33_willtopicupd_empty() {
    check_packet(&hex("02 1A"), Packet::WillTopicUpd(None));
}

#[test]
fn v34_forwarded_pingreq() {
    let bytes = hex("05 FE 00 0A 0B 02 16");
    check_frame(
        &bytes,
        Frame::Forwarded(Forwarded {
            radius: 0,
            node_id: &[0x0A, 0x0B],
            packet: Packet::PingReq { client_id: &[] },
        }),
    );
    // Packet::decode only takes plain messages, and says why it refuses this one.
    assert_eq!(
        Packet::decode(&bytes),
        Err(DecodeError::UnexpectedEncapsulation { at: 1 })
    );
}

#[test]
fn v35_publish_258_bytes_three_byte_length() {
    let bytes = long_publish_bytes(&[0x01, 0x01, 0x02], 249);
    assert_eq!(bytes.len(), 258);
    let payload = vec![0x41; 249];
    check_packet(&bytes, qos0_publish(&payload));
}

#[test]
fn v36_publish_255_bytes_one_byte_length() {
    let bytes = long_publish_bytes(&[0xFF], 248);
    assert_eq!(bytes.len(), 255);
    let payload = vec![0x41; 248];
    check_packet(&bytes, qos0_publish(&payload));
}

// ---------------------------------------------------------------------------------------------
// X1–X4
// ---------------------------------------------------------------------------------------------

#[test]
fn x1_declared_length_exceeds_datagram() {
    let bytes = hex("03 17");
    let err = Packet::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::LengthMismatch {
                declared: 3,
                received: 2,
                ..
            }
        ),
        "{err:?}"
    );
    check_error(
        &bytes,
        DecodeError::LengthMismatch {
            at: 0,
            declared: 3,
            received: 2,
        },
    );
}

#[test]
fn x2_pingresp_non_canonical_three_byte_length() {
    let bytes = hex("01 00 04 17");
    assert_eq!(Packet::decode(&bytes), Ok(Packet::PingResp));
    assert_eq!(Frame::decode(&bytes), Ok(Frame::Packet(Packet::PingResp)));
    let reencoded = Packet::decode(&bytes).unwrap().to_vec().unwrap();
    assert_eq!(reencoded, hex("02 17"));
    assert_eq!(Packet::PingResp.encoded_len(), 2);
}

#[test]
fn x3_disconnect_duration_zero_is_plain_disconnect() {
    let bytes = hex("04 18 00 00");
    let expected = Disconnect { duration: Some(0) };
    assert_eq!(Packet::decode(&bytes), Ok(Packet::Disconnect(expected)));
    let Ok(Packet::Disconnect(decoded)) = Packet::decode(&bytes) else {
        panic!("not a DISCONNECT");
    };
    assert_eq!(decoded.duration, Some(0));
    assert_eq!(decoded.sleep_duration(), None);
    // The field is kept exactly as received, so it re-encodes as received.
    check_packet(&bytes, Packet::Disconnect(expected));
    // A plain DISCONNECT has no sleep duration either.
    assert_eq!(Disconnect { duration: None }.sleep_duration(), None);
}

#[test]
fn x4_connect_protocol_id_zero_is_unsupported() {
    let bytes = hex("09 04 04 00 00 3C 61 62 63");
    let expected = Connect {
        will: false,
        clean_session: true,
        protocol_id: 0,
        duration: 60,
        client_id: b"abc",
    };
    assert_eq!(Packet::decode(&bytes), Ok(Packet::Connect(expected)));
    let Ok(Packet::Connect(decoded)) = Packet::decode(&bytes) else {
        panic!("not a CONNECT");
    };
    assert_eq!(decoded.protocol_id, 0);
    assert_eq!(decoded.version(), None);
    assert_eq!(ProtocolVersion::from_protocol_id(0), None);
    check_packet(&bytes, Packet::Connect(expected));
}

// ---------------------------------------------------------------------------------------------
// Other examples of the reference
// ---------------------------------------------------------------------------------------------

#[test]
fn s4_9_publish_qos_minus1_long_name() {
    check_packet(
        &hex("0B 0C 60 00 03 00 00 61 2F 62 78"),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: false,
            topic: PublishTopic::LongName(b"a/b"),
            msg_id: 0,
            data: b"x",
        }),
    );
}

#[test]
fn s3_forwarded_connack_to_node() {
    check_frame(
        &hex("05 FE 00 0A 0B 03 05 00"),
        Frame::Forwarded(Forwarded {
            radius: 0,
            node_id: &[0x0A, 0x0B],
            packet: Packet::ConnAck {
                return_code: ReturnCode::Accepted,
            },
        }),
    );
}

#[test]
fn s2_worked_examples_not_in_section_8() {
    let cases: [(&str, Packet<'_>); 12] = [
        (
            "03 05 01",
            Packet::ConnAck {
                return_code: ReturnCode::Congestion,
            },
        ),
        (
            "03 05 03",
            Packet::ConnAck {
                return_code: ReturnCode::NotSupported,
            },
        ),
        ("02 06", Packet::WillTopicReq),
        ("02 08", Packet::WillMsgReq),
        ("04 15 00 08", Packet::UnsubAck { msg_id: 8 }),
        ("02 16", Packet::PingReq { client_id: &[] }),
        ("02 18", Packet::Disconnect(Disconnect { duration: None })),
        (
            "04 1A 00 77",
            Packet::WillTopicUpd(Some(WillTopic {
                qos: QoS::AtMostOnce,
                retain: false,
                topic: b"w",
            })),
        ),
        (
            "03 1B 00",
            Packet::WillTopicResp {
                return_code: ReturnCode::Accepted,
            },
        ),
        ("03 1C 78", Packet::WillMsgUpd { msg: b"x" }),
        (
            "03 1D 00",
            Packet::WillMsgResp {
                return_code: ReturnCode::Accepted,
            },
        ),
        (
            "07 0D 00 01 00 02 02",
            Packet::PubAck(PubAck {
                topic_id: 1,
                msg_id: 2,
                return_code: ReturnCode::InvalidTopicId,
            }),
        ),
    ];
    for (text, expected) in cases {
        check_packet(&hex(text), expected);
    }
}

#[test]
fn hex_helper_parses_spaced_bytes() {
    assert_eq!(hex("09 04 0C 01"), vec![0x09, 0x04, 0x0C, 0x01]);
    assert_eq!(hex(" ff  0a "), vec![0xFF, 0x0A]);
    assert_eq!(hex(""), Vec::<u8>::new());
}

// ---------------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_header_lengths() {
    check_error(
        &[],
        DecodeError::TooShort {
            at: 0,
            len: 0,
            needed: 2,
        },
    );
    check_error(
        &hex("02"),
        DecodeError::TooShort {
            at: 0,
            len: 1,
            needed: 2,
        },
    );
    check_error(&hex("00 17"), DecodeError::ZeroLength { at: 0 });
    check_error(
        &hex("01 00 03 17"),
        DecodeError::LongLengthTooSmall { at: 0, declared: 3 },
    );
    check_error(
        &hex("05 16 63 6C"),
        DecodeError::LengthMismatch {
            at: 0,
            declared: 5,
            received: 4,
        },
    );
}

#[test]
fn bad_puback_body_too_short() {
    check_error(
        &hex("06 0D 00 01 00 02"),
        DecodeError::BodyLength {
            msg_type: MsgType::PubAck,
            at: 2,
            expected: Expected::Exactly(5),
            actual: 4,
        },
    );
}

#[test]
fn bad_disconnect_body_of_one_byte() {
    check_error(
        &hex("03 18 01"),
        DecodeError::BodyLength {
            msg_type: MsgType::Disconnect,
            at: 2,
            expected: Expected::ZeroOr(2),
            actual: 1,
        },
    );
}

#[test]
fn bad_reserved_msg_type_0x03() {
    check_error(
        &hex("02 03"),
        DecodeError::ReservedMsgType { msg_type: 3, at: 1 },
    );
    // With the 3-byte length form the MsgType sits at byte 3.
    check_error(
        &hex("01 00 04 03"),
        DecodeError::ReservedMsgType { msg_type: 3, at: 3 },
    );
}

#[test]
fn bad_publish_reserved_topic_id_type() {
    check_error(
        &hex("09 0C 03 00 01 00 00 68 69"),
        DecodeError::ReservedTopicIdType {
            msg_type: MsgType::Publish,
            at: 2,
        },
    );
}

#[test]
fn bad_publish_qos_minus1_long_name_overrun() {
    // Name length 9, but only "a/bx" (4 bytes) follows the MsgId.
    check_error(
        &hex("0B 0C 60 00 09 00 00 61 2F 62 78"),
        DecodeError::TopicNameOverrun {
            at: 3,
            declared: 9,
            available: 4,
        },
    );
}

#[test]
fn bad_encapsulation_header_length_2() {
    check_error(
        &hex("02 FE 00 02 16"),
        DecodeError::EncapsulationLength {
            at: 0,
            declared: 2,
            received: 5,
        },
    );
}

#[test]
fn bad_encapsulation_header_longer_than_datagram() {
    check_error(
        &hex("09 FE 00 0A 0B 02 16"),
        DecodeError::EncapsulationLength {
            at: 0,
            declared: 9,
            received: 7,
        },
    );
}

#[test]
fn bad_nested_encapsulation() {
    // The inner message is itself an encapsulation header (empty node id); its 0xFE is byte 6.
    check_error(
        &hex("05 FE 00 0A 0B 03 FE 00"),
        DecodeError::UnexpectedEncapsulation { at: 6 },
    );
    // A complete forwarded PINGREQ wrapped a second time.
    check_error(
        &hex("05 FE 00 0A 0B 05 FE 00 0C 0D 02 16"),
        DecodeError::UnexpectedEncapsulation { at: 6 },
    );
    // 0xFE behind the 3-byte length form.
    check_error(
        &hex("01 00 07 FE 00 02 16"),
        DecodeError::UnexpectedEncapsulation { at: 3 },
    );
}

#[test]
fn bad_encapsulation_without_inner_message() {
    check_error(
        &hex("05 FE 00 0A 0B"),
        DecodeError::EncapsulationLength {
            at: 0,
            declared: 5,
            received: 5,
        },
    );
}

#[test]
fn bad_inner_packet_reports_offset_in_whole_datagram() {
    // PUBACK too short behind a 5-byte encapsulation header: its body starts at byte 7.
    check_error(
        &hex("05 FE 00 0A 0B 06 0D 00 01 00 02"),
        DecodeError::BodyLength {
            msg_type: MsgType::PubAck,
            at: 7,
            expected: Expected::Exactly(5),
            actual: 4,
        },
    );
    // X1 behind the same header: its length field is byte 5.
    check_error(
        &hex("05 FE 00 0A 0B 03 17"),
        DecodeError::LengthMismatch {
            at: 5,
            declared: 3,
            received: 2,
        },
    );
    // Reserved MsgType behind the header: byte 6.
    check_error(
        &hex("05 FE 00 0A 0B 02 03"),
        DecodeError::ReservedMsgType { msg_type: 3, at: 6 },
    );
}
