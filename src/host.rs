//! What the doctor reads from the host: /proc, /lib/modules, /boot, /etc and EFI variables,
//! under an injected root (`/` on the running system, a fixture tree in tests), handed to
//! the pure checks of [`crate::doctor`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::address::PciAddress;
use crate::doctor::{self, Finding, InterruptRemapping, ResetMethod, Severity, UnifiedImage};
use crate::function::Function;
use crate::image::{self, Compression};
use crate::sysfs::{for_each_entry, read_attribute, Sysfs};

/// systemd's vendor GUID for the boot loader and stub EFI variables.
const SYSTEMD_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// The largest boot image read (initramfs images with firmware run to 100 MiB and more).
const IMAGE_LIMIT: u64 = 512 << 20;

/// The host's files under `root`.
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: &Path) -> Self {
        Host {
            root: root.to_path_buf(),
        }
    }

    /// The root the host's files are read under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    fn read_text(&self, relative: &str) -> Option<String> {
        std::fs::read(self.path(relative))
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The running kernel's release (`uname -r`).
    fn release(&self) -> Option<String> {
        Some(
            self.read_text("proc/sys/kernel/osrelease")?
                .trim()
                .to_string(),
        )
    }

    /// Every finding about the host, for `functions` (those the rules select and those on
    /// vfio-pci).
    pub fn findings(&self, sysfs: &Sysfs, functions: &[Function]) -> Vec<Finding> {
        let mut findings = Vec::new();
        let release = self.release();
        let reset_method_exists = release.as_deref().is_some_and(has_reset_method_attribute);
        for function in functions {
            let method = reset_method(sysfs, function.address);
            if method == ResetMethod::Absent && !reset_method_exists {
                continue;
            }
            findings.extend(doctor::reset(
                function.address,
                function.ids.map(|ids| ids.vendor()),
                &method,
            ));
        }
        findings.extend(doctor::interrupt_remapping(
            &self.interrupt_remapping(sysfs),
        ));
        if let Some(release) = &release {
            let modules = format!("lib/modules/{release}");
            findings.extend(doctor::vfio_modules(
                release,
                self.read_text(&format!("{modules}/modules.builtin"))
                    .as_deref(),
                self.read_text(&format!("{modules}/modules.dep")).as_deref(),
            ));
        }
        let cmdline = self.read_text("proc/cmdline").unwrap_or_default();
        findings.extend(self.booted_image(&cmdline, release.as_deref()));
        findings.extend(self.unified_image(sysfs, &cmdline));
        findings
    }

    fn interrupt_remapping(&self, sysfs: &Sysfs) -> InterruptRemapping {
        let mut seen = InterruptRemapping {
            remapped_chips: self.read_text("proc/interrupts").map(|text| {
                text.lines()
                    .filter(|line| line.split_whitespace().any(|word| word.starts_with("IR-")))
                    .count()
            }),
            allow_unsafe_interrupts: sysfs_text(
                sysfs,
                "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            )
            .map(|value| value.starts_with(['Y', 'y', '1'])),
            ..Default::default()
        };
        let Ok(units) = sysfs.path(format_args!("class/iommu")) else {
            return seen;
        };
        let mut names = Vec::new();
        let _ = for_each_entry(units.as_str(), |name| {
            names.push(String::from_utf8_lossy(name).into_owned())
        });
        for name in names {
            if let Some(ecap) = sysfs_text(sysfs, &format!("class/iommu/{name}/intel-iommu/ecap")) {
                let ecap =
                    u64::from_str_radix(ecap.trim().trim_start_matches("0x"), 16).unwrap_or(0);
                seen.intel_units_with_ir.push(ecap >> 3 & 1 == 1);
            } else if sysfs
                .path(format_args!("class/iommu/{name}/amd-iommu"))
                .is_ok_and(|path| Path::new(path.as_str()).exists())
            {
                seen.amd_units += 1;
            }
        }
        seen
    }

    /// The initramfs that booted: named by `initrd=` (EFI stub, systemd-boot) or derived
    /// from `BOOT_IMAGE=` (GRUB), else the distributions' names for the running release.
    fn booted_image_path(&self, cmdline: &str, release: Option<&str>) -> Option<PathBuf> {
        let mut candidates = Vec::new();
        for parameter in crate::cmdline::parameters(cmdline.as_bytes()) {
            let Some(value) = parameter.value.map(String::from_utf8_lossy) else {
                continue;
            };
            let value = value.as_ref();
            if parameter.is("initrd") {
                let relative = value.replace('\\', "/");
                for esp in ["efi", "boot", "boot/efi", ""] {
                    candidates.push(self.path(esp).join(relative.trim_start_matches('/')));
                }
            } else if parameter.is("BOOT_IMAGE") {
                // `(hd0,gpt2)/vmlinuz-linux` or `/boot/vmlinuz-6.1.0-57-amd64`.
                let kernel = value.rsplit('/').next().unwrap_or(value);
                if let Some(name) = kernel.strip_prefix("vmlinuz-") {
                    candidates.push(self.path(&format!("boot/initramfs-{name}.img")));
                    candidates.push(self.path(&format!("boot/initrd.img-{name}")));
                }
            }
        }
        if let Some(release) = release {
            candidates.push(self.path(&format!("boot/initrd.img-{release}")));
            candidates.push(self.path(&format!("boot/initramfs-{release}.img")));
        }
        candidates.into_iter().find(|path| path.is_file())
    }

    fn booted_image(&self, cmdline: &str, release: Option<&str>) -> Vec<Finding> {
        let Some(path) = self.booted_image_path(cmdline, release) else {
            if !self.path("boot").is_dir() {
                return Vec::new();
            }
            return vec![Finding::new(
                Severity::Warning,
                "initramfs",
                "cannot tell which initramfs booted (no initrd= or BOOT_IMAGE= match in /boot)",
            )
            .fix("check it by hand: lsinitcpio, lsinitrd or lsinitramfs IMAGE | grep vfio-bind")];
        };
        let shown = Path::new("/")
            .join(path.strip_prefix(&self.root).unwrap_or(&path))
            .display()
            .to_string();
        let read = std::fs::metadata(&path)
            .ok()
            .filter(|metadata| metadata.len() <= IMAGE_LIMIT)
            .and_then(|_| std::fs::read(&path).ok());
        let Some(bytes) = read else {
            return vec![Finding::new(
                Severity::Warning,
                "initramfs",
                format!("cannot read the booted image {shown} (run check as root)"),
            )];
        };
        match image::files(&bytes, &mut decompress) {
            Ok(files) => doctor::booted_image(&shown, &files, &self.host_fragments()),
            Err(error) => vec![Finding::new(
                Severity::Warning,
                "initramfs",
                format!("cannot read the booted image {shown}: {error}"),
            )
            .fix("install the decompressor, or check by hand with lsinitcpio, lsinitrd or lsinitramfs")],
        }
    }

    /// The host's `/etc/cmdline.d/*.conf` files, in name order.
    fn host_fragments(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.path("etc/cmdline.d"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "conf") && path.is_file())
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .collect()
    }

    /// When systemd-stub booted a unified kernel image: find it on the ESP from
    /// LoaderEntrySelected and compare its embedded command line.
    fn unified_image(&self, sysfs: &Sysfs, cmdline: &str) -> Vec<Finding> {
        let variable = |name: &str| -> Option<Vec<u8>> {
            let path = sysfs
                .path(format_args!("firmware/efi/efivars/{name}-{SYSTEMD_GUID}"))
                .ok()?;
            std::fs::read(path.as_str()).ok()
        };
        if variable("StubInfo").is_none() {
            return Vec::new();
        }
        let entry = variable("LoaderEntrySelected")
            .map(|bytes| efi_string(&bytes))
            .unwrap_or_default();
        let found = ["efi", "boot", "boot/efi"]
            .iter()
            .map(|esp| self.path(esp).join("EFI/Linux").join(&entry))
            .find(|path| !entry.is_empty() && path.is_file());
        let Some(path) = found else {
            return vec![Finding::new(
                Severity::Warning,
                "boot",
                format!("booted a unified kernel image (entry \"{entry}\") that is not in EFI/Linux on /efi, /boot or /boot/efi, so its embedded command line was not compared"),
            )];
        };
        let uki = UnifiedImage {
            path: Path::new("/")
                .join(path.strip_prefix(&self.root).unwrap_or(&path))
                .display()
                .to_string(),
            embedded: std::fs::read(&path)
                .ok()
                .and_then(|bytes| image::pe_cmdline(&bytes)),
        };
        doctor::unified_image(
            &uki,
            cmdline,
            self.read_text("etc/kernel/cmdline").as_deref(),
        )
    }
}

