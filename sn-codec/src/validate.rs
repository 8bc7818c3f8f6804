//! Checks on the text fields a packet carries as raw bytes: client ids, topic names, topic
//! filters and short topic names. The gateway core picks the reply (CONNACK 0x03, REGACK 0x03,
//! SUBACK 0x02…) from the error.
//!
//! Rules (v1.2 §5.3.1, §6.5, §6.9; MQTT 3.1.1 §4.7 for what the broker will accept upstream):
//! text is UTF-8 without U+0000; names never contain `+` or `#`; in a filter `+` fills a whole
//! level and `#` is the whole last level.

/// The longest client id the v1.2 specification allows. Implementations differ (Paho allows
/// 64), so the limit is a parameter and the gateway takes it from config.
pub const SPEC_MAX_CLIENT_ID_LEN: usize = 23;

/// The longest topic name or filter MQTT can carry (a u16 length prefix upstream).
pub const MQTT_MAX_TOPIC_LEN: usize = u16::MAX as usize;

/// Why a client id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIdError {
    /// No client id at all.
    #[error("client id is empty")]
    Empty,
    /// Longer than the configured limit.
    #[error("client id is {len} bytes; the limit is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid UTF-8 from this byte on.
    #[error("client id is not UTF-8 from byte {at}")]
    NotUtf8 {
        /// Index of the first invalid byte.
        at: usize,
    },
    /// Contains a U+0000, which MQTT forbids in every string.
    #[error("client id contains a NUL character at byte {at}")]
    Nul {
        /// Index of the NUL.
        at: usize,
    },
}

/// Why a topic name or filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Empty names and filters are not allowed.
    #[error("topic is empty")]
    Empty,
    /// Longer than the limit.
    #[error("topic is {len} bytes; the limit is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid UTF-8 from this byte on.
    #[error("topic is not UTF-8 from byte {at}")]
    NotUtf8 {
        /// Index of the first invalid byte.
        at: usize,
    },
    /// Contains a U+0000.
    #[error("topic contains a NUL character at byte {at}")]
    Nul {
        /// Index of the NUL.
        at: usize,
    },
    /// A `+` or `#` in a topic name (PUBLISH, REGISTER, Will), where only filters may have them.
    #[error("wildcard '{wildcard}' at byte {at} is not allowed in a topic name")]
    WildcardInName {
        /// The wildcard character.
        wildcard: char,
        /// Its index.
        at: usize,
    },
    /// A wildcard that does not fill its level, or a `#` that is not the last level.
    #[error("wildcard '{wildcard}' at byte {at} must fill a whole level{}", if *wildcard == '#' { " and be the last one" } else { "" })]
    MisplacedWildcard {
        /// The wildcard character.
        wildcard: char,
        /// Its index.
        at: usize,
    },
}

/// What can be wrong with any text field, before its own rules are applied.
enum TextFault {
    Empty,
    TooLong { len: usize, max: usize },
    NotUtf8 { at: usize },
    Nul { at: usize },
}

