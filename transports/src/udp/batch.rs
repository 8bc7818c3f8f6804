//! Receiving and sending many datagrams per system call: [`UdpLink::recv_batch`] and
//! [`UdpLink::send_batch`]. On Linux they use `recvmmsg`/`sendmmsg` (see `mmsg.rs`);
//! elsewhere they fall back to one datagram per call, with the same results.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;

use super::UdpLink;

/// How many datagrams one [`UdpLink::recv_batch`] call returns at most.
#[cfg(target_os = "linux")]
const RECV_BATCH: usize = super::mmsg::BATCH;
#[cfg(not(target_os = "linux"))]
const RECV_BATCH: usize = 1;

/// One non-blocking receive of what is waiting, into `raw`: every datagram on Linux.
#[cfg(target_os = "linux")]
use super::mmsg::recv as fill;

/// One non-blocking receive of one datagram, into `raw`.
#[cfg(not(target_os = "linux"))]
fn fill(
    socket: &tokio::net::UdpSocket,
    buf: &mut [u8],
    slot_len: usize,
    raw: &mut Vec<(usize, Option<SocketAddr>)>,
) -> io::Result<()> {
    raw.clear();
    let slot = buf.get_mut(..slot_len).unwrap_or_default();
    let (len, from) = socket.try_recv_from(slot)?;
    raw.push((len, Some(from)));
    Ok(())
}

/// Reusable buffers for [`UdpLink::recv_batch`]: one slot per datagram, each one byte longer
/// than the link's largest datagram, and the list of what the last call received.
///
/// Made once per receive loop with [`UdpLink::recv_batch_buffer`], so receiving allocates
/// nothing.
#[derive(Debug)]
pub struct RecvBatch {
    buf: Vec<u8>,
    slot_len: usize,
    /// What the OS handed over: bytes in each slot and the sender, oversize ones included.
    raw: Vec<(usize, Option<SocketAddr>)>,
    /// The datagrams kept from `raw`: slot index, length, sender.
    kept: Vec<(usize, usize, SocketAddr)>,
}

impl RecvBatch {
    /// The datagrams of the last [`UdpLink::recv_batch`], in arrival order, with their senders.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.kept.iter().map(|&(slot, len, from)| {
            let start = slot.saturating_mul(self.slot_len);
            let datagram = self
                .buf
                .get(start..start.saturating_add(len))
                .unwrap_or_default();
            (datagram, from)
        })
    }

    /// How many datagrams the last call kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether the last call kept none (only before the first call: a call returns once it
    /// has at least one).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Total bytes of the datagrams kept, to size one buffer for all of them.
    pub fn total_len(&self) -> usize {
        self.kept.iter().map(|&(_, len, _)| len).sum()
    }
}

impl UdpLink {
    /// Allocates buffers for [`recv_batch`](Self::recv_batch): room for 32 datagrams on
    /// Linux (1 elsewhere) of [`recv_buffer_len`](Self::recv_buffer_len) bytes each.
    pub fn recv_batch_buffer(&self) -> RecvBatch {
        let slot_len = self.recv_buffer_len();
        RecvBatch {
            buf: vec![0; slot_len.saturating_mul(RECV_BATCH)],
            slot_len,
            raw: Vec::with_capacity(RECV_BATCH),
            kept: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Waits for datagrams and returns every one already waiting, up to the batch's size,
    /// in one system call where the OS allows (`recvmmsg` on Linux): how many, read with
    /// [`RecvBatch::iter`]. Returns only once it has at least one.
    ///
    /// Oversize datagrams, transient errors and fatal errors are handled as by
    /// [`recv`](Self::recv): counted, logged and skipped, or returned. `batch` must come from
    /// this link's [`recv_batch_buffer`](Self::recv_batch_buffer) (a buffer from a link with a
    /// larger `max_datagram` also works); a smaller one is refused with `InvalidInput`.
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        if batch.slot_len < self.recv_buffer_len() || batch.buf.len() < batch.slot_len {
            return Err(self.buffer_too_small("receive batch slot", batch.slot_len));
        }
        loop {
            batch.kept.clear();
            let RecvBatch {
                buf, slot_len, raw, ..
            } = batch;
            let result = self
                .socket
                .async_io(Interest::READABLE, || {
                    fill(&self.socket, buf, *slot_len, raw)
                })
                .await;
            match result {
                Ok(()) => {
                    for (slot, &(len, from)) in batch.raw.iter().enumerate() {
                        let Some(from) = from else {
                            // Not an IP sender: cannot happen on a UDP socket; never let a
                            // reply go nowhere.
                            self.counters.receive_error();
                            continue;
                        };
                        if self.keep_received(len, from) {
                            batch.kept.push((slot, len, from));
                        }
                    }
                    if !batch.kept.is_empty() {
                        return Ok(batch.kept.len());
                    }
                }
                // `async_io` waits out WouldBlock itself, so what arrives here is real.
                Err(error) => self.skip_receive_error(error)?,
            }
        }
    }

    /// Sends each datagram to its address, in order, in as few system calls as the OS allows
    /// (`sendmmsg` on Linux, up to 32 per call). Returns how many the OS accepted. A datagram
    /// the OS refuses is counted (`send_errors`), logged at debug level and skipped, and the
    /// rest are still sent, as a loop of [`send_to`](Self::send_to) would do.
    pub async fn send_batch<B: AsRef<[u8]>>(&self, datagrams: &[(B, SocketAddr)]) -> usize {
        let mut accepted = 0;
        let mut rest = datagrams;
        while let Some(((first, to), after_first)) = rest.split_first() {
            if after_first.is_empty() {
                // One datagram: a plain sendto costs less than setting up a batch.
                if self.send_to(first.as_ref(), *to).await.is_ok() {
                    accepted += 1;
                }
                break;
            }
            match self.send_some(rest).await {
                Ok(sent) if sent > 0 => {
                    let (done, left) = rest.split_at(sent.min(rest.len()));
                    for (datagram, _) in done {
                        self.counters.sent(datagram.as_ref().len());
                    }
                    accepted += done.len();
                    rest = left;
                }
                // The OS refused the first datagram (or, in theory, took none without
                // saying why): count it, skip it, go on with the rest.
                result => {
                    let error = match result {
                        Err(error) => error,
                        Ok(_) => io::Error::other("the OS accepted no datagram of the batch"),
                    };
                    let _ = self.count_send(Err(error), *to);
                    rest = after_first;
                }
            }
        }
        accepted
    }

    /// Sends the first datagrams of `datagrams` in one call, waiting while the socket's send
    /// buffer is full; returns how many the OS took.
    #[cfg(target_os = "linux")]
    async fn send_some<B: AsRef<[u8]>>(&self, datagrams: &[(B, SocketAddr)]) -> io::Result<usize> {
        self.socket
            .async_io(Interest::WRITABLE, || {
                super::mmsg::send(&self.socket, datagrams)
            })
            .await
    }

    /// Sends the first datagram of `datagrams`.
    #[cfg(not(target_os = "linux"))]
    async fn send_some<B: AsRef<[u8]>>(&self, datagrams: &[(B, SocketAddr)]) -> io::Result<usize> {
        match datagrams.first() {
            Some((datagram, to)) => self.socket.send_to(datagram.as_ref(), *to).await.map(|_| 1),
            None => Ok(0),
        }
    }
}
