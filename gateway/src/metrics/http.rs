//! A small HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`. One request per
//! connection (the answer closes it), requests bounded in size, time and number at once: it
//! listens on loopback by default, but nothing it is sent may grow without a cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::debug;

use super::exposition::{render, Snapshot};

/// What the endpoint shows, kept current by the runtime.
#[derive(Debug, Clone)]
pub struct Status {
    /// The counters and gauges.
    pub snapshot: Snapshot,
    /// Whether the gateway serves motes, and if not why.
    pub ready: Result<(), String>,
    /// When the runtime last published this: a runtime that stops publishing is not alive.
    pub updated: Instant,
}

impl Status {
    /// A status for a gateway that is starting: alive, not ready.
    pub fn starting() -> Self {
        Status {
            snapshot: Snapshot::default(),
            ready: Err("starting".to_string()),
            updated: Instant::now(),
        }
    }
}

/// Requests longer than this (headers included) are refused.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait for a free slot.
const MAX_CONNECTIONS: usize = 16;

/// Serves `listener` until the task is dropped. `stale_after`: a status older than this makes
/// `/healthz` fail (the runtime loop has stopped turning).
pub async fn serve(listener: TcpListener, status: watch::Receiver<Status>, stale_after: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = status.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &status, stale_after).await {
                debug!(%peer, %error, "metrics endpoint: request failed");
            }
            drop(permit);
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    status: &watch::Receiver<Status>,
    stale_after: Duration,
) -> std::io::Result<()> {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(&mut stream, 431, "text/plain", "request too large\n").await
        }
        Ok(Err(error)) => return Err(error),
        Err(_) => return respond(&mut stream, 408, "text/plain", "request timeout\n").await,
    };
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", "only GET\n").await;
    }
    let current = status.borrow().clone();
    let alive = current.updated.elapsed() <= stale_after;
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let body = render(&current.snapshot);
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        "/healthz" if alive => respond(&mut stream, 200, "text/plain", "ok\n").await,
        "/healthz" => {
            let body = format!(
                "the gateway's loop has not turned for {:.0?}\n",
                current.updated.elapsed()
            );
            respond(&mut stream, 503, "text/plain", &body).await
        }
        "/readyz" => match (&current.ready, alive) {
            (Ok(()), true) => respond(&mut stream, 200, "text/plain", "ready\n").await,
            (Err(reason), true) => {
                respond(
                    &mut stream,
                    503,
                    "text/plain",
                    &format!("not ready: {reason}\n"),
                )
                .await
            }
            (_, false) => respond(&mut stream, 503, "text/plain", "not ready: not alive\n").await,
        },
        _ => {
            let body = "not found: try /metrics, /healthz or /readyz\n";
            respond(&mut stream, 404, "text/plain", body).await
        }
    }
}

/// The request line of a request, once its head is complete; `None` when the head is longer
/// than [`MAX_REQUEST`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&head);
    Ok(Some(text.lines().next().unwrap_or("").to_string()))
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(Status::starting());
        let server = tokio::spawn(serve(listener, rx, Duration::from_secs(60)));

        let ready = get(addr, b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        assert!(ready.ends_with("not ready: starting\n"), "{ready}");

        let mut status = Status::starting();
        status.ready = Ok(());
        status.snapshot.metrics.publish_forwarded = 3;
        tx.send(status).unwrap();
        let ready = get(addr, b"GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        let metrics = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200"));
        assert!(metrics.contains("\r\n\r\n# HELP "));
        assert!(metrics
            .lines()
            .any(|l| l == "mqttsn_publish_forwarded_total 3"));
        let health = get(addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let missing = get(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"));
        let post = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"));
        // A head that never ends is cut off, not collected.
        let huge = [b'a'; MAX_REQUEST + 2048];
        let refused = get(addr, &huge).await;
        assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
        server.abort();
    }

    #[tokio::test]
    async fn a_stalled_runtime_is_not_healthy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut status = Status::starting();
        status.ready = Ok(());
        status.updated = Instant::now() - Duration::from_secs(120);
        let (_tx, rx) = watch::channel(status);
        let server = tokio::spawn(serve(listener, rx, Duration::from_secs(60)));
        let health = get(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        let ready = get(addr, b"GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        server.abort();
    }
}
