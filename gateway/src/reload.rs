//! What a configuration reloaded by `SIGHUP` can change in a running gateway, and what waits
//! for a restart.
//!
//! The log level, the stats interval and the DTLS links' pre-shared keys (their `psk_file`s,
//! read again) change at once. Everything else is fixed when the
//! gateway starts (bound sockets, the broker connection, the core's limits and policy, the
//! store file): a changed value is named, so the operator knows a restart is needed, and the
//! running gateway keeps its old value rather than dropping motes to apply it.

use sn_config::Config;
use tracing::{error, info};

use crate::runtime::{PskReload, PskReloader};

/// Reads the running DTLS links' PSK files again and hands them the new keys, logging how
/// many identities each holds now. New handshakes use the new keys; motes already connected
/// keep their DTLS sessions, so no mote is dropped (a mote whose key was removed is refused
/// at its next handshake). A file that cannot be read leaves its link's keys as they were.
pub fn reload_psk_files(reloader: &PskReloader) {
    for outcome in reloader.reload() {
        match outcome {
            PskReload::Loaded {
                link,
                path,
                identities,
            } => info!(
                link,
                path = %path.display(),
                identities,
                "SIGHUP: PSK file read again: {identities} identities"
            ),
            PskReload::Failed { link, path, error } => error!(
                link,
                path = %path.display(),
                %error,
                "SIGHUP: PSK file not reloaded, the link keeps the keys it has; fix the file"
            ),
        }
    }
}

/// The settings that differ between `old` and `new` and only take effect at a restart, named
/// as they are written in the file (`[gateway] max_sessions`, `[[udp]]`, `[broker]`, ...),
/// in the order of the file's documentation. Empty when a reload applied everything.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |differs: bool, name: &str| {
        if differs {
            changed.push(name.to_string());
        }
    };
    let (a, b) = (&old.core, &new.core);
    check(a.gw_id != b.gw_id, "[gateway] gw_id");
    check(
        a.advertise_interval != b.advertise_interval,
        "[gateway] advertise_interval",
    );
    check(
        a.retry_interval != b.retry_interval,
        "[gateway] retry_interval",
    );
    check(a.max_retries != b.max_retries, "[gateway] max_retries");
    check(a.max_sessions != b.max_sessions, "[gateway] max_sessions");
    check(
        a.max_sessions_per_address != b.max_sessions_per_address,
        "[gateway] max_sessions_per_address",
    );
    check(
        a.max_topics_per_session != b.max_topics_per_session,
        "[gateway] max_topics_per_session",
    );
    check(
        a.max_queued_per_session != b.max_queued_per_session,
        "[gateway] max_queued_per_session",
    );
    check(
        a.max_queued_bytes_per_session != b.max_queued_bytes_per_session,
        "[gateway] max_queued_bytes_per_session",
    );
    check(
        a.max_queued_bytes_total != b.max_queued_bytes_total,
        "[gateway] max_queued_bytes_total",
    );
    check(
        a.max_state_bytes != b.max_state_bytes,
        "[gateway] max_state_bytes",
    );
    check(
        a.queue_overflow != b.queue_overflow,
        "[gateway] queue_overflow",
    );
    check(
        a.max_packet_size != b.max_packet_size,
        "[gateway] max_packet_size",
    );
    check(
        a.max_client_id_len != b.max_client_id_len,
        "[gateway] max_client_id_len",
    );
    check(
        a.max_sleep_duration != b.max_sleep_duration,
        "[gateway] max_sleep_duration",
    );
    check(
        a.qos_minus_one != b.qos_minus_one,
        "[gateway] qos_minus_one",
    );
    check(a.roaming != b.roaming, "[gateway] roaming");
    check(a.connect_rate != b.connect_rate, "[gateway] connect_rate");
    check(
        a.max_pending_qos0 != b.max_pending_qos0,
        "[gateway] max_pending_qos0",
    );
    check(
        old.worker_threads != new.worker_threads,
        "[gateway] worker_threads",
    );
    check(
        a.predefined_topics != b.predefined_topics,
        "[predefined_topics]",
    );
    check(
        a.policy != b.policy || old.mote_links != new.mote_links,
        "[policy] and [[mote]]",
    );
    check(old.udp != new.udp, "[[udp]]");
    check(old.serial != new.serial, "[[serial]]");
    check(old.dtls != new.dtls, "[[dtls]]");
    check(old.broker != new.broker || a.mode != b.mode, "[broker]");
    check(old.credentials != new.credentials, "[[credentials]]");
    check(
        old.embedded_broker != new.embedded_broker,
        "[embedded_broker]",
    );
    check(a.presence_topic != b.presence_topic, "[presence]");
    check(old.metrics != new.metrics, "[metrics]");
    check(a.spool != b.spool, "[spool]");
    check(old.store != new.store, "[store]");
    check(old.log.format != new.log.format, "[log] format");
    // A core option added later and not listed above is still reported, by its section.
    if changed.is_empty() && a != b {
        changed.push("[gateway]".to_string());
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn the_level_and_the_stats_interval_need_no_restart() {
        let old = config("");
        let new = config("[log]\nlevel = \"debug\"\nstats_interval = \"10s\"\n");
        assert_ne!(old, new);
        assert!(restart_needed(&old, &new).is_empty());
    }

    #[test]
    fn everything_else_is_named() {
        let old = config("");
        let new = config(
            "[gateway]\nmax_sessions = 5\nworker_threads = 2\n[[udp]]\nbind = \"127.0.0.1:1\"\n\
             [[dtls]]\nbind = \"127.0.0.1:8883\"\npsk_file = \"k.psk\"\n\
             [store]\npath = \"other.redb\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
        );
        assert_eq!(
            restart_needed(&old, &new),
            [
                "[gateway] max_sessions",
                "[gateway] worker_threads",
                "[[udp]]",
                "[[dtls]]",
                "[store]",
                "[log] format"
            ]
        );
        let broker = config("[broker]\nurl = \"mqtt://h\"\n");
        assert_eq!(restart_needed(&old, &broker), ["[broker]"]);
        let observed =
            config("[presence]\ntopic = \"m/%c/p\"\n[metrics]\nlisten = \"127.0.0.1:9090\"\n");
        assert_eq!(restart_needed(&old, &observed), ["[presence]", "[metrics]"]);
    }
}
