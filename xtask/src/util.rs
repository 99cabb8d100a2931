//! Small helpers shared by the tasks: where the project is, and running commands.

use std::path::PathBuf;
use std::process::Command;

/// The error type of every task: a sentence for the user.
pub type TaskResult<T = ()> = Result<T, String>;

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
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}
