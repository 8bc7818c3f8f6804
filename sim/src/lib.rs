//! Deterministic simulation of the whole gateway core (issue 18).
//!
//! The real sans-I/O core ([`sn_core::Gateway`]), driven as the runtime drives it (feed,
//! store, send, in turns), in a simulated world made from one seed:
//!
//! - a virtual [`clock`]: a real `Instant` plus an offset moved event by event, never a
//!   sleep, so days of simulated time take seconds;
//! - a [`radio`] between the motes and the gateway with loss, duplication, delay and
//!   reordering per direction;
//! - [`mote`]s: the real MQTT-SN client machine (`sn-client`, on `sn-codec`) with a random
//!   behaviour: CleanSession 0 and 1, REGISTER, SUBSCRIBE by name and by wildcard, PUBLISH
//!   at QoS -1/0/1/2 with the client's T_retry/N_retry, sleep and wake by PINGREQ, radio
//!   loss, coming back from a new address, DISCONNECT;
//! - two [`broker`]s (MQTT-level models): the remote one (drops the connection, refuses
//!   connections, restarts with or without the gateway's session, acknowledges slowly) and
//!   the fallback (embedded) one, which takes over while the remote is away and hands back;
//!   cloud applications publish on the remote broker, and both deliver to the gateway's
//!   subscriptions, the motes' own uplink messages included;
//! - a [`store`] that applies the core's batches as the real store does, fails or is slow
//!   for a while, and keeps only completed writes when the gateway crashes; crashes happen
//!   at turn boundaries, after which a new core is built and `restore`d from the store.
//!
//! Everything random comes from one [`rng::Rng`] seeded by the run's seed, in a fixed order,
//! so a seed replays exactly ([`runner::replay_command`]).
//!
//! # What is checked, and why exactly this
//!
//! The [`oracle`] fails a run at the first broken rule. The rules are those of MQTT-SN v1.2
//! (../shared/docs/mqtt-sn-reference.md: QoS 1 at least once, QoS 2 exactly once, per hop,
//! with retransmission; the sleeping client's buffered messages; CleanSession) and of the
//! gateway's design (architecture.md: "nothing is acknowledged before the next hop holds it";
//! the store and what it keeps, gateway/core/src/gateway/persist.rs):
//!
//! 1. **No acknowledged uplink message is lost.** A QoS 1/2 PUBLISH a mote was told
//!    PUBACK accepted (QoS 1) or PUBCOMP (QoS 2) for reaches the remote broker by the end
//!    of the run, through broker restarts without session, fallback periods, store failures
//!    and gateway crashes (the spool holds it). QoS 0 and -1 may be lost; a PUBLISH refused
//!    (congestion) or never answered is not owed. (Spool `when_full = "drop-oldest"`
//!    drops acknowledged messages by design: the simulation uses `refuse`.)
//! 2. **No QoS 1/2 message the gateway acknowledged to a broker is lost** for a session
//!    that goes on. When the core emits `Ack` for a broker's message, the message is owed
//!    to every mote session with a subscription confirmed by SUBACK before the broker took
//!    the message, matching its topic, where both the broker's delivery and the granted QoS
//!    are 1 or 2. It must reach the mote by the end, unless that session ended first: a
//!    CONNECT with CleanSession=1, a CleanSession=1 session lost or disconnected, a
//!    session the gateway did not resume (which is itself checked, rule 5), a gateway crash
//!    for a non-durable session (an active CleanSession=1 one: in-flight and queued state
//!    of such sessions is not durable by design), or the gateway dropped messages of that
//!    session at a queue limit (reported per session as `QueueFull`, not per message, so
//!    from then on nothing more is owed to it until the gateway's session ends, which a
//!    CleanSession=1 CONNECT lost on the radio does not do; the limit itself is checked,
//!    rule 6).
//! 3. **Order per mote and topic.** At the broker, the first arrivals of a mote's QoS 1/2
//!    messages on one topic come in the order the mote published them. At a mote, within
//!    one session, the first arrivals of a cloud publisher's messages on one topic, delivered
//!    at QoS 1/2, come in publication order; this covers a sleeping mote's buffered messages
//!    on wake. QoS 0 is not ordered against QoS 1/2 (MQTT orders per QoS); messages that
//!    reached the gateway through different brokers (the fallback's copies, then the
//!    remote's) have no order between them; and a message a broker sent again (its
//!    acknowledgement lost with the connection) is a resend outside the order of first
//!    deliveries (its first copy may have been dropped at a queue limit).
//! 4. **QoS 2 exactly once, per hop.** A mote receives a QoS 2 message (not counting the
//!    repeats its client filters by MsgId) at most once per delivery of it the gateway
//!    took from a broker, per session and per life of the gateway: in-flight exchange
//!    state is not durable by design, so across a crash QoS 2 degrades to at least once.
//!    The broker receives a QoS 2 uplink message at most once per connection (a replay
//!    after a reconnect may carry a new packet id; see `BrokerEvent::PublishAcked`), and
//!    across a crash at least once. What no v1.2 receiver can tell apart is not counted: a
//!    stale radio copy of a QoS 2 PUBLISH (duplicated, or overtaken by later datagrams)
//!    arriving after its exchange ended (v1.2 recognises a resend by DUP only, and a client
//!    forgets the MsgId at PUBREL); a stale copy of an older PUBLISH that took the client's
//!    one exchange slot in the gateway, displacing the QoS 2 exchange under way; and a
//!    datagram for a session the mote has discarded (held by the store gate or in the air:
//!    no packet names its session). The link here keeps MQTT's receiver state for QoS 2
//!    deliveries (a resend of one already handed to the core is not handed over again, as
//!    MQTT 4.3.3 requires of the receiver; the runtime's link has the same duty).
//! 5. **Durable sessions survive.** A session the mote was told is durable (CONNACK to a
//!    CleanSession=0 CONNECT, or the acknowledgement of its sleep) is there after a
//!    restart, and is resumed by a CleanSession=0 CONNECT, unless the gateway reported it
//!    ended.
//! 6. **Limits hold** after every turn: bytes queued for motes within
//!    `max_queued_bytes_total`, bytes held within `max_state_bytes`, sessions within
//!    `max_sessions`, and (every 64 turns) each session's queue within its message and byte
//!    limits and the spool within `[spool] max_bytes`.
//! 7. **No panic**: a panic anywhere is caught and reported as that seed's failure.
//!
//! A run has a faulty phase and then a calm one: faults stop, every mote comes back and
//! connects with CleanSession=0 (or wakes), nothing new is published, and rules 1 and 2 are
//! checked at its end. Rules 3 to 7 are checked all along.
//!
//! Not simulated: transparent mode (one broker connection per mote), Wills, retained
//! messages, forwarders, DTLS identities and the policy (all have their scripted tests).

pub mod broker;
pub mod clock;
pub mod config;
mod faults;
mod links;
pub mod mote;
pub mod oracle;
pub mod radio;
pub mod rng;
pub mod runner;
pub mod schedule;
pub mod store;
pub mod world;

pub use config::SimConfig;
pub use runner::{run_seed, Failure};
pub use world::{Summary, World};
