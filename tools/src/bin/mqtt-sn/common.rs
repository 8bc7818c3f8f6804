//! What `pub` and `sub` set up the same way: the gateway address, the timers, CONNECT options.

use std::net::SocketAddr;

use sn_codec::QoS;

use sn_transports::dtls::DtlsClient;

use crate::cli::ConnectionArgs;
use crate::dtls;
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

/// The DTLS connection the options ask for (not started yet: its ClientHello waits) and the
/// CONNECT options. Over DTLS the client id defaults to the identity (the PSK identity or the
/// certificate's CN), the one client id the gateway lets that identity use by default.
pub(crate) fn prepare(
    args: &ConnectionArgs,
) -> Result<(Option<DtlsClient>, ConnectOptions), ClientError> {
    let Some(setup) = dtls::setup(&args.dtls).map_err(ClientError::Usage)? else {
        return Ok((None, connect_options(args, None)?));
    };
    let now = std::time::Instant::now();
    let started = if setup.psk_entries.is_empty() {
        setup.context.connect(now)
    } else {
        let entry = setup
            .entry_for(args.client_id.as_deref())
            .map_err(ClientError::Usage)?;
        let identity = entry.identity.clone();
        let client = setup.context.connect_as(now, entry.clone());
        return Ok((
            Some(client.map_err(|e| ClientError::Usage(format!("DTLS: {e}")))?),
            connect_options(args, Some(identity))?,
        ));
    };
    let client = started.map_err(|e| ClientError::Usage(format!("DTLS: {e}")))?;
    Ok((Some(client), connect_options(args, setup.identity)?))
}

/// CONNECT options from the command line; the client id defaults to the DTLS identity, else to
/// one unique per process so two tools started side by side do not take over each other's
/// session.
fn connect_options(
    args: &ConnectionArgs,
    identity: Option<String>,
) -> Result<ConnectOptions, ClientError> {
    let client_id = args
        .client_id
        .clone()
        .or(identity)
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
