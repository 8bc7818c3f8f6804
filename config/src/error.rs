//! The error type: every problem found in one configuration file.

use std::fmt;

/// Every problem found in one configuration file.
///
/// `Display` writes one line per issue, `FILE:LINE:COLUMN: FIELD: MESSAGE`, for example
/// `gateway.toml:7:20: gateway.retry_interval: "10x" is not a duration; write a number with a
/// unit, like "10s", "500ms" or "2m"`. Issues are in the order they appear in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(origin, issues))]
pub struct ConfigError {
    /// The file name the issues refer to (the path given to `load`, or `parse`'s `origin`).
    pub origin: String,
    /// The problems, at least one, sorted by position.
    pub issues: Vec<ConfigIssue>,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 1-based line of the offending key or value; `None` when the problem is not at a place in
    /// the file (for example, the file cannot be read).
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key or value.
    pub column: Option<usize>,
    /// The field path, like `gateway.retry_interval`, `udp[0].bind` (the first `[[udp]]` is
    /// `udp[0]`) or `predefined_topics.0x10`; empty when no field is concerned.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    /// `LINE:COLUMN: FIELD: MESSAGE`, leaving out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: ")?,
            (Some(line), None) => write!(f, "{line}: ")?,
            _ => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

fn render(origin: &str, issues: &[ConfigIssue]) -> String {
    let mut out = String::new();
    for (i, issue) in issues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(origin);
        out.push(':');
        if issue.line.is_none() {
            out.push(' ');
        }
        out.push_str(&issue.to_string());
    }
    out
}
