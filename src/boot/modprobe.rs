//! Running `modprobe` with a deadline.
//!
//! A module whose init hangs, or a modprobe waiting on something that never comes, would
//! otherwise hold the binder (and the boot) for ever. Past its limit the modprobe is killed
//! and the caller gets [`ModuleError::TimedOut`], so that apply gives the cards back instead
//! of leaving them overridden with no driver.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boot::seconds::Seconds;

/// Why a module did not load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleError {
    NoModprobe,
    Failed(Option<i32>),
    /// It did not finish within this limit and was killed.
    TimedOut(Duration),
}

impl core::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ModuleError::NoModprobe => {
                f.write_str("no modprobe in /usr/sbin, /sbin, /usr/bin or /bin")
            }
            ModuleError::Failed(Some(code)) => write!(f, "exit status {code}"),
            ModuleError::Failed(None) => f.write_str("killed by a signal"),
            ModuleError::TimedOut(limit) => {
                write!(f, "did not finish in {} s; killed", Seconds(*limit))
            }
        }
    }
}

/// The longest one modprobe may take (cut shorter near the end of the run's own limit).
pub const MODPROBE_LIMIT: Duration = Duration::from_secs(5);
/// How long a killed modprobe is waited for, so it is not left a zombie when it dies at once.
const REAP_WAIT: Duration = Duration::from_millis(50);

/// Runs `program MODULE` and waits at most `limit` for it.
///
/// `program` is a parameter so that tests can stand a script in for modprobe. The module
/// name is one of the binder's own, never text from a rule.
pub fn run(program: &Path, module: &str, limit: Duration) -> Result<(), ModuleError> {
    let mut child = Command::new(program)
        .arg(module)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|_| ModuleError::NoModprobe)?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(ModuleError::Failed(status.code())),
            Ok(None) => {}
            Err(_) => return Err(ModuleError::Failed(None)),
        }
        let elapsed = started.elapsed();
        if elapsed >= limit {
            let _ = child.kill();
            // A modprobe stuck in the kernel (a module's init that never returns) cannot
            // die, and is not waited for.
            let killed = Instant::now();
            while killed.elapsed() < REAP_WAIT && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(1));
            }
            return Err(ModuleError::TimedOut(limit));
        }
        std::thread::sleep(pause.min(limit - elapsed));
        // modprobe usually takes milliseconds: look often at first, then less.
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
