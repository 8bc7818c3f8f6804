//! What the core has to say to the world, waiting to be polled: datagrams for peers and
//! commands for the broker connections.
//!
//! Every output gets a sequence number when it is queued, and is handed out only once the
//! durability gate (see [`crate::durability`]) has released it: an output that acknowledges
//! something is never polled before the store batch holding that thing is written.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use sn_codec::v12::Frame;
use sn_codec::EncodeError;

use crate::broker::{BrokerCommand, BrokerRoute, MqttQoS};
use crate::peer::{Destination, LinkId, Transmit};

/// How many outputs of each kind have been queued since the start. The durability gate
/// releases outputs up to such a mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    /// Datagrams queued so far.
    pub(crate) transmits: u64,
    /// Broker commands queued so far, all routes together.
    pub(crate) commands: u64,
}

/// Datagrams waiting to be sent, in order. Their bytes are encoded back to back into one
/// buffer that keeps its capacity, and copied out into the caller's buffer when polled: no
/// allocation per datagram.
#[derive(Debug, Default)]
pub(crate) struct Transmits {
    bytes: BytesMut,
    queue: VecDeque<Transmit>,
    /// Datagrams handed out so far: the sequence number of the queue's front.
    polled: u64,
}

impl Transmits {
    /// Encodes `frame` and queues it for `link` and `destination`; on an encoding error
    /// nothing is queued.
    pub(crate) fn push(
        &mut self,
        link: LinkId,
        destination: Destination,
        frame: &Frame<'_>,
    ) -> Result<(), EncodeError> {
        let start = self.bytes.len();
        if let Err(error) = frame.encode(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(error);
        }
        self.queue.push_back(Transmit {
            link,
            destination,
            size: self.bytes.len() - start,
        });
        Ok(())
    }

    /// Datagrams queued since the start (the mark of everything queued so far).
    pub(crate) fn mark(&self) -> u64 {
        self.polled + self.queue.len() as u64
    }

    /// The next datagram, if the gate has released it (`released` datagrams may go out):
    /// its bytes are appended to `buf`.
    pub(crate) fn pop(&mut self, released: u64, buf: &mut BytesMut) -> Option<Transmit> {
        if self.polled >= released {
            return None;
        }
        let transmit = self.queue.pop_front()?;
        let datagram = self.bytes.split_to(transmit.size.min(self.bytes.len()));
        buf.extend_from_slice(&datagram);
        self.polled += 1;
        if self.queue.is_empty() {
            // Everything is out: let the buffer start from the top again.
            self.bytes.clear();
        }
        Some(transmit)
    }
}

/// Commands for the broker connections, one queue per kind of route so that a remote link
/// with no room never holds up the others, each queue in order.
#[derive(Debug, Default)]
pub(crate) struct BrokerQueue {
    remote: VecDeque<(u64, BrokerCommand)>,
    fallback: VecDeque<(u64, BrokerCommand)>,
    motes: VecDeque<(u64, Arc<str>, BrokerCommand)>,
    /// Commands queued since the start: the next command's sequence number.
    queued: u64,
    /// QoS 0 PUBLISHes in `remote`: the backlog `max_pending_qos0` bounds.
    remote_qos0: usize,
}

impl BrokerQueue {
    /// Queues a command for a route.
    pub(crate) fn push(&mut self, route: BrokerRoute, command: BrokerCommand) {
        let seq = self.queued;
        self.queued += 1;
        match route {
            BrokerRoute::Remote => {
                if is_qos0_publish(&command) {
                    self.remote_qos0 += 1;
                }
                self.remote.push_back((seq, command));
            }
            BrokerRoute::Fallback => self.fallback.push_back((seq, command)),
            BrokerRoute::Mote(client_id) => self.motes.push_back((seq, client_id, command)),
        }
    }

    /// Commands queued since the start (the mark of everything queued so far).
    pub(crate) fn mark(&self) -> u64 {
        self.queued
    }

    /// The next released command (sequence number below `released`): the fallback's and the
    /// motes' first, then the remote broker's if `remote_ready`.
    pub(crate) fn pop(
        &mut self,
        released: u64,
        remote_ready: bool,
    ) -> Option<(BrokerRoute, BrokerCommand)> {
        if self
            .fallback
            .front()
            .is_some_and(|(seq, _)| *seq < released)
        {
            let (_, command) = self.fallback.pop_front()?;
            return Some((BrokerRoute::Fallback, command));
        }
        if self.motes.front().is_some_and(|(seq, ..)| *seq < released) {
            let (_, client_id, command) = self.motes.pop_front()?;
            return Some((BrokerRoute::Mote(client_id), command));
        }
        if remote_ready && self.remote.front().is_some_and(|(seq, _)| *seq < released) {
            let (_, command) = self.remote.pop_front()?;
            if is_qos0_publish(&command) {
                self.remote_qos0 = self.remote_qos0.saturating_sub(1);
            }
            return Some((BrokerRoute::Remote, command));
        }
        None
    }

    /// Commands waiting for the remote broker's link.
    pub(crate) fn remote_waiting(&self) -> usize {
        self.remote.len()
    }

    /// QoS 0 PUBLISHes waiting for the remote broker's link.
    pub(crate) fn remote_qos0(&self) -> usize {
        self.remote_qos0
    }

