//! Images built by Debian's real initramfs-tools: `mkinitramfs -d CONFDIR`, with the
//! project's build hook and init-top script in CONFDIR's hooks/ and scripts/init-top/,
//! beside the test's add-on. Those files and the binary come from the Debian package,
//! unpacked beside the staging root (`stage::debian_root`): what a Debian user installs.
//!
//! mkinitramfs reads the kernel's modules from /lib/modules/RELEASE and its config from
//! /boot/config-RELEASE, fixed paths. So it runs in a private mount namespace in which the
//! unpacked kernel package is laid over /usr/lib and /boot (read-only overlays): the host's
//! own directories are never written, and the view ends with the process. This needs root.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use super::{copy_tree, install_file, Inputs, DISPLAY_DRIVERS, EARLY_DRIVER};
use crate::util::{create_dir_all, TaskResult};
use crate::vm::host::{die_with_parent, is_root, run_captured};

const PROJECT_DIR: &str = "usr/share/initramfs-tools";

pub fn build(inputs: &Inputs, stage: &Path, dir: &Path, out: &Path) -> TaskResult {
    let debian = crate::vm::stage::debian_root(stage);
    if !debian.join("usr/bin/vfio-bind").is_file() {
        bail!(
            "the Debian package is not unpacked in {} (the staging step does that)",
            debian.display()
        );
    }
    let stage = debian.as_path();
    if !is_root() {
        bail!("the initramfs-tools image needs root (mkinitramfs reads /lib/modules and /boot; the xtask lays the unpacked kernel over them in a private mount namespace)");
    }
    let conf = dir.join("conf");
    write_conf(inputs, stage, &conf)?;

    // The generator's scratch space, removed when the build ends, however it ends.
    let tmp = tempfile::Builder::new()
        .prefix("tmp-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    let mut command = Command::new("mkinitramfs");
    command
        .env("VFIO_BIND_ROOT", stage)
        .env("VFIO_TEST_REPORTER", inputs.reporter)
        .env("VFIO_TEST_DRIVERS", DISPLAY_DRIVERS.join(" "))
        .env("TMPDIR", tmp.path())
        .arg("-d")
        .arg(&conf)
        .arg("-o")
        .arg(out)
        .arg(&inputs.kernel.release);
    with_kernel_mounted(&mut command, &inputs.kernel.root)?;
    die_with_parent(&mut command);
    let log = run_captured(&mut command)?;
    let _ = fs::write(dir.join("build.log"), &log);
    Ok(())
}

/// mkinitramfs's configuration directory: initramfs.conf and modules, the project's
/// hooks and scripts as the install step laid them out, and the test's hook and script.
fn write_conf(inputs: &Inputs, stage: &Path, conf: &Path) -> TaskResult {
    for sub in [
        "conf.d",
        "hooks",
        "scripts/init-top",
        "scripts/init-premount",
    ] {
        create_dir_all(&conf.join(sub))?;
    }
    // MODULES=list: only what `modules` and the hooks name, like a host-only image. The
    // modules file is also what /init loads right after init-top: the early GPU driver.
    // The test's hook adds the other drivers of the emulated cards, for udev to load.
    fs::write(
        conf.join("initramfs.conf"),
        "MODULES=list\nBUSYBOX=auto\nCOMPRESS=zstd\nCOMPRESSLEVEL=1\nFSTYPE=auto\nRUNSIZE=10%\n",
    )
    .with_context(|| format!("cannot write {}", conf.display()))?;
    fs::write(conf.join("modules"), format!("{EARLY_DRIVER}\n"))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    // Whatever the install step put where initramfs-tools looks (hooks/, scripts/*/), under
    // the names it chose: mkinitramfs reads CONFDIR/hooks and CONFDIR/scripts the same way.
    let project = stage.join(PROJECT_DIR);
    let hooks = list_files(&project.join("hooks"));
    let init_top = list_files(&project.join("scripts/init-top"));
    if hooks.is_empty() || init_top.is_empty() {
        bail!(
            "the project's initramfs-tools files are not in the staging root (expected a build hook in {}/hooks and an init-top script in {}/scripts/init-top)",
            project.display(),
            project.display()
        );
    }
    copy_tree(&project.join("hooks"), &conf.join("hooks"))?;
    copy_tree(&project.join("scripts"), &conf.join("scripts"))?;
    let guest = inputs.guest.join("initramfs-tools");
    install_file(
        conf,
        &guest.join("hooks/vfio-test"),
        "hooks/vfio-test",
        0o755,
    )?;
    install_file(
        conf,
        &guest.join("scripts/init-premount/vfio-test"),
        "scripts/init-premount/vfio-test",
        0o755,
    )?;
    Ok(())
}

/// Runs `command` in a private mount namespace with `kernel_root/lib` over /usr/lib and
/// `kernel_root/boot` over /boot.
fn with_kernel_mounted(command: &mut Command, kernel_root: &Path) -> TaskResult {
    use crate::util::enter_private_mount_namespace;
    use nix::mount::{mount, MsFlags};

    if !Path::new("/boot").is_dir() {
        fs::create_dir("/boot").context("cannot create /boot")?;
    }
    let lib = kernel_root.join("lib");
    let boot = kernel_root.join("boot");
    for path in [&lib, &boot] {
        if path.as_os_str().as_bytes().contains(&b':')
            || path.as_os_str().as_bytes().contains(&b',')
        {
            bail!(
                "{}: overlayfs cannot take ':' or ',' in a path",
                path.display()
            );
        }
    }
    // Every string is made before the fork: between fork and exec nothing may allocate.
    let cstring = |text: String| CString::new(text).context("a path contains a NUL byte");
    let lib_options = cstring(format!("lowerdir={}:/usr/lib", lib.display()))?;
    let boot_options = cstring(format!("lowerdir={}:/boot", boot.display()))?;
    // SAFETY of the closure: between fork and exec it only makes system calls with
    // strings allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            enter_private_mount_namespace()?;
            mount(
                Some(c"overlay"),
                c"/usr/lib",
                Some(c"overlay"),
                MsFlags::MS_RDONLY,
                Some(lib_options.as_c_str()),
            )?;
            mount(
                Some(c"overlay"),
                c"/boot",
                Some(c"overlay"),
                MsFlags::MS_RDONLY,
                Some(boot_options.as_c_str()),
            )?;
            Ok(())
        });
    }
    Ok(())
}

fn list_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path())
                .filter(|path| path.is_file())
                .collect()
        })
        .unwrap_or_default()
}
