//! The Prometheus text format (version 0.0.4) of the gateway's counters and gauges.

use std::fmt::Write;

use crate::core::{Denials, Gauges, LatencyHistogram, Metrics};
use sn_transports::udp::LinkStats;

use crate::runtime::{DtlsLinkStats, SerialCounters};

/// Everything one scrape shows, taken by the runtime at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The core's counters.
    pub metrics: Metrics,
    /// The core's gauges.
    pub gauges: Gauges,
    /// Each link's own counters.
    pub links: Vec<LinkSnapshot>,
}

/// One link's counters, named as the runtime names the link (`udp:0.0.0.0:1883`).
#[derive(Debug, Clone)]
pub struct LinkSnapshot {
    /// The link's name, the `link` label.
    pub name: String,
    /// Its counters.
    pub stats: LinkCounters,
}

/// The counters of one kind of link.
#[derive(Debug, Clone)]
pub enum LinkCounters {
    /// A UDP link, and the datagrams the kernel dropped at its socket (when /proc says).
    Udp(LinkStats, Option<u64>),
    /// A serial link: its counters (the link's, its framer's, the XBee transmit statuses')
    /// when the runtime can read them, and the datagrams dropped at its full send queue.
    Serial(Option<Box<SerialCounters>>, u64),
    /// A DTLS link: its endpoint's counters and gauges, the datagrams dropped at its full
    /// send queue, and the datagrams the kernel dropped at its socket (when /proc says), as
    /// for a UDP link: the DTLS link's socket overflows the same way.
    Dtls(Box<DtlsLinkStats>, u64, Option<u64>),
}

