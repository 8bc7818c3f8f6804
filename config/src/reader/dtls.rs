//! Reading `[[dtls]]` sections.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{join, set, Kind, Limits, Reader, Value};
use crate::values::parse_socket_addr;
use crate::{DtlsCertificates, DtlsConfig, DtlsEngineName};

/// The options of each `[[dtls]]`.
pub(crate) const DTLS_KEYS: [&str; 14] = [
    "bind",
    "engine",
    "connection_id",
    "psk_file",
    "cert",
    "key",
    "ca_file",
    "cipher_suites",
    "mtu",
    "max_handshakes",
    "max_handshakes_per_ip",
    "handshake_timeout",
    "idle_timeout",
    "recv_buffer",
];

const HANDSHAKE_TIMEOUT_LIMITS: Limits = Limits {
    min: Duration::from_millis(100),
    max: Duration::from_secs(300),
    zero_is_off: false,
    whole_seconds: false,
};
const IDLE_TIMEOUT_LIMITS: Limits = Limits {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30 * 24 * 3600),
    zero_is_off: false,
    whole_seconds: false,
};

/// Why a `[[dtls]]` link has no `discovery` option, for the message to someone who copied a
/// `[[udp]]` section.
const NO_DISCOVERY: &str = "a [[dtls]] link has no discovery: ADVERTISE and GWINFO go to a \
                            broadcast or multicast address, which DTLS cannot protect (its \
                            records belong to one connection), and a mote given a key for this \
                            gateway is given its address too; remove the option (a [[udp]] \
                            link can still advertise)";

