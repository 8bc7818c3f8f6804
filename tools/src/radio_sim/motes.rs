//! The simulated motes: one per UDP source address, each with a radio address given in order
//! of first contact.

use std::collections::HashMap;
use std::net::SocketAddr;

use sn_config::SerialFraming;

use super::framing::{RadioAddress, SimulatedRadio, COBS_FIRST_NODE, KISS_PORT, XBEE_FIRST_LONG};

/// The 64-bit address a transmit request carries when the sender knows only the 16-bit one.
const XBEE_UNKNOWN_LONG: u64 = u64::MAX;

/// One simulated mote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mote {
    /// Its place in the table, 0 for the first mote heard; the radio address follows from it
    /// ([`SimulatedRadio::mote_address`](super::SimulatedRadio::mote_address)).
    pub index: usize,
    /// Where its MQTT-SN client sends from, and where the gateway's datagrams for it go.
    pub udp: SocketAddr,
    /// Its address on the radio, as the gateway sees it.
    pub address: RadioAddress,
}

/// What hearing from a UDP source did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Contact {
    /// A mote already in the table.
    Known(Mote),
    /// A new mote; when the table was full, the mote heard from least recently was forgotten
    /// to make room, and its radio address was given to the new one.
    Joined {
        /// The new mote.
        mote: Mote,
        /// The mote it replaced, if any.
        forgotten: Option<Mote>,
    },
}

#[derive(Debug)]
struct Slot {
    mote: Mote,
    /// The table's clock when the mote last sent something.
    last_heard: u64,
}

/// The bounded table of motes.
#[derive(Debug)]
pub(super) struct MoteTable {
    framing: SerialFraming,
    /// At most this many slots, never more than the framing's capacity.
    max: usize,
    slots: Vec<Slot>,
    by_udp: HashMap<SocketAddr, usize>,
    /// Counts contacts, to find the least recently heard mote.
    clock: u64,
}

impl MoteTable {
    /// An empty table of at most `max` motes (clamped to 1..=the framing's capacity).
    pub(super) fn new(framing: SerialFraming, max: usize) -> Self {
        MoteTable {
            framing,
            max: max.clamp(1, framing.mote_capacity()),
            slots: Vec::new(),
            by_udp: HashMap::new(),
            clock: 0,
        }
    }

    /// The mote that sends from `udp`, added if new. `None` only if the framing has no
    /// address for the slot, which the clamped bound rules out.
    pub(super) fn contact(&mut self, udp: SocketAddr) -> Option<Contact> {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        if let Some(slot) = self
            .by_udp
            .get(&udp)
            .and_then(|&index| self.slots.get_mut(index))
        {
            slot.last_heard = clock;
            return Some(Contact::Known(slot.mote));
        }
        if self.slots.len() < self.max {
            let index = self.slots.len();
            let mote = Mote {
                index,
                udp,
                address: self.framing.mote_address(index)?,
            };
            self.slots.push(Slot {
                mote,
                last_heard: clock,
            });
            self.by_udp.insert(udp, index);
            return Some(Contact::Joined {
                mote,
                forgotten: None,
            });
        }
        let slot = self.slots.iter_mut().min_by_key(|slot| slot.last_heard)?;
        let forgotten = slot.mote;
        let mote = Mote { udp, ..forgotten };
        *slot = Slot {
            mote,
            last_heard: clock,
        };
        self.by_udp.remove(&forgotten.udp);
        self.by_udp.insert(udp, mote.index);
        Some(Contact::Joined {
            mote,
            forgotten: Some(forgotten),
        })
    }

    /// The mote a unicast to `address` reaches. XBee goes by the 64-bit address, or by the
    /// 16-bit one when the 64-bit one is given as unknown (0xFFFFFFFFFFFFFFFF); KISS port 0
    /// and raw reach the line's one mote.
    pub(super) fn by_address(&self, address: &RadioAddress) -> Option<&Mote> {
        let mote = match address {
            RadioAddress::XBee(to) if to.long == XBEE_UNKNOWN_LONG => {
                self.slots.iter().map(|slot| &slot.mote).find(
                    |mote| matches!(mote.address, RadioAddress::XBee(a) if a.short == to.short),
                )
            }
            RadioAddress::XBee(to) => {
                let index = usize::try_from(to.long.checked_sub(XBEE_FIRST_LONG)?).ok()?;
                self.slots.get(index).map(|slot| &slot.mote)
            }
            RadioAddress::Node(node) => {
                let index = usize::from(node.checked_sub(COBS_FIRST_NODE)?);
                self.slots.get(index).map(|slot| &slot.mote)
            }
            // KISS port 0 and raw: the line's one mote.
            RadioAddress::Kiss(port) if port.get() == KISS_PORT => {
                self.slots.first().map(|slot| &slot.mote)
            }
            RadioAddress::Kiss(_) => None,
            RadioAddress::Raw => self.slots.first().map(|slot| &slot.mote),
        }?;
        // An address past the table, or of another framing, reaches nobody.
        let same = match (&mote.address, address) {
            (RadioAddress::XBee(a), RadioAddress::XBee(b)) => {
                a.long == b.long || b.long == XBEE_UNKNOWN_LONG
            }
            (a, b) => a == b,
        };
        same.then_some(mote)
    }

