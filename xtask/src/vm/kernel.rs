//! The guest kernel: Debian's current `linux-image-*-amd64`, fetched with `apt-get download`,
//! unpacked, `depmod`-ed and cached under `target/vm/kernel/` by package version.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context};

use super::host::{is_root, run_captured};
use crate::util::{create_dir_all, find_program, TaskResult};

/// An unpacked kernel package.
pub struct Kernel {
    /// The package name and version, e.g. `linux-image-6.1.0-56-amd64 6.1.192-2`.
    pub package: String,
    /// The kernel release (`uname -r`), the directory name under lib/modules.
    pub release: String,
    /// The unpacked package: boot/, lib/modules/RELEASE/.
    pub root: PathBuf,
    /// What QEMU boots: the uncompressed vmlinux (faster under emulation) or the bzImage.
    pub boot_image: PathBuf,
    /// The package file itself (the installed-system scenario installs it with dpkg).
    pub deb: PathBuf,
}

impl Kernel {
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// What QEMU boots under OVMF: the bzImage. OVMF starts `-kernel` through the kernel's EFI
    /// stub, which the uncompressed vmlinux (an ELF file, not a PE image) does not have.
    pub fn efi_image(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }
}

const META_PACKAGE: &str = "linux-image-amd64";

/// The kernel to boot: `deb` if given, else the package `linux-image-amd64` points at now.
pub fn obtain(cache: &Path, deb: Option<&Path>) -> TaskResult<Kernel> {
    let debs = cache.join("debs");
    create_dir_all(&debs)?;
    let deb = match deb {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("--kernel-deb {}", path.display()))?,
        None => match resolve_current() {
            Ok((package, version)) => match download(&debs, &package, &version) {
                Ok(path) => path,
                Err(error) if is_root() => {
                    // The lists are older than the mirror: that version is gone.
                    eprintln!("vm: {error:#}; refreshing apt's lists");
                    run_captured(Command::new("apt-get").args(["update", "-qq"]))?;
                    let (package, version) = resolve_current()?;
                    download(&debs, &package, &version)?
                }
                Err(error) => return Err(error),
            },
            Err(error) => {
                // Offline, or apt's lists are gone: a cached kernel still does the job.
                let cached = newest_cached_deb(&debs).ok_or_else(|| {
                    anyhow!("{error:#}\n(no kernel package is cached in {} either; pass --kernel-deb PATH)", debs.display())
                })?;
                eprintln!(
                    "vm: {error:#}; using the cached {}",
                    cached.file_name().unwrap_or_default().to_string_lossy()
                );
                cached
            }
        },
    };
    unpack(cache, &deb)
}

/// The package `linux-image-amd64` depends on and its version, from apt's lists.
fn resolve_current() -> TaskResult<(String, String)> {
    let mut text =
        run_captured(Command::new("apt-cache").args(["show", "--no-all-versions", META_PACKAGE]));
    if text.as_ref().map_or(true, |t| t.trim().is_empty()) && is_root() {
        // Fresh machines have no lists yet.
        let _ = run_captured(Command::new("apt-get").args(["update", "-qq"]));
        text = run_captured(Command::new("apt-cache").args([
            "show",
            "--no-all-versions",
            META_PACKAGE,
        ]));
    }
    let text = text.with_context(|| format!("cannot resolve {META_PACKAGE}"))?;
    parse_depends(&text).with_context(|| {
        format!(
            "cannot find the kernel package in `apt-cache show {META_PACKAGE}`; run apt-get update"
        )
    })
}

/// `Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)` gives the name and version.
fn parse_depends(show: &str) -> Option<(String, String)> {
    let line = show.lines().find(|line| line.starts_with("Depends:"))?;
    line["Depends:".len()..].split(',').find_map(|item| {
        let item = item.trim();
        let (name, rest) = item.split_once(' ')?;
        if !name.starts_with("linux-image-") {
            return None;
        }
        let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
        Some((name.to_string(), version.to_string()))
    })
}

fn deb_file_name(package: &str, version: &str) -> String {
    // dpkg file names write an epoch's colon as %3a.
    format!("{package}_{}_amd64.deb", version.replace(':', "%3a"))
}

fn download(debs: &Path, package: &str, version: &str) -> TaskResult<PathBuf> {
    let path = debs.join(deb_file_name(package, version));
    if path.exists() {
        return Ok(path);
    }
    eprintln!("vm: downloading {package} {version}");
    let spec = format!("{package}={version}");
    run_captured(
        Command::new("apt-get")
            .arg("download")
            .arg(&spec)
            .current_dir(debs),
    )?;
    if path.exists() {
        Ok(path)
    } else {
        Err(anyhow!(
            "apt-get download {spec} did not produce {}",
            path.display()
        ))
    }
}

