//! DTLS for `pub`, `sub` and `bench`: the options, the credentials they name, and a
//! [`Channel`] that runs the sans-I/O client of `sn-transports` over the tool's UDP socket.
//!
//! The socket stays the caller's (the session's, or a bench mote's); the channel only turns
//! plaintext into the datagrams to send and received datagrams into plaintext, and runs the
//! handshake with the socket lent to it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sn_transports::dtls::{
    certificate_identity, read_psk_file, ClientCredentials, ClientEngine, ClientEvent,
    ClientFailure, ClientPsk, DtlsClient, DtlsClientConfig, DtlsClientContext,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::cli::parse_duration;

/// Where the DTLS options are listed in `--help` (named per option: a heading set for the
/// whole group would run on into the options after it).
const HEADING: &str = "DTLS (a [[dtls]] link of the gateway)";

/// How to reach a `[[dtls]]` link of the gateway.
#[derive(Debug, Clone, Args)]
pub(crate) struct DtlsArgs {
    /// Speak DTLS 1.2 to the gateway (its [[dtls]] port, e.g. 8883). Needs credentials:
    /// --psk-identity and --psk-key, --psk-file, or --cert and --key.
    #[arg(long, help_heading = HEADING)]
    pub(crate) dtls: bool,

    /// PSK identity (the gateway's PSK file names it; by default also the client id).
    #[arg(
        long,
        help_heading = HEADING,
        value_name = "ID",
        requires_all = ["dtls", "psk_key"],
        conflicts_with_all = ["psk_file", "cert"]
    )]
    pub(crate) psk_identity: Option<String>,

    /// The PSK in hex, as in the gateway's PSK file (visible to `ps`: prefer --psk-file).
    #[arg(long, help_heading = HEADING, value_name = "HEX", requires_all = ["dtls", "psk_identity"])]
    pub(crate) psk_key: Option<String>,

    /// A PSK file in the gateway's format (`identity:hexkey` per line). pub/sub use the line
    /// whose identity is --client-id (or the only line); bench gives mote i line i, and the
    /// identity is its client id.
    #[arg(long, help_heading = HEADING, value_name = "FILE", requires = "dtls", conflicts_with = "cert")]
    pub(crate) psk_file: Option<PathBuf>,

    /// Client certificate (PEM) for the ECDHE-ECDSA suites; its CN is the identity (and by
    /// default the client id). Needs --key and --ca.
    #[arg(long, help_heading = HEADING, value_name = "FILE", requires_all = ["dtls", "key", "ca"])]
    pub(crate) cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, help_heading = HEADING, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,

    /// CA certificate(s) (PEM) the gateway's certificate must chain to. Required with
    /// --cert; with a PSK the key already authenticates the gateway.
    #[arg(long, help_heading = HEADING, value_name = "FILE", requires = "dtls")]
    pub(crate) ca: Option<PathBuf>,

    /// Also require the gateway's certificate to name this host or IP address.
    #[arg(long, help_heading = HEADING, value_name = "NAME", requires = "ca")]
    pub(crate) server_name: Option<String>,

    /// Give up on a DTLS handshake after this long (lost flights are resent meanwhile).
    #[arg(
        long,
        help_heading = HEADING,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration,
        requires = "dtls"
    )]
    pub(crate) handshake_timeout: Duration,

    /// The DTLS library of PSK connections: openssl (the system's libssl) or mbedtls (Mbed
    /// TLS 3.6, built in, the gateway's default engine). Certificates always use openssl.
    #[arg(
        long,
        help_heading = HEADING,
        value_name = "ENGINE",
        value_enum,
        default_value_t = Engine::Openssl,
        requires = "dtls"
    )]
    pub(crate) dtls_engine: Engine,
}

/// `--dtls-engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Engine {
    /// libssl.
    Openssl,
    /// Mbed TLS 3.6 (PSK only).
    Mbedtls,
}

