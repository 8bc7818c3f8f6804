//! Parsers for the text values that have a syntax of their own: socket addresses, the broker
//! URL, topic ids and names, log levels. Each error is a sentence saying how to fix the value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::suggest::closest;
use crate::{DEFAULT_MQTTS_PORT, DEFAULT_MQTT_PORT};

pub(crate) const PASSWORD_NEEDS_USER: &str =
    "a password needs a user name (MQTT 3.1.1 sends no password without one); set username";

/// Parses `IP:PORT` (`0.0.0.0:1883`, `[::]:1883`).
pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        let with_port = SocketAddr::new(ip, 1883);
        return Err(format!(
            "{text:?} has no port; write it with one, like \"{with_port}\""
        ));
    }
    if let Some(ip) = trimmed
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<Ipv6Addr>().ok())
    {
        return Err(format!(
            "{text:?} has no port; write it with one, like \"[{ip}]:1883\""
        ));
    }
    if trimmed.matches(':').count() > 1 && !trimmed.starts_with('[') {
        return Err(format!(
            "{text:?}: an IPv6 address needs brackets before the port, like \"[::]:1883\""
        ));
    }
    if let Some((host, port)) = trimmed.rsplit_once(':') {
        if host.parse::<IpAddr>().is_err() && !host.starts_with('[') {
            return Err(format!(
                "{text:?}: {host:?} is not an IP address (host names are not looked up here); \
                 write an IP address and port, like \"0.0.0.0:1883\" or \"[::]:1883\""
            ));
        }
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "{text:?}: the port {port:?} is not a number from 0 to 65535"
            ));
        }
    }
    Err(format!(
        "{text:?} is not an IP address and port; write it like \"0.0.0.0:1883\" or \"[::]:1883\""
    ))
}

/// Why `addr` cannot be a discovery destination for a link bound to `bind`, if it cannot.
pub(crate) fn check_discovery(addr: SocketAddr, bind: Option<SocketAddr>) -> Result<(), String> {
    if let Some(bind) = bind {
        if addr.is_ipv4() != bind.is_ipv4() {
            let (family, other, example) = if bind.is_ipv4() {
                ("IPv4", "IPv6", "\"225.1.1.1:1883\"")
            } else {
                ("IPv6", "IPv4", "\"[ff02::1]:1883\"")
            };
            return Err(format!(
                "\"{addr}\" is {other} but bind \"{bind}\" is {family}; discovery must use the \
                 bind address's family, like {example}, or \"off\""
            ));
        }
    }
    if addr.port() == 0 {
        return Err(format!(
            "\"{addr}\" has port 0; give the port the motes listen on, like \"{}\"",
            SocketAddr::new(addr.ip(), 1883)
        ));
    }
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_multicast() || is_ipv4_broadcast(ip) => Ok(()),
        IpAddr::V4(_) => Err(format!(
            "\"{addr}\" is neither a multicast group (224.0.0.0 to 239.255.255.255) nor a \
             broadcast address (255.255.255.255 or a subnet's, like 192.168.1.255); use one of \
             those, like \"225.1.1.1:1883\", or \"off\""
        )),
        IpAddr::V6(ip) if ip.is_multicast() => Ok(()),
        IpAddr::V6(_) => Err(format!(
            "\"{addr}\" is not an IPv6 multicast group (IPv6 has no broadcast); use one like \
             \"[ff02::1]:1883\", or \"off\""
        )),
    }
}

/// 255.255.255.255, or an address whose host bits are all ones for some prefix of /8 to /30
/// (a subnet's broadcast address).
fn is_ipv4_broadcast(ip: Ipv4Addr) -> bool {
    ip.is_broadcast() || (!ip.is_unspecified() && u32::from(ip).trailing_ones() >= 2)
}

/// A broker URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerUrl {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// `scheme://host:port`, without user info.
    pub(crate) normalized: String,
}

