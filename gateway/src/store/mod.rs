//! The durable store: sessions and queued messages in one redb file, written in one
//! transaction per batch of the core's [`StoreOp`]s, each committed with an fsync before the
//! runtime sends anything that depends on it (see docs/decisions.md, "Durable store").

mod encoding;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

use crate::core::{Restored, StoreOp};

pub use encoding::Damaged;

/// Memory redb may use to cache pages.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// client id → session record.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (client id, sequence number) → queued message.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// id → uplink message taken while the broker was unreachable (sent in id order).
const SPOOL: TableDefinition<u64, &[u8]> = TableDefinition::new("spool");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (another gateway) has the file open: redb locks it.
    #[error("the state store {path} is in use by another process (another mqtt-sn-gateway running with the same [store] path?): stop that gateway, or give this one its own [store] path")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be opened or created.
    #[error("cannot open the state store {path}: {source}; set [store] path to a writable file, or make its folder writable")]
    Open {
        /// The file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::DatabaseError>,
    },
    /// A read or write failed.
    #[error("state store {path}: {what}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// What redb said.
        detail: String,
    },
}

/// The open store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store, creating the file (and its tables) if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // redb's default cache may grow to 1 GiB; an edge box has far less to spare, and the
        // store is written far more than it is read (reads happen once, at start).
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| match source {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                    path: path.to_path_buf(),
                },
                source => StoreError::Open {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                },
            })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        // Create the tables once so that reads never meet a missing table.
        store.write(|txn| {
            txn.open_table(SESSIONS).map(drop)?;
            txn.open_table(MESSAGES).map(drop)?;
            txn.open_table(SPOOL).map(drop)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn io(&self, what: &'static str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    fn write(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::TableError>,
    ) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.io("begin write", e))?;
        body(&txn).map_err(|e| self.io("write", e))?;
        // Durability::Immediate (the default): fsync before commit returns.
        txn.commit().map_err(|e| self.io("commit", e))
    }

    /// Applies one batch atomically and durably.
    pub fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.io("begin write", e))?;
        {
            let mut sessions = txn
                .open_table(SESSIONS)
                .map_err(|e| self.io("open sessions", e))?;
            let mut messages = txn
                .open_table(MESSAGES)
                .map_err(|e| self.io("open messages", e))?;
            let mut spool = txn
                .open_table(SPOOL)
                .map_err(|e| self.io("open spool", e))?;
            for op in ops {
                let result = match op {
                    StoreOp::PutSession(record) => sessions
                        .insert(
                            &*record.client_id,
                            encoding::encode_session(record).as_slice(),
                        )
                        .map(drop),
                    StoreOp::DeleteSession { client_id } => {
                        let key: &str = client_id;
                        sessions.remove(key).map(drop).and_then(|()| {
                            messages.retain_in((key, 0u64)..=(key, u64::MAX), |_, _| false)
                        })
                    }
                    StoreOp::PutMessage {
                        client_id,
                        seq,
                        message,
                    } => messages
                        .insert(
                            (&**client_id, *seq),
                            encoding::encode_message(message).as_slice(),
                        )
                        .map(drop),
                    StoreOp::DeleteMessage { client_id, seq } => {
                        messages.remove((&**client_id, *seq)).map(drop)
                    }
                    StoreOp::PutSpool { id, message } => spool
                        .insert(*id, encoding::encode_spooled(message).as_slice())
                        .map(drop),
                    StoreOp::DeleteSpool { id } => spool.remove(*id).map(drop),
                };
                result.map_err(|e| self.io("write", e))?;
            }
        }
        txn.commit().map_err(|e| self.io("commit", e))
    }

    /// Everything stored. A damaged record is skipped with a warning, not fatal: the rest of
    /// the gateway's state is still worth having.
    pub fn load(&self) -> Result<Restored, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io("begin read", e))?;
        let sessions = txn
            .open_table(SESSIONS)
            .map_err(|e| self.io("open sessions", e))?;
        let messages = txn
            .open_table(MESSAGES)
            .map_err(|e| self.io("open messages", e))?;
        let spool = txn
            .open_table(SPOOL)
            .map_err(|e| self.io("open spool", e))?;
        let mut restored = Restored::default();
        for entry in spool.iter().map_err(|e| self.io("read spool", e))? {
            let (key, value) = entry.map_err(|e| self.io("read spool", e))?;
            match encoding::decode_spooled(value.value()) {
                Ok(message) => restored.spool.push((key.value(), message)),
                Err(damage) => {
                    warn!(id = key.value(), %damage, "skipping a damaged spooled message");
                }
            }
        }
        for entry in sessions.iter().map_err(|e| self.io("read sessions", e))? {
            let (key, value) = entry.map_err(|e| self.io("read sessions", e))?;
            match encoding::decode_session(value.value()) {
                Ok(record) => restored.sessions.push(record),
                Err(damage) => {
                    warn!(client_id = key.value(), %damage, "skipping a damaged session record")
                }
            }
        }
        for entry in messages.iter().map_err(|e| self.io("read messages", e))? {
            let (key, value) = entry.map_err(|e| self.io("read messages", e))?;
            let (client_id, seq) = key.value();
            match encoding::decode_message(value.value()) {
                Ok(message) => restored.messages.push((Arc::from(client_id), seq, message)),
                Err(damage) => warn!(client_id, seq, %damage, "skipping a damaged queued message"),
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::core::{MqttQoS, SessionRecord, StoredMessage, StoredRoute, StoredState};

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sn-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.redb")
    }

    fn session(id: &str) -> SessionRecord {
        SessionRecord {
            client_id: id.into(),
            addr: None,
            state: StoredState::Offline,
            clean_session: false,
            keep_alive: 60,
            sleep: 0,
            will: None,
            topics: vec![(1, "t".into(), true)],
            subscriptions: vec![],
            identity: None,
            msg_id_mark: 7,
        }
    }

    fn message(payload: &'static [u8]) -> StoredMessage {
        StoredMessage {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(payload),
            qos: MqttQoS::AtLeastOnce,
            retain: false,
            route: StoredRoute::Normal,
        }
    }

    #[test]
    fn applies_and_reloads_across_reopen() {
        let path = temp_path("reload");
        {
            let store = Store::open(&path).unwrap();
            store
                .apply(&[
                    StoreOp::PutSession(session("a")),
                    StoreOp::PutSession(session("b")),
                    StoreOp::PutMessage {
                        client_id: "a".into(),
                        seq: 1,
                        message: message(b"1"),
                    },
                    StoreOp::PutMessage {
                        client_id: "a".into(),
                        seq: 2,
                        message: message(b"2"),
                    },
                    StoreOp::PutMessage {
                        client_id: "b".into(),
                        seq: 3,
                        message: message(b"3"),
                    },
                ])
                .unwrap();
            store
                .apply(&[
                    StoreOp::DeleteMessage {
                        client_id: "a".into(),
                        seq: 1,
                    },
                    StoreOp::DeleteSession {
                        client_id: "b".into(),
                    },
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let restored = store.load().unwrap();
        assert_eq!(restored.sessions, vec![session("a")]);
        assert_eq!(restored.messages, vec![(Arc::from("a"), 2, message(b"2"))]);
    }

    #[test]
    fn an_unwritable_path_names_the_file_and_the_fix() {
        let error = Store::open(Path::new("/proc/no/such/dir/state.redb")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/proc/no/such/dir/state.redb"), "{text}");
        assert!(text.contains("[store] path"), "{text}");
    }
}
