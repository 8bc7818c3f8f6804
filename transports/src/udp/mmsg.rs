//! Batched datagram I/O on Linux: `recvmmsg(2)` and `sendmmsg(2)` move up to [`BATCH`]
//! datagrams in one system call.
//!
//! Under load the gateway's time goes to system calls, one `recvfrom` per datagram in and
//! one `sendto` per datagram out (docs/benchmarks.md, "Profile"); a burst of PUBACKs to many
//! motes becomes one call here. Neither socket2 nor tokio wraps these calls, and nix's
//! wrappers read the address slots they leave uninitialised on the send side, so this module
//! makes the two calls itself. It is the crate's only `unsafe` code; each block says why it is
//! sound. Everything here is synchronous and non-blocking: the caller runs it inside tokio's
//! readiness loop (`UdpSocket::async_io`), which turns `WouldBlock` into a wait.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::ptr;

use socket2::{SockAddr, SockAddrStorage};

/// The most datagrams one call moves. 32 keeps the headers on the stack (a few KiB) and
/// already cuts the per-datagram system-call cost to a thirty-second.
pub(crate) const BATCH: usize = 32;

/// Receives the datagrams waiting on `socket`, at most [`BATCH`] and at most one per
/// `slot_len`-byte slot of `buf`. For each, in arrival order, pushes onto `out` the number of
/// bytes placed in its slot (slot `i` is `buf[i * slot_len..]`) and its sender (`None` if the
/// kernel gave no IP address, which a UDP socket never does). A datagram longer than its slot
/// is cut to `slot_len` bytes: give slots one byte longer than the largest datagram wanted and
/// a full slot means "too long".
///
/// `out` is cleared first. `Err(WouldBlock)` when nothing is waiting.
pub(crate) fn recv(
    socket: &impl AsRawFd,
    buf: &mut [u8],
    slot_len: usize,
    out: &mut Vec<(usize, Option<SocketAddr>)>,
) -> io::Result<()> {
    out.clear();
    if slot_len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "receive slots must be at least one byte long",
        ));
    }
    let mut iovecs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let mut names: [SockAddrStorage; BATCH] = std::array::from_fn(|_| SockAddrStorage::zeroed());
    // SAFETY: `mmsghdr` is a C struct of integers and raw pointers, for which all zeroes is a
    // valid value (null pointers, zero lengths); the kernel reads only what `count` covers,
    // and those entries are filled in below.
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut count: usize = 0;
    for ((slot, iov), (name, header)) in buf
        .chunks_exact_mut(slot_len)
        .zip(iovecs.iter_mut())
        .zip(names.iter_mut().zip(headers.iter_mut()))
    {
        iov.iov_base = slot.as_mut_ptr().cast();
        iov.iov_len = slot.len();
        header.msg_hdr.msg_iov = ptr::from_mut(iov);
        header.msg_hdr.msg_iovlen = 1;
        header.msg_hdr.msg_name = ptr::from_mut(name).cast();
        header.msg_hdr.msg_namelen = name.size_of();
        count += 1;
    }
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "receive buffer is shorter than one slot",
        ));
    }
    // SAFETY: the first `count` headers each point to one iovec and one address storage, all
    // of them locals that outlive the call, and each iovec points to a distinct `slot_len`
    // chunk of `buf`, which is borrowed mutably for the whole function. The kernel writes at
    // most `iov_len` bytes into each chunk and at most `msg_namelen` bytes into each storage,
    // and touches no header beyond `count` (at most BATCH, the arrays' length). No timeout
    // pointer is passed (null is allowed). The socket is non-blocking, so the call returns at
    // once.
    let received = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            0,
            ptr::null_mut(),
        )
    };
    // A negative return is an error (errno); anything else is a count of at most `count`.
    let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    for (header, name) in headers.iter().zip(names).take(received) {
        let len = usize::try_from(header.msg_len).unwrap_or(usize::MAX);
        let name_len = header.msg_hdr.msg_namelen;
        let from = if name_len as usize <= std::mem::size_of::<SockAddrStorage>() {
            // SAFETY: for the headers it reports, the kernel wrote the sender's address into
            // `name` (zeroed before the call) and its length into `msg_namelen`, checked to
            // fit the storage just above; that is the contract `SockAddr::new` asks for.
            let address = unsafe { SockAddr::new(name, name_len) };
            address.as_socket()
        } else {
            None
        };
        out.push((len.min(slot_len), from));
    }
    Ok(())
}

/// Sends the first [`BATCH`] (or fewer) of `datagrams`, each to its address, in order, in one
/// call. Returns how many the kernel took: it stops at the first it refuses, and if that is
/// the first one the call fails with its error (`WouldBlock` when the socket's send buffer is
/// full), so the caller can skip it and go on with the rest.
pub(crate) fn send<B: AsRef<[u8]>>(
    socket: &impl AsRawFd,
    datagrams: &[(B, SocketAddr)],
) -> io::Result<usize> {
    let batch = datagrams.get(..BATCH).unwrap_or(datagrams);
    if batch.is_empty() {
        return Ok(0);
    }
    let names: [Option<SockAddr>; BATCH] =
        std::array::from_fn(|i| batch.get(i).map(|(_, to)| SockAddr::from(*to)));
    let mut iovecs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: as in `recv`: all zeroes is a valid `mmsghdr`, and the entries the kernel reads
    // are filled in below.
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut count: usize = 0;
    for (((datagram, _), name), (iov, header)) in batch
        .iter()
        .zip(names.iter().flatten())
        .zip(iovecs.iter_mut().zip(headers.iter_mut()))
    {
        let bytes = datagram.as_ref();
        // The kernel only reads from a send's buffers, so handing it a pointer derived from
        // a shared slice is fine; `iovec` is just declared with a mutable pointer.
        iov.iov_base = bytes.as_ptr().cast_mut().cast();
        iov.iov_len = bytes.len();
        header.msg_hdr.msg_iov = ptr::from_mut(iov);
        header.msg_hdr.msg_iovlen = 1;
        header.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
        header.msg_hdr.msg_namelen = name.len();
        count += 1;
    }
    // SAFETY: the first `count` headers each point to one iovec and one address, all alive
    // until the call returns: the iovecs and `names` are locals, and each iovec points into a
    // datagram of `datagrams`, borrowed for the whole function. For a send the kernel only
    // reads through these pointers (buffers, addresses), within the lengths given, and writes
    // only the headers' `msg_len` fields, which are ours. `count` is at most BATCH, the
    // arrays' length.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}