/// Parses `mqtt[s]://[user[:password]@]host[:port][/]`.
pub(crate) fn parse_broker_url(text: &str) -> Result<BrokerUrl, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(
            "the broker URL is empty; write one like \"mqtt://localhost:1883\"".to_string(),
        );
    }
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(format!(
            "{text:?} has no scheme; write \"mqtt://{trimmed}\" (or \"mqtts://{trimmed}\" for TLS)"
        ));
    };
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" => (false, DEFAULT_MQTT_PORT),
        "mqtts" => (true, DEFAULT_MQTTS_PORT),
        "tcp" => return Err(format!("{text:?}: write mqtt:// instead of tcp://")),
        "ssl" | "tls" => {
            return Err(format!("{text:?}: write mqtts:// instead of {scheme}://"));
        }
        "ws" | "wss" => {
            return Err(format!(
                "{text:?}: MQTT over WebSocket is not supported; use mqtt:// or mqtts://"
            ));
        }
        _ => {
            return Err(format!(
                "{text:?} has the scheme {scheme:?}; use mqtt:// (plain) or mqtts:// (TLS)"
            ));
        }
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(authority_end).unwrap_or((rest, ""));
    if !tail.is_empty() && tail != "/" {
        let what = match tail.chars().next() {
            Some('?') => "a query",
            Some('#') => "a fragment",
            _ => "a path",
        };
        let hint = if tail.contains('@') {
            "; if it is part of the password, percent-encode it (%2F for /, %3F for ?, %23 for #)"
        } else {
            ""
        };
        return Err(format!(
            "{text:?} has {what} ({tail:?}); a broker URL is only mqtt[s]://host[:port], remove it{hint}"
        ));
    }
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let user = percent_decode(user).map_err(|e| format!("{text:?}: the user name {e}"))?;
            let password = password
                .map(percent_decode)
                .transpose()
                .map_err(|e| format!("{text:?}: the password {e}"))?;
            ((!user.is_empty()).then_some(user), password)
        }
    };
    let (host, port) = split_host_port(text, host_port)?;
    let port = match port {
        None => default_port,
        Some(port) => parse_port(text, port)?,
    };
    let scheme = if tls { "mqtts" } else { "mqtt" };
    let normalized = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    };
    Ok(BrokerUrl {
        tls,
        host,
        port,
        username,
        password,
        normalized,
    })
}

/// Splits and checks `host[:port]`; the host comes back without IPv6 brackets.
fn split_host_port<'a>(
    text: &str,
    host_port: &'a str,
) -> Result<(String, Option<&'a str>), String> {
    if host_port.is_empty() {
        return Err(format!(
            "{text:?} has no host; write one like \"mqtt://localhost:1883\""
        ));
    }
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(format!("{text:?}: the IPv6 address has no closing \"]\""));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{text:?}: [{inside}] is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(format!(
                        "{text:?}: after \"]\" only \":PORT\" may follow, like \"[::1]:1883\""
                    ));
                }
            },
        };
        return Ok((inside.to_string(), port));
    }
    if host_port.matches(':').count() > 1 {
        return Err(format!(
            "{text:?}: an IPv6 address needs brackets, like \"mqtt://[::1]:1883\""
        ));
    }
    let (host, port) = match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    if host.is_empty() {
        return Err(format!(
            "{text:?} has no host; write one like \"mqtt://localhost:1883\""
        ));
    }
    if host.parse::<Ipv4Addr>().is_err() {
        if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(format!("{text:?}: {host:?} is not an IPv4 address"));
        }
        check_host_name(text, host)?;
    }
    Ok((host.to_string(), port))
}

fn check_host_name(text: &str, host: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{text:?}: {host:?} is not a host name; {why}"));
    if host.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    for label in host.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each part between dots must have 1 to 63 characters");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("use letters, digits, '-' and '.' only");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("no part may start or end with '-'");
        }
    }
    Ok(())
}

fn parse_port(text: &str, port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!(
            "{text:?} has an empty port after \":\"; write a port or remove the \":\""
        ));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{text:?}: the port {port:?} is not a number; use 1 to 65535"
        ));
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "{text:?}: the port {port} is out of range; use 1 to 65535"
        )),
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'%' {
            bytes.push(byte);
            continue;
        }
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        match (hex(rest.first()), hex(rest.get(1))) {
            (Some(hi), Some(lo)) => {
                bytes.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                rest = rest.get(2..).unwrap_or_default();
            }
            _ => {
                return Err(
                    "has a '%' not followed by two hex digits; write a literal '%' as %25"
                        .to_string(),
                );
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 after percent-decoding".to_string())
}

/// Parses a `[predefined_topics]` key: a decimal or `0x` hex topic id from 1 to 0xFFFE.
pub(crate) fn parse_topic_id(key: &str) -> Result<u16, String> {
    let how = "write a number from 1 to 65534, in decimal (like 16) or hex (like \"0x0010\")";
    let value = if let Some(hex) = key.strip_prefix("0x").or_else(|| key.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{key:?} is not a topic id; {how}"));
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("{key:?} is not a topic id; {how}"));
        }
        key.parse::<u64>().ok()
    };
    match value {
        Some(0) | Some(0xFFFF) => Err(format!(
            "topic id {key} is reserved by MQTT-SN; use 1 to 65534 (0x0001 to 0xFFFE)"
        )),
        Some(id) => u16::try_from(id).map_err(|_| {
            format!("topic id {key} is out of range; use 1 to 65534 (0x0001 to 0xFFFE)")
        }),
        None => Err(format!(
            "topic id {key} is out of range; use 1 to 65534 (0x0001 to 0xFFFE)"
        )),
    }
}

