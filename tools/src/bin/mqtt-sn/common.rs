//! What `pub` and `sub` set up the same way: the gateway address, the timers, CONNECT options.

use std::net::SocketAddr;

use sn_codec::QoS;

use crate::cli::ConnectionArgs;
use crate::error::ClientError;
use crate::session::{ConnectOptions, Timing};

/// Resolves `--gateway`. A literal address (including `[::1]:1883`) needs no lookup; a host
/// name goes through the system resolver and the first address wins.
pub(crate) async fn resolve_gateway(addr: &str) -> Result<SocketAddr, ClientError> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(parsed);
    }
    let bad = |reason: String| ClientError::BadGateway {
        addr: addr.to_owned(),
        reason,
    };
    if !addr.contains(':') {
        return Err(bad(
            "expected HOST:PORT, e.g. 127.0.0.1:1883 or [::1]:1883".to_owned()
        ));
    }
    let mut found = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| bad(e.to_string()))?;
    found
        .next()
        .ok_or_else(|| bad("the name resolves to no address".to_owned()))
}

/// The retransmission timers from `--retry` / `--retries`.
pub(crate) fn timing(args: &ConnectionArgs) -> Timing {
    Timing {
        retry: args.retry,
        retries: args.retries,
    }
}

/// CONNECT options from the command line; the client id defaults to one unique per process so
/// two tools started side by side do not take over each other's session.
pub(crate) fn connect_options(args: &ConnectionArgs) -> Result<ConnectOptions, ClientError> {
    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("mqtt-sn-{}", std::process::id()));
    if client_id.is_empty() {
        return Err(ClientError::Usage(
            "--client-id must not be empty".to_owned(),
        ));
    }
    let will = args.will_topic.as_ref().map(|topic| sn_client::Will {
        topic: topic.clone(),
        message: args.will_message.clone().unwrap_or_default().into_bytes(),
        qos: args.will_qos.unwrap_or(QoS::AtMostOnce),
        retain: args.will_retain,
    });
    Ok(ConnectOptions {
        client_id,
        options: sn_client::ConnectOptions {
            keep_alive: args.keep_alive,
            clean_session: args.clean_session,
            will,
        },
    })
}
