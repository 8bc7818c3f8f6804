//! What a configuration reloaded by `SIGHUP` can change in a running gateway, and what waits
//! for a restart.
//!
//! The log level, the stats interval, the DTLS links' pre-shared keys (their `psk_file`s,
//! read again) and the policy (`[policy]` and `[[mote]]`) change at once; the broker's
//! password files are read at every connection, so a changed one is used from the next
//! reconnection. Everything else is fixed when the gateway starts (bound sockets, the broker
//! connection, the core's limits, the TLS files, the store file): a changed value is named,
//! so the operator knows a restart is needed, and the running gateway keeps its old value
//! rather than dropping motes to apply it.

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

/// What to do with the `[policy]` and `[[mote]]` list of a reloaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChange {
    /// Unchanged.
    Same,
    /// Changed: hand it to the running core.
    Apply,
    /// Changed, but an entry binds a mote to a link (`[[mote]] link`) while the links
    /// changed too: the link it names in the new file may not be the running one of that
    /// number, so the policy waits for the restart the links need anyway.
    NeedsRestart,
}

/// Whether the policy of `new` can replace the running one (`old`'s).
pub fn policy_change(old: &Config, new: &Config) -> PolicyChange {
    if old.core.policy == new.core.policy && old.mote_links == new.mote_links {
        return PolicyChange::Same;
    }
    let links_changed = old.udp != new.udp || old.serial != new.serial || old.dtls != new.dtls;
    if links_changed && new.mote_links.iter().any(Option::is_some) {
        return PolicyChange::NeedsRestart;
    }
    PolicyChange::Apply
}

/// Reads the broker's password files (`broker.password_file`, the `[[credentials]]` ones)
/// to check them: the links read them again at each connection, so a changed password is
/// used from the next reconnection, and the connections that work now stay up. Logs one
/// line per file: that it is read, or what is wrong with it.
pub fn check_password_files(config: &Config) {
    let broker = config
        .broker
        .as_ref()
        .and_then(|b| b.password_file.as_ref())
        .map(|path| (path, "broker.password_file".to_string()));
    let motes = config.credentials.iter().filter_map(|c| {
        c.password_file.as_ref().map(|path| {
            (
                path,
                format!("password_file of the [[credentials]] for {:?}", c.client_id),
            )
        })
    });
    for (path, option) in broker.into_iter().chain(motes) {
        match crate::broker::read_password(path) {
            Ok(_) => info!(
                path = %path.display(),
                "SIGHUP: {option} read: its password is used from the next connection to the \
                 broker (the connection up now stays)"
            ),
            Err(error) => error!(
                path = %path.display(),
                %error,
                "SIGHUP: cannot read {option}: the next connection uses the password read \
                 before; fix the file"
            ),
        }
    }
}

/// The broker's TLS files (`ca_file`, `client_cert`, `client_key`): the aggregating link reads
/// `[broker]`'s again before each connection, so a renewed certificate or key is used from
/// its next connection; transparent mode's per-mote connections build their TLS
/// configuration (from `[broker]` and `[[credentials]]`) once, at start. SIGHUP says which
/// applies, since a file's content can change without the configuration changing.
pub fn note_tls_files(config: &Config) {
    let broker = config
        .broker
        .as_ref()
        .is_some_and(|b| b.ca_file.is_some() || b.client_cert.is_some() || b.client_key.is_some());
    let motes = config
        .credentials
        .iter()
        .any(|c| c.client_cert.is_some() || c.client_key.is_some());
    let transparent = config.core.mode == sn_config::BrokerMode::Transparent;
    if transparent && (broker || motes) {
        info!(
            "SIGHUP: in transparent mode the TLS files (ca_file, client_cert, client_key) are \
             read only at start: a changed certificate or key takes effect at the next restart"
        );
    } else if broker {
        info!(
            "SIGHUP: the broker's TLS files (ca_file, client_cert, client_key) are read again \
             at each connection: a changed certificate or key is used from the next one; the \
             connection up now stays"
        );
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
        policy_change(old, new) == PolicyChange::NeedsRestart,
        "[policy] and [[mote]] (an entry names a link, and the links changed)",
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
    // (The policy is compared above: it changes live.)
    let differs_beyond_policy = a != b && {
        let mut same_policy = b.clone();
        same_policy.policy = a.policy.clone();
        *a != same_policy
    };
    if changed.is_empty() && differs_beyond_policy {
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
    fn the_policy_applies_live_unless_an_entry_names_a_link_that_moved() {
        let old = config("");
        let policy = config(
            "[policy]\nadmission = \"listed\"\n[[mote]]\nclient_id = \"a\"\npublish = [\"a/#\"]\n",
        );
        assert_eq!(policy_change(&old, &old), PolicyChange::Same);
        assert_eq!(policy_change(&old, &policy), PolicyChange::Apply);
        assert!(restart_needed(&old, &policy).is_empty());
        // The links change too, but no entry names one: still live (the links wait).
        let with_links = config(
            "[[udp]]\nbind = \"127.0.0.1:1\"\n[[udp]]\nbind = \"127.0.0.1:2\"\n\
             [[mote]]\nclient_id = \"a\"\n",
        );
        assert_eq!(policy_change(&old, &with_links), PolicyChange::Apply);
        assert_eq!(restart_needed(&old, &with_links), ["[[udp]]"]);
        // An entry names a link and the links changed: the policy waits for the restart.
        let bound = config(
            "[[udp]]\nbind = \"127.0.0.1:1\"\n[[udp]]\nbind = \"127.0.0.1:2\"\n\
             [[mote]]\nclient_id = \"a\"\nlink = \"udp:127.0.0.1:2\"\n",
        );
        assert_eq!(policy_change(&old, &bound), PolicyChange::NeedsRestart);
        assert_eq!(
            restart_needed(&old, &bound),
            [
                "[policy] and [[mote]] (an entry names a link, and the links changed)",
                "[[udp]]"
            ]
        );
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
