//! Topic rules compiled into levels, and client id patterns.

/// One level of a compiled topic rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(Box<str>),
    /// `+`: any one level.
    Plus,
    /// `#`: this level and everything below, and the parent itself (last level only).
    Hash,
}

/// A topic rule (an MQTT filter) split into levels once, so that checking a topic does not
/// parse the rule again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicPattern {
    levels: Box<[Level]>,
}

impl TopicPattern {
    /// Checks a rule's syntax as written in the config (`%c` allowed as a whole level or part
    /// of one). The error says what is wrong.
    pub(crate) fn check(rule: &str) -> Result<(), String> {
        if rule.is_empty() {
            return Err("a topic rule cannot be empty".to_string());
        }
        let levels: Vec<&str> = rule.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
                return Err(format!(
                    "{rule:?}: '#' must be a whole level and the last one"
                ));
            }
            if level.contains('+') && *level != "+" {
                return Err(format!("{rule:?}: '+' must be a whole level"));
            }
        }
        Ok(())
    }

    /// Compiles `rule` for `client_id`, `%c` replaced by it. `None` when the rule is not
    /// valid, or when it names `%c` and the client id holds `/`, `+` or `#`: such an id would
    /// widen the rule (a client called `#` must not get `sensors/#` from `sensors/%c`).
    pub(crate) fn compile(rule: &str, client_id: &str) -> Option<TopicPattern> {
        Self::check(rule).ok()?;
        let rule = if rule.contains("%c") {
            if client_id.contains(['/', '+', '#']) || client_id.is_empty() {
                return None;
            }
            std::borrow::Cow::Owned(rule.replace("%c", client_id))
        } else {
            std::borrow::Cow::Borrowed(rule)
        };
        let levels = rule
            .split('/')
            .map(|level| match level {
                "+" => Level::Plus,
                "#" => Level::Hash,
                exact => Level::Exact(exact.into()),
            })
            .collect();
        Some(TopicPattern { levels })
    }

    /// Whether the rule allows publishing to `topic` (a name without wildcards). A topic that
    /// begins with `$` is matched only by a rule whose first level is literally the same
    /// (MQTT 3.1.1 §4.7.2), so `#` never reaches `$SYS`.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        let mut topic_levels = topic.split('/');
        for (i, level) in self.levels.iter().enumerate() {
            let next = topic_levels.next();
            if i == 0 && topic.starts_with('$') && !matches!(level, Level::Exact(_)) {
                return false;
            }
            match (level, next) {
                (Level::Hash, _) => return true,
                (Level::Plus, Some(_)) => {}
                (Level::Exact(exact), Some(t)) if **exact == *t => {}
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }

    /// Whether every topic `filter` matches is one this rule matches: the filter asks for
    /// nothing the rule does not allow. `sensors/+/temp` is within `sensors/#` but `#` is not
    /// within `sensors/#`.
    pub(crate) fn covers(&self, filter: &str) -> bool {
        let mut filter_levels = filter.split('/');
        for (i, level) in self.levels.iter().enumerate() {
            let next = filter_levels.next();
            if i == 0 && filter.starts_with('$') && !matches!(level, Level::Exact(_)) {
                return false;
            }
            match (level, next) {
                (Level::Hash, _) => return true,
                // `+` in the rule takes any one level of the filter but `#`.
                (Level::Plus, Some(f)) if f != "#" => {}
                (Level::Exact(exact), Some(f)) if **exact == *f => {}
                _ => return false,
            }
        }
        filter_levels.next().is_none()
    }
}

/// A client id pattern: exact, or with `*` standing for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdPattern {
    parts: Box<[Box<str>]>,
}

impl IdPattern {
    pub(crate) fn new(pattern: &str) -> Self {
        IdPattern {
            parts: pattern.split('*').map(Box::from).collect(),
        }
    }

    pub(crate) fn matches(&self, id: &str) -> bool {
        let parts = &self.parts;
        let [first, middle @ .., last] = &parts[..] else {
            // One part: no `*`, an exact id.
            return parts.first().is_some_and(|p| **p == *id);
        };
        let Some(mut rest) = id.strip_prefix(&**first) else {
            return false;
        };
        for part in middle {
            match rest.find(&**part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(&**last)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(text: &str) -> TopicPattern {
        TopicPattern::compile(text, "m1").unwrap()
    }

    #[test]
    fn publishing_follows_mqtt_matching_and_keeps_dollar_topics_out() {
        assert!(rule("a/b").matches("a/b"));
        assert!(!rule("a/b").matches("a/b/c"));
        assert!(!rule("a/b/c").matches("a/b"));
        assert!(rule("a/+").matches("a/x"));
        assert!(!rule("a/+").matches("a/x/y"));
        assert!(rule("a/#").matches("a"));
        assert!(rule("a/#").matches("a/x/y"));
        assert!(rule("#").matches("x"));
        assert!(!rule("#").matches("$SYS/broker/fake"));
        assert!(!rule("+/broker").matches("$SYS/broker"));
        assert!(rule("$SYS/#").matches("$SYS/broker"));
        assert!(rule("sensors/%c/#").matches("sensors/m1/t"));
        assert!(!rule("sensors/%c/#").matches("sensors/m2/t"));
        assert!(rule("x%c").matches("xm1"));
    }

    #[test]
    fn a_filter_is_covered_only_when_it_asks_for_less() {
        assert!(rule("#").covers("#"));
        assert!(rule("#").covers("a/+/b"));
        assert!(!rule("#").covers("$SYS/#"));
        assert!(!rule("+/#").covers("$SYS/x"));
        assert!(rule("$SYS/#").covers("$SYS/broker/+"));
        assert!(rule("a/#").covers("a/#"));
        assert!(rule("a/#").covers("a"));
        assert!(rule("a/#").covers("a/+/c"));
        assert!(!rule("a/#").covers("#"));
        assert!(!rule("a/#").covers("+/x"));
        assert!(rule("a/+").covers("a/b"));
        assert!(rule("a/+").covers("a/+"));
        assert!(!rule("a/+").covers("a/#"));
        assert!(!rule("a/+").covers("a/b/c"));
        assert!(!rule("a/b").covers("a/+"));
        assert!(rule("a/b").covers("a/b"));
    }

    #[test]
    fn client_ids_that_would_widen_a_rule_get_none() {
        assert!(TopicPattern::compile("s/%c", "#").is_none());
        assert!(TopicPattern::compile("s/%c", "a/b").is_none());
        assert!(TopicPattern::compile("s/%c", "+").is_none());
        assert!(TopicPattern::compile("s/#", "#").is_some());
    }

    #[test]
    fn rule_syntax_is_checked() {
        for bad in ["", "a/#/b", "a/b#", "a+/b", "#/a"] {
            assert!(TopicPattern::check(bad).is_err(), "{bad}");
        }
        for good in ["#", "+", "a/+/b", "a/%c/#", "/", "$SYS/#"] {
            assert!(TopicPattern::check(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn client_id_patterns_use_star() {
        let exact = IdPattern::new("mote-1");
        assert!(exact.matches("mote-1"));
        assert!(!exact.matches("mote-10"));
        let prefix = IdPattern::new("mote-*");
        assert!(prefix.matches("mote-"));
        assert!(prefix.matches("mote-17"));
        assert!(!prefix.matches("mot-17"));
        let middle = IdPattern::new("a*b*c");
        assert!(middle.matches("abc"));
        assert!(middle.matches("axxbyyc"));
        assert!(!middle.matches("axxbyy"));
        assert!(!IdPattern::new("ab*ba").matches("aba"));
        assert!(IdPattern::new("*").matches(""));
    }
}
