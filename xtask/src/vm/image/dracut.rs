//! Images built by Debian's real dracut, with the project's module from the staging root.
//!
//! The host's /usr/lib/dracut is never touched: it is copied to target/vm/work/dracut-base,
//! the project's `90vfio-bind` and the test's `99vfio-test` are added to its modules.d, and
//! dracut is pointed at the copy with `dracutbasedir=` (dracut 059 looks for modules in
//! `$dracutbasedir/modules.d`). Host configuration is kept out with an empty --conf and
//! --confdir; the dracut-systemd image gets a --confdir of its own that forces the GPU
//! driver the way users do (`force_drivers+=`), which the binder's unit must come before.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use super::{copy_tree, Inputs, DISPLAY_DRIVERS, EARLY_DRIVER};
use crate::util::{create_dir_all, TaskResult};
use crate::vm::host::{die_with_parent, run_captured};

const HOST_DRACUT: &str = "/usr/lib/dracut";
const PROJECT_MODULE: &str = "usr/lib/dracut/modules.d/90vfio-bind";

fn base_dir(inputs: &Inputs) -> std::path::PathBuf {
    inputs.work.join("dracut-base")
}

/// The private dracut tree with the project's and the test's modules in it.
pub fn prepare_base(inputs: &Inputs) -> TaskResult {
    let base = base_dir(inputs);
    let _ = fs::remove_dir_all(&base);
    create_dir_all(inputs.work)?;
    copy_tree(Path::new(HOST_DRACUT), &base)?;
    let modules = base.join("modules.d");
    let project = inputs.stage.join(PROJECT_MODULE);
    if !project.join("module-setup.sh").exists() {
        bail!(
            "the project's dracut module is not in the staging root ({} is missing)",
            project.join("module-setup.sh").display()
        );
    }
    copy_tree(&project, &modules.join("90vfio-bind"))?;
    let test = modules.join("99vfio-test");
    copy_tree(&inputs.guest.join("dracut/99vfio-test"), &test)?;
    super::install_file(&test, inputs.reporter, "vfio-test-report", 0o755)?;
    create_dir_all(&inputs.work.join("dracut.conf.d"))?;
    fs::write(inputs.work.join("dracut.conf"), "")
        .with_context(|| format!("cannot write {}", inputs.work.display()))
}

/// Builds an image. `project_module`: include the project's dracut module (false for the
/// mkinitcpio-systemd image, which carries the mkinitcpio hook's files in `overlay`
/// instead, with `extra_drivers` its add_module calls).
pub fn build(
    inputs: &Inputs,
    stage: &Path,
    dir: &Path,
    out: &Path,
    systemd: bool,
    overlay: Option<(&Path, &[String])>,
) -> TaskResult {
    let mut modules = vec!["base", "kernel-modules", "udev-rules", "rootfs-block"];
    if systemd {
        modules.extend(["systemd", "systemd-initrd", "dracut-systemd"]);
    }
    if overlay.is_none() {
        modules.push("vfio-bind");
    }
    modules.push("vfio-test");
    // The generator's scratch space, removed when the build ends, however it ends.
    let tmp = tempfile::Builder::new()
        .prefix("tmp-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    // dracut writes force_drivers into the image's /etc/cmdline.d as rd.driver.pre=, which
    // in systemd mode dracut-pre-udev.service loads (dracut.sh, dracut-pre-udev.sh).
    let confdir = if systemd && overlay.is_none() {
        let confdir = dir.join("dracut.conf.d");
        create_dir_all(&confdir)?;
        let conf = confdir.join("50-force-gpu-driver.conf");
        fs::write(&conf, format!("force_drivers+=\" {EARLY_DRIVER} \"\n"))
            .with_context(|| format!("cannot create {}", conf.display()))?;
        confdir
    } else {
        inputs.work.join("dracut.conf.d")
    };
    let mut command = Command::new("dracut");
    command
        .env("dracutbasedir", base_dir(inputs))
        .env("VFIO_BIND_ROOT", stage)
        .arg("--conf")
        .arg(inputs.work.join("dracut.conf"))
        .arg("--confdir")
        .arg(&confdir)
        .arg("--tmpdir")
        .arg(tmp.path())
        .args([
            "--no-hostonly",
            "--no-hostonly-cmdline",
            "--no-compress",
            "--no-early-microcode",
        ])
        .args(["--force", "--kver"])
        .arg(&inputs.kernel.release)
        .arg("--kmoddir")
        .arg(inputs.kernel.modules_dir())
        .arg("--modules")
        .arg(modules.join(" "))
        .arg("--drivers")
        .arg(DISPLAY_DRIVERS.join(" "));
    if let Some((overlay, drivers)) = overlay {
        command
            .arg("--add-drivers")
            .arg(drivers.join(" "))
            .arg("--include")
            .arg(overlay)
            .arg("/");
    }
    command.arg(out);
    die_with_parent(&mut command);
    let log = run_captured(&mut command)?;
    let _ = fs::write(dir.join("build.log"), &log);
    Ok(())
}
