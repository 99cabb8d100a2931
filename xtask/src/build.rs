//! `cargo xtask build`: the static, stripped release binary.
//!
//! The musl target gives a fully static binary; when it is not installed, glibc with
//! `crt-static` does too (vfio-bind uses no NSS or dlopen, the usual reasons that fails).

use std::path::PathBuf;
use std::process::Command;

use argh::FromArgs;

use crate::util::{project_root, run_checked, TaskResult};

const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const GNU_TARGET: &str = "x86_64-unknown-linux-gnu";

/// build the static release binary and print its path and size
#[derive(FromArgs)]
#[argh(subcommand, name = "build")]
pub struct BuildArgs {}

pub fn run(_args: BuildArgs) -> TaskResult {
    let binary = build_static_binary()?;
    let size = std::fs::metadata(&binary)
        .map_err(|error| format!("cannot read {}: {error}", binary.display()))?
        .len();
    println!("{}", binary.display());
    println!("size: {size} bytes ({:.1} KiB)", size as f64 / 1024.0);
    Ok(())
}

/// Whether rustc has the standard library for `target`.
fn target_installed(target: &str) -> bool {
    let Ok(output) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    PathBuf::from(sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// Builds the release binary statically linked and returns its path.
pub fn build_static_binary() -> TaskResult<PathBuf> {
    let root = project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(&root).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "vfio-bind",
        "--bin",
        "vfio-bind",
    ]);
    let target = if target_installed(MUSL_TARGET) {
        MUSL_TARGET
    } else {
        eprintln!("xtask: the {MUSL_TARGET} target is not installed (rustup target add {MUSL_TARGET}); linking glibc statically");
        command.env("RUSTFLAGS", "-C target-feature=+crt-static");
        GNU_TARGET
    };
    command.args(["--target", target]);
    run_checked(&mut command)?;
    Ok(root
        .join("target")
        .join(target)
        .join("release")
        .join("vfio-bind"))
}