/// UTF-8, not empty, within `max_len`, no NUL.
fn text(bytes: &[u8], max_len: usize) -> Result<&str, TextFault> {
    if bytes.is_empty() {
        return Err(TextFault::Empty);
    }
    if bytes.len() > max_len {
        return Err(TextFault::TooLong {
            len: bytes.len(),
            max: max_len,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| TextFault::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    match text.find('\0') {
        Some(at) => Err(TextFault::Nul { at }),
        None => Ok(text),
    }
}

impl From<TextFault> for ClientIdError {
    fn from(fault: TextFault) -> Self {
        match fault {
            TextFault::Empty => ClientIdError::Empty,
            TextFault::TooLong { len, max } => ClientIdError::TooLong { len, max },
            TextFault::NotUtf8 { at } => ClientIdError::NotUtf8 { at },
            TextFault::Nul { at } => ClientIdError::Nul { at },
        }
    }
}

impl From<TextFault> for TopicError {
    fn from(fault: TextFault) -> Self {
        match fault {
            TextFault::Empty => TopicError::Empty,
            TextFault::TooLong { len, max } => TopicError::TooLong { len, max },
            TextFault::NotUtf8 { at } => TopicError::NotUtf8 { at },
            TextFault::Nul { at } => TopicError::Nul { at },
        }
    }
}

/// Checks a client id from CONNECT (or a waking PINGREQ) and returns it as text.
pub fn client_id(bytes: &[u8], max_len: usize) -> Result<&str, ClientIdError> {
    Ok(text(bytes, max_len)?)
}

/// UTF-8, not empty, within `max_len`, no NUL.
fn topic_text(bytes: &[u8], max_len: usize) -> Result<&str, TopicError> {
    Ok(text(bytes, max_len)?)
}

/// Checks a topic name (PUBLISH long name, REGISTER, WILLTOPIC): no wildcards.
pub fn topic_name(bytes: &[u8], max_len: usize) -> Result<&str, TopicError> {
    let text = topic_text(bytes, max_len)?;
    match text.char_indices().find(|&(_, c)| c == '+' || c == '#') {
        Some((at, wildcard)) => Err(TopicError::WildcardInName { wildcard, at }),
        None => Ok(text),
    }
}

/// Checks a topic filter (SUBSCRIBE/UNSUBSCRIBE by name): `+` must fill a level, `#` must fill
/// the last level.
pub fn topic_filter(bytes: &[u8], max_len: usize) -> Result<&str, TopicError> {
    let text = topic_text(bytes, max_len)?;
    let mut level_start = 0;
    let levels = text.split('/');
    let level_count = text.split('/').count();
    for (index, level) in levels.enumerate() {
        for (offset, c) in level.char_indices() {
            let misplaced = match c {
                '+' => level.len() != 1,
                '#' => level.len() != 1 || index + 1 != level_count,
                _ => false,
            };
            if misplaced {
                return Err(TopicError::MisplacedWildcard {
                    wildcard: c,
                    at: level_start + offset,
                });
            }
        }
        level_start += level.len() + 1;
    }
    Ok(text)
}

/// Whether a (valid) filter contains a wildcard; such a SUBSCRIBE gets SUBACK topic id 0x0000
/// and the gateway REGISTERs each concrete topic before its first PUBLISH.
pub fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Checks a short topic name (TopicIdType `10`): two bytes of UTF-8 text, no wildcard, no NUL.
/// A one-character name padded with a second byte is not valid: both bytes are the name.
pub fn short_topic_name(name: &[u8; 2]) -> Result<&str, TopicError> {
    topic_name(name, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert_eq!(client_id(b"abc", 23), Ok("abc"));
        assert_eq!(client_id(b"", 23), Err(ClientIdError::Empty));
        assert_eq!(
            client_id(&[b'a'; 24], 23),
            Err(ClientIdError::TooLong { len: 24, max: 23 })
        );
        assert_eq!(client_id(&[b'a'; 24], 64).map(str::len), Ok(24));
        assert_eq!(
            client_id(b"ab\xFF", 23),
            Err(ClientIdError::NotUtf8 { at: 2 })
        );
        assert_eq!(client_id(b"a\0b", 23), Err(ClientIdError::Nul { at: 1 }));
    }

    #[test]
    fn names_refuse_wildcards() {
        assert_eq!(topic_name(b"a/b", 100), Ok("a/b"));
        assert_eq!(topic_name(b"/", 100), Ok("/"));
        assert_eq!(
            topic_name(b"a/+", 100),
            Err(TopicError::WildcardInName {
                wildcard: '+',
                at: 2
            })
        );
        assert_eq!(
            topic_name(b"#", 100),
            Err(TopicError::WildcardInName {
                wildcard: '#',
                at: 0
            })
        );
        assert_eq!(topic_name(b"", 100), Err(TopicError::Empty));
        assert_eq!(
            topic_name(b"abcd", 3),
            Err(TopicError::TooLong { len: 4, max: 3 })
        );
        assert_eq!(topic_name(b"a\0", 100), Err(TopicError::Nul { at: 1 }));
        assert_eq!(topic_name(b"\xC3", 100), Err(TopicError::NotUtf8 { at: 0 }));
    }

    #[test]
    fn filters_place_wildcards_by_level() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/#",
            "a//+",
            "sport/tennis/+/#",
            "a/b",
        ] {
            assert_eq!(topic_filter(ok.as_bytes(), 100), Ok(ok), "{ok}");
        }
        let bad = [
            ("a#", '#', 1),
            ("a/#/b", '#', 2),
            ("a+/b", '+', 1),
            ("a/b+", '+', 3),
            ("##", '#', 0),
        ];
        for (filter, wildcard, at) in bad {
            assert_eq!(
                topic_filter(filter.as_bytes(), 100),
                Err(TopicError::MisplacedWildcard { wildcard, at }),
                "{filter}"
            );
        }
        assert!(is_wildcard("a/+"));
        assert!(is_wildcard("#"));
        assert!(!is_wildcard("a/b"));
    }

    #[test]
    fn short_names() {
        assert_eq!(short_topic_name(b"ab"), Ok("ab"));
        assert!(short_topic_name(b"a#").is_err());
        assert!(short_topic_name(b"+/").is_err());
        assert!(short_topic_name(&[0xFF, 0x41]).is_err());
    }
}