/// Writes `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let name = format!("mqttsn_{name}_total");
    header(out, &name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let name = format!("mqttsn_{name}");
    header(out, &name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A label value, escaped as the text format wants (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(8 * 1024);
    counters(&mut out, &snapshot.metrics);
    denials(&mut out, &snapshot.metrics.denied);
    histogram(&mut out, &snapshot.metrics.publish_ack_latency);
    gauges(&mut out, &snapshot.gauges);
    links(&mut out, &snapshot.links);
    dtls(&mut out, &snapshot.links);
    serial(&mut out, &snapshot.links);
    out
}

/// Every counter of [`Metrics`], one metric each (a test checks none is missing).
fn counters(out: &mut String, m: &Metrics) {
    let list = [
        ("datagrams_received", "Datagrams handed to the core by the links.", m.datagrams_received),
        ("datagrams_sent", "Datagrams the core asked the links to send.", m.datagrams_sent),
        ("malformed", "Datagrams that did not decode as MQTT-SN.", m.malformed),
        ("dropped_oversize", "Datagrams over max_packet_size, dropped.", m.dropped_oversize),
        ("unknown_peer", "Packets from peers without a session.", m.unknown_peer),
        ("unexpected_packet", "Valid packets that make no sense in the session's state.", m.unexpected_packet),
        ("connect_refused", "CONNECTs refused, any return code.", m.connect_refused),
        ("takeover_refused", "Attempts to take a session from an address it is not bound to.", m.takeover_refused),
        ("publish_forwarded", "Uplink PUBLISHes forwarded to a broker.", m.publish_forwarded),
        ("publish_broker_down", "Uplink PUBLISHes dropped or refused because no broker could take them.", m.publish_broker_down),
        ("publish_dropped_backlog", "QoS 0/-1 uplink PUBLISHes dropped at max_pending_qos0.", m.publish_dropped_backlog),
        ("publish_rejected", "Uplink PUBLISHes refused: unknown topic id, bad topic, or a second exchange in flight.", m.publish_rejected),
        ("publish_minus_one_disabled", "QoS -1 PUBLISHes dropped because qos_minus_one is off.", m.publish_minus_one_disabled),
        ("publish_duplicate", "Duplicate PUBLISHes answered without forwarding again.", m.publish_duplicate),
        ("delivered", "Broker messages delivered to motes (first transmission).", m.delivered),
        ("dropped_queue_full", "Broker messages dropped at a full per-session queue.", m.dropped_queue_full),
        ("dropped_too_big_for_client", "Packets not sent because they exceed max_packet_size.", m.dropped_too_big_for_client),
        ("delivery_refused", "Deliveries the mote refused (REGACK/PUBACK with an error).", m.delivery_refused),
        ("retransmissions", "Retransmissions to motes.", m.retransmissions),
        ("sessions_lost", "Sessions lost (keep-alive, sleep, retries, link).", m.sessions_lost),
        ("wills_published", "Wills published.", m.wills_published),
        ("sessions_evicted", "Sessions removed to make room at max_sessions.", m.sessions_evicted),
        ("events_dropped", "Events dropped because the runtime did not poll them.", m.events_dropped),
        ("spooled", "Uplink messages put in the spool while the broker was unreachable.", m.spooled),
        ("subscribe_refused", "SUBSCRIBEs refused at max_topics_per_session.", m.subscribe_refused),
        ("spool_refused", "Uplink messages refused because the spool was full.", m.spool_refused),
        ("spool_dropped", "Spooled messages dropped to make room (when_full = drop-oldest).", m.spool_dropped),
        ("link_undelivered", "Datagrams a link reported it could not deliver.", m.link_undelivered),
        ("peer_moves", "Sessions moved to a new address with their DTLS connection (Connection ID).", m.peer_moves),
        ("peer_moves_refused", "DTLS connection moves that did not move a session.", m.peer_moves_refused),
        ("fallback_published", "Uplink messages copied to the fallback broker.", m.fallback_published),
        ("fallback_switches", "Times service moved to the fallback broker.", m.fallback_switches),
        ("replayed", "Uplink messages sent to the broker again after it came back.", m.replayed),
        ("qos0_dropped_broker_down", "QoS 0/-1 uplink messages dropped because no broker could take them.", m.qos0_dropped_broker_down),
        ("connect_rate_limited", "CONNECTs refused because their source exceeded connect_rate.", m.connect_rate_limited),
        ("sessions_per_address_refused", "CONNECTs refused at max_sessions_per_address.", m.sessions_per_address_refused),
        ("dropped_queue_total", "Broker messages dropped at max_queued_bytes_total.", m.dropped_queue_total),
        ("state_full", "Names, filters, Wills or sessions refused at max_state_bytes.", m.state_full),
        ("sleep_capped", "Sleep durations held to max_sleep_duration.", m.sleep_capped),
        ("restore_refused", "Stored sessions the policy no longer admits, dropped at start.", m.restore_refused),
        ("policy_revoked", "Sessions ended because a reloaded policy no longer admits them.", m.policy_revoked),
        ("subscriptions_revoked", "Subscriptions dropped because a reloaded policy no longer covers them.", m.subscriptions_revoked),
        ("denied", "Policy refusals, all reasons (see mqttsn_denied_by_reason_total).", m.denied.total()),
    ];
    for (name, help, value) in list {
        counter(out, name, help, value);
    }
}

fn denials(out: &mut String, d: &Denials) {
    let name = "mqttsn_denied_by_reason_total";
    header(out, name, "counter", "Policy refusals by reason.");
    let reasons: [(&str, u64); 12] = [
        ("not_listed", d.not_listed),
        ("wrong_link", d.wrong_link),
        ("wrong_address", d.wrong_address),
        ("unusable_client_id", d.unusable_client_id),
        ("publish", d.publish),
        ("subscribe", d.subscribe),
        ("register", d.register),
        ("dollar_topic", d.dollar_topic),
        ("minus_one_topic", d.minus_one_topic),
        ("minus_one_address", d.minus_one_address),
        ("identity_mismatch", d.identity_mismatch),
        ("not_authenticated", d.not_authenticated),
    ];
    for (reason, value) in reasons {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
    }
}

fn histogram(out: &mut String, h: &LatencyHistogram) {
    let name = "mqttsn_publish_ack_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from a mote's QoS 1/2 PUBLISH to its acknowledgement (the broker or the spool holds it).",
    );
    for (bound_us, count) in h.cumulative() {
        // Microseconds as seconds, exactly: whole part and six decimals.
        let le = format!("{}.{:06}", bound_us / 1_000_000, bound_us % 1_000_000);
        let le = le.trim_end_matches('0').trim_end_matches('.');
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let sum = h.sum_us();
    let _ = writeln!(out, "{name}_sum {}.{:06}", sum / 1_000_000, sum % 1_000_000);
    let _ = writeln!(out, "{name}_count {}", h.count());
}

fn gauges(out: &mut String, g: &Gauges) {
    let name = "mqttsn_sessions";
    header(out, name, "gauge", "Sessions held, by state.");
    for (state, n) in [
        ("connecting", g.sessions_connecting),
        ("active", g.sessions_active),
        ("asleep", g.sessions_asleep),
        ("awake", g.sessions_awake),
        ("offline", g.sessions_offline),
    ] {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
    }
    gauge(
        out,
        "queued_messages",
        "Messages waiting for motes.",
        as_u64(g.queued_messages),
    );
    gauge(
        out,
        "queued_bytes",
        "Bytes waiting for motes, as max_queued_bytes_total counts them.",
        as_u64(g.queued_bytes),
    );
    gauge(
        out,
        "held_bytes",
        "Bytes sessions hold besides their queues, as max_state_bytes counts them.",
        as_u64(g.held_bytes),
    );
    gauge(
        out,
        "spool_messages",
        "Uplink messages in the spool now.",
        as_u64(g.spooled),
    );
    gauge(
        out,
        "spool_bytes",
        "Bytes in the spool now, as [spool] max_bytes counts them.",
        as_u64(g.spool_bytes),
    );
    gauge(
        out,
        "pending_uplink",
        "Uplink messages not yet acknowledged by a broker.",
        as_u64(g.pending_uplink),
    );
    gauge(
        out,
        "broker_connected",
        "1 while the remote broker link is connected.",
        u64::from(g.broker_connected),
    );
    gauge(
        out,
        "fallback_active",
        "1 while the fallback (embedded) broker serves the motes.",
        u64::from(g.fallback_active),
    );
}

fn links(out: &mut String, links: &[LinkSnapshot]) {
    type Field = (&'static str, &'static str, fn(&LinkCounters) -> Option<u64>);
    let fields: [Field; 12] = [
        (
            "link_datagrams_received",
            "Datagrams (UDP) or frames (serial) received by the link.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.datagrams_received),
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.frames_received),
            },
        ),
        (
            "link_datagrams_sent",
            "Datagrams (UDP) or frames (serial) sent by the link.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.datagrams_sent),
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.frames_sent),
            },
        ),
        (
            "link_bytes_received",
            "Bytes received by a UDP link.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.bytes_received),
                LinkCounters::Serial(..) => None,
            },
        ),
        (
            "link_bytes_sent",
            "Bytes sent by a UDP link.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.bytes_sent),
                LinkCounters::Serial(..) => None,
            },
        ),
        (
            "link_oversize_dropped",
            "Datagrams too large for the link, dropped.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.oversize_dropped),
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.oversize_refused),
            },
        ),
        (
            "link_send_errors",
            "Sends the link could not make.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.send_errors),
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.send_errors),
            },
        ),
        (
            "link_receive_errors",
            "Receive errors on a UDP link.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(s, _) => Some(s.receive_errors),
                LinkCounters::Serial(..) => None,
            },
        ),
        (
            "link_kernel_dropped",
            "Datagrams the kernel dropped at a UDP or DTLS link's full receive buffer.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Udp(_, drops) => *drops,
                LinkCounters::Serial(..) => None,
            },
        ),
        (
            "link_framing_errors",
            "Frames a serial link's framer dropped.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.framing_errors),
                LinkCounters::Udp(..) => None,
            },
        ),
        (
            "link_disconnects",
            "Times a serial device went away.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.disconnects),
                LinkCounters::Udp(..) => None,
            },
        ),
        (
            "link_reopens",
            "Times a serial device was opened again.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Serial(s, _) => s.as_ref().map(|s| s.link.reopens),
                LinkCounters::Udp(..) => None,
            },
        ),
        (
            "link_queue_dropped",
            "Datagrams dropped at a serial link's full send queue.",
            |c| match c {
                // DTLS links are read by dtls_field.
                LinkCounters::Dtls(..) => None,
                LinkCounters::Serial(_, dropped) => Some(*dropped),
                LinkCounters::Udp(..) => None,
            },
        ),
    ];
    for (field, help, read) in fields {
        let name = format!("mqttsn_{field}_total");
        let values: Vec<(String, u64)> = links
            .iter()
            .filter_map(|l| {
                let value = match &l.stats {
                    LinkCounters::Dtls(d, dropped, kernel) => {
                        dtls_field(field, d, *dropped, *kernel)
                    }
                    other => read(other),
                };
                value.map(|v| (label(&l.name), v))
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        header(out, &name, "counter", help);
        for (link, value) in values {
            let _ = writeln!(out, "{name}{{link=\"{link}\"}} {value}");
        }
    }
}

/// The per-link counters a DTLS link has, by the names the other links use.
fn dtls_field(field: &str, d: &DtlsLinkStats, dropped: u64, kernel: Option<u64>) -> Option<u64> {
    let e = &d.endpoint;
    match field {
        "link_kernel_dropped" => kernel,
        "link_datagrams_received" => Some(e.datagrams_received),
        "link_datagrams_sent" => Some(e.datagrams_sent),
        "link_queue_dropped" => Some(dropped),
        "link_send_errors" => Some(d.not_connected),
        _ => None,
    }
}

/// Serial links' own counters beyond the `link_*` families every link has: each of the
/// framer's by reason, failed reopens, and the XBee transmit statuses (a test checks that
/// every counter of [`SerialCounters`] is in one family or the other).
fn serial(out: &mut String, links: &[LinkSnapshot]) {
    let serial: Vec<(String, &SerialCounters)> = links
        .iter()
        .filter_map(|l| match &l.stats {
            LinkCounters::Serial(Some(s), _) => Some((label(&l.name), &**s)),
            _ => None,
        })
        .collect();
    if serial.is_empty() {
        return;
    }
    type Field = (&'static str, &'static str, fn(&SerialCounters) -> u64);
    let fields: [Field; 10] = [
        ("serial_frames_ok", "Frames a serial link's framer decoded and handed out.", |s| s.framer.frames_ok),
        ("serial_bad_checksum", "Frames a serial link's framer dropped for a wrong checksum or CRC.", |s| s.framer.bad_checksum),
        ("serial_oversize", "Frames a serial link's framer dropped for being longer than max_frame.", |s| s.framer.oversize),
        ("serial_malformed", "Frames a serial link's framer dropped for a broken structure (a bad escape, too short).", |s| s.framer.malformed),
        ("serial_skipped", "Valid frames not handed out (other XBee frame types, KISS commands, other ports).", |s| s.framer.skipped),
        ("serial_garbage_bytes", "Bytes a serial link threw away while looking for the start of a frame.", |s| s.framer.garbage_bytes),
        ("serial_failed_reopens", "Attempts to reopen a serial device that failed (still absent).", |s| s.link.failed_reopens),
        ("serial_xbee_undelivered", "XBee transmissions the module reported as not delivered.", |s| s.xbee_undelivered),
        ("serial_xbee_status_timeouts", "XBee transmissions whose transmit status never came.", |s| s.xbee_status_timeouts),
        ("serial_xbee_untracked", "XBee unicasts sent without a transmit status (255 already awaited).", |s| s.xbee_untracked),
    ];
    for (field, help, read) in fields {
        let name = format!("mqttsn_{field}_total");
        header(out, &name, "counter", help);
        for (link, counters) in &serial {
            let _ = writeln!(out, "{name}{{link=\"{link}\"}} {}", read(counters));
        }
    }
}

/// DTLS links' own figures: handshakes, refusals by reason, connections.
fn dtls(out: &mut String, links: &[LinkSnapshot]) {
    let dtls: Vec<(String, &DtlsLinkStats)> = links
        .iter()
        .filter_map(|l| match &l.stats {
            LinkCounters::Dtls(d, ..) => Some((label(&l.name), &**d)),
            _ => None,
        })
        .collect();
    if dtls.is_empty() {
        return;
    }
    let name = "mqttsn_dtls_handshakes_total";
    header(out, name, "counter", "DTLS handshakes completed.");
    for (link, d) in &dtls {
        let _ = writeln!(
            out,
            "{name}{{link=\"{link}\"}} {}",
            d.endpoint.handshakes_completed
        );
    }
    let name = "mqttsn_dtls_refused_total";
    header(
        out,
        name,
        "counter",
        "DTLS datagrams and handshakes refused, by reason.",
    );
    for (link, d) in &dtls {
        let e = &d.endpoint;
        for (reason, value) in [
            ("bad_cookie", e.bad_cookie),
            ("garbage", e.garbage),
            ("handshake_cap", e.handshake_cap),
            ("handshake_cap_per_ip", e.handshake_cap_per_ip),
            ("connection_cap", e.connection_cap),
            ("handshake_timeout", e.handshake_timeouts),
            ("psk_mismatch", e.psk_mismatch),
            ("unknown_psk_identity", e.unknown_psk_identity),
            ("bad_certificate", e.bad_certificate),
            ("no_identity", e.no_identity),
            ("handshake_failed", e.handshake_failed),
            ("alert", e.alerts),
            ("not_connected", d.not_connected),
        ] {
            let _ = writeln!(out, "{name}{{link=\"{link}\",reason=\"{reason}\"}} {value}");
        }
    }
    let name = "mqttsn_dtls_connections";
    header(out, name, "gauge", "DTLS connections established now.");
    for (link, d) in &dtls {
        let _ = writeln!(out, "{name}{{link=\"{link}\"}} {}", d.connections);
    }
    let name = "mqttsn_dtls_handshakes_in_progress";
    header(out, name, "gauge", "DTLS handshakes in progress now.");
    for (link, d) in &dtls {
        let _ = writeln!(out, "{name}{{link=\"{link}\"}} {}", d.handshakes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    /// The field names of `Metrics` as its Debug form lists them.
    fn metrics_fields() -> Vec<String> {
        fields(&format!("{:?}", Metrics::default()))
    }

    /// The top-level field names of a struct's Debug form.
    fn fields(text: &str) -> Vec<String> {
        let body = text.split_once('{').unwrap().1;
        let mut names = Vec::new();
        let mut depth = 0;
        let mut current = String::new();
        for c in body.chars() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                ':' if depth == 0 => {
                    names.push(current.trim().trim_start_matches(',').trim().to_string())
                }
                ',' if depth == 0 => current.clear(),
                _ if depth == 0 => current.push(c),
                _ => {}
            }
            if c == ':' && depth == 0 {
                current.clear();
            }
        }
        names
    }

    #[test]
    fn every_counter_of_the_core_is_exported() {
        let text = render(&Snapshot::default());
        let fields = metrics_fields();
        assert!(fields.len() > 30, "{fields:?}");
        for field in fields {
            let exported = match field.as_str() {
                "publish_ack_latency" => "mqttsn_publish_ack_seconds_count".to_string(),
                "denied" => "mqttsn_denied_by_reason_total{".to_string(),
                name => format!("mqttsn_{name}_total "),
            };
            assert!(
                text.contains(&exported),
                "Metrics::{field} is not exported as {exported}"
            );
        }
    }

    /// Every counter a serial link keeps (its own, its framer's, the XBee statuses') is in
    /// /metrics with its link label, each with the value it has.
    #[test]
    fn every_counter_of_a_serial_link_is_exported_per_link() {
        let mut counters = SerialCounters::default();
        // A distinct value per counter, so that each is found with its own value.
        let values = [
            &mut counters.link.frames_received,
            &mut counters.link.frames_sent,
            &mut counters.link.framing_errors,
            &mut counters.link.oversize_refused,
            &mut counters.link.send_errors,
            &mut counters.link.disconnects,
            &mut counters.link.reopens,
            &mut counters.link.failed_reopens,
            &mut counters.framer.frames_ok,
            &mut counters.framer.bad_checksum,
            &mut counters.framer.oversize,
            &mut counters.framer.malformed,
            &mut counters.framer.skipped,
            &mut counters.framer.garbage_bytes,
            &mut counters.xbee_undelivered,
            &mut counters.xbee_status_timeouts,
            &mut counters.xbee_untracked,
        ];
        for (value, counter) in (101..).zip(values) {
            *counter = value;
        }
        let text = render(&Snapshot {
            links: vec![LinkSnapshot {
                name: "serial:/dev/ttyUSB0".into(),
                stats: LinkCounters::Serial(Some(Box::new(counters)), 7),
            }],
            ..Snapshot::default()
        });
        let exported = |family: &str, value: u64| {
            let line = format!("mqttsn_{family}_total{{link=\"serial:/dev/ttyUSB0\"}} {value}");
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        };
        let link = counters.link;
        for field in fields(&format!("{link:?}")) {
            let (family, value) = match field.as_str() {
                "frames_received" => ("link_datagrams_received", link.frames_received),
                "frames_sent" => ("link_datagrams_sent", link.frames_sent),
                "framing_errors" => ("link_framing_errors", link.framing_errors),
                "oversize_refused" => ("link_oversize_dropped", link.oversize_refused),
                "send_errors" => ("link_send_errors", link.send_errors),
                "disconnects" => ("link_disconnects", link.disconnects),
                "reopens" => ("link_reopens", link.reopens),
                "failed_reopens" => ("serial_failed_reopens", link.failed_reopens),
                other => panic!("SerialLinkStats::{other} is not exported"),
            };
            exported(family, value);
        }
        let framer = counters.framer;
        for field in fields(&format!("{framer:?}")) {
            let value = match field.as_str() {
                "frames_ok" => framer.frames_ok,
                "bad_checksum" => framer.bad_checksum,
                "oversize" => framer.oversize,
                "malformed" => framer.malformed,
                "skipped" => framer.skipped,
                "garbage_bytes" => framer.garbage_bytes,
                other => panic!("FramerStats::{other} is not exported"),
            };
            exported(&format!("serial_{field}"), value);
        }
        for field in fields(&format!("{counters:?}")) {
            let value = match field.as_str() {
                "link" | "framer" => continue,
                "xbee_undelivered" => counters.xbee_undelivered,
                "xbee_status_timeouts" => counters.xbee_status_timeouts,
                "xbee_untracked" => counters.xbee_untracked,
                other => panic!("SerialCounters::{other} is not exported"),
            };
            exported(&format!("serial_{field}"), value);
        }
        exported("link_queue_dropped", 7);
    }

    #[test]
    fn values_labels_and_the_histogram_are_in_the_text_format() {
        let mut snapshot = Snapshot::default();
        snapshot.metrics.publish_forwarded = 7;
        snapshot.metrics.denied.not_listed = 2;
        snapshot
            .metrics
            .publish_ack_latency
            .record(Duration::from_millis(3));
        snapshot.gauges.sessions_asleep = 4;
        snapshot.gauges.broker_connected = true;
        snapshot.links.push(LinkSnapshot {
            name: "udp:0.0.0.0:1883".into(),
            stats: LinkCounters::Udp(LinkStats::default(), Some(5)),
        });
        let text = render(&snapshot);
        for line in [
            "mqttsn_publish_forwarded_total 7",
            "mqttsn_denied_total 2",
            "mqttsn_denied_by_reason_total{reason=\"not_listed\"} 2",
            "mqttsn_publish_ack_seconds_bucket{le=\"0.0025\"} 0",
            "mqttsn_publish_ack_seconds_bucket{le=\"0.005\"} 1",
            "mqttsn_publish_ack_seconds_bucket{le=\"10\"} 1",
            "mqttsn_publish_ack_seconds_bucket{le=\"+Inf\"} 1",
            "mqttsn_publish_ack_seconds_sum 0.003000",
            "mqttsn_sessions{state=\"asleep\"} 4",
            "mqttsn_broker_connected 1",
            "mqttsn_link_kernel_dropped_total{link=\"udp:0.0.0.0:1883\"} 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line belongs to a metric with HELP and TYPE.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}"
            );
        }
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
        // A DTLS link: its own families, with the link label.
        let mut dtls = DtlsLinkStats::default();
        dtls.endpoint.handshakes_completed = 2;
        dtls.endpoint.psk_mismatch = 1;
        dtls.connections = 2;
        let text = render(&Snapshot {
            links: vec![LinkSnapshot {
                name: "dtls:[::]:5684".into(),
                stats: LinkCounters::Dtls(Box::new(dtls), 0, Some(3)),
            }],
            ..Snapshot::default()
        });
        for line in [
            "mqttsn_dtls_handshakes_total{link=\"dtls:[::]:5684\"} 2",
            "mqttsn_dtls_refused_total{link=\"dtls:[::]:5684\",reason=\"psk_mismatch\"} 1",
            "mqttsn_dtls_connections{link=\"dtls:[::]:5684\"} 2",
            // Its socket's kernel drops, in the family the UDP links' are in.
            "mqttsn_link_kernel_dropped_total{link=\"dtls:[::]:5684\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