/// The credentials and context the options name.
#[derive(Debug, Clone)]
pub(crate) struct DtlsSetup {
    /// The shared libssl context.
    pub(crate) context: DtlsClientContext,
    /// PSK entries of --psk-file (bench motes take one each); empty otherwise.
    pub(crate) psk_entries: Vec<ClientPsk>,
    /// The identity of --psk-identity or of the certificate: the default client id.
    pub(crate) identity: Option<String>,
}

impl DtlsSetup {
    /// The PSK entry for `client_id`, for pub/sub with --psk-file: the line with that
    /// identity, or the only line when no client id was given.
    pub(crate) fn entry_for(&self, client_id: Option<&str>) -> Result<&ClientPsk, String> {
        match client_id {
            Some(id) => self
                .psk_entries
                .iter()
                .find(|e| e.identity == id)
                .ok_or_else(|| {
                    format!(
                        "--psk-file has no line for identity '{id}' (the client id): add one, \
                         or give --psk-identity and --psk-key"
                    )
                }),
            None => match self.psk_entries.as_slice() {
                [only] => Ok(only),
                [] => Err("--psk-file holds no key".to_owned()),
                _ => Err(
                    "--psk-file holds several identities: name the one to use with \
                          --client-id"
                        .to_owned(),
                ),
            },
        }
    }
}

fn parse_hex_key(hex: &str) -> Result<Vec<u8>, String> {
    let hex = hex.trim();
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return Err("--psk-key: give the key in hex, an even number of digits".to_owned());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("--psk-key: '{hex}' is not hex"))
        })
        .collect()
}

/// Turns the options into a client context; `None` without --dtls.
pub(crate) fn setup(args: &DtlsArgs) -> Result<Option<DtlsSetup>, String> {
    if !args.dtls {
        return Ok(None);
    }
    if args.dtls_engine == Engine::Mbedtls && args.cert.is_some() {
        return Err(
            "--dtls-engine mbedtls speaks PSK only: use --psk-identity/--psk-key or \
             --psk-file, or --dtls-engine openssl with --cert"
                .to_owned(),
        );
    }
    let mut psk_entries = Vec::new();
    let (credentials, identity) = match (
        &args.psk_identity,
        &args.psk_key,
        &args.psk_file,
        &args.cert,
        &args.key,
    ) {
        (Some(identity), Some(key), None, None, _) => {
            let psk = ClientPsk {
                identity: identity.clone(),
                key: parse_hex_key(key)?,
            };
            (ClientCredentials::Psk(psk), Some(identity.clone()))
        }
        (None, None, Some(file), None, _) => {
            psk_entries =
                read_psk_file(file).map_err(|e| format!("--psk-file {}: {e}", file.display()))?;
            let Some(first) = psk_entries.first() else {
                return Err(format!(
                    "--psk-file {}: no `identity:hexkey` line in it",
                    file.display()
                ));
            };
            (ClientCredentials::Psk(first.clone()), None)
        }
        (None, None, None, Some(cert), Some(key)) => {
            let identity = certificate_identity(cert).map_err(|e| format!("--cert: {e}"))?;
            (
                ClientCredentials::Certificate {
                    certificate: cert.clone(),
                    private_key: key.clone(),
                },
                Some(identity),
            )
        }
        _ => {
            return Err(
                "--dtls needs credentials: --psk-identity ID --psk-key HEX, or \
                        --psk-file FILE, or --cert FILE --key FILE --ca FILE"
                    .to_owned(),
            )
        }
    };
    let mut config = DtlsClientConfig::new(credentials);
    config.engine = match args.dtls_engine {
        Engine::Openssl => ClientEngine::OpenSsl,
        Engine::Mbedtls => ClientEngine::MbedTls,
    };
    config.ca_file = args.ca.clone();
    config.server_name = args.server_name.clone();
    config.handshake_timeout = args.handshake_timeout;
    let context = DtlsClientContext::new(&config).map_err(|e| format!("DTLS: {e}"))?;
    Ok(Some(DtlsSetup {
        context,
        psk_entries,
        identity,
    }))
}

