//! How `sub` prints a received message: one line per message, in the chosen format.

use std::fmt::Write as _;

use crate::cli::Format;
use crate::describe::qos_number;
use crate::session::Message;

/// The line for one message, without the newline.
pub(crate) fn render(format: Format, m: &Message) -> String {
    match format {
        Format::Text => format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)),
        Format::Json => format!(
            r#"{{"topic":{},"payload":{},"qos":{},"retain":{},"dup":{}}}"#,
            json_string(&m.topic),
            json_string(&String::from_utf8_lossy(&m.payload)),
            qos_number(m.qos),
            m.retain,
            m.dup
        ),
        Format::Hex => hex(&m.payload),
    }
}

/// Lowercase hex, two digits per byte.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A JSON string literal (RFC 8259 §7): quote, backslash and control characters escaped.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sn_codec::QoS;

    fn message(payload: &[u8]) -> Message {
        Message {
            topic: "a/b".into(),
            payload: payload.to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: false,
        }
    }

    #[test]
    fn formats() {
        let m = message(b"x\"y\n\x01");
        assert_eq!(render(Format::Text, &message(b"21.5")), "a/b 21.5");
        assert_eq!(
            render(Format::Json, &m),
            r#"{"topic":"a/b","payload":"x\"y\n\u0001","qos":1,"retain":true,"dup":false}"#
        );
        assert_eq!(render(Format::Hex, &message(&[0, 0xab, 0x10])), "00ab10");
    }
}
