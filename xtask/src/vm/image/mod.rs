//! Initramfs images, one per generator and init flavour, each built from the project's own
//! hook files (installed into a staging root) plus the test-only add-on that reports.

mod dracut;
mod initramfs_tools;
mod mkinitcpio;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::host::run_captured;
use super::kernel::Kernel;
use crate::util::{create_dir_all, TaskResult};

/// Which generator builds the image, in which init flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Generator {
    /// The xtask's image following mkinitcpio's busybox /init, HOOKS=(base vfio-bind udev ...).
    Mkinitcpio,
    /// A systemd initrd (dracut's, without the project's dracut module) carrying exactly
    /// what the mkinitcpio install hook adds (the unit and its sysinit.target.wants link).
    MkinitcpioSystemd,
    /// Debian's dracut, shell init (cmdline hook).
    Dracut,
    /// Debian's dracut with its systemd module (the unit).
    DracutSystemd,
    /// Debian's initramfs-tools (init-top script).
    InitramfsTools,
}

pub const ALL_GENERATORS: [Generator; 5] = [
    Generator::Mkinitcpio,
    Generator::MkinitcpioSystemd,
    Generator::Dracut,
    Generator::DracutSystemd,
    Generator::InitramfsTools,
];

impl Generator {
    pub fn name(self) -> &'static str {
        match self {
            Generator::Mkinitcpio => "mkinitcpio",
            Generator::MkinitcpioSystemd => "mkinitcpio-systemd",
            Generator::Dracut => "dracut",
            Generator::DracutSystemd => "dracut-systemd",
            Generator::InitramfsTools => "initramfs-tools",
        }
    }

    pub fn from_name(name: &str) -> Option<Generator> {
        ALL_GENERATORS.into_iter().find(|g| g.name() == name)
    }

    /// Kernel command-line words this image needs, including the early load of a GPU
    /// driver the way its users would ask for one, which the binder must beat.
    pub fn append(self) -> &'static str {
        match self {
            // MODULES=(bochs) in /config; /init loads it right after the early hooks.
            Generator::Mkinitcpio => "",
            // /etc/modules-load.d/MODULES.conf, as mkinitcpio's systemd hook writes it.
            Generator::MkinitcpioSystemd => {
                "root=LABEL=vfio-test-none rd.shell=0 rd.emergency=poweroff"
            }
            Generator::Dracut => {
                "root=LABEL=vfio-test-none rd.shell=0 rd.emergency=poweroff rd.driver.pre=bochs"
            }
            // And force_drivers+=" bochs " in the image's dracut.conf.d (rd.driver.pre= in its
            // /etc/cmdline.d, loaded by dracut-pre-udev.service).
            Generator::DracutSystemd => {
                "root=LABEL=vfio-test-none rd.shell=0 rd.emergency=poweroff rd.modules-load=bochs"
            }
            // The image's modules file lists bochs; /init loads it after init-top.
            Generator::InitramfsTools => "",
        }
    }
}

impl fmt::Display for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One image to build: a generator, and whether rules are baked in through the host's
/// /etc/cmdline.d/vfio-bind.conf (staged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageSpec {
    pub generator: Generator,
    pub baked: bool,
}

impl fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.baked {
            write!(f, "{}+baked", self.generator)
        } else {
            write!(f, "{}", self.generator)
        }
    }
}

/// GPU and audio drivers every image carries, as a real one would for these cards.
pub const DISPLAY_DRIVERS: [&str; 3] = ["bochs", "radeon", "snd-hda-intel"];
/// The driver each image loads early on purpose (MODULES=, rd.driver.pre=, ...).
pub const EARLY_DRIVER: &str = "bochs";

/// Everything an image build reads.
pub struct Inputs<'a> {
    pub kernel: &'a Kernel,
    /// Staging root from `cargo xtask install --destdir` (VFIO_BIND_ROOT for the hooks).
    pub stage: &'a Path,
    /// The same with /etc/cmdline.d/vfio-bind.conf added.
    pub stage_baked: &'a Path,
    /// The built reporter.
    pub reporter: &'a Path,
    /// xtask/guest.
    pub guest: &'a Path,
    /// target/vm/work.
    pub work: &'a Path,
}

impl Inputs<'_> {
    pub fn stage_for(&self, spec: ImageSpec) -> &Path {
        if spec.baked {
            self.stage_baked
        } else {
            self.stage
        }
    }
}

/// Work that all images of a kind share, done once before the parallel builds.
pub fn prepare(inputs: &Inputs, specs: &[ImageSpec]) -> TaskResult {
    if specs.iter().any(|spec| {
        matches!(
            spec.generator,
            Generator::Dracut | Generator::DracutSystemd | Generator::MkinitcpioSystemd
        )
    }) {
        dracut::prepare_base(inputs)?;
    }
    Ok(())
}

