//! The injector: a BGP peer made of two threads inside the injector's
//! namespace. It listens, lets the receiver connect, does the OPEN and
//! KEEPALIVE handshake, then writes the pre-encoded stream as fast as TCP
//! takes it, slipping in KEEPALIVEs every third of the hold time, and keeps
//! them coming after the stream until it is stopped. A second thread reads
//! and discards what the receiver sends, remembers a NOTIFICATION, and
//! keeps the hold timer as a real peer would (RFC 4271 section 6.5): a
//! receiver silent for longer than the hold time loses the session.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use starling_bgp::packet::{Codec, Message, Open, HEADER_LEN};
use starling_bgp::Family;

use super::stream::Stream;
use crate::error::{Error, Result};
use crate::netns;

/// Largest run of messages written at once, between KEEPALIVE checks.
const RUN_OCTETS: usize = 64 * 1024;
/// A write that takes longer than this means the receiver stopped reading.
const WRITE_STALL: Duration = Duration::from_secs(120);
/// How often the reader looks at the stop flag.
const READ_TICK: Duration = Duration::from_millis(200);

/// Who the injector is.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// The hold time proposed in OPEN, in seconds.
    pub hold_time: u16,
    /// The AS the receiver must announce.
    pub peer_as: u32,
}

/// A listening socket inside the injector's namespace.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    pub fn bind(ns: &str, addr: SocketAddr) -> Result<Listener> {
        let listener = netns::in_netns(ns, || TcpListener::bind(addr))?
            .map_err(|e| Error::io(format!("binding {addr} in namespace {ns}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("listener nonblocking", e))?;
        Ok(Listener { listener, addr })
    }

    /// Accepts the receiver's connection within `deadline`; `alive` is asked
    /// between attempts and ends the wait with its error.
    pub fn accept(
        &self,
        deadline: Duration,
        mut alive: impl FnMut() -> Result<()>,
    ) -> Result<TcpStream> {
        let start = Instant::now();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| Error::io("accepted socket blocking", e))?;
                    return Ok(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io("accepting the receiver's connection", e)),
            }
            alive()?;
            if crate::wait::interrupted() {
                return Err(Error::Interrupted);
            }
            if start.elapsed() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the receiver to connect to {}", self.addr),
                    after: start.elapsed(),
                    last: "no connection".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An Established session, before anything is streamed.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    /// The negotiated hold time in seconds (0: no KEEPALIVEs).
    hold_time: u16,
    established_at: Instant,
}

impl Session {
    /// OPEN both ways, then KEEPALIVE both ways, within `timeout`. The
    /// receiver must announce `me.peer_as` and 4-octet AS numbers (the
    /// stream is encoded for them).
    pub fn handshake(stream: TcpStream, me: Identity, timeout: Duration) -> Result<Session> {
        let _ = stream.set_nodelay(true);
        let mut stream = stream;
        let codec = Codec::FOUR_OCTET_AS;
        let open = Open::new(me.asn, me.hold_time, me.router_id, &[Family::IPV4_UNICAST]);
        write_all(
            &mut stream,
            &Message::Open(open).encode(&codec).expect("encodes"),
            timeout,
        )?;
        let deadline = Instant::now() + timeout;
        let mut hold_time = None;
        loop {
            let msg = read_message(&mut stream, deadline)?;
            match Message::decode(&msg, &codec) {
                Ok(Message::Open(theirs)) => {
                    if theirs.asn() != me.peer_as {
                        return Err(Error::Setup(format!(
                            "the receiver announced AS {}, expected {}",
                            theirs.asn(),
                            me.peer_as
                        )));
                    }
                    if theirs.four_octet_as().is_none() {
                        return Err(Error::Setup(
                            "the receiver does not announce 4-octet AS numbers".into(),
                        ));
                    }
                    hold_time = Some(theirs.hold_time.min(me.hold_time));
                    write_all(
                        &mut stream,
                        &Message::Keepalive.encode(&codec).expect("encodes"),
                        timeout,
                    )?;
                }
                Ok(Message::Keepalive) => {
                    if let Some(hold_time) = hold_time {
                        return Ok(Session {
                            stream,
                            hold_time,
                            established_at: Instant::now(),
                        });
                    }
                }
                Ok(Message::Notification(n)) => {
                    return Err(Error::Setup(format!(
                        "the receiver refused the session: NOTIFICATION {n}"
                    )))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::Setup(format!(
                        "cannot decode the receiver's message: {e}"
                    )))
                }
            }
        }
    }

    pub fn established_at(&self) -> Instant {
        self.established_at
    }

    pub fn hold_time(&self) -> u16 {
        self.hold_time
    }
}

