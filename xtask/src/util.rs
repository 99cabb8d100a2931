//! Small helpers shared by the tasks: where the project is, and running commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context};

/// The result of every task and helper: an error says what was being done, with the cause
/// chain below it (`main` prints it as `what: why: root cause`).
pub type TaskResult<T = ()> = anyhow::Result<T>;

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs a command to completion, failing with its command line when it does not succeed.
pub fn run_checked(command: &mut Command) -> TaskResult {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!("{command:?} failed: {status}"))
    }
}

/// Directories searched after PATH: a non-root PATH often lacks the sbin ones, where
/// depmod, mkinitramfs and friends live.
const SBIN_DIRS: &str = "/usr/sbin:/sbin:/usr/bin:/bin";

/// The full path of the executable `program`, looked up on PATH, then in [`SBIN_DIRS`].
pub fn find_program(program: &str) -> Option<PathBuf> {
    which::which(program)
        .or_else(|_| which::which_in(program, Some(SBIN_DIRS), Path::new("/")))
        .ok()
}

/// Creates `dir` and its missing parents, failing with its path.
pub fn create_dir_all(dir: &Path) -> TaskResult {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// For a child between fork and exec (two system calls, no allocation): a mount namespace
/// of its own with every mount private, so what it mounts next is seen by it alone.
pub fn enter_private_mount_namespace() -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    const NONE: Option<&std::ffi::CStr> = None;
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        Some(c"none"),
        c"/",
        NONE,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        NONE,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main` prints (`{:#}`): what was being done, then why.
    #[test]
    fn a_failure_says_what_was_done_then_the_cause() {
        let error = run_checked(&mut Command::new("/nonexistent/program")).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "cannot start \"/nonexistent/program\": No such file or directory (os error 2)"
        );
        let error = run_checked(Command::new("sh").args(["-c", "exit 3"])).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "\"sh\" \"-c\" \"exit 3\" failed: exit status: 3"
        );
    }

    #[test]
    fn programs_are_found_with_their_full_path() {
        assert!(find_program("sh").is_some_and(|path| path.is_absolute()));
        assert_eq!(find_program("no-such-program-anywhere"), None);
    }
}
