//! Everything that ends a run early, each as one line that says what happened and, where there
//! is one, what to check.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sn_codec::v12::ReturnCode;
use sn_codec::EncodeError;

use crate::cli::format_duration;

/// Why the tool stops with a non-zero exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The options make no sense together (clap cannot express every rule).
    #[error("{0}")]
    Usage(String),

    /// `--gateway` could not be turned into an address.
    #[error("invalid --gateway '{addr}': {reason}")]
    BadGateway {
        /// What the user typed.
        addr: String,
        /// Why it does not work.
        reason: String,
    },

    /// The local UDP socket could not be opened.
    #[error("cannot open a UDP socket towards {gateway}: {source}")]
    Socket {
        /// Where it was meant to talk to.
        gateway: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },

    /// Sending or receiving failed for a reason other than the gateway being absent.
    #[error("network error talking to {gateway}: {source}")]
    Io {
        /// The gateway.
        gateway: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },

    /// The DTLS handshake or connection failed.
    #[error("DTLS with {gateway}: {reason}")]
    Dtls {
        /// The gateway.
        gateway: SocketAddr,
        /// What went wrong, and what to check.
        reason: String,
    },

    /// A request ran out of time and retransmissions.
    #[error("no {reply} from {gateway} within {}{hint}", format_duration(*within))]
    NoReply {
        /// What was awaited, e.g. `CONNACK`.
        reply: String,
        /// The gateway.
        gateway: SocketAddr,
        /// The time budget that ran out.
        within: Duration,
        /// Extra advice (": is the gateway running?") or empty.
        hint: &'static str,
    },

    /// The gateway answered with a non-zero return code.
    #[error("gateway refused {what}: {}", describe_return_code(*code))]
    Refused {
        /// What was refused, e.g. `CONNECT` or `REGISTER of 'a/b'`.
        what: String,
        /// The return code it sent.
        code: ReturnCode,
    },

    /// Our PINGREQs went unanswered.
    #[error("gateway lost: no PINGRESP from {gateway} within {}", format_duration(*within))]
    GatewayLost {
        /// The gateway.
        gateway: SocketAddr,
        /// How long we waited after the first PINGREQ.
        within: Duration,
    },

    /// The gateway ended the session on its own.
    #[error("gateway {gateway} sent DISCONNECT: it ended the session (reconnect to go on)")]
    GatewayDisconnected {
        /// The gateway.
        gateway: SocketAddr,
    },

    /// A packet built from the user's input cannot be encoded (too long for MQTT-SN).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// Which packet.
        what: &'static str,
        /// Why.
        source: EncodeError,
    },

    /// `sub --count N --timeout T` ended before N messages arrived.
    #[error(
        "timed out after {}: received {received} of {expected} message(s)",
        format_duration(*after)
    )]
    Incomplete {
        /// The --timeout.
        after: Duration,
        /// How many arrived.
        received: u64,
        /// The --count.
        expected: u64,
    },

    /// Ctrl-C before the subscription was in place.
    #[error("interrupted before the subscription was set up")]
    Interrupted,

    /// Printing a message failed (e.g. stdout closed).
    #[error("cannot write to stdout: {0}")]
    Output(io::Error),

    /// Reading `--stdin-lines` input failed.
    #[error("cannot read stdin: {0}")]
    Stdin(io::Error),
}

impl ClientError {
    /// The process exit code: 2 for a `sub` that timed out short of its count (scripts tell
    /// "too few messages" from "broken"), 130 for Ctrl-C during setup, 1 for everything else.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ClientError::Incomplete { .. } => 2,
            // The shell convention for "ended by SIGINT".
            ClientError::Interrupted => 130,
            _ => 1,
        }
    }
}

/// A return code in words, with its byte so it can be looked up in the spec.
pub(crate) fn describe_return_code(code: ReturnCode) -> String {
    match code {
        ReturnCode::Accepted => "accepted (0x00)".to_owned(),
        ReturnCode::Congestion => "congestion (0x01)".to_owned(),
        ReturnCode::InvalidTopicId => "invalid topic id (0x02)".to_owned(),
        ReturnCode::NotSupported => "not supported (0x03)".to_owned(),
        ReturnCode::Reserved(byte) => format!("rejected (0x{byte:02x}, not a v1.2 code)"),
    }
}
