//! A stand-in for /dev/kmsg in tests: a socket pair that keeps every write one record, as
//! the kernel does, so a test sees the logger's records and their boundaries.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

/// A SOCK_SEQPACKET pair: each write on one end arrives as one packet on the other, so
/// record boundaries are visible as they are to the kernel.
pub fn packet_pair() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors into `fds`, which we then own.
    let result = unsafe {
        nix::libc::socketpair(
            nix::libc::AF_UNIX,
            nix::libc::SOCK_SEQPACKET,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(result, 0);
    // SAFETY: both descriptors are fresh and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

pub fn packets(reader: &OwnedFd) -> Vec<String> {
    let mut packets = Vec::new();
    let mut buffer = [0u8; 2048];
    loop {
        // SAFETY: `buffer` is ours and `recv` writes at most its length into it.
        let length = unsafe {
            nix::libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(reader),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                nix::libc::MSG_DONTWAIT,
            )
        };
        if length <= 0 {
            return packets;
        }
        packets.push(String::from_utf8_lossy(&buffer[..length as usize]).into_owned());
    }
}
