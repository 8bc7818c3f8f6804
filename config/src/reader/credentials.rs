//! Reading `[[credentials]]` sections, and checking them against `[broker]`.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::{join, Kind, Reader, Value};
use crate::values::PASSWORD_NEEDS_USER;
use crate::{BrokerMode, Config, CredentialsConfig};

/// The options of each `[[credentials]]`.
pub(crate) const CREDENTIALS_KEYS: [&str; 6] = [
    "client_id",
    "username",
    "password",
    "password_file",
    "client_cert",
    "client_key",
];

/// One `[[credentials]]` as read, with where it is, for the checks that need `[broker]`.
pub(super) struct Entry {
    /// What it says.
    pub(super) config: CredentialsConfig,
    /// Its field path, `credentials[N]`.
    pub(super) field: String,
    /// The whole entry.
    span: Range<usize>,
    /// The `client_id` value.
    pub(super) client_id: Range<usize>,
    /// The TLS options written (`client_cert`, `client_key`) and their values.
    tls: Vec<(&'static str, Range<usize>)>,
}

impl Reader<'_> {
    pub(super) fn credentials(&mut self, value: &Value<'_>) -> Vec<Entry> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.issue(
                    value.span(),
                    "credentials",
                    "write [[credentials]] with double brackets: each [[credentials]] section \
                     is the login of one mote",
                );
                return Vec::new();
            }
            _ => {
                self.wrong_type(
                    value,
                    "credentials",
                    Kind::Text,
                    "one or more [[credentials]] sections",
                );
                return Vec::new();
            }
        };
        let mut entries: Vec<Entry> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("credentials[{index}]");
            let DeValue::Table(table) = item.get_ref() else {
                let message = format!(
                    "expected a [[credentials]] section or a table like {{ client_id = \
                     \"mote-1\", username = \"mote-1\", password_file = \"mote-1.pass\" }}, \
                     found {}",
                    self.describe(item)
                );
                self.issue(item.span(), &field, message);
                continue;
            };
            let Some(entry) = self.credentials_entry(table, item, field) else {
                continue;
            };
            if let Some(first) = entries
                .iter()
                .find(|e| e.config.client_id == entry.config.client_id)
            {
                let (line, _) = self.position(first.span.start);
                let message = format!(
                    "the client id {:?} already has credentials on line {line} ({}); give each \
                     mote one [[credentials]] entry",
                    entry.config.client_id, first.field
                );
                self.issue(
                    entry.client_id.clone(),
                    &join(&entry.field, "client_id"),
                    message,
                );
                continue;
            }
            entries.push(entry);
        }
        entries
    }

    /// One `[[credentials]]`; `None` when it is unusable (the issues are recorded).
    fn credentials_entry(
        &mut self,
        table: &DeTable<'_>,
        item: &Value<'_>,
        path: String,
    ) -> Option<Entry> {
        let mut client_id: Option<(String, Range<usize>)> = None;
        let mut config = CredentialsConfig::new("");
        let mut password: Option<Range<usize>> = None;
        let mut password_file: Option<Range<usize>> = None;
        let mut tls: Vec<(&'static str, Range<usize>)> = Vec::new();
        let mut broken = false;
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join(&path, name);
            match name {
                "client_id" => match self.client_id_value(
                    v,
                    &f,
                    "write the client id the mote sends in its CONNECT",
                ) {
                    Some(id) => client_id = Some(id),
                    None => broken = true,
                },
                "username" => match self.mqtt_string(v, &f, "user name") {
                    Some(name) if name.is_empty() => {}
                    Some(name) => config.username = Some(name),
                    None => broken = true,
                },
                "password" => match self.string(v, &f, "the password in double quotes") {
                    Some(text) if text.len() > usize::from(u16::MAX) => {
                        self.issue(v.span(), &f, "the password is longer than 65535 bytes");
                        broken = true;
                    }
                    Some("") => {}
                    Some(text) => {
                        config.password = Some(text.to_string());
                        password = Some(v.span());
                    }
                    None => broken = true,
                },
                "password_file" => match self.path(v, &f) {
                    Some(p) => {
                        config.password_file = Some(p);
                        password_file = Some(v.span());
                    }
                    None => broken = true,
                },
                "client_cert" | "client_key" => {
                    let Some(p) = self.path(v, &f) else {
                        broken = true;
                        continue;
                    };
                    if name == "client_cert" {
                        config.client_cert = Some(p);
                        tls.push(("client_cert", v.span()));
                    } else {
                        config.client_key = Some(p);
                        tls.push(("client_key", v.span()));
                    }
                }
                _ => self.unknown_key(key, &path, "credentials"),
            }
        }
        let Some((id, id_span)) = client_id else {
            if !broken {
                self.issue(
                    item.span(),
                    &join(&path, "client_id"),
                    "missing; write client_id = \"...\", the client id the mote sends in its \
                     CONNECT",
                );
            }
            return None;
        };
        config.client_id = id;
        if let (Some(_), Some(span)) = (&password, &password_file) {
            self.issue(
                span.clone(),
                &join(&path, "password_file"),
                "set either password or password_file, not both",
            );
            broken = true;
        }
        if config.username.is_none() {
            let span = password.clone().or_else(|| password_file.clone());
            if let Some(span) = span {
                let field = if password.is_some() {
                    "password"
                } else {
                    "password_file"
                };
                self.issue(span, &join(&path, field), PASSWORD_NEEDS_USER);
                broken = true;
            }
        }
        let has = |wanted: &str| tls.iter().any(|(name, _)| *name == wanted);
        let unpaired: Vec<(&str, &str, Range<usize>)> = tls
            .iter()
            .filter_map(|(name, span)| match *name {
                "client_cert" if !has("client_key") => {
                    Some(("client_cert", "client_key", span.clone()))
                }
                "client_key" if !has("client_cert") => {
                    Some(("client_key", "client_cert", span.clone()))
                }
                _ => None,
            })
            .collect();
        for (name, other, span) in unpaired {
            let message = format!(
                "{name} needs {other} as well (the mote's client certificate and its private \
                 key, both PEM)"
            );
            self.issue(span, &join(&path, name), message);
            broken = true;
        }
        if broken {
            return None;
        }
        if !config.has_login() && !config.has_certificate() {
            self.issue(
                item.span(),
                &path,
                format!(
                    "the entry for {:?} gives no credentials; add username (with password or \
                     password_file), or client_cert and client_key; a mote without an entry \
                     uses the [broker] ones",
                    config.client_id
                ),
            );
            return None;
        }
        Some(Entry {
            config,
            field: path,
            span: item.span(),
            client_id: id_span,
            tls,
        })
    }

    /// `[[credentials]]` against `[broker]` and `[gateway]`: they need transparent mode, their
    /// certificates need TLS, their client ids must be ones the gateway accepts.
    pub(super) fn check_credentials(
        &mut self,
        config: &Config,
        entries: &[Entry],
        mode: Option<Range<usize>>,
    ) {
        let Some(first) = entries.first() else {
            return;
        };
        let broker = match &config.broker {
            None => {
                self.issue(
                    first.span.clone(),
                    &first.field,
                    "[[credentials]] are only used in transparent mode, and there is no \
                     [broker] section; add [broker] with url and mode = \"transparent\", or \
                     remove the [[credentials]] sections",
                );
                return;
            }
            Some(broker) => broker,
        };
        if config.core.mode == BrokerMode::Aggregating {
            let set_where = match mode {
                Some(span) => {
                    let (line, _) = self.position(span.start);
                    format!("[broker] mode is \"aggregating\" (line {line})")
                }
                None => "[broker] mode is \"aggregating\" (the default)".to_string(),
            };
            let message = format!(
                "[[credentials]] are only used in transparent mode (one broker connection per \
                 mote), but {set_where}; set mode = \"transparent\" in [broker], or remove the \
                 [[credentials]] sections"
            );
            self.issue(first.span.clone(), &first.field, message);
            return;
        }
        // An unreadable url leaves `url` empty: whether it is TLS is then unknown.
        let plain = !broker.url.is_empty() && !broker.tls;
        let max_id = config.core.max_client_id_len;
        for entry in entries {
            if plain {
                for (name, span) in &entry.tls {
                    let message = format!(
                        "{name} is a TLS option, but the [broker] url is plain mqtt://; use an \
                         mqtts:// url or remove {name}"
                    );
                    self.issue(span.clone(), &join(&entry.field, name), message);
                }
            }
            if entry.config.client_id.len() > max_id {
                let message = format!(
                    "the client id is {} bytes long, more than [gateway] max_client_id_len \
                     ({max_id}), so the mote could not connect; raise max_client_id_len or \
                     correct the id",
                    entry.config.client_id.len()
                );
                self.issue(
                    entry.client_id.clone(),
                    &join(&entry.field, "client_id"),
                    message,
                );
            }
        }
    }
}
