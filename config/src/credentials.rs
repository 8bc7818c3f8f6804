//! `[[credentials]]`: in transparent mode (`[broker] mode`, [`crate::BrokerMode`]) each mote has
//! its own MQTT connection to the broker; this is the login each mote's connection uses.

use std::fmt;
use std::path::PathBuf;

/// `[[credentials]]`: the login of one mote's own broker connection (transparent mode).
///
/// Two parts, each taken from here when given and from `[broker]` otherwise: the user name
/// and password (`username` with `password` or `password_file`), and the TLS client
/// certificate (`client_cert` with `client_key`). An entry gives at least one of them.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialsConfig {
    /// The mote's MQTT-SN client id, as it sends it in CONNECT (without `client_id_prefix`).
    pub client_id: String,
    /// MQTT user name of the mote's connection.
    pub username: Option<String>,
    /// MQTT password; needs `username`.
    pub password: Option<String>,
    /// A file whose content (without a trailing newline) is the password; read when the
    /// gateway starts. Not together with `password`.
    pub password_file: Option<PathBuf>,
    /// PEM client certificate of the mote's connection (`mqtts://` only); with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl CredentialsConfig {
    /// An entry for `client_id` with nothing else set.
    pub fn new(client_id: impl Into<String>) -> CredentialsConfig {
        CredentialsConfig {
            client_id: client_id.into(),
            username: None,
            password: None,
            password_file: None,
            client_cert: None,
            client_key: None,
        }
    }

    /// Whether the entry gives a user name (and so replaces `[broker]`'s login).
    pub fn has_login(&self) -> bool {
        self.username.is_some()
    }

    /// Whether the entry gives a client certificate (and so replaces `[broker]`'s).
    pub fn has_certificate(&self) -> bool {
        self.client_cert.is_some() && self.client_key.is_some()
    }
}

impl fmt::Debug for CredentialsConfig {
    /// Like a derived `Debug`, but the password is shown as `"***"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsConfig")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}
