//! The simulator's counters.

/// What the simulator has carried and dropped since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RadioSimStats {
    /// UDP datagrams received from motes.
    pub from_motes: u64,
    /// Frames written towards the gateway that carry a mote's datagram.
    pub frames_to_gateway: u64,
    /// Frames decoded from what the gateway wrote that ask for a datagram to be sent.
    pub frames_from_gateway: u64,
    /// Datagrams sent to motes over UDP (a broadcast counts once per mote reached).
    pub to_motes: u64,
    /// Broadcasts from the gateway (XBee 64-bit 0xFFFF, COBS node 0xFFFF).
    pub broadcasts: u64,
    /// XBee transmit statuses (0x8B) written to the gateway.
    pub statuses: u64,
    /// Unicasts from the gateway to an address no mote has (XBee: answered with status
    /// 0x24, address not found).
    pub unknown_destinations: u64,
    /// Unicasts not delivered because their mote was made to fail
    /// ([`RadioSim::fail_delivery`](super::RadioSim::fail_delivery)).
    pub failed_deliveries: u64,
    /// Datagrams from motes not carried to the gateway: the dongle unplugged, the datagram
    /// too large for one frame or empty, or the line's backlog full because the gateway does
    /// not read. Transmit statuses lost to a full backlog count here too. (Frames still
    /// waiting in the backlog when the dongle is pulled out are lost uncounted, as with a real
    /// unplug.)
    pub dropped: u64,
    /// Frames from the gateway the decoder dropped as damaged (checksum, length, escapes).
    pub framing_errors: u64,
    /// Valid frames from the gateway that a radio does not take from its host (an XBee
    /// receive packet or transmit status), ignored.
    pub unexpected_frames: u64,
    /// Bytes of garbage injected on the line
    /// ([`RadioSim::inject_garbage`](super::RadioSim::inject_garbage)).
    pub garbage_bytes: u64,
    /// Motes added to the table (first contact from a UDP address).
    pub motes_joined: u64,
    /// Motes dropped from a full table to make room (their radio address went to the new
    /// mote).
    pub motes_forgotten: u64,
    /// Times the dongle was unplugged ([`RadioSim::replug`](super::RadioSim::replug), or the
    /// line failing).
    pub unplugs: u64,
    /// Errors sending to or receiving from motes over UDP.
    pub udp_errors: u64,
}

/// Adds one to a counter, saturating.
pub(super) fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// Adds `n` to a counter, saturating.
pub(super) fn add(counter: &mut u64, n: usize) {
    *counter = counter.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
}
