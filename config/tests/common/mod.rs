//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sn_config::{Config, ConfigIssue};

/// Parses `text`, which must be valid.
pub(crate) fn ok(text: &str) -> Config {
    match Config::parse(text, "gateway.toml") {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

/// The name of predefined topic `id` in `config`, which must have it.
#[track_caller]
pub(crate) fn topic(config: &Config, id: u16) -> &str {
    match config.core.predefined_topics.iter().find(|(i, _)| *i == id) {
        Some((_, name)) => name,
        None => panic!(
            "no predefined topic {id} in {:?}",
            config.core.predefined_topics
        ),
    }
}

/// Parses `text`, which must be invalid, and returns its issues.
pub(crate) fn issues(text: &str) -> Vec<ConfigIssue> {
    match Config::parse(text, "gateway.toml") {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(err) => {
            assert_eq!(err.origin, "gateway.toml");
            assert!(!err.issues.is_empty());
            err.issues
        }
    }
}

/// Parses `text`, which must have exactly one issue, at `line` in `field`, whose message
/// contains `needle`; returns the issue.
#[track_caller]
pub(crate) fn one(text: &str, line: usize, field: &str, needle: &str) -> ConfigIssue {
    let all = issues(text);
    assert_eq!(all.len(), 1, "expected one issue, got {all:#?}");
    let issue = all.into_iter().next().unwrap();
    assert_eq!(issue.field, field, "{issue:#?}");
    assert_eq!(issue.line, Some(line), "{issue:#?}");
    assert!(
        issue.message.contains(needle),
        "message {:?} does not contain {needle:?}",
        issue.message
    );
    issue
}