/// A DTLS connection over a UDP socket the caller owns (connected to the gateway).
#[derive(Debug)]
pub(crate) struct Channel {
    client: DtlsClient,
    /// Decrypted datagrams not yet taken.
    inbox: VecDeque<Vec<u8>>,
    /// Set once the connection failed or the gateway closed it.
    ended: Option<String>,
    /// The suite negotiated.
    pub(crate) cipher: String,
}

/// Why a handshake did not give a channel.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The socket failed.
    Io(std::io::Error),
    /// The handshake failed or timed out.
    Failed(ClientFailure),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "socket error during the DTLS handshake: {e}"),
            HandshakeError::Failed(failure) => write!(f, "{failure}"),
        }
    }
}

/// Whether a socket error only means "that datagram is lost" (nothing listens yet, a full
/// queue): DTLS resends its flights, so the handshake goes on.
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(105) // ENOBUFS
}

/// Runs the handshake of `client` over `socket` until it completes or fails (the client's
/// handshake timeout bounds it). `buf` is a receive buffer.
pub(crate) async fn handshake(
    socket: &UdpSocket,
    mut client: DtlsClient,
    buf: &mut [u8],
) -> Result<Channel, HandshakeError> {
    loop {
        while let Some(datagram) = client.poll_transmit() {
            match socket.send(&datagram).await {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Connected { cipher } => {
                    return Ok(Channel {
                        client,
                        inbox: VecDeque::new(),
                        ended: None,
                        cipher,
                    })
                }
                ClientEvent::Failed(failure) => return Err(HandshakeError::Failed(failure)),
                // Nothing else comes before Connected.
                ClientEvent::Datagram(_) | ClientEvent::Closed => {}
            }
        }
        let Some(deadline) = client.poll_timeout() else {
            // Neither connected nor failed, and no deadline: cannot happen; fail rather than hang.
            return Err(HandshakeError::Failed(ClientFailure::HandshakeTimeout {
                answered: false,
            }));
        };
        match tokio::time::timeout_at(Instant::from_std(deadline), socket.recv(buf)).await {
            Err(_elapsed) => client.handle_timeout(std::time::Instant::now()),
            Ok(Ok(n)) => client.handle(std::time::Instant::now(), buf.get(..n).unwrap_or_default()),
            Ok(Err(e)) if transient(&e) => {}
            Ok(Err(e)) => return Err(HandshakeError::Io(e)),
        }
    }
}

impl Channel {
    /// Encrypts one MQTT-SN datagram; the records are then in [`Channel::next_transmit`].
    pub(crate) fn seal(&mut self, plaintext: &[u8]) -> Result<(), String> {
        if let Some(why) = &self.ended {
            return Err(why.clone());
        }
        self.client.send(plaintext).map_err(|e| e.to_string())
    }

    /// The next datagram to put on the socket.
    pub(crate) fn next_transmit(&mut self) -> Option<Vec<u8>> {
        self.client.poll_transmit()
    }

    /// Feeds one datagram from the socket; what it decrypts to waits in [`Channel::take`].
    /// `Err` once the connection has failed or been closed by the gateway.
    pub(crate) fn open(&mut self, datagram: &[u8]) -> Result<(), String> {
        self.client.handle(std::time::Instant::now(), datagram);
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::Datagram(data) => self.inbox.push_back(data),
                ClientEvent::Closed => {
                    self.ended = Some("the gateway closed the DTLS connection".to_owned())
                }
                ClientEvent::Failed(failure) => self.ended = Some(failure.to_string()),
                ClientEvent::Connected { .. } => {}
            }
        }
        match &self.ended {
            Some(why) if self.inbox.is_empty() => Err(why.clone()),
            _ => Ok(()),
        }
    }

    /// The next decrypted datagram.
    pub(crate) fn take(&mut self) -> Option<Vec<u8>> {
        self.inbox.pop_front()
    }

    /// Sends close_notify next (in [`Channel::next_transmit`]) and ends the connection.
    pub(crate) fn close(&mut self) {
        self.client.close();
    }
}