/// Builds one image; returns the initrd path.
pub fn build(inputs: &Inputs, spec: ImageSpec) -> TaskResult<PathBuf> {
    let dir = inputs.work.join(spec.to_string());
    let _ = fs::remove_dir_all(&dir);
    create_dir_all(&dir)?;
    let out = dir.join("initrd.img");
    let stage = inputs.stage_for(spec);
    match spec.generator {
        Generator::Mkinitcpio => mkinitcpio::build_busybox(inputs, stage, &dir, &out)?,
        Generator::MkinitcpioSystemd => mkinitcpio::build_systemd(inputs, stage, &dir, &out)?,
        Generator::Dracut => dracut::build(inputs, stage, &dir, &out, false, None)?,
        Generator::DracutSystemd => dracut::build(inputs, stage, &dir, &out, true, None)?,
        Generator::InitramfsTools => initramfs_tools::build(inputs, stage, &dir, &out)?,
    }
    if !out.exists() {
        bail!("{spec}: the generator produced no image");
    }
    Ok(out)
}

/// Copies a directory tree, keeping symlinks as they are.
pub fn copy_tree(from: &Path, to: &Path) -> TaskResult {
    run_captured(Command::new("cp").arg("-a").arg("-T").arg(from).arg(to)).map(|_| ())
}

/// Joins an absolute in-image path under `root`.
pub fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Copies `source` to `dest` inside `root` with `mode`, creating parents.
pub fn install_file(root: &Path, source: &Path, dest: &str, mode: u32) -> TaskResult {
    use std::os::unix::fs::PermissionsExt;
    let target = in_root(root, dest);
    if let Some(parent) = target.parent() {
        create_dir_all(parent)?;
    }
    let _ = fs::remove_file(&target);
    fs::copy(source, &target)
        .with_context(|| format!("copy {} -> {}", source.display(), target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", target.display()))
}

/// Makes `link` inside `root` point at `target` (replacing what was there).
pub fn install_symlink(root: &Path, link: &str, target: &str) -> TaskResult {
    let path = in_root(root, link);
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    let _ = fs::remove_file(&path);
    std::os::unix::fs::symlink(target, &path)
        .with_context(|| format!("cannot link {}", path.display()))
}

/// The shared libraries a dynamic binary needs, from ldd (none for a static one).
pub fn libraries_of(binary: &Path) -> TaskResult<Vec<PathBuf>> {
    let output = Command::new("ldd").arg(binary).output().context("ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut libraries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// Copies a binary to `dest` inside `root`, with the libraries it needs at their own
/// paths, as mkinitcpio's add_binary and dracut's inst_binary do.
pub fn install_binary(root: &Path, source: &Path, dest: &str) -> TaskResult {
    install_file(root, source, dest, 0o755)?;
    for library in libraries_of(source)? {
        let real = fs::canonicalize(&library).unwrap_or(library.clone());
        let dest = library.to_string_lossy().into_owned();
        if !in_root(root, &dest).exists() {
            install_file(root, &real, &dest, 0o755)?;
        }
    }
    Ok(())
}

/// The module files (with dependencies and softdeps) that loading `name` needs, as
/// paths relative to the kernel's modules directory; empty for a built-in module, `None`
/// when the kernel has no such module.
pub fn module_files(kernel: &Kernel, name: &str) -> TaskResult<Option<Vec<PathBuf>>> {
    let output = Command::new("modprobe")
        .arg("-d")
        .arg(&kernel.root)
        .arg("-S")
        .arg(&kernel.release)
        .arg("--show-depends")
        .arg(name)
        .output()
        .context("modprobe")?;
    if !output.status.success() {
        return Ok(None);
    }
    let modules_dir = kernel.modules_dir();
    let mut files = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(path) = line.strip_prefix("insmod ") else {
            continue;
        };
        let path = PathBuf::from(path.split_whitespace().next().unwrap_or(""));
        let relative = path
            .strip_prefix(&modules_dir)
            .with_context(|| {
                format!(
                    "modprobe gave {} outside {}",
                    path.display(),
                    modules_dir.display()
                )
            })?
            .to_path_buf();
        if !files.contains(&relative) {
            files.push(relative);
        }
    }
    Ok(Some(files))
}

/// Copies modules (and what they need) into `root`'s lib/modules/RELEASE and runs depmod
/// there. `names` ending in `?` are optional, as in mkinitcpio's add_module.
pub fn install_modules(kernel: &Kernel, root: &Path, names: &[String]) -> TaskResult {
    let dest_dir = root.join("usr/lib/modules").join(&kernel.release);
    create_dir_all(&dest_dir)?;
    let source_dir = kernel.modules_dir();
    for name in names {
        let (name, optional) = match name.strip_suffix('?') {
            Some(name) => (name, true),
            None => (name.as_str(), false),
        };
        match module_files(kernel, name)? {
            Some(files) => {
                for file in files {
                    let target = dest_dir.join(&file);
                    if let Some(parent) = target.parent() {
                        create_dir_all(parent)?;
                    }
                    fs::copy(source_dir.join(&file), &target)
                        .with_context(|| format!("cannot copy {}", target.display()))?;
                }
            }
            None if optional => {}
            None => bail!("module {name} not found for {}", kernel.release),
        }
    }
    for index in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let source = source_dir.join(index);
        if source.exists() {
            fs::copy(&source, dest_dir.join(index))
                .with_context(|| format!("cannot copy {}", source.display()))?;
        }
    }
    run_captured(
        Command::new("depmod")
            .arg("-b")
            .arg(root)
            .arg(&kernel.release),
    )
    .map(|_| ())
}
