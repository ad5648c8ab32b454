//! A plain (blocking) netlink socket that sends route changes in batches:
//! one `sendmsg` per datagram of up to [`DATAGRAM_BYTES`], its answers read
//! back before the next. BIRD and `ip -batch` send one request per system
//! call; for a full table the system calls cost about as much as the
//! kernel's own work.

use std::io;
use std::ops::Range;

use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::batch::{encode, replies, Change, Datagram};
use super::{missing_code, KernelError};
use crate::socket_option::set as set_option;

/// Octets per datagram: well below the default socket send buffer (the
/// kernel refuses datagrams larger than it), about 1,000 IPv4 routes.
const DATAGRAM_BYTES: usize = 64 * 1024;
/// The receive buffer asked for (SO_RCVBUFFORCE, as root), so that the
/// errors of a whole datagram fit: each costs the buffer about a kilobyte.
const RECEIVE_BUFFER: libc::c_int = 8 << 20;

pub(super) struct BatchSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl BatchSocket {
    /// A route socket in the calling thread's network namespace.
    pub fn open() -> io::Result<BatchSocket> {
        BatchSocket::with_receive_buffer(RECEIVE_BUFFER)
    }

    fn with_receive_buffer(size: libc::c_int) -> io::Result<BatchSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors carry only the request's header back, not the request.
        socket.set_cap_ack(true)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        // As root the buffer may exceed net.core.rmem_max.
        if set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
        }
        // The kernel answers before `send` returns; a wait for a lost answer
        // ends here.
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        set_option(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        Ok(BatchSocket {
            socket,
            seq: 1,
            buf: Vec::with_capacity(DATAGRAM_BYTES),
        })
    }

    /// Applies `changes` in order; per change, None or why it failed. A
    /// delete of a route that is already gone succeeds.
    pub fn apply(&mut self, changes: &[Change]) -> Vec<Option<KernelError>> {
        let mut results: Vec<Option<KernelError>> = (0..changes.len()).map(|_| None).collect();
        self.apply_range(changes, 0..changes.len(), DATAGRAM_BYTES, &mut results);
        results
    }

    fn apply_range(
        &mut self,
        changes: &[Change],
        range: Range<usize>,
        max_bytes: usize,
        results: &mut [Option<KernelError>],
    ) {
        let base = self.seq;
        self.seq = self.seq.wrapping_add(range.len() as u32);
        let (datagrams, invalid) = encode(&changes[range.clone()], base, max_bytes);
        for (i, reason) in invalid {
            let prefix = changes[range.start + i].prefix();
            results[range.start + i] = Some(KernelError::InvalidRoute { prefix, reason });
        }
        for datagram in datagrams {
            let at = range.start + datagram.range.start..range.start + datagram.range.end;
            match self.exchange(&datagram, base) {
                Ok(errors) => {
                    for (i, error) in errors {
                        let change = &changes[range.start + i];
                        results[range.start + i] = failure(change, error);
                    }
                }
                // The answers overflowed the receive buffer, so some errors
                // are lost: the same changes again in smaller datagrams
                // (replacing and deleting again is harmless).
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && at.len() > 1 => {
                    let (left, right) = (
                        at.start..at.start + at.len() / 2,
                        at.start + at.len() / 2..at.end,
                    );
                    for half in [left, right] {
                        self.apply_range(changes, half, max_bytes / 2, results);
                    }
                }
                Err(e) => {
                    for i in at {
                        let source = io::Error::new(e.kind(), e.to_string());
                        results[i] = failure(&changes[i], source);
                    }
                }
            }
        }
    }

    /// Sends one datagram and reads the answers up to its ack; the errors,
    /// by index into the changes encoded from `base`.
    fn exchange(&mut self, datagram: &Datagram, base: u32) -> io::Result<Vec<(usize, io::Error)>> {
        self.socket.send(&datagram.bytes, 0)?;
        let mut errors = Vec::new();
        loop {
            self.buf.clear();
            self.buf.reserve(DATAGRAM_BYTES);
            if let Err(e) = self.socket.recv(&mut self.buf, 0) {
                // Answers were dropped (ENOBUFS), or the ack never came
                // (timed out): what is still queued is of no use, and
                // while it is there the kernel would drop the next answers
                // without saying so again.
                self.drain();
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        io::Error::from_raw_os_error(libc::ENOBUFS)
                    }
                    _ => e,
                });
            }
            for reply in replies(&self.buf) {
                let i = reply.seq.wrapping_sub(base) as usize;
                if !datagram.range.contains(&i) {
                    // An answer to an earlier exchange.
                    continue;
                }
                if let Some(code) = reply.code {
                    errors.push((i, io::Error::from_raw_os_error(code.get().abs())));
                }
                if reply.seq == datagram.last_seq {
                    return Ok(errors);
                }
            }
        }
    }
}

impl BatchSocket {
    /// Reads and drops whatever answers are queued.
    fn drain(&mut self) {
        loop {
            self.buf.clear();
            self.buf.reserve(DATAGRAM_BYTES);
            match self.socket.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return,
            }
        }
    }
}

/// What a failed change means: none for the delete of a missing route.
fn failure(change: &Change, source: io::Error) -> Option<KernelError> {
    match change {
        Change::Replace(route) => Some(KernelError::Replace {
            prefix: route.prefix(),
            source,
        }),
        Change::Delete(_) if source.raw_os_error().is_some_and(missing_code) => None,
        Change::Delete(prefix) => Some(KernelError::Delete {
            prefix: *prefix,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelRoute;

    /// Runs `body` on a thread of its own in a new, empty network namespace
    /// (no interfaces: gateways are unreachable, blackholes are fine);
    /// skipped unless root.
    fn in_new_netns(body: impl FnOnce() + Send) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root for a network namespace");
            return;
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: moves only this thread into a new namespace.
                    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
                    body();
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
    }

    fn prefix(i: u32, len: u8) -> ipnetwork::IpNetwork {
        ipnetwork::IpNetwork::new(std::net::Ipv4Addr::from(0x0b00_0000 + (i << 8)).into(), len)
            .unwrap()
    }

    #[test]
    fn errors_beyond_the_receive_buffer_are_not_lost() {
        in_new_netns(|| {
            // Room for a handful of errors only: datagrams are split again
            // until every error is read.
            let mut socket = BatchSocket::with_receive_buffer(4096).expect("socket");
            let changes: Vec<Change> = (0..3000)
                .map(|i| {
                    if i % 3 == 0 {
                        Change::Replace(KernelRoute::Blackhole {
                            prefix: prefix(i, 24),
                        })
                    } else {
                        Change::Replace(KernelRoute::Via {
                            prefix: prefix(i, 24),
                            next_hops: vec!["192.0.2.1".parse().unwrap()],
                            device: None,
                        })
                    }
                })
                .collect();
            let results = socket.apply(&changes);
            for (i, result) in results.iter().enumerate() {
                match result {
                    None => assert_eq!(i % 3, 0, "route {i} installed"),
                    Some(e) => {
                        assert_ne!(i % 3, 0, "blackhole {i}: {e}");
                        assert!(e.to_string().contains(&prefix(i as u32, 24).to_string()));
                    }
                }
            }
            // Deleting all, twice: the second time none is there.
            let deletes: Vec<Change> = (0..3000).map(|i| Change::Delete(prefix(i, 24))).collect();
            assert!(socket.apply(&deletes).iter().all(Option::is_none));
            assert!(socket.apply(&deletes).iter().all(Option::is_none));
        });
    }
}