fn newest_cached_deb(debs: &Path) -> Option<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(debs)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .filter_map(|path| Some((fs::metadata(&path).ok()?.modified().ok()?, path)))
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

fn deb_field(deb: &Path, field: &str) -> TaskResult<String> {
    Ok(
        run_captured(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))?
            .trim()
            .to_string(),
    )
}

/// Unpacks `deb` into the cache (once per package version), runs depmod, and cuts the
/// uncompressed kernel out of the bzImage.
fn unpack(cache: &Path, deb: &Path) -> TaskResult<Kernel> {
    let package = deb_field(deb, "Package")?;
    let version = deb_field(deb, "Version")?;
    let dir = cache.join(format!("{package}_{}", version.replace(':', "_")));
    let done = dir.join(".unpacked");
    if !done.exists() {
        eprintln!("vm: unpacking {}", deb.display());
        let partial = cache.join(format!(".partial-{package}"));
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_dir_all(&dir);
        create_dir_all(&partial)?;
        run_captured(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial))?;
        let release = release_of(&partial)?;
        run_captured(Command::new("depmod").arg("-b").arg(&partial).arg(&release))?;
        let vmlinuz = partial.join("boot").join(format!("vmlinuz-{release}"));
        match extract_vmlinux(&vmlinuz, &partial.join("vmlinux")) {
            Ok(()) => {}
            Err(error) => eprintln!("vm: booting the compressed kernel ({error:#})"),
        }
        fs::write(partial.join(".unpacked"), format!("{package} {version}\n"))
            .with_context(|| format!("cannot write {}", partial.display()))?;
        fs::rename(&partial, &dir)
            .with_context(|| format!("cannot rename into {}", dir.display()))?;
    }
    let release = release_of(&dir)?;
    let vmlinux = dir.join("vmlinux");
    let boot_image = if vmlinux.exists() {
        vmlinux
    } else {
        dir.join("boot").join(format!("vmlinuz-{release}"))
    };
    Ok(Kernel {
        package: format!("{package} {version}"),
        release,
        root: dir,
        boot_image,
        deb: deb.to_path_buf(),
    })
}

fn release_of(root: &Path) -> TaskResult<String> {
    let modules = root.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .with_context(|| {
            format!(
                "cannot list {} (not a kernel image package?)",
                modules.display()
            )
        })?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(anyhow!(
            "expected one kernel release in {}, found {releases:?}",
            modules.display()
        )),
    }
}

/// Cuts the xz payload out of a bzImage (boot protocol 2.08+: `payload_offset` at 0x248,
/// `payload_length` at 0x24c, both relative to the protected-mode code after the setup
/// sectors) and decompresses it. Booting the ELF directly saves the in-guest decompression,
/// about 2 s under software emulation.
fn extract_vmlinux(bzimage: &Path, out: &Path) -> TaskResult {
    let data = fs::read(bzimage).with_context(|| format!("cannot read {}", bzimage.display()))?;
    let word = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let setup_sects = match data.get(0x1f1) {
        Some(0) | None => 4,
        Some(&n) => n as usize,
    };
    let (offset, length) = (
        word(0x248).context("short bzImage")?,
        word(0x24c).context("short bzImage")?,
    );
    let start = (setup_sects + 1) * 512 + offset;
    let payload = data
        .get(start..start + length)
        .context("bad payload bounds")?;
    if !payload.starts_with(b"\xfd7zXZ\0") {
        bail!("the payload is not xz-compressed");
    }
    let xz = find_program("xz").context("xz is not installed (apt-get install xz-utils)")?;
    let compressed = out.with_extension("xz");
    fs::write(&compressed, payload)
        .with_context(|| format!("cannot write {}", compressed.display()))?;
    let output = Command::new(xz)
        .args(["-dc", "--single-stream"])
        .arg(&compressed)
        .output()
        .context("xz")?;
    let _ = fs::remove_file(&compressed);
    if !output.status.success() || !output.stdout.starts_with(b"\x7fELF") {
        bail!(
            "xz could not unpack the kernel: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    fs::write(out, &output.stdout).with_context(|| format!("cannot write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_line_gives_package_and_version() {
        let show = "Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n";
        assert_eq!(
            parse_depends(show),
            Some(("linux-image-6.1.0-56-amd64".into(), "6.1.192-2".into()))
        );
        assert_eq!(parse_depends("Package: x\n"), None);
    }

    #[test]
    fn deb_names_escape_the_epoch() {
        assert_eq!(deb_file_name("a", "1:2-3"), "a_1%3a2-3_amd64.deb");
    }
}
