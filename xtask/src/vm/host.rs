//! The host side: tools the VM test needs, named with the command that installs them, and
//! small process helpers (death signal, captured runs).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

use crate::util::{find_program, TaskResult};

/// A program the VM test runs (or a file it reads: a path), and the Debian package that
/// ships it.
#[derive(Clone, Copy)]
struct Tool {
    program: &'static str,
    package: &'static str,
}

const TOOLS: &[Tool] = &[
    Tool {
        program: "qemu-system-x86_64",
        package: "qemu-system-x86",
    },
    Tool {
        program: "dracut",
        package: "dracut-core",
    },
    Tool {
        program: "mkinitramfs",
        package: "initramfs-tools",
    },
    Tool {
        program: "busybox",
        package: "busybox-static",
    },
    Tool {
        program: "cpio",
        package: "cpio",
    },
    Tool {
        program: "dpkg-buildpackage",
        package: "dpkg-dev",
    },
    Tool {
        program: "depmod",
        package: "kmod",
    },
    Tool {
        program: "udevadm",
        package: "udev",
    },
    Tool {
        program: "systemctl",
        package: "systemd",
    },
    Tool {
        program: "dpkg-deb",
        package: "dpkg",
    },
    Tool {
        program: "apt-get",
        package: "apt",
    },
    // The installed-system scenario's disk: a Debian root file system, a partition table,
    // ext4 made from a directory, and an EFI system partition (FAT) with GRUB in it.
    Tool {
        program: "mmdebstrap",
        package: "mmdebstrap",
    },
    Tool {
        program: "sfdisk",
        package: "fdisk",
    },
    Tool {
        program: "mkfs.ext4",
        package: "e2fsprogs",
    },
    Tool {
        program: "mkfs.vfat",
        package: "dosfstools",
    },
    Tool {
        program: "mcopy",
        package: "mtools",
    },
    Tool {
        program: "grub-mkstandalone",
        package: "grub-common",
    },
];

/// Files the VM test reads, not programs, and the package that ships each: the UEFI
/// scenarios boot with OVMF.
const FILES: &[(&str, &str)] = &[
    (super::qemu::OVMF_PATH, "ovmf"),
    // GRUB's EFI modules, which grub-mkstandalone builds the installed system's loader from.
    ("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
];

/// Used when present: xz unpacks the kernel so that QEMU boots it without the in-guest
/// decompression (about 2 s per boot under emulation).
const OPTIONAL_TOOLS: &[Tool] = &[Tool {
    program: "xz",
    package: "xz-utils",
}];

/// The packages `.ci/run` and a developer install; printed in every "missing" message.
pub const APT_PACKAGES: &str =
    "qemu-system-x86 ovmf dracut-core initramfs-tools busybox-static cpio kmod udev systemd xz-utils mmdebstrap fdisk e2fsprogs dosfstools mtools grub-common grub-efi-amd64-bin";

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists()
}

/// Checks every host tool. Missing ones are named with the exact `apt-get install` line;
/// as root on Debian or Ubuntu they are installed right away.
pub fn ensure_tools() -> TaskResult {
    for tool in OPTIONAL_TOOLS {
        if find_program(tool.program).is_none() {
            eprintln!(
                "vm: {} is missing (apt-get install {}); booting the compressed kernel, slower",
                tool.program, tool.package
            );
        }
    }
    let missing: Vec<Tool> = TOOLS
        .iter()
        .filter(|tool| find_program(tool.program).is_none())
        .copied()
        .chain(
            FILES
                .iter()
                .filter(|(path, _)| !Path::new(path).exists())
                .map(|&(program, package)| Tool { program, package }),
        )
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|tool| tool.package).collect();
    packages.dedup();
    let names: Vec<&str> = missing.iter().map(|tool| tool.program).collect();
    let command = format!(
        "apt-get install --no-install-recommends {}",
        packages.join(" ")
    );
    if is_root() && is_debian_like() {
        eprintln!(
            "vm: missing {}; running: apt-get update && {command}",
            names.join(", ")
        );
        let update = Command::new("apt-get").arg("update").arg("-qq").status();
        let install = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        let ok = matches!(update, Ok(status) if status.success())
            && matches!(install, Ok(status) if status.success());
        let still: Vec<&str> = missing
            .iter()
            .filter(|tool| {
                find_program(tool.program).is_none() && !Path::new(tool.program).exists()
            })
            .map(|tool| tool.program)
            .collect();
        if ok && still.is_empty() {
            return Ok(());
        }
        bail!(
            "could not install {} (tried: {command}); the VM test needs: {APT_PACKAGES}",
            still.join(", ")
        );
    }
    Err(anyhow!(
        "missing host tools: {}. Install them with:\n    sudo {command}\n(the VM test needs: {APT_PACKAGES})",
        names.join(", ")
    ))
}

/// Runs a command, capturing stdout and stderr together; the error carries its output.
pub fn run_captured(command: &mut Command) -> TaskResult<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(anyhow!(
            "{command:?} failed ({}):\n{}",
            output.status,
            tail(&text, 40)
        ))
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Makes the child get SIGKILL when the thread that started it ends (the xtask exiting,
/// crashing or being killed), so no QEMU or image build outlives it.
pub fn die_with_parent(command: &mut Command) {
    use nix::sys::prctl::set_pdeathsig;
    use nix::sys::signal::Signal;
    use nix::unistd::{getpid, getppid};
    use std::os::unix::process::CommandExt;
    // SAFETY of the closure: it runs between fork and exec and calls only prctl and
    // getppid, which are async-signal-safe system calls.
    let parent = getpid();
    unsafe {
        command.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died before prctl took effect.
            if getppid() != parent {
                return Err(std::io::Error::other("the xtask exited"));
            }
            Ok(())
        });
    }
}
