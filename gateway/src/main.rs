//! `mqtt-sn-gateway`: the daemon's command line.
//!
//! ```text
//! mqtt-sn-gateway                                         # UDP 0.0.0.0:1883 → embedded broker on 127.0.0.1:1883
//! mqtt-sn-gateway --broker mqtt://broker.local:1883       # UDP 0.0.0.0:1883 → the broker
//! mqtt-sn-gateway --config /etc/mqtt-sn-gateway.toml
//! mqtt-sn-gateway check-config /etc/mqtt-sn-gateway.toml
//! mqtt-sn-gateway ports --config /etc/mqtt-sn-gateway.toml  # serial ports, and which [[serial]] takes each
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mqtt_sn_gateway::runtime::Runtime;
use mqtt_sn_gateway::settings::Settings;
use sn_config::{BrokerConfig, Config, ConfigIssue, LogConfig, SerialConfig, UdpConfig};
use sn_transports::serial::list_ports;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// MQTT-SN gateway: carries sensor motes' MQTT-SN (UDP) to an MQTT broker and back. Without a
/// broker it runs its own (embedded) MQTT broker on 127.0.0.1:1883.
#[derive(Debug, Parser)]
#[command(name = "mqtt-sn-gateway", version)]
struct Cli {
    /// The configuration file (TOML); every option has a default. See docs/configuration.md.
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The MQTT broker to forward to, e.g. mqtt://localhost:1883 or mqtts://host:8883
    /// (overrides [broker] url). Without one, the embedded broker serves the motes.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// Listen for MQTT-SN on this UDP address, e.g. 0.0.0.0:1883 or [::]:1883; repeat for
    /// several (replaces the [[udp]] sections).
    #[arg(long, value_name = "ADDR")]
    udp: Vec<String>,
    /// Log level (error, warn, info, debug, trace) or a filter such as
    /// "mqtt_sn_gateway=debug,info"; overrides RUST_LOG and [log] level.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file and report every error with its line and field.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// List the serial ports (path, USB VID:PID, serial number, product, /dev/serial/by-id
    /// names) and which [[serial]] link of --config would take each.
    Ports,
}

/// Exit code for a configuration or usage error (clap uses 2 as well).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file),
        Some(Command::Ports) => return ports(&cli),
        None => {}
    }
    let config = match load(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    init_logging(cli.log_level.as_deref(), &config.log);
    for warning in &config.warnings {
        // A warning without a line comes from a command-line flag, not from the file.
        match (&cli.config, warning.line) {
            (Some(path), Some(_)) => tracing::warn!("{}:{warning}", path.display()),
            _ => tracing::warn!("{warning}"),
        }
    }
    let settings = match Settings::from_config(&config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let runtime = match runtime_builder(config.worker_threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let gateway = match Runtime::start(settings).await {
            Ok(gateway) => gateway,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        gateway.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// The tokio runtime for `[gateway] worker_threads`: one thread (the default, measured
/// fastest: a datagram, the core and the broker link never wait for another thread to wake
/// up), one per CPU core (0), or that many.
fn runtime_builder(worker_threads: u16) -> tokio::runtime::Builder {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(n));
            builder
        }
    }
}

/// The configuration: the file if given, defaults otherwise, then the command-line overrides.
fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(url) = &cli.broker {
        let from_file = config.broker.take();
        // The file's own [broker] got this warning when it was read; a broker given only on
        // the command line opens the gateway just as much.
        if from_file.is_none() {
            if let Some(message) = config.open_admission_warning() {
                config.warnings.push(ConfigIssue {
                    line: None,
                    column: None,
                    field: "--broker".to_string(),
                    message,
                });
            }
        }
        let mut broker = BrokerConfig::from_url(url).map_err(|e| format!("--broker {url}: {e}"))?;
        // The URL replaces where to connect; credentials and tuning from the file still apply.
        if let Some(file) = from_file {
            broker = BrokerConfig {
                url: broker.url,
                tls: broker.tls,
                host: broker.host,
                port: broker.port,
                username: broker.username.or(file.username.clone()),
                password: broker.password.or(file.password.clone()),
                ..file
            };
        }
        config.broker = Some(broker);
    }
    if !cli.udp.is_empty() {
        config.udp = cli
            .udp
            .iter()
            .map(|addr| UdpConfig::from_bind(addr).map_err(|e| format!("--udp {addr}: {e}")))
            .collect::<Result<_, _>>()?;
        // The links are renumbered: the [[mote]] links, kept by name, are looked up again.
        config.resolve_mote_links().map_err(|e| {
            let file = cli
                .config
                .as_ref()
                .map_or(String::new(), |path| format!(" of {}", path.display()));
            format!("--udp replaced the [[udp]] links{file}: {e}")
        })?;
    }
    if let Some(level) = &cli.log_level {
        config.log =
            LogConfig::from_level(level).map_err(|e| format!("--log-level {level}: {e}"))?;
    }
    Ok(config)
}

/// `--log-level` beats `RUST_LOG`, which beats the file's [log] level.
///
/// The embedded broker's crates (rmqtt, rmqtt_net, ...) are capped at `warn` unless a directive
/// names them: at `info` they log every connection's start and end.
fn init_logging(flag: Option<&str>, file: &LogConfig) {
    let directives = match (
        flag,
        std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()),
    ) {
        (Some(level), _) => level.to_string(),
        (None, Some(env)) => env,
        (None, None) => file.level.clone(),
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let mut cap = Targets::new().with_default(LevelFilter::TRACE);
    if !directives.contains("rmqtt") {
        // A prefix: also rmqtt_net, rmqtt_retainer, rmqtt_codec.
        cap = cap.with_target("rmqtt", LevelFilter::WARN);
    }
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_filter(filter.and(cap)),
        )
        .init();
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            println!("{}: OK", file.display());
            for udp in &config.udp {
                let discovery = udp.discovery.map_or("off".to_string(), |d| d.to_string());
                println!("  udp {} (discovery {discovery})", udp.bind);
            }
            for serial in &config.serial {
                println!(
                    "  serial {} ({}, {} baud, max_frame {})",
                    serial.device, serial.framing, serial.baud, serial.max_frame
                );
            }
            match &config.broker {
                Some(broker) => println!("  broker {}", broker.address()),
                None => match config.embedded_broker.listen {
                    Some(addr) => println!("  broker: none configured; embedded broker on {addr}"),
                    None => println!("  broker: none configured; embedded broker, no listener"),
                },
            }
            println!(
                "  {} predefined topic(s)",
                config.core.predefined_topics.len()
            );
            // Valid, but some settings have no effect: say which and how to fix the file.
            for warning in &config.warnings {
                eprintln!("warning: {}:{warning}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

fn ports(cli: &Cli) -> ExitCode {
    let links: Vec<SerialConfig> = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config.serial,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(USAGE_ERROR);
            }
        },
        None => Vec::new(),
    };
    match list_ports() {
        Ok(found) => {
            print!("{}", mqtt_sn_gateway::ports::report(&found, &links));
            if cli.config.is_none() {
                println!("(pass --config FILE to see which [[serial]] link takes each port)");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