    /// Forgets the remote broker's commands (its connection is gone), except the
    /// acknowledgements of its messages: the broker keeps those messages in the gateway's
    /// session and, finding it again on the next connection, waits for them; a link that
    /// (as MQTT asks of a receiver) does not hand the core a resent QoS 2 message twice
    /// would otherwise leave it unacknowledged for good, holding a place of the broker's
    /// in-flight window. Returns how many QoS 0 PUBLISHes were dropped, which are lost
    /// with the connection.
    pub(crate) fn drop_remote(&mut self) -> usize {
        self.remote
            .retain(|(_, command)| matches!(command, BrokerCommand::Ack { .. }));
        std::mem::take(&mut self.remote_qos0)
    }

    /// The broker did not keep the gateway's session: the acknowledgements still waiting
    /// are for messages it no longer has.
    pub(crate) fn drop_remote_acks(&mut self) {
        self.remote
            .retain(|(_, command)| !matches!(command, BrokerCommand::Ack { .. }));
    }
}

/// A QoS 0 (or -1) PUBLISH: what `max_pending_qos0` counts.
fn is_qos0_publish(command: &BrokerCommand) -> bool {
    matches!(command, BrokerCommand::Publish(p) if p.qos == MqttQoS::AtMostOnce)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::broker::{DeliveryId, UplinkPublish};

    fn qos0() -> BrokerCommand {
        BrokerCommand::Publish(UplinkPublish {
            id: None,
            topic: Arc::from("t"),
            payload: Bytes::new(),
            qos: MqttQoS::AtMostOnce,
            retain: false,
            replay: false,
        })
    }

    fn ack(n: u64) -> BrokerCommand {
        BrokerCommand::Ack {
            delivery: DeliveryId(n),
        }
    }

    #[test]
    fn only_released_commands_come_out_each_route_in_order() {
        let mut queue = BrokerQueue::default();
        queue.push(BrokerRoute::Remote, ack(1));
        queue.push(BrokerRoute::Fallback, ack(2));
        queue.push(BrokerRoute::Remote, ack(3));
        assert_eq!(queue.pop(0, true), None, "nothing released yet");
        assert_eq!(queue.pop(1, true), Some((BrokerRoute::Remote, ack(1))));
        assert_eq!(queue.pop(1, true), None);
        let mark = queue.mark();
        assert_eq!(queue.pop(mark, true), Some((BrokerRoute::Fallback, ack(2))));
        assert_eq!(queue.pop(mark, true), Some((BrokerRoute::Remote, ack(3))));
        assert_eq!(queue.pop(mark, true), None);
    }

    #[test]
    fn a_busy_remote_link_holds_up_only_its_own_commands() {
        let mut queue = BrokerQueue::default();
        queue.push(BrokerRoute::Remote, qos0());
        queue.push(BrokerRoute::Mote(Arc::from("m")), ack(1));
        assert_eq!(queue.remote_qos0(), 1);
        let mark = queue.mark();
        assert_eq!(
            queue.pop(mark, false),
            Some((BrokerRoute::Mote(Arc::from("m")), ack(1)))
        );
        assert_eq!(queue.pop(mark, false), None);
        assert_eq!(queue.remote_waiting(), 1);
        assert_eq!(queue.pop(mark, true), Some((BrokerRoute::Remote, qos0())));
        assert_eq!(queue.remote_qos0(), 0);
    }

    #[test]
    fn dropping_the_remote_queue_counts_its_qos0_messages() {
        let mut queue = BrokerQueue::default();
        queue.push(BrokerRoute::Remote, qos0());
        queue.push(BrokerRoute::Remote, ack(1));
        queue.push(BrokerRoute::Remote, qos0());
        queue.push(BrokerRoute::Fallback, ack(2));
        assert_eq!(queue.drop_remote(), 2);
        // The acknowledgement stays for the next connection (the broker's session).
        assert_eq!(queue.remote_waiting(), 1);
        assert_eq!(queue.remote_qos0(), 0);
        let mark = queue.mark();
        assert_eq!(queue.pop(mark, true), Some((BrokerRoute::Fallback, ack(2))));
        assert_eq!(queue.pop(mark, true), Some((BrokerRoute::Remote, ack(1))));
    }

    #[test]
    fn acknowledgements_are_dropped_when_the_broker_lost_the_session() {
        let mut queue = BrokerQueue::default();
        queue.push(BrokerRoute::Remote, ack(1));
        assert_eq!(queue.drop_remote(), 0);
        queue.drop_remote_acks();
        assert_eq!(queue.remote_waiting(), 0);
    }

    #[test]
    fn transmits_wait_for_their_release_and_come_out_into_the_callers_buffer() {
        use sn_codec::v12::Packet;
        let mut transmits = Transmits::default();
        let to = Destination::Discovery { radius: 0 };
        let ping = Frame::Packet(Packet::PingResp);
        let ack = Frame::Packet(Packet::PubComp { msg_id: 7 });
        transmits.push(LinkId(0), to, &ping).unwrap();
        transmits.push(LinkId(1), to, &ack).unwrap();
        assert_eq!(transmits.mark(), 2);
        let mut buf = BytesMut::new();
        assert!(transmits.pop(0, &mut buf).is_none());
        let first = transmits.pop(1, &mut buf).unwrap();
        assert_eq!((first.link, first.size), (LinkId(0), 2));
        assert_eq!(&buf[..], &ping.to_vec().unwrap()[..]);
        assert!(transmits.pop(1, &mut buf).is_none());
        buf.clear();
        let second = transmits.pop(2, &mut buf).unwrap();
        assert_eq!(second.link, LinkId(1));
        assert_eq!(&buf[..], &ack.to_vec().unwrap()[..]);
        assert_eq!(transmits.mark(), 2);
    }
}
