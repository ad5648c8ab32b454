//! setsockopt(2) for a typed value: the BGP sessions' TCP options, the BFD
//! sockets' options and the kernel route socket's buffers all go through it
//! (and the MD5 integration test's client).

use std::io;
use std::os::fd::RawFd;

/// setsockopt(`fd`, `level`, `name`, `value`).
pub fn set<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed, and the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
