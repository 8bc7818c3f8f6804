//! `mqtt-sn-gateway`: the daemon's command line.
//!
//! ```text
//! mqtt-sn-gateway                                         # UDP 0.0.0.0:1883 → embedded broker on 127.0.0.1:1883
//! mqtt-sn-gateway --broker mqtt://broker.local:1883       # UDP 0.0.0.0:1883 → the broker
//! mqtt-sn-gateway --config /etc/mqtt-sn-gateway.toml
//! mqtt-sn-gateway check-config /etc/mqtt-sn-gateway.toml
//! mqtt-sn-gateway ports --config /etc/mqtt-sn-gateway.toml  # serial ports, and which [[serial]] takes each
//! mqtt-sn-gateway completions bash > mqtt-sn-gateway.bash  # for packaging (hidden)
//! mqtt-sn-gateway manpage > mqtt-sn-gateway.1              # for packaging (hidden)
//! ```
//!
//! SIGTERM and SIGINT stop it with the final stats line; SIGHUP reloads the configuration file
//! (see `docs/configuration.md`, "Signals"); under systemd it speaks sd_notify.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use mqtt_sn_gateway::logging::{choose_level, LevelChange, Logging};
use mqtt_sn_gateway::runtime::Runtime;
use mqtt_sn_gateway::sd_notify::{self, Notifier};
use mqtt_sn_gateway::settings::{LiveSettings, Settings};
use sn_config::{BrokerConfig, Config, ConfigIssue, LogConfig, LogFormat, SerialConfig, UdpConfig};
use sn_transports::serial::list_ports;
use tracing::{error, info, warn};

/// MQTT-SN gateway: carries sensor motes' MQTT-SN (UDP) to an MQTT broker and back. Without a
/// broker it runs its own (embedded) MQTT broker on 127.0.0.1:1883.
#[derive(Debug, Clone, Parser)]
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
    /// Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this address, e.g.
    /// 127.0.0.1:9090 (overrides [metrics] listen). It has no login: keep it on loopback.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Log level (off, error, warn, info, debug, trace) or a filter such as
    /// "mqtt_sn_gateway=debug,info"; overrides RUST_LOG and [log] level.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log line format: text, or json (one object per line); overrides [log] format.
    #[arg(long, value_name = "FORMAT", value_parser = LogFormat::parse)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Validate a configuration file and report every error with its line and field.
    CheckConfig {
        /// The file to check (or give it with -c/--config).
        file: Option<PathBuf>,
    },
    /// List the serial ports (path, USB VID:PID, serial number, product, /dev/serial/by-id
    /// names) and which [[serial]] link of --config would take each.
    Ports,
    /// Print the shell completion script for SHELL to stdout (for packages).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout (for packages).
    #[command(hide = true)]
    Manpage,
}

