//! `cargo xtask build`: the static, stripped release binary, as small as the toolchains
//! installed allow.
//!
//! With a nightly toolchain that has `rust-src` and the musl target, std is rebuilt with the
//! `immediate-abort` panic strategy (`-Z build-std`), which drops std's panic message and
//! backtrace machinery, and without unwind tables, which nothing then reads: about 322 KiB
//! instead of 728 KiB (docs/performance.md measures each option). A panic then aborts without
//! a message; the binder has no panicking path on its input. Otherwise the stable toolchain builds it: the musl target gives a fully static
//! binary. rust-toolchain.toml lists the target, but rustup adds a toolchain file's targets
//! only when it installs the toolchain, not to a stable one already there, so the build adds
//! it itself with `rustup target add` when it is missing, and says so. Without rustup (or
//! when the download fails), glibc with `crt-static` makes a static binary too (vfio-bind
//! uses no NSS or dlopen), at 1.25 MiB.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use argh::FromArgs;

use crate::util::{find_program, project_root, run_checked, TaskResult};

const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const GNU_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Position-dependent code: no relocations to apply at start-up and about 16 KiB less; ASLR
/// matters little for a process that lives a millisecond in the initramfs.
const STATIC_RELOCATION: &str = "-C relocation-model=static";
/// `immediate-abort` leaves nothing that unwinds or prints a backtrace, so the unwind tables
/// (`.eh_frame`, 63 KiB of the binary when std is rebuilt with them) would go unread. With a
/// std built without them (`build-std`), `force-unwind-tables=no` drops them all; on stable
/// the prebuilt std and its backtrace printer keep theirs, so this flag is for nightly only.
const SMALL_STD_FLAGS: &str =
    "-Z unstable-options -C panic=immediate-abort -C force-unwind-tables=no";

/// build the static release binary and print its path and size
#[derive(FromArgs)]
#[argh(subcommand, name = "build")]
pub struct BuildArgs {
    /// build with the stable toolchain even when nightly could make it smaller
    #[argh(switch)]
    stable: bool,
}

pub fn run(args: BuildArgs) -> TaskResult {
    let binary = build(!args.stable)?;
    let size = std::fs::metadata(&binary)
        .with_context(|| format!("cannot read {}", binary.display()))?
        .len();
    println!("{}", binary.display());
    println!("size: {size} bytes ({:.1} KiB)", size as f64 / 1024.0);
    Ok(())
}

/// Whether `rustup` lists `line` among a toolchain's installed components or targets.
fn rustup_lists(toolchain: &str, what: &[&str], line: &str) -> bool {
    Command::new("rustup")
        .args(
            ["+".to_string() + toolchain]
                .iter()
                .map(String::as_str)
                .chain(what.iter().copied()),
        )
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .any(|l| l.starts_with(line))
        })
}

/// The sysroot of the rustc this checkout uses (rust-toolchain.toml's, through rustup).
fn sysroot() -> Option<PathBuf> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(project_root())
        .output()
        .ok()?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !sysroot.is_empty()).then(|| PathBuf::from(sysroot))
}

/// Whether `sysroot` has the standard library for `target`.
fn target_installed(sysroot: &Path, target: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// Makes sure `sysroot` has the standard library for `target`: when it is missing and
/// `rustup` is given, runs `rustup target add TARGET` in `dir` (the checkout, where
/// rust-toolchain.toml picks the toolchain), saying so. Returns whether the target is there.
fn ensure_target(rustup: Option<&Path>, sysroot: &Path, target: &str, dir: &Path) -> bool {
    if target_installed(sysroot, target) {
        return true;
    }
    let Some(rustup) = rustup else {
        return false;
    };
    eprintln!("xtask: the {target} target is not installed; adding it: rustup target add {target}");
    let added = Command::new(rustup)
        .args(["target", "add", target])
        .current_dir(dir)
        .status()
        .is_ok_and(|status| status.success());
    added && target_installed(sysroot, target)
}

/// Whether rustup has a toolchain whose name starts with `name` (`nightly` for
/// `nightly-x86_64-unknown-linux-gnu`). Asked before any `rustup +nightly ...`, which may
/// install a missing toolchain.
fn has_toolchain(name: &str) -> bool {
    Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.starts_with(name))
        })
}

/// What rustup would add for the builds of `cargo xtask build`, as `rustup` arguments run in
/// the checkout: the musl target of the toolchain this checkout uses (the static binary),
/// and where a nightly toolchain is installed, its `rust-src` and musl target (the small
/// binary). Empty without rustup.
pub fn missing_rustup_pieces() -> Vec<Vec<&'static str>> {
    let mut pieces = Vec::new();
    if find_program("rustup").is_none() {
        return pieces;
    }
    if sysroot().is_some_and(|sysroot| !target_installed(&sysroot, MUSL_TARGET)) {
        pieces.push(vec!["target", "add", MUSL_TARGET]);
    }
    if has_toolchain("nightly") {
        if !rustup_lists("nightly", &["component", "list", "--installed"], "rust-src") {
            pieces.push(vec![
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]);
        }
        if !rustup_lists("nightly", &["target", "list", "--installed"], MUSL_TARGET) {
            pieces.push(vec!["target", "add", MUSL_TARGET, "--toolchain", "nightly"]);
        }
    }
    pieces
}

