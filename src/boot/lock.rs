//! The binders' lock: two binders at once (a boot hook and a libvirt hook, two libvirt hooks)
//! must not undo each other's work, so `apply`, `bind` and `release` hold an exclusive
//! `flock` while they write.
//!
//! On the real /sys the lock is `/run/vfio-bind.lock`; on a fixture tree it is a file in the
//! tree's root, so tests on separate trees never contend and tests on one tree can. The wait
//! is bounded (polled with `LOCK_NB`), and giving up touches nothing. A `/run` that is
//! missing or read-only does not stop the binder: it works without the lock and says so.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::machine::sysfs::{PathBuffer, Sysfs};

/// The lock taken when working on the real /sys.
pub const RUN_LOCK: &str = "/run/vfio-bind.lock";
/// Its name in a fixture tree's root.
const FIXTURE_LOCK_NAME: &str = "vfio-bind.lock";
/// The longest wait for another binder to finish, within the run's own time limit.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The lock file for a sysfs root.
pub fn path_for(sysfs: &Sysfs) -> Result<PathBuffer, Errno> {
    if sysfs.is_real() {
        let mut path = PathBuffer::new();
        path.push_str(RUN_LOCK).map_err(|_| Errno::ENAMETOOLONG)?;
        Ok(path)
    } else {
        sysfs.path(format_args!("{FIXTURE_LOCK_NAME}"))
    }
}

/// The held lock. An `flock` belongs to the open file and ends when its last descriptor
/// closes: dropping this in the only process holding it unlocks.
pub struct Held(File);

impl Held {
    /// Closes this process's copy of a lock inherited across `fork`. It stays locked, as
    /// the supervisor still holds the open file: the lock lasts as long as the supervisor
    /// does, not as long as a worker that may be stuck in the kernel.
    pub fn leave_to_supervisor(self) {
        drop(self.0);
    }

    /// The open lock file's descriptor, for a forked process to close its inherited copy
    /// of (the give-back worker must never keep the lock).
    pub fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

/// Why there is no lock.
#[derive(Debug, PartialEq, Eq)]
pub enum NoLock {
    /// Another binder held it for the whole wait.
    Busy { waited: Duration },
    /// The file cannot be opened (no /run, read-only, ...): work without it.
    Unavailable(Errno),
}

/// Takes the lock at `path`, waiting at most `wait` for another holder to let go.
pub fn acquire(path: &str, wait: Duration) -> Result<Held, NoLock> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        // Never follow a link planted where the lock should be.
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|error| NoLock::Unavailable(Errno::from_raw(error.raw_os_error().unwrap_or(0))))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        // SAFETY: flock takes an open descriptor, which `file` owns, and a flag word.
        let result =
            unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
        match Errno::result(result) {
            Ok(_) => return Ok(Held(file)),
            Err(Errno::EWOULDBLOCK | Errno::EINTR) => {}
            Err(errno) => return Err(NoLock::Unavailable(errno)),
        }
        let waited = started.elapsed();
        if waited >= wait {
            return Err(NoLock::Busy { waited });
        }
        std::thread::sleep(pause.min(wait - waited));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