/// Exit code for a configuration or usage error (clap uses 2 as well).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file.as_deref(), &cli),
        Some(Command::Ports) => return ports(&cli),
        Some(Command::Completions { shell }) => return completions(*shell),
        Some(Command::Manpage) => return manpage(),
        None => {}
    }
    let config = match load(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let rust_log = std::env::var("RUST_LOG").ok();
    let logging = choose_level(cli.log_level.as_deref(), rust_log.as_deref(), &config.log)
        .and_then(|(directives, source)| {
            Logging::init(
                &directives,
                source,
                config.log.format,
                Logging::color_for_stderr(),
            )
        });
    let logging = match logging {
        Ok(logging) => logging,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    log_warnings(&cli, &config);
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
    let notifier = match Notifier::from_env() {
        Ok(notifier) => notifier,
        Err(error) => {
            warn!("{error}: the service manager will not hear from the gateway");
            None
        }
    };
    runtime.block_on(async move {
        // Before anything slow: SIGHUP's default action ends the process.
        let hangup = hangup_signal();
        // Bound before the links: a taken port fails the start before any mote is served,
        // and once the log says the gateway listens, /metrics answers too (connections
        // wait in the listen backlog until the server task takes them).
        let metrics_listener = match config.metrics.listen {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => Some(listener),
                Err(error) => {
                    eprintln!(
                        "error: cannot serve metrics on {addr}: {error}; choose another \
                         [metrics] listen / --metrics address, or \"off\""
                    );
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let mut gateway = match Runtime::start(settings).await {
            Ok(gateway) => gateway,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(notifier) = notifier {
            gateway.set_notifier(notifier, sd_notify::watchdog_interval());
        }
        if let Some(listener) = metrics_listener {
            if let Ok(bound) = listener.local_addr() {
                info!(%bound, "serving /metrics, /healthz and /readyz");
            }
            gateway.serve_metrics(listener);
        }
        let reloader = hangup.map(|hangup| {
            let reloading = Reloading {
                cli,
                config,
                logging,
                live: gateway.live_settings(),
                psk: gateway.psk_reloader(),
                policy: gateway.policy_reloader(),
            };
            tokio::spawn(reloading.run(hangup))
        });
        gateway
            .run(async {
                let signal = shutdown_signal().await;
                info!("{signal}: stopping");
            })
            .await;
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        ExitCode::SUCCESS
    })
}

/// The configuration's warnings, in the log. A warning without a line comes from a
/// command-line flag, not from the file.
fn log_warnings(cli: &Cli, config: &Config) {
    for warning in &config.warnings {
        match (&cli.config, warning.line) {
            (Some(path), Some(_)) => warn!("{}:{warning}", path.display()),
            _ => warn!("{warning}"),
        }
    }
}

/// What SIGHUP needs: how the gateway was started (to read the file and apply the flags
/// again), the configuration in force, the logger, the running loop's live settings.
struct Reloading {
    cli: Cli,
    config: Config,
    logging: Logging,
    live: tokio::sync::watch::Sender<LiveSettings>,
    /// The running DTLS links' PSK files, read again on every reload.
    psk: mqtt_sn_gateway::runtime::PskReloader,
    /// Where a changed `[policy]` and `[[mote]]` list goes (the running loop applies it).
    policy: tokio::sync::mpsc::Sender<mqtt_sn_gateway::core::PolicyConfig>,
}

impl Reloading {
    /// Reloads on every SIGHUP until the gateway stops.
    async fn run(mut self, mut hangup: Hangup) {
        while hangup.recv().await.is_some() {
            if let Some(policy) = self.reload() {
                if self.policy.send(policy).await.is_err() {
                    // The loop has stopped: the gateway is stopping anyway.
                    return;
                }
            }
        }
    }

    /// Reads the file again; applies the log level and stats interval, checks the password
    /// files, returns a changed policy for the loop to apply, names what else changed (it
    /// waits for a restart); keeps everything as it is if the file is wrong now.
    fn reload(&mut self) -> Option<mqtt_sn_gateway::core::PolicyConfig> {
        let Some(path) = &self.cli.config else {
            info!("SIGHUP: no configuration file (--config) to read again; nothing changed");
            return None;
        };
        info!(path = %path.display(), "SIGHUP: reading the configuration again");
        let new = match load(&self.cli) {
            Ok(new) => new,
            Err(message) => {
                error!(
                    "SIGHUP: configuration not reloaded, the gateway keeps running with the one \
                     it has (the policy and credentials included); fix the file (check it with \
                     mqtt-sn-gateway check-config):\n{message}"
                );
                return None;
            }
        };
        log_warnings(&self.cli, &new);
        match self.logging.reload(&new.log) {
            Ok(LevelChange::Changed { old }) => info!(
                old = %old,
                new = %self.logging.directives(),
                "SIGHUP: log level changed"
            ),
            Ok(LevelChange::Same) => {}
            Ok(LevelChange::Overridden(source)) => {
                if new.log.level != self.config.log.level {
                    warn!(
                        "SIGHUP: [log] level changed in the file, but {} sets the level and \
                         still does",
                        source.name()
                    );
                }
            }
            Err(message) => error!("SIGHUP: the log level stays as it was: {message}"),
        }
        self.live.send_if_modified(|live| {
            let new = LiveSettings::from_config(&new);
            let changed = *live != new;
            *live = new;
            changed
        });
        mqtt_sn_gateway::reload::reload_psk_files(&self.psk);
        mqtt_sn_gateway::reload::check_password_files(&new);
        mqtt_sn_gateway::reload::note_tls_files(&new);
        let policy = match mqtt_sn_gateway::reload::policy_change(&self.config, &new) {
            mqtt_sn_gateway::reload::PolicyChange::Same => None,
            mqtt_sn_gateway::reload::PolicyChange::Apply => {
                self.config.core.policy = new.core.policy.clone();
                self.config.mote_links = new.mote_links.clone();
                Some(new.core.policy.clone())
            }
            mqtt_sn_gateway::reload::PolicyChange::NeedsRestart => None,
        };
        let restart = mqtt_sn_gateway::reload::restart_needed(&self.config, &new);
        if restart.is_empty() {
            info!("SIGHUP: configuration reloaded");
        } else {
            warn!(
                settings = %restart.join(", "),
                "SIGHUP: configuration reloaded, but these changed settings take effect only \
                 at the next restart: {}",
                restart.join(", ")
            );
        }
        // What the running gateway has now, for the next reload to compare with: only the
        // live settings moved (a setting that waits for a restart is named again next time).
        self.config.log.level = new.log.level;
        self.config.log.stats_interval = new.log.stats_interval;
        policy
    }
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
    if let Some(addr) = &cli.metrics {
        config.metrics.listen = if addr.trim().eq_ignore_ascii_case("off") {
            None
        } else {
            Some(addr.parse().map_err(|e| {
                format!("--metrics {addr}: {e}; write an address like 127.0.0.1:9090")
            })?)
        };
    }
    if let Some(level) = &cli.log_level {
        // Checked like the option; the level itself is chosen when logging starts.
        LogConfig::from_level(level).map_err(|e| format!("--log-level {level}: {e}"))?;
    }
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    Ok(config)
}

/// `check-config FILE`, or `check-config -c FILE` (the global option, which is how the other
/// commands are given the file).
fn check_config(file: Option<&std::path::Path>, cli: &Cli) -> ExitCode {
    let file = match (file, cli.config.as_deref()) {
        (Some(file), None) | (None, Some(file)) => file,
        (Some(file), Some(config)) if file == config => file,
        (Some(file), Some(config)) => {
            eprintln!(
                "error: check-config was given two files, {} and --config {}; give one",
                file.display(),
                config.display()
            );
            return ExitCode::from(USAGE_ERROR);
        }
        (None, None) => {
            eprintln!(
                "error: check-config needs the file to check: mqtt-sn-gateway check-config FILE"
            );
            return ExitCode::from(USAGE_ERROR);
        }
    };
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
            for dtls in &config.dtls {
                let psk = dtls
                    .psk_file
                    .as_ref()
                    .map_or("no".to_string(), |p| p.display().to_string());
                let certificates = if dtls.certificates.is_some() {
                    "yes"
                } else {
                    "no"
                };
                println!(
                    "  dtls {} (psk_file {psk}, certificates {certificates})",
                    dtls.bind
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
            print!(
                "{}",
                mqtt_sn_gateway::ports::report(&found, &links, std::path::Path::exists)
            );
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

/// `completions SHELL`: the completion script, generated from the CLI's definition.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    clap_complete::generate(
        shell,
        &mut command,
        "mqtt-sn-gateway",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}

/// `manpage`: mqtt-sn-gateway(1) in roff, generated from the CLI's definition.
fn manpage() -> ExitCode {
    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the man page: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM (systemd's stop); returns the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return "SIGINT";
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// SIGHUP, where there is one.
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;

/// No SIGHUP here: a stream that never yields.
#[cfg(not(unix))]
struct Hangup;

#[cfg(not(unix))]
impl Hangup {
    async fn recv(&mut self) -> Option<()> {
        std::future::pending().await
    }
}

/// Takes over SIGHUP (whose default action would end the process), or `None` if it cannot,
/// which is logged.
fn hangup_signal() -> Option<Hangup> {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                warn!(%error, "cannot handle SIGHUP: it will stop the gateway instead of reloading");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}