/// What the injector threads saw.
#[derive(Debug, Default)]
struct Seen {
    sent_all_at: Option<Instant>,
    failure: Option<String>,
    /// The longest the receiver was silent (between any two of its
    /// messages, from Established).
    longest_silence: Duration,
}

/// The stream being fed; dropping it stops both threads.
#[derive(Debug)]
pub struct Feed {
    socket: TcpStream,
    seen: Arc<Mutex<Seen>>,
    stop: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Feed {
    /// Starts writing `stream` on the session.
    pub fn start(session: Session, stream: Arc<Stream>) -> Result<Feed> {
        let clone = |s: &TcpStream| {
            s.try_clone()
                .map_err(|e| Error::io("cloning the socket", e))
        };
        let reader_socket = clone(&session.stream)?;
        let socket = clone(&session.stream)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, stopped) = mpsc::channel();
        let hold = Duration::from_secs(u64::from(session.hold_time));
        let since = session.established_at;
        let writer = {
            let seen = seen.clone();
            std::thread::spawn(move || write_loop(session, &stream, &stopped, &seen))
        };
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || read_loop(reader_socket, hold, since, &seen))
        };
        Ok(Feed {
            socket,
            seen,
            stop: Some(stop),
            threads: vec![writer, reader],
        })
    }

    /// When the last octet of the stream was handed to TCP.
    pub fn sent_all_at(&self) -> Option<Instant> {
        lock(&self.seen).sent_all_at
    }

    /// Why the session broke, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.seen).failure.clone()
    }

    /// The longest the receiver was silent so far (its KEEPALIVEs are due
    /// every third of the hold time).
    pub fn longest_silence(&self) -> Duration {
        lock(&self.seen).longest_silence
    }

    /// Stops both threads and closes the connection.
    pub fn stop(&mut self) {
        self.stop.take();
        let _ = self.socket.shutdown(Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(seen: &Mutex<Seen>, why: String) {
    let mut s = lock(seen);
    if s.failure.is_none() {
        s.failure = Some(why);
    }
}

fn write_loop(
    mut session: Session,
    stream: &Stream,
    stop: &mpsc::Receiver<()>,
    seen: &Mutex<Seen>,
) {
    let keepalive = Message::Keepalive
        .encode(&Codec::default())
        .expect("encodes");
    let every = (session.hold_time > 0)
        .then(|| Duration::from_secs(u64::from(session.hold_time / 3).max(1)));
    let mut next_keepalive = every.map(|e| session.established_at + e);
    let sock = &mut session.stream;
    for run in stream.runs(RUN_OCTETS) {
        if !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            return;
        }
        if let (Some(at), Some(e)) = (next_keepalive, every) {
            if Instant::now() >= at {
                if let Err(err) = write_all(sock, &keepalive, WRITE_STALL) {
                    return fail(seen, format!("sending a KEEPALIVE: {err}"));
                }
                next_keepalive = Some(Instant::now() + e);
            }
        }
        if let Err(err) = write_all(sock, run, WRITE_STALL) {
            return fail(seen, format!("streaming the UPDATEs: {err}"));
        }
    }
    lock(seen).sent_all_at = Some(Instant::now());
    loop {
        let wait = next_keepalive.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                if let Err(err) = write_all(sock, &keepalive, WRITE_STALL) {
                    return fail(seen, format!("sending a KEEPALIVE: {err}"));
                }
                next_keepalive = every.map(|e| Instant::now() + e);
            }
            _ => return,
        }
    }
}

