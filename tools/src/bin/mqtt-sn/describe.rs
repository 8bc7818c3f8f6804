//! One-line descriptions of packets for `-v`: names and fields a person can read, with text shown
//! as text rather than the byte arrays `Debug` would print.

use std::fmt::Write as _;

use sn_codec::v12::{Packet, PublishTopic, SubscribeTopic};
use sn_codec::QoS;

/// Text as a quoted, escaped string (invalid UTF-8 replaced), cut after 64 characters so a large
/// payload does not flood the log.
fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(64).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    format!("{out:?}")
}

/// QoS as the number users write.
pub(crate) fn qos_number(qos: QoS) -> i8 {
    match qos {
        QoS::MinusOne => -1,
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

fn publish_topic(topic: &PublishTopic<'_>) -> String {
    match topic {
        PublishTopic::Normal(id) => format!("id {id}"),
        PublishTopic::Predefined(id) => format!("predefined {id}"),
        PublishTopic::Short(name) => format!("short {}", text(name)),
        PublishTopic::LongName(name) => format!("name {}", text(name)),
    }
}

fn subscribe_topic(topic: &SubscribeTopic<'_>) -> String {
    match topic {
        SubscribeTopic::Name(name) => format!("name {}", text(name)),
        SubscribeTopic::Predefined(id) => format!("predefined {id}"),
        SubscribeTopic::Short(name) => format!("short {}", text(name)),
    }
}

/// `PUBLISH qos=1 dup=false retain=false topic=id 7 msg_id=3 data="21.5"` and the like.
pub(crate) fn packet(p: &Packet<'_>) -> String {
    let mut s = p.msg_type().name().to_owned();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = match p {
        Packet::Connect(c) => write!(
            s,
            " will={} clean_session={} protocol_id={} duration={} client_id={}",
            c.will,
            c.clean_session,
            c.protocol_id,
            c.duration,
            text(c.client_id)
        ),
        Packet::ConnAck { return_code }
        | Packet::WillTopicResp { return_code }
        | Packet::WillMsgResp { return_code } => write!(s, " rc=0x{:02x}", return_code.to_u8()),
        Packet::WillTopic(Some(w)) | Packet::WillTopicUpd(Some(w)) => write!(
            s,
            " qos={} retain={} topic={}",
            qos_number(w.qos),
            w.retain,
            text(w.topic)
        ),
        Packet::WillTopic(None) | Packet::WillTopicUpd(None) => write!(s, " (empty)"),
        Packet::WillMsg { msg } | Packet::WillMsgUpd { msg } => write!(s, " msg={}", text(msg)),
        Packet::Register(r) => write!(
            s,
            " topic_id={} msg_id={} name={}",
            r.topic_id,
            r.msg_id,
            text(r.topic_name)
        ),
        Packet::RegAck(a) => write!(
            s,
            " topic_id={} msg_id={} rc=0x{:02x}",
            a.topic_id,
            a.msg_id,
            a.return_code.to_u8()
        ),
        Packet::Publish(p) => write!(
            s,
            " qos={} dup={} retain={} topic={} msg_id={} data={}",
            qos_number(p.qos),
            p.dup,
            p.retain,
            publish_topic(&p.topic),
            p.msg_id,
            text(p.data)
        ),
        Packet::PubAck(a) => write!(
            s,
            " topic_id={} msg_id={} rc=0x{:02x}",
            a.topic_id,
            a.msg_id,
            a.return_code.to_u8()
        ),
        Packet::PubComp { msg_id }
        | Packet::PubRec { msg_id }
        | Packet::PubRel { msg_id }
        | Packet::UnsubAck { msg_id } => write!(s, " msg_id={msg_id}"),
        Packet::Subscribe(sub) => write!(
            s,
            " qos={} dup={} msg_id={} topic={}",
            qos_number(sub.qos),
            sub.dup,
            sub.msg_id,
            subscribe_topic(&sub.topic)
        ),
        Packet::SubAck(a) => write!(
            s,
            " qos={} topic_id={} msg_id={} rc=0x{:02x}",
            qos_number(a.qos),
            a.topic_id,
            a.msg_id,
            a.return_code.to_u8()
        ),
        Packet::Unsubscribe(u) => write!(
            s,
            " msg_id={} topic={}",
            u.msg_id,
            subscribe_topic(&u.topic)
        ),
        Packet::PingReq { client_id } if !client_id.is_empty() => {
            write!(s, " client_id={}", text(client_id))
        }
        Packet::PingReq { .. } | Packet::PingResp | Packet::WillTopicReq | Packet::WillMsgReq => {
            Ok(())
        }
        Packet::Disconnect(d) => match d.duration {
            Some(duration) => write!(s, " duration={duration}"),
            None => Ok(()),
        },
        other => write!(s, " {other:?}"),
    };
    s
}
