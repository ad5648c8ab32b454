//! TCP socket options BGP sessions need: a user timeout so a dead peer is
//! noticed even while data sits unacknowledged, GTSM (RFC 5082), and TCP MD5
//! signatures (RFC 2385).

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::socket_option::set as setsockopt;

/// TCP_USER_TIMEOUT: give up on the connection when sent data stays
/// unacknowledged this long (MetalLB saw dead sessions linger 15 minutes
/// without it).
pub fn set_user_timeout(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let ms = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, &ms)
}

/// GTSM (RFC 5082 section 3): send with TTL 255 and accept only packets
/// whose TTL shows they came at most `hops` hops.
pub fn set_gtsm(fd: RawFd, family: IpAddr, hops: u8) -> io::Result<()> {
    let ttl: libc::c_int = 255;
    let min: libc::c_int = 256 - libc::c_int::from(hops.max(1));
    match family {
        IpAddr::V4(_) => {
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
        }
        IpAddr::V6(_) => {
            setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
            setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)
        }
    }
}

/// The kernel's `struct tcp_md5sig` (linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; 80],
}

/// The lengths a TCP MD5 key may have: the kernel's
/// `TCP_MD5SIG_MAXKEYLEN` is 80, and a key of 0 octets *removes* the key,
/// which would leave the session unsigned.
pub const MD5_KEY_LEN: std::ops::RangeInclusive<usize> = 1..=80;

/// TCP MD5 signatures (RFC 2385) with `peer`: sets the key (or removes it
/// with `None`). On an IPv6 socket an IPv4 peer is written as its
/// IPv4-mapped address, which the kernel turns into an IPv4 key. A key
/// outside [`MD5_KEY_LEN`] is an error, never a removal.
pub fn set_md5(fd: RawFd, socket_is_v6: bool, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = match key {
        Some(k) if !MD5_KEY_LEN.contains(&k.len()) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a TCP MD5 key is 1 to 80 octets, this one is {}", k.len()),
            ))
        }
        Some(k) => k,
        None => &[],
    };
    // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    write_addr(&mut sig.addr, socket_is_v6, peer);
    // At most 80 (checked above).
    sig.keylen = u16::try_from(key.len()).unwrap_or(0);
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

fn write_addr(storage: &mut libc::sockaddr_storage, socket_is_v6: bool, peer: IpAddr) {
    let v6 = match (socket_is_v6, peer) {
        (false, IpAddr::V4(a)) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // suitably aligned for it.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin) };
            return;
        }
        (_, IpAddr::V4(a)) => a.to_ipv6_mapped(),
        (_, IpAddr::V6(a)) => a,
    };
    let sin6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: v6.octets(),
        },
        sin6_scope_id: 0,
    };
    // SAFETY: as above, for sockaddr_in6.
    unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn options_apply_to_real_sockets() {
        let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_user_timeout(l4.as_raw_fd(), Duration::from_secs(9)).unwrap();
        set_gtsm(l4.as_raw_fd(), "127.0.0.1".parse().unwrap(), 1).unwrap();
        set_md5(
            l4.as_raw_fd(),
            false,
            "127.0.0.2".parse().unwrap(),
            Some(b"secret"),
        )
        .unwrap();
        set_md5(l4.as_raw_fd(), false, "127.0.0.2".parse().unwrap(), None).unwrap();
        if let Ok(l6) = std::net::TcpListener::bind("[::]:0") {
            set_md5(
                l6.as_raw_fd(),
                true,
                "10.0.0.1".parse().unwrap(),
                Some(b"secret"),
            )
            .unwrap();
            set_gtsm(l6.as_raw_fd(), "::1".parse().unwrap(), 2).unwrap();
        }
        // Too long, and empty: an empty key would remove the key and leave
        // the session unsigned.
        for bad in [&[0u8; 81][..], &[0; 90][..], &[][..]] {
            assert!(set_md5(
                l4.as_raw_fd(),
                false,
                "127.0.0.2".parse().unwrap(),
                Some(bad)
            )
            .is_err());
        }
    }
}