/// `reset_method` exists from Linux 5.15 on; before, its absence says nothing.
fn has_reset_method_attribute(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (5, 15)
}

fn reset_method(sysfs: &Sysfs, address: PciAddress) -> ResetMethod {
    match sysfs_text(sysfs, &format!("bus/pci/devices/{address}/reset_method")) {
        Some(methods) => ResetMethod::Methods(methods),
        None => ResetMethod::Absent,
    }
}

fn sysfs_text(sysfs: &Sysfs, relative: &str) -> Option<String> {
    let path = sysfs.path(format_args!("{relative}")).ok()?;
    let mut buffer = [0u8; 256];
    read_attribute(&path, &mut buffer).ok().map(str::to_string)
}

/// An EFI variable's value as text: 4 bytes of attributes, then UTF-16LE up to a NUL.
fn efi_string(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Decompresses with the system's own tool (`zstd -dcq`, `xz -dc`, ...). The compressed
/// bytes go in through a file and the output comes back through one, so neither side of a
/// pipe can fill while the other waits (and no thread is needed to feed it).
fn decompress(compression: Compression, bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let (program, argument) = compression.program();
    let scratch = |name: &str| -> Option<std::fs::File> {
        let fd =
            nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC).ok()?;
        Some(std::fs::File::from(fd))
    };
    let mut input = scratch("vfio-bind-image")?;
    input.write_all(bytes).ok()?;
    input.rewind().ok()?;
    let mut output = scratch("vfio-bind-image-out")?;
    // Its exit status says little: zstd and xz complain about the zero padding after the
    // archive and still write it whole. What it wrote is judged by the cpio reader.
    Command::new(program)
        .arg(argument)
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output.try_clone().ok()?))
        .stderr(Stdio::null())
        .status()
        .ok()?;
    output.rewind().ok()?;
    let mut plain = Vec::new();
    output.read_to_end(&mut plain).ok()?;
    // A trailing garbage warning still leaves the archive in the output.
    (!plain.is_empty()).then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_method_exists_from_5_15() {
        assert!(has_reset_method_attribute("6.1.0-57-amd64"));
        assert!(has_reset_method_attribute("5.15.0"));
        assert!(!has_reset_method_attribute("5.10.0-28-amd64"));
        assert!(!has_reset_method_attribute("garbage"));
    }

    #[test]
    fn efi_strings_are_utf16_after_the_attributes() {
        let mut bytes = vec![7, 0, 0, 0];
        for unit in "arch.efi".encode_utf16().chain([0, 0x41]) {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(efi_string(&bytes), "arch.efi");
        assert_eq!(efi_string(&[1, 2]), "");
    }

    #[test]
    fn the_system_gzip_decompresses_an_image() {
        let mut gzip = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip is part of every Debian system");
        let archive = sysfs_fixture::images::newc(&[("usr/bin/vfio-bind", 0o100755, b"x")]);
        gzip.stdin.take().unwrap().write_all(&archive).unwrap();
        let compressed = gzip.wait_with_output().unwrap().stdout;
        let files = crate::image::files(&compressed, &mut decompress).unwrap();
        assert_eq!(files[0].name, "usr/bin/vfio-bind");
    }
}
