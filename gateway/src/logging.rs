//! The gateway's logs: where the level comes from, the text or JSON format, colour only on a
//! terminal, and a level that `SIGHUP` can change without a restart.

use std::ffi::OsStr;
use std::io::IsTerminal;

use sn_config::{LogConfig, LogFormat};
use tracing_subscriber::filter::combinator::And;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// What decides which events are logged: the directives, and a cap on the embedded
/// broker's crates.
type LogFilter = And<EnvFilter, Targets, Registry>;

/// Where the level in force came from; the first of these that is set wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSource {
    /// `--log-level`.
    Flag,
    /// The `RUST_LOG` environment variable.
    Env,
    /// `[log] level` in the configuration file (or its default).
    File,
}

impl LevelSource {
    /// How the source is named in messages.
    pub fn name(self) -> &'static str {
        match self {
            LevelSource::Flag => "--log-level",
            LevelSource::Env => "RUST_LOG",
            LevelSource::File => "[log] level",
        }
    }
}

/// The level in force: `--log-level` beats `RUST_LOG`, which beats the file's `[log]
/// level`. `RUST_LOG` is checked like the option (the others were checked when read): a
/// level that is not one is an error, not a gateway that silently logs nothing.
pub fn choose_level(
    flag: Option<&str>,
    env: Option<&str>,
    file: &LogConfig,
) -> Result<(String, LevelSource), String> {
    match (flag, env.filter(|v| !v.trim().is_empty())) {
        (Some(level), _) => Ok((level.to_string(), LevelSource::Flag)),
        (None, Some(env)) => match sn_config::check_log_level(env) {
            Ok(()) => Ok((env.trim().to_string(), LevelSource::Env)),
            Err(message) => Err(format!("RUST_LOG={env}: {message}")),
        },
        (None, None) => Ok((file.level.clone(), LevelSource::File)),
    }
}

/// Whether the text format uses colour: only on a terminal, and never with `NO_COLOR` set to
/// anything but the empty string (no-color.org). A pipe, a file or the journal gets plain
/// text.
pub fn color_wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The filter for `directives`: tracing's `EnvFilter`, with the embedded broker's crates
/// (rmqtt, rmqtt_net, ...) capped at `warn` unless a directive names them: at `info` they
/// log every connection's start and end.
fn filter(directives: &str) -> Result<LogFilter, String> {
    let env = EnvFilter::try_new(directives).map_err(|e| format!("{directives:?}: {e}"))?;
    let mut cap = Targets::new().with_default(LevelFilter::TRACE);
    if !directives.contains("rmqtt") {
        // A prefix: also rmqtt_net, rmqtt_retainer, rmqtt_codec.
        cap = cap.with_target("rmqtt", LevelFilter::WARN);
    }
    Ok(env.and(cap))
}

/// The installed logger, to change its level later.
pub struct Logging {
    handle: reload::Handle<LogFilter, Registry>,
    source: LevelSource,
    directives: String,
}

impl Logging {
    /// Installs the process's logger: lines to stderr in `format`, filtered by `directives`
    /// (from [`choose_level`]), in colour if `color`. Call once.
    pub fn init(
        directives: &str,
        source: LevelSource,
        format: LogFormat,
        color: bool,
    ) -> Result<Logging, String> {
        let (filter, handle) = reload::Layer::new(filter(directives)?);
        let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(color)
                .boxed(),
            // One object per line with the event's fields at the top, beside timestamp,
            // level, target and message: what log collectors index without a parser.
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_target(true)
                .with_ansi(false)
                .boxed(),
        };
        tracing_subscriber::registry()
            .with(lines.with_filter(filter))
            .try_init()
            .map_err(|e| format!("cannot install the logger: {e}"))?;
        Ok(Logging {
            handle,
            source,
            directives: directives.to_string(),
        })
    }

    /// Whether stderr is a terminal that colour suits (see [`color_wanted`]).
    pub fn color_for_stderr() -> bool {
        color_wanted(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }

    /// Applies a reloaded file's `[log] level`, unless `--log-level` or `RUST_LOG` set the
    /// level (they still win). Returns what happened, for the log.
    pub fn reload(&mut self, file: &LogConfig) -> Result<LevelChange, String> {
        if self.source != LevelSource::File {
            return Ok(LevelChange::Overridden(self.source));
        }
        if file.level == self.directives {
            return Ok(LevelChange::Same);
        }
        let new = filter(&file.level)?;
        self.handle
            .reload(new)
            .map_err(|e| format!("cannot change the log level: {e}"))?;
        let old = std::mem::replace(&mut self.directives, file.level.clone());
        Ok(LevelChange::Changed { old })
    }

    /// The directives in force.
    pub fn directives(&self) -> &str {
        &self.directives
    }
}

/// What a reload did to the log level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelChange {
    /// The file's level is in force now; it was `old`.
    Changed {
        /// The directives before.
        old: String,
    },
    /// The file states the level already in force.
    Same,
    /// The level comes from this source, which the file does not override.
    Overridden(LevelSource),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_flag_beats_rust_log_which_beats_the_file() {
        let file = LogConfig::from_level("warn").unwrap();
        assert_eq!(
            choose_level(Some("debug"), Some("trace"), &file),
            Ok(("debug".to_string(), LevelSource::Flag))
        );
        assert_eq!(
            choose_level(None, Some("trace"), &file),
            Ok(("trace".to_string(), LevelSource::Env))
        );
        assert_eq!(
            choose_level(None, Some(" "), &file),
            Ok(("warn".to_string(), LevelSource::File))
        );
        assert_eq!(
            choose_level(None, None, &file),
            Ok(("warn".to_string(), LevelSource::File))
        );
    }

    #[test]
    fn a_rust_log_that_is_not_a_level_is_refused() {
        let error = choose_level(None, Some("verbose"), &LogConfig::default()).unwrap_err();
        assert!(
            error.starts_with("RUST_LOG=verbose: \"verbose\" is not a log level"),
            "{error}"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(color_wanted(true, None));
        assert!(color_wanted(true, Some(OsStr::new(""))));
        assert!(!color_wanted(true, Some(OsStr::new("1"))));
        assert!(!color_wanted(false, None));
    }

    #[test]
    fn what_envfilter_refuses_is_an_error_not_a_default() {
        assert!(filter("info,rmqtt=debug").is_ok());
        let error = filter("x=[").err().unwrap();
        assert!(error.starts_with("\"x=[\": "), "{error}");
    }
}
