//! What goes into the images from this checkout: the static binary and the hook files,
//! installed into staging roots by `cargo xtask install --destdir`, and the test's reporter.
//! The initramfs-tools images are built from what the Debian package installs instead: the
//! package `packaging/debian` builds, unpacked with `dpkg-deb -x` into roots of their own
//! ([`debian_root`]), so that scenario boots what a Debian user would install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::host::run_captured;
use crate::util::{create_dir_all, project_root, TaskResult};

pub struct Staged {
    /// The install task's staging root (VFIO_BIND_ROOT for the generators' build hooks).
    pub stage: PathBuf,
    /// The same plus etc/cmdline.d/vfio-bind.conf, for images with rules baked in.
    pub stage_baked: PathBuf,
    pub reporter: PathBuf,
    /// The Debian package `packaging/debian` built (the installed-system scenario installs it).
    pub deb: PathBuf,
}

/// Installs the project (binary and hooks) twice, the second time with baked rules, unpacks
/// the Debian package beside each, and builds the reporter.
pub fn stage(vm_dir: &Path, baked_rules: &str) -> TaskResult<Staged> {
    let stage = vm_dir.join("stage");
    let stage_baked = vm_dir.join("stage-baked");
    for root in [&stage, &stage_baked] {
        install_into(root)?;
    }
    let deb = crate::packages::build_debian(&fresh(&vm_dir.join("debian"))?, &|command| {
        run_captured(command).map(drop)
    })
    .context("cannot build the Debian package for the initramfs-tools images")?;
    for root in [&stage, &stage_baked] {
        let unpacked = fresh(&debian_root(root))?;
        run_captured(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    for root in [stage_baked.clone(), debian_root(&stage_baked)] {
        let conf = root.join("etc/cmdline.d");
        create_dir_all(&conf)?;
        fs::write(conf.join("vfio-bind.conf"), format!("{baked_rules}\n"))
            .with_context(|| format!("cannot write {}", conf.display()))?;
    }
    let reporter = build_reporter(vm_dir)?;
    Ok(Staged {
        stage,
        stage_baked,
        reporter,
        deb,
    })
}

/// The root the Debian package was unpacked into, beside the staging root `stage` (and with
/// the same baked rules): `stage-debian` for `stage`.
pub fn debian_root(stage: &Path) -> PathBuf {
    let mut name = stage.file_name().unwrap_or_default().to_os_string();
    name.push("-debian");
    stage.with_file_name(name)
}

/// `dir`, emptied (created if missing).
fn fresh(dir: &Path) -> TaskResult<PathBuf> {
    let _ = fs::remove_dir_all(dir);
    create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

/// The rule baked into the +baked images' /etc/cmdline.d/vfio-bind.conf.
pub const BAKED_RULE: &str = "vfio.bind=1234:1111@00:05";

/// The default rules for baked images.
pub fn default_baked_rules() -> &'static str {
    BAKED_RULE
}

/// `cargo xtask install --destdir ROOT` (this very program), into a fresh directory.
fn install_into(root: &Path) -> TaskResult {
    let _ = fs::remove_dir_all(root);
    create_dir_all(root)?;
    let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
    run_captured(
        Command::new(xtask)
            .arg("install")
            .arg("--destdir")
            .arg(root)
            .current_dir(project_root()),
    )
    .with_context(|| format!("`cargo xtask install --destdir {}` failed", root.display()))?;
    let binary = root.join("usr/bin/vfio-bind");
    if !binary.exists() {
        bail!(
            "`cargo xtask install --destdir {}` did not install usr/bin/vfio-bind",
            root.display()
        );
    }
    Ok(())
}

/// Compiles xtask/guest/vfio-test-report.rs with plain rustc into a static binary.
fn build_reporter(vm_dir: &Path) -> TaskResult<PathBuf> {
    let source = project_root().join("xtask/guest/vfio-test-report.rs");
    let out = vm_dir.join("vfio-test-report");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let base = |command: &mut Command| {
        command
            .args([
                "--edition",
                "2021",
                "-C",
                "opt-level=s",
                "-C",
                "panic=abort",
            ])
            .args([
                "-C",
                "strip=symbols",
                "--crate-name",
                "vfio_test_report",
                "-o",
            ])
            .arg(&out)
            .arg(&source);
    };
    let mut musl = Command::new(&rustc);
    base(&mut musl);
    musl.args(["--target", "x86_64-unknown-linux-musl"]);
    if run_captured(&mut musl).is_err() {
        // No musl target: glibc, linked statically.
        let mut gnu = Command::new(&rustc);
        base(&mut gnu);
        gnu.args(["-C", "target-feature=+crt-static"]);
        run_captured(&mut gnu).context("cannot build the VM test's reporter")?;
    }
    Ok(out)
}