fn cargo_build(
    toolchain: Option<&str>,
    target: &str,
    rustflags: &str,
    extra: &[&str],
) -> TaskResult<PathBuf> {
    let root = project_root();
    let mut command = Command::new("cargo");
    if let Some(toolchain) = toolchain {
        command.arg(format!("+{toolchain}"));
    }
    command
        .current_dir(&root)
        // The outer `cargo xtask` sets these for the stable toolchain; a nested build with
        // another toolchain must find its own.
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO")
        .env("RUSTFLAGS", rustflags)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "vfio-bind",
            "--bin",
            "vfio-bind",
        ])
        .args(["--target", target])
        .args(extra);
    run_checked(&mut command)?;
    Ok(root
        .join("target")
        .join(target)
        .join("release")
        .join("vfio-bind"))
}

/// Builds the release binary statically linked and returns its path.
pub fn build_static_binary() -> TaskResult<PathBuf> {
    build(true)
}

fn build(small_if_possible: bool) -> TaskResult<PathBuf> {
    if small_if_possible {
        if rustup_lists("nightly", &["component", "list", "--installed"], "rust-src")
            && rustup_lists("nightly", &["target", "list", "--installed"], MUSL_TARGET)
        {
            let flags = format!("{SMALL_STD_FLAGS} {STATIC_RELOCATION}");
            match cargo_build(
                Some("nightly"),
                MUSL_TARGET,
                &flags,
                &["-Z", "build-std=std,panic_abort"],
            ) {
                Ok(binary) => return Ok(binary),
                Err(error) => eprintln!(
                    "xtask: the small nightly build failed ({error:#}); building with stable"
                ),
            }
        } else {
            eprintln!(
                "xtask: no nightly toolchain with rust-src and the {MUSL_TARGET} target, so the binary keeps std's \
                 panic machinery (about 728 KiB instead of 322 KiB); to get the small one: rustup toolchain install \
                 nightly --component rust-src --target {MUSL_TARGET}"
            );
        }
    }
    let musl = sysroot().is_some_and(|sysroot| {
        ensure_target(
            find_program("rustup").as_deref(),
            &sysroot,
            MUSL_TARGET,
            &project_root(),
        )
    });
    if musl {
        cargo_build(None, MUSL_TARGET, STATIC_RELOCATION, &[])
    } else {
        eprintln!("xtask: the {MUSL_TARGET} target is not installed and could not be added (rustup target add {MUSL_TARGET}); linking glibc statically (about 1.5 MiB instead of 728 KiB)");
        cargo_build(
            None,
            GNU_TARGET,
            &format!("-C target-feature=+crt-static {STATIC_RELOCATION}"),
            &[],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What rust-toolchain.toml sets, `key = value` lines of its [toolchain] table.
    fn toolchain_file() -> String {
        std::fs::read_to_string(project_root().join("rust-toolchain.toml")).unwrap()
    }

    #[test]
    fn the_toolchain_file_brings_the_musl_target_on_stable() {
        let file = toolchain_file();
        let value = |key: &str| {
            file.lines()
                .find_map(|line| line.strip_prefix(key)?.trim().strip_prefix('='))
                .map(str::trim)
                .unwrap_or_else(|| panic!("rust-toolchain.toml sets no {key}"))
                .to_string()
        };
        // A channel name, not a version: rustup uses the installed stable and never
        // downloads a toolchain for this checkout.
        assert_eq!(value("channel"), "\"stable\"");
        assert!(
            value("targets").contains(&format!("\"{MUSL_TARGET}\"")),
            "{file}"
        );
    }

    /// A stand-in for rustup that logs its arguments and, when `works`, installs the target
    /// it is asked for into `sysroot`, as `rustup target add` does.
    fn fake_rustup(dir: &Path, sysroot: &Path, works: bool) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let rustup = dir.join("rustup");
        let install = if works {
            format!("mkdir -p '{}/lib/rustlib/'\"$3\"/lib", sysroot.display())
        } else {
            "echo 'error: could not download' >&2; exit 1".to_string()
        };
        std::fs::write(
            &rustup,
            format!(
                "#!/bin/sh\necho \"$PWD: $*\" >>'{}/calls'\n{install}\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rustup, std::fs::Permissions::from_mode(0o755)).unwrap();
        rustup
    }

    #[test]
    fn a_missing_target_is_added_with_rustup_in_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let sysroot = dir.path().join("sysroot");
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(&checkout).unwrap();
        let rustup = fake_rustup(dir.path(), &sysroot, true);
        let calls = || std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();

        assert!(!target_installed(&sysroot, MUSL_TARGET));
        assert!(ensure_target(
            Some(&rustup),
            &sysroot,
            MUSL_TARGET,
            &checkout
        ));
        assert!(target_installed(&sysroot, MUSL_TARGET));
        let added = format!("{}: target add {MUSL_TARGET}\n", checkout.display());
        assert_eq!(calls(), added);
        // Once there, rustup is not asked again.
        assert!(ensure_target(
            Some(&rustup),
            &sysroot,
            MUSL_TARGET,
            &checkout
        ));
        assert_eq!(calls(), added);
    }

    #[test]
    fn without_rustup_or_when_it_fails_the_target_stays_missing() {
        let dir = tempfile::tempdir().unwrap();
        let sysroot = dir.path().join("sysroot");
        assert!(!ensure_target(None, &sysroot, MUSL_TARGET, dir.path()));
        let rustup = fake_rustup(dir.path(), &sysroot, false);
        assert!(!ensure_target(
            Some(&rustup),
            &sysroot,
            MUSL_TARGET,
            dir.path()
        ));
        assert!(std::fs::read_to_string(dir.path().join("calls"))
            .unwrap()
            .ends_with(&format!("target add {MUSL_TARGET}\n")));
    }
}
