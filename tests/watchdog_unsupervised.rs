//! When the supervisor cannot be set up (here: no descriptor left for its output pipes, as
//! in a libvirtd out of descriptors), the binder works in its one process, unsupervised.
//! It must keep the binders' lock while it works: a second binder for the same card must
//! wait, not go ahead at the same time.
//!
//! One test only, alone in this binary: it lowers the process's descriptor limit and uses
//! up every descriptor, which no other test running beside it may meet.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use sysfs_fixture::SysfsTree;
use vfio_bind::boot::watchdog;
use vfio_bind::machine::sysfs::Sysfs;

/// Whether another open of `path` can take its `flock` now (false: someone holds it).
fn lock_is_free(path: &std::path::Path) -> bool {
    let file = File::open(path).unwrap();
    // SAFETY: flock on a descriptor `file` owns.
    let taken =
        unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    taken == 0
}

#[test]
fn without_a_supervisor_the_binder_keeps_its_lock_while_it_works() {
    let tree = SysfsTree::new().unwrap();
    let sysfs = Sysfs::new(tree.root()).unwrap();
    let lock = tree.root().join("vfio-bind.lock");

    // A small descriptor limit, every descriptor used up but one: the lock file takes that
    // one, and the supervisor's output pipes get none.
    let limit = nix::libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    let mut before = limit;
    // SAFETY: getrlimit and setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(
            nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut before),
            0
        );
        let lowered = nix::libc::rlimit {
            rlim_cur: limit.rlim_cur,
            rlim_max: before.rlim_max,
        };
        assert_eq!(nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lowered), 0);
    }
    let null = File::open("/dev/null").unwrap();
    let mut fillers: Vec<OwnedFd> = Vec::new();
    while let Ok(copy) = null.try_clone() {
        fillers.push(copy.into());
    }
    drop(null);

    let mut held_while_working = None;
    let status = watchdog::bounded(
        &sysfs,
        true,
        false,
        Instant::now(),
        Duration::from_secs(5),
        &mut |_kernel| {
            // Room to look at the lock from a second open file.
            fillers.truncate(fillers.len().saturating_sub(4));
            held_while_working = Some(!lock_is_free(&lock));
            0
        },
    );
    drop(fillers);
    // SAFETY: as above.
    unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &before) };

    assert_eq!(status, 0, "it worked, in its one process");
    assert_eq!(
        held_while_working,
        Some(true),
        "the lock was let go before the work"
    );
    assert!(
        lock_is_free(&lock),
        "the lock is let go once the work is over"
    );
}