impl Reader<'_> {
    /// `[[dtls]]`: the links in file order; `udp_binds` are the `[[udp]]` bind addresses, which
    /// a DTLS link may not share.
    pub(super) fn dtls_links(
        &mut self,
        value: &Value<'_>,
        udp_binds: &[std::net::SocketAddr],
    ) -> Vec<DtlsConfig> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.issue(
                    value.span(),
                    "dtls",
                    "write [[dtls]] with double brackets: each [[dtls]] section is one DTLS link",
                );
                return Vec::new();
            }
            _ => {
                self.wrong_type(value, "dtls", Kind::Text, "one or more [[dtls]] sections");
                return Vec::new();
            }
        };
        let mut links: Vec<DtlsConfig> = Vec::new();
        // Bind addresses seen so far: (address, field, line).
        let mut binds: Vec<(std::net::SocketAddr, String, usize)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("dtls[{index}]");
            let DeValue::Table(table) = item.get_ref() else {
                let message = format!(
                    "expected a [[dtls]] section or a table like {{ bind = \"0.0.0.0:8883\", \
                     psk_file = \"motes.psk\" }}, found {}",
                    self.describe(item)
                );
                self.issue(item.span(), &field, message);
                continue;
            };
            let Some((link, bind_span)) = self.dtls_link(table, item, &field) else {
                continue;
            };
            let bind_field = format!("{field}.bind");
            if link.bind.port() != 0 {
                if udp_binds.contains(&link.bind) {
                    let message = format!(
                        "\"{}\" is also the bind address of a [[udp]] link; a DTLS link needs a \
                         port of its own",
                        link.bind
                    );
                    self.issue(bind_span.clone(), &bind_field, message);
                } else if let Some((_, other, line)) =
                    binds.iter().find(|(a, _, _)| *a == link.bind)
                {
                    let message = format!(
                        "\"{}\" is already the bind address of {other} (line {line}); give each \
                         link its own address or port",
                        link.bind
                    );
                    self.issue(bind_span.clone(), &bind_field, message);
                } else {
                    let (line, _) = self.position(bind_span.start);
                    binds.push((link.bind, field.clone(), line));
                }
            }
            links.push(link);
        }
        links
    }

    /// One `[[dtls]]` and the span of its `bind` value; `None` when it has no usable bind
    /// address (the issues are recorded).
    fn dtls_link(
        &mut self,
        table: &DeTable<'_>,
        item: &Value<'_>,
        path: &str,
    ) -> Option<(DtlsConfig, Range<usize>)> {
        let mut bind: Option<(std::net::SocketAddr, Range<usize>)> = None;
        let mut broken_bind = false;
        let mut link = DtlsConfig::new(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut cert: Option<PathBuf> = None;
        let mut key: Option<PathBuf> = None;
        let mut ca_file: Option<PathBuf> = None;
        let mut engine_span: Option<Range<usize>> = None;
        let mut cid_span: Option<Range<usize>> = None;
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            let f = join(path, name);
            match name {
                "bind" => {
                    let text = self.string(v, &f, "an IP address and port like \"0.0.0.0:8883\"");
                    match text.map(parse_socket_addr) {
                        Some(Ok(addr)) => bind = Some((addr, v.span())),
                        Some(Err(message)) => {
                            self.issue(v.span(), &f, message);
                            broken_bind = true;
                        }
                        None => broken_bind = true,
                    }
                }
                "engine" => {
                    if let Some(name) = self.string(v, &f, "\"mbedtls\" or \"openssl\"") {
                        match name.trim().to_ascii_lowercase().as_str() {
                            "mbedtls" => link.engine = Some(DtlsEngineName::MbedTls),
                            "openssl" => link.engine = Some(DtlsEngineName::OpenSsl),
                            other => self.issue(
                                v.span(),
                                &f,
                                format!(
                                    "{other:?} is not a DTLS engine; write engine = \"mbedtls\" \
                                     (Mbed TLS 3.6, built in, has the Connection ID) or \
                                     engine = \"openssl\" (the system's libssl)"
                                ),
                            ),
                        }
                    }
                    engine_span = Some(v.span());
                }
                "connection_id" => {
                    if let Some(on) = self.boolean(v, &f) {
                        link.connection_id = on;
                        cid_span = Some(v.span());
                    }
                }
                "psk_file" => link.psk_file = self.path(v, &f),
                "cert" => cert = self.path(v, &f),
                "key" => key = self.path(v, &f),
                "ca_file" => ca_file = self.path(v, &f),
                "cipher_suites" => set(&mut link.cipher_suites, self.cipher_suites(v, &f)),
                "mtu" => set(&mut link.mtu, self.int(v, &f, 256, 65507)),
                "max_handshakes" => set(&mut link.max_handshakes, self.int(v, &f, 1, 1_000_000)),
                "max_handshakes_per_ip" => {
                    set(
                        &mut link.max_handshakes_per_ip,
                        self.int(v, &f, 1, 1_000_000),
                    );
                }
                "handshake_timeout" => set(
                    &mut link.handshake_timeout,
                    self.duration(v, &f, HANDSHAKE_TIMEOUT_LIMITS),
                ),
                "idle_timeout" => set(
                    &mut link.idle_timeout,
                    self.duration(v, &f, IDLE_TIMEOUT_LIMITS),
                ),
                "recv_buffer" => set(
                    &mut link.recv_buffer,
                    self.int(
                        v,
                        &f,
                        crate::MIN_UDP_RECV_BUFFER,
                        crate::MAX_UDP_RECV_BUFFER,
                    ),
                ),
                "discovery" => {
                    // "off" is what a [[dtls]] link does anyway: accept it from a copied
                    // [[udp]] section, refuse anything that asks for more.
                    let off = matches!(v.get_ref(), DeValue::String(s)
                        if s.trim().eq_ignore_ascii_case("off"));
                    if !off {
                        self.issue(v.span(), &f, NO_DISCOVERY);
                    }
                }
                _ => self.unknown_key(k, path, "dtls"),
            }
        }
        if link.connection_id && link.engine == Some(DtlsEngineName::OpenSsl) {
            let span = cid_span.or(engine_span).unwrap_or_else(|| item.span());
            self.issue(
                span,
                &join(path, "connection_id"),
                "connection_id = true needs engine = \"mbedtls\": libssl (engine = \"openssl\") \
                 has no DTLS Connection ID; remove the engine line or set connection_id = false",
            );
        }
        // Certificates come as a set: a gateway certificate without a CA would complete
        // handshakes that prove no mote's identity.
        let certificate_keys = [
            ("cert", cert.is_some()),
            ("key", key.is_some()),
            ("ca_file", ca_file.is_some()),
        ];
        let given: Vec<&str> = certificate_keys
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect();
        match (cert, key, ca_file) {
            (Some(certificate), Some(private_key), Some(client_ca)) => {
                link.certificates = Some(DtlsCertificates {
                    certificate,
                    private_key,
                    client_ca,
                });
            }
            (None, None, None) => {}
            _ => {
                let missing: Vec<&str> = certificate_keys
                    .iter()
                    .filter(|(_, set)| !*set)
                    .map(|(n, _)| *n)
                    .collect();
                let message = format!(
                    "{} given without {}: certificates need the gateway's cert and key and the \
                     ca_file that motes' certificates are checked against",
                    given.join(" and "),
                    missing.join(" and ")
                );
                self.issue(item.span(), path, message);
            }
        }
        if link.psk_file.is_none() && given.is_empty() {
            self.issue(
                item.span(),
                path,
                "a [[dtls]] link needs a way to authenticate motes: psk_file (pre-shared keys), \
                 or cert, key and ca_file (certificates), or both",
            );
        }
        let Some((addr, span)) = bind else {
            if !broken_bind {
                self.issue(
                    item.span(),
                    &join(path, "bind"),
                    "missing; write bind = \"0.0.0.0:8883\" (the address and port the link \
                     listens on)",
                );
            }
            return None;
        };
        link.bind = addr;
        Some((link, span))
    }

    /// `cipher_suites`: a non-empty list of OpenSSL suite names (libssl itself says at start
    /// which it cannot use).
    fn cipher_suites(&mut self, value: &Value<'_>, field: &str) -> Option<Vec<String>> {
        let example = "[\"PSK-AES128-CCM8\", \"ECDHE-ECDSA-AES128-CCM8\"]";
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                value,
                field,
                Kind::Text,
                &format!("a list of OpenSSL cipher suite names like {example}"),
            );
            return None;
        };
        if items.is_empty() {
            self.issue(
                value.span(),
                field,
                format!("the list is empty; name at least one suite, like {example}, or remove the option for the default four"),
            );
            return None;
        }
        let mut suites = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match self.string(item, &f, "a cipher suite name in double quotes") {
                Some(name) if is_suite_name(name.trim()) => suites.push(name.trim().to_string()),
                Some(name) => {
                    self.issue(
                        item.span(),
                        &f,
                        format!(
                            "{name:?} is not a cipher suite name; write one OpenSSL name per \
                             element, like \"PSK-AES128-CCM8\""
                        ),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(suites)
    }
}

/// Whether `name` looks like one OpenSSL suite name: a cipher string with `:`, `!` or spaces
/// would let one element smuggle in a list of its own.
fn is_suite_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
