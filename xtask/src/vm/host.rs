//! The host side: tools the VM test needs, named with the command that installs them, and
//! small process helpers (death signal, captured runs).

use std::process::{Command, Stdio};

use anyhow::{anyhow, Context};

use crate::setup::Need;
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

/// Debian's `ovmf` package: a single image with code and variables, fine with `-bios`.
pub const OVMF_PATH: &str = "/usr/share/ovmf/OVMF.fd";

/// Files the VM test reads, not programs, and the package that ships each: the UEFI
/// scenarios boot with OVMF.
const FILES: &[(&str, &str)] = &[
    (OVMF_PATH, "ovmf"),
    // GRUB's EFI modules, which grub-mkstandalone builds the installed system's loader from.
    ("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
];

/// Used when present: xz unpacks the kernel so that QEMU boots it without the in-guest
/// decompression (about 2 s per boot under emulation).
const OPTIONAL_TOOLS: &[Tool] = &[Tool {
    program: "xz",
    package: "xz-utils",
}];

pub use crate::setup::is_root;

/// What the VM test needs: [`TOOLS`] and [`FILES`], as the setup module checks them.
pub fn needs() -> Vec<Need> {
    TOOLS
        .iter()
        .map(|tool| Need::program(tool.program, tool.package))
        .chain(
            FILES
                .iter()
                .map(|&(path, package)| Need::file(path, package)),
        )
        .collect()
}

/// Checks every host tool. As root on Debian or Ubuntu the missing ones are installed
/// right away; elsewhere they are named in one line with the command that installs them.
pub fn ensure_tools() -> TaskResult {
    for tool in OPTIONAL_TOOLS {
        if find_program(tool.program).is_none() {
            eprintln!(
                "vm: {} is missing (apt-get install {}); booting the compressed kernel, slower",
                tool.program, tool.package
            );
        }
    }
    crate::setup::ensure("the VM test", &needs())
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