/// Checks a topic name (not a filter): non-empty, no wildcards, no NUL, at most 65535 bytes.
pub(crate) fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "the topic name is empty; write the topic, like \"sensors/temperature\"".to_string(),
        );
    }
    for wildcard in ['+', '#'] {
        if name.contains(wildcard) {
            return Err(format!(
                "{name:?} contains the wildcard '{wildcard}'; a predefined topic is one topic \
                 name, not a filter"
            ));
        }
    }
    if name.contains('\0') {
        return Err(format!("{name:?} contains a NUL character; remove it"));
    }
    if name.len() > usize::from(u16::MAX) {
        return Err(format!(
            "the topic name is {} bytes long; MQTT allows at most 65535",
            name.len()
        ));
    }
    Ok(())
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn is_level(word: &str) -> bool {
    let word = word.trim();
    LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word))
        || matches!(word, "0" | "1" | "2" | "3" | "4" | "5")
}

/// Checks a log level or a tracing `EnvFilter` directive list, catching misspelt levels.
pub(crate) fn check_log_level(text: &str) -> Result<(), String> {
    let how = "use off, error, warn, info, debug or trace, or directives that each end with a \
               level, like \"mqtt_sn_gateway=debug,info\"";
    if text.trim().is_empty() {
        return Err(format!("the log level is empty; {how}"));
    }
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "{text:?} has an empty directive (two commas in a row, or a comma at an end); remove it"
            ));
        }
        match split_directive(part) {
            Some((target, level)) => {
                if target.trim().is_empty() {
                    return Err(format!(
                        "{part:?} has nothing before '='; write TARGET=LEVEL, like \"mqtt_sn_gateway=debug\""
                    ));
                }
                if !is_level(level) {
                    return Err(format!(
                        "{level:?} in {part:?} is not a log level{}; use off, error, warn, info, debug or trace",
                        did_you_mean_level(level)
                    ));
                }
            }
            None => {
                // A bare word must be a level: EnvFilter would take any other word as a
                // target enabled at every level, so a misspelt or invented level
                // ("verbose") would silently log nothing at all.
                if !is_level(part) {
                    if part.contains(char::is_whitespace) {
                        return Err(format!("{part:?} contains a space; {how}"));
                    }
                    return Err(format!(
                        "{part:?} is not a log level{}; {how}",
                        did_you_mean_level(part)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn did_you_mean_level(word: &str) -> String {
    let suggestion = if word.trim().eq_ignore_ascii_case("warning") {
        Some("warn")
    } else {
        closest(word.trim(), &LEVELS)
    };
    suggestion.map_or_else(String::new, |level| format!(" (did you mean {level:?}?)"))
}

/// Splits `target[span{field=value}]=level` at its last '=' outside brackets and braces.
fn split_directive(part: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut split = None;
    for (i, c) in part.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            '=' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    let i = split?;
    Some((part.get(..i)?, part.get(i + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("p%40ss%2Fw").as_deref(), Ok("p@ss/w"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Ok("€"));
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn broadcast_addresses() {
        assert!(is_ipv4_broadcast(Ipv4Addr::BROADCAST));
        assert!(is_ipv4_broadcast(Ipv4Addr::new(192, 168, 1, 255)));
        assert!(is_ipv4_broadcast(Ipv4Addr::new(10, 0, 0, 127)));
        assert!(!is_ipv4_broadcast(Ipv4Addr::new(192, 168, 1, 10)));
        assert!(!is_ipv4_broadcast(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn directives() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "mqtt_sn_gateway=debug,info",
            "mqtt_sn_gateway::core=trace",
            "rumqttc=trace",
            "my_crate[conn{peer=1}]=debug",
            "3",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "infoo",
            "warning",
            "x=verbose",
            "=debug",
            "info,,debug",
            "in fo",
            // A bare word is a level, not a target: these would log nothing.
            "verbose",
            "rumqttc",
            "mqtt_sn_gateway=debug,verbose",
        ] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }
}
