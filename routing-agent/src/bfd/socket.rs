//! The BFD task's sockets: the wildcard receive sockets on UDP 3784 that
//! report each packet's TTL or hop limit and the interface it came in on,
//! and each session's sending socket (TTL 255, source port 49152-65535).

use std::io;
use std::mem::{size_of, size_of_val, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::UdpSocket;

use starling_bgp::bfd::{SOURCE_PORTS, TTL};

use crate::socket_option;

/// A boolean socket option's "on".
const ON: libc::c_int = 1;

/// One datagram with its source, TTL or hop limit, and the index of the
/// interface it came in on.
pub(super) struct Received {
    pub payload: Vec<u8>,
    pub source: IpAddr,
    pub ttl: Option<u8>,
    pub ifindex: Option<u32>,
}

pub(super) async fn receive(socket: Option<&UdpSocket>) -> io::Result<Received> {
    let Some(s) = socket else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 512];
    let (n, source, ttl, ifindex) = s
        .async_io(Interest::READABLE, || {
            recv_with_ttl(s.as_raw_fd(), &mut buf)
        })
        .await?;
    Ok(Received {
        payload: buf[..n].to_vec(),
        source,
        ttl,
        ifindex,
    })
}

pub(super) fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The wildcard socket on `port` (3784) of one family, reporting each
/// packet's TTL (IP_RECVTTL) or hop limit (IPV6_RECVHOPLIMIT) and its
/// interface (IP_PKTINFO, IPV6_RECVPKTINFO); IPv6 only on the IPv6 one, so
/// both can be bound.
pub(super) fn receive_socket(v6: bool, port: u16) -> io::Result<UdpSocket> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd was just returned by socket(2) and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let rc = if v6 {
        socket_option::set(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &ON)?;
        socket_option::set(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &ON)?;
        socket_option::set(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &ON)?;
        // SAFETY: an all-zero sockaddr_in6 is valid; fields set below.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        // SAFETY: binding a valid fd to a sockaddr_in6 of the given size.
        unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    } else {
        socket_option::set(raw, libc::IPPROTO_IP, libc::IP_RECVTTL, &ON)?;
        socket_option::set(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, &ON)?;
        // SAFETY: an all-zero sockaddr_in is valid; fields set below.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        // SAFETY: binding a valid fd to a sockaddr_in of the given size.
        unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
    };
    check(rc)?;
    UdpSocket::from_std(StdUdpSocket::from(fd))
}

/// A sending socket bound to `local` and a free source port of 49152-65535
/// (RFC 5881 section 4), with TTL or hop limit 255 (section 5).
pub(super) fn source_socket(local: IpAddr, next_port: &mut u16) -> io::Result<StdUdpSocket> {
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..64 {
        let port = *next_port;
        *next_port = if port >= *SOURCE_PORTS.end() {
            *SOURCE_PORTS.start()
        } else {
            port + 1
        };
        match StdUdpSocket::bind(SocketAddr::new(local, port)) {
            Ok(s) => {
                if local.is_ipv4() {
                    s.set_ttl(u32::from(TTL))?;
                } else {
                    socket_option::set(
                        s.as_raw_fd(),
                        libc::IPPROTO_IPV6,
                        libc::IPV6_UNICAST_HOPS,
                        &libc::c_int::from(TTL),
                    )?;
                }
                s.set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// recvmsg(2) with the TTL or hop limit and the interface index from the
/// ancillary data.
fn recv_with_ttl(
    fd: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, IpAddr, Option<u8>, Option<u32>)> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for an int-sized control message and an in6_pktinfo one,
    // u64-aligned as cmsghdr wants.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: msg points at valid buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    let mut ifindex = None;
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled,
    // within msg_controllen; each payload is read as the type its level and
    // type say it is.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            } else if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                ifindex = u32::try_from(info.ipi_ifindex).ok();
            } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                ifindex = Some(info.ipi6_ifindex);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    // SAFETY: recvmsg wrote a sockaddr of the family it names (or left
    // zeros, which match neither family).
    let addr = unsafe { addr.assume_init() };
    let source = match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sa =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sa =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr))
        }
        _ => return Err(io::Error::other("datagram without a source address")),
    };
    Ok((n as usize, source, ttl, ifindex))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receive socket reports for datagrams sent over loopback from
    /// a session's sending socket: the payload, the source, the interface
    /// (lo), and TTL 255, or whatever TTL the sender set.
    #[tokio::test]
    async fn each_datagram_comes_with_its_ttl_or_hop_limit() {
        let families = [
            (false, IpAddr::from(Ipv4Addr::LOCALHOST)),
            (true, IpAddr::from(Ipv6Addr::LOCALHOST)),
        ];
        for (v6, lo) in families {
            let rx = match receive_socket(v6, 0) {
                Ok(s) => s,
                Err(e) if v6 => {
                    eprintln!("skipping IPv6: {e}");
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let to = SocketAddr::new(lo, rx.local_addr().unwrap().port());
            let mut port = *SOURCE_PORTS.start();
            let tx = source_socket(lo, &mut port).unwrap();
            let source_port = tx.local_addr().unwrap().port();
            assert!(SOURCE_PORTS.contains(&source_port), "{source_port}");
            tx.send_to(b"first", to).unwrap();
            let r = receive(Some(&rx)).await.unwrap();
            assert_eq!(r.payload, b"first");
            assert_eq!(r.source, lo);
            assert_eq!(r.ttl, Some(255));
            // Loopback is interface 1 in every namespace.
            assert_eq!(r.ifindex, Some(1));
            if v6 {
                socket_option::set(
                    tx.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_UNICAST_HOPS,
                    &7,
                )
                .unwrap();
            } else {
                tx.set_ttl(7).unwrap();
            }
            tx.send_to(b"second", to).unwrap();
            assert_eq!(receive(Some(&rx)).await.unwrap().ttl, Some(7));
        }
    }
}