    /// Every mote, in index order.
    pub(super) fn all(&self) -> impl Iterator<Item = &Mote> {
        self.slots.iter().map(|slot| &slot.mote)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use sn_transports::serial::framing::xbee::XBeeAddress;

    use super::*;

    fn udp(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn joined(contact: Option<Contact>) -> (Mote, Option<Mote>) {
        match contact {
            Some(Contact::Joined { mote, forgotten }) => (mote, forgotten),
            other => panic!("not a new mote: {other:?}"),
        }
    }

    #[test]
    fn motes_get_addresses_in_order_and_are_found_by_them() {
        let mut table = MoteTable::new(SerialFraming::XBee, 8);
        let (a, _) = joined(table.contact(udp(1000)));
        let (b, _) = joined(table.contact(udp(1001)));
        assert_eq!(table.contact(udp(1000)), Some(Contact::Known(a)));
        assert_eq!(
            b.address,
            RadioAddress::XBee(XBeeAddress::new(0x0013_A200_0000_0002, 2))
        );
        assert_eq!(table.by_address(&b.address), Some(&b));
        // By 64-bit address whatever the 16-bit one says, or by the 16-bit one alone.
        let stale = RadioAddress::XBee(XBeeAddress::new(0x0013_A200_0000_0002, 0xFFFE));
        assert_eq!(table.by_address(&stale), Some(&b));
        let short_only = RadioAddress::XBee(XBeeAddress::new(u64::MAX, 1));
        assert_eq!(table.by_address(&short_only), Some(&a));
        let unknown = RadioAddress::XBee(XBeeAddress::new(0x0013_A200_0000_0003, 3));
        assert_eq!(table.by_address(&unknown), None);
        assert_eq!(table.by_address(&RadioAddress::Node(1)), None);
        assert_eq!(table.all().count(), 2);
    }

    #[test]
    fn a_full_table_forgets_the_mote_heard_least_recently() {
        let mut table = MoteTable::new(SerialFraming::Cobs, 2);
        let (a, _) = joined(table.contact(udp(1)));
        let (b, _) = joined(table.contact(udp(2)));
        table.contact(udp(1));
        let (c, forgotten) = joined(table.contact(udp(3)));
        assert_eq!(forgotten, Some(b));
        assert_eq!(c.address, RadioAddress::Node(2));
        assert_eq!(table.by_address(&RadioAddress::Node(2)), Some(&c));
        assert_eq!(table.by_address(&RadioAddress::Node(1)), Some(&a));
        assert_eq!(table.all().count(), 2);
        // The forgotten mote comes back as a new one.
        let (_, forgotten) = joined(table.contact(udp(2)));
        assert_eq!(forgotten, Some(a));
    }

    #[test]
    fn kiss_has_one_mote_on_port_0_the_last_new_sender() {
        use sn_transports::serial::framing::kiss::KissPort;

        let mut table = MoteTable::new(SerialFraming::Kiss, 15);
        let (a, _) = joined(table.contact(udp(1)));
        assert_eq!(a.address, RadioAddress::Kiss(KissPort::ZERO));
        let (b, forgotten) = joined(table.contact(udp(2)));
        assert_eq!(forgotten, Some(a));
        assert_eq!(b.address, RadioAddress::Kiss(KissPort::ZERO));
        assert_eq!(
            table.by_address(&RadioAddress::Kiss(KissPort::ZERO)),
            Some(&b)
        );
        let port_1 = RadioAddress::Kiss(KissPort::new(1).unwrap());
        assert_eq!(table.by_address(&port_1), None);
        assert_eq!(table.all().count(), 1);
    }

    #[test]
    fn raw_has_one_mote_the_last_new_sender() {
        let mut table = MoteTable::new(SerialFraming::Raw, 10);
        joined(table.contact(udp(1)));
        let (b, forgotten) = joined(table.contact(udp(2)));
        assert_eq!(forgotten.map(|m| m.udp), Some(udp(1)));
        assert_eq!(table.by_address(&RadioAddress::Raw), Some(&b));
        assert_eq!(table.all().count(), 1);
    }
}
