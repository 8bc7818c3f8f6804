//! MQTT-SN v1.2: every message of the specification and the forwarder encapsulation.
//!
//! Decode what a link received with [`Frame::decode`]; encode a reply with [`Packet::encode`]
//! or, for a client behind a forwarder, [`Frame::encode`] with the same node id.

mod decode;
mod encode;
mod flags;
mod frame;
mod packet;
mod return_code;

pub use frame::{Forwarded, Frame, MAX_NODE_ID_LEN};
pub use packet::{
    Advertise, Connect, Disconnect, GwInfo, Packet, PubAck, Publish, PublishTopic, RegAck,
    Register, SearchGw, SubAck, Subscribe, SubscribeTopic, Unsubscribe, WillTopic,
};
pub use return_code::ReturnCode;