fn read_loop(mut sock: TcpStream, hold: Duration, since: Instant, seen: &Mutex<Seen>) {
    if sock.set_read_timeout(Some(READ_TICK)).is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_heard = since;
    loop {
        let silence = last_heard.elapsed();
        {
            let mut s = lock(seen);
            s.longest_silence = s.longest_silence.max(silence);
        }
        // Section 6.5: the hold timer (0: none).
        if !hold.is_zero() && silence > hold {
            return fail(
                seen,
                format!(
                    "hold timer expired: nothing from the receiver for {:.1} s (hold time {} s)",
                    silence.as_secs_f64(),
                    hold.as_secs()
                ),
            );
        }
        match sock.read(&mut chunk) {
            Ok(0) => return fail(seen, "the receiver closed the connection".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            // Our own shutdown at stop, or a reset by the receiver.
            Err(e) => return fail(seen, format!("reading from the receiver: {e}")),
        }
        while let Some(len) = whole_message(&buf) {
            let now = Instant::now();
            {
                let mut s = lock(seen);
                s.longest_silence = s.longest_silence.max(now - last_heard);
            }
            last_heard = now;
            if buf[18] == 3 {
                let text = match Message::decode(&buf[..len], &Codec::default()) {
                    Ok(Message::Notification(n)) => n.to_string(),
                    _ => format!("{:02x?}", &buf[..len]),
                };
                return fail(seen, format!("the receiver sent NOTIFICATION {text}"));
            }
            buf.drain(..len);
        }
    }
}

/// Length of the whole message at the start of `buf`, once it is all there.
fn whole_message(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]])).max(HEADER_LEN);
    (buf.len() >= len).then_some(len)
}

fn write_all(sock: &mut TcpStream, bytes: &[u8], timeout: Duration) -> Result<()> {
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| Error::io("write timeout", e))?;
    sock.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {} octets to the receiver", bytes.len()), e))
}

/// Reads one whole message before `deadline`.
fn read_message(sock: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>> {
    let mut msg = vec![0u8; HEADER_LEN];
    read_exact(sock, &mut msg, deadline)?;
    let len = usize::from(u16::from_be_bytes([msg[16], msg[17]]));
    if msg[..16].iter().any(|b| *b != 0xff) || len < HEADER_LEN {
        return Err(Error::Setup(format!(
            "the receiver sent a bad BGP header {msg:02x?}"
        )));
    }
    msg.resize(len, 0);
    read_exact(sock, &mut msg[HEADER_LEN..], deadline)?;
    Ok(msg)
}

fn read_exact(sock: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                what: "the receiver's OPEN and KEEPALIVE".into(),
                after: Duration::ZERO,
                last: format!("{got} of {} octets", buf.len()),
            });
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| Error::io("read timeout", e))?;
        match sock.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Error::Setup(
                    "the receiver closed the connection during the handshake".into(),
                ))
            }
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Error::io("reading the receiver's handshake", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_messages_are_found() {
        let ka = Message::Keepalive
            .encode(&Codec::default())
            .expect("encodes");
        assert_eq!(whole_message(&ka), Some(19));
        assert_eq!(whole_message(&ka[..18]), None);
        let mut two = ka.to_vec();
        two.extend_from_slice(&ka);
        assert_eq!(whole_message(&two), Some(19));
        // A length below the header's own is taken as a header, never 0.
        let mut bad = ka.to_vec();
        bad[16] = 0;
        bad[17] = 0;
        assert_eq!(whole_message(&bad), Some(19));
    }
}
