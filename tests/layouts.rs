//! `vfio-bind check` on host roots laid out as the distributions lay them out (docs/doctor.md
//! names the sources): where /boot, the ESP and the images are, what the boot loader puts on
//! the kernel command line, how each generator packs its image (early microcode cpio first,
//! then a compressed main archive). Each layout is checked healthy (no PROBLEM, exit 0), and
//! a broken twin of it gets the PROBLEM that names what is wrong. Through the binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sysfs_fixture::images::{compressed_by, efi_variable, newc, pe};
use sysfs_fixture::*;

mod common;

use common::write;

const SYSTEMD_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// The guest card's rule, as `vfio-bind rule 07:00` prints it.
const RULE: &str = "vfio.bind=1002:73ff@07:00";

/// A file of an image: (name, mode, contents).
type Entry = (&'static str, u32, &'static [u8]);

const BINARY: Entry = ("usr/bin/vfio-bind", 0o100755, b"\x7fELF");
const MKINITCPIO_HOOK: Entry = ("hooks/vfio-bind", 0o100644, b"run_earlyhook() { :; }");
const MKINITCPIO_UNIT: Entry = (
    "usr/lib/systemd/system/vfio-bind.service",
    0o100644,
    b"[Unit]",
);
const DRACUT_UNIT: Entry = MKINITCPIO_UNIT;
/// dracut-ng keeps its hooks under var/lib/dracut/hooks (dracut 059: usr/lib/dracut/hooks).
const DRACUT_NG_HOOK: Entry = (
    "var/lib/dracut/hooks/cmdline/00-vfio-bind.sh",
    0o100644,
    b"vfio-bind apply",
);
const INITRAMFS_TOOLS_HOOK: Entry = ("scripts/init-top/00-vfio-bind", 0o100755, b"#!/bin/sh");
const RULE_FRAGMENT: Entry = (
    "etc/cmdline.d/vfio-bind.conf",
    0o100644,
    b"vfio.bind=1002:73ff@07:00\n",
);

/// An early-microcode archive, uncompressed, as every generator puts first.
fn microcode(vendor: &str) -> Vec<u8> {
    let name: &'static str = match vendor {
        "AuthenticAMD" => "kernel/x86/microcode/AuthenticAMD.bin",
        _ => "kernel/x86/microcode/GenuineIntel.bin",
    };
    newc(&[
        ("kernel", 0o040755, b""),
        ("kernel/x86", 0o040755, b""),
        ("kernel/x86/microcode", 0o040755, b""),
        (name, 0o100644, b"microcode"),
    ])
}

/// The main archive: the generator's own files plus `entries`, compressed.
fn main_archive(program: &str, entries: &[Entry]) -> Vec<u8> {
    let mut files: Vec<Entry> = vec![
        ("init", 0o100755, b"#!/bin/sh"),
        ("usr/lib/modules", 0o040755, b""),
    ];
    files.extend_from_slice(entries);
    compressed_by(program, &newc(&files))
}

/// A machine after boot: the guest card on vfio-pci, resettable, behind an IOMMU with
/// interrupt remapping; the host root beside it with the running kernel's modules.
struct Machine {
    tree: SysfsTree,
    host: PathBuf,
    cmdline: String,
}

impl Machine {
    fn new(release: &str, modules: &str, cmdline: &str) -> Machine {
        let tree = guest_card_after_boot("vfio-pci").unwrap();
        for function in ["0000:07:00.0", "0000:07:00.1"] {
            write(&tree.attribute(function, "reset_method"), b"flr bus\n");
        }
        write(
            &tree.root().join("class/iommu/dmar0/intel-iommu/ecap"),
            b"f020df\n",
        );
        let host = tree.root().join("host");
        write(
            &host.join("proc/sys/kernel/osrelease"),
            format!("{release}\n").as_bytes(),
        );
        write(
            &host.join("proc/interrupts"),
            b"           CPU0\n 24:   1  IR-IO-APIC   5-edge  ACPI:Ged\n 28:   0  IR-PCI-MSI-0000:00:1f.2  0-edge  ahci\n",
        );
        let modules = host.join(modules).join(release);
        write(
            &modules.join("modules.builtin"),
            b"kernel/drivers/vfio/vfio.ko\n",
        );
        write(
            &modules.join("modules.dep"),
            b"kernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/vfio.ko.zst\nkernel/drivers/vfio/vfio_iommu_type1.ko.zst: kernel/drivers/vfio/vfio.ko.zst\n",
        );
        // /lib is /usr/lib on every one of these distributions.
        if modules.starts_with(host.join("usr")) {
            std::os::unix::fs::symlink("usr/lib", host.join("lib")).unwrap();
        }
        write(
            &host.join("proc/cmdline"),
            format!("{cmdline}\n").as_bytes(),
        );
        Machine {
            tree,
            host,
            cmdline: cmdline.to_string(),
        }
    }

    fn file(&self, path: &str, contents: &[u8]) -> &Self {
        write(&self.host.join(path), contents);
        self
    }

    /// systemd-boot (or systemd-stub) says what booted through EFI variables.
    fn efi_variable(&self, name: &str, value: &str) -> &Self {
        write(
            &self
                .tree
                .root()
                .join("firmware/efi/efivars")
                .join(format!("{name}-{SYSTEMD_GUID}")),
            &efi_variable(value),
        );
        self
    }

    /// The arguments of `vfio-bind check` as on that machine: its command line, its
    /// /etc/cmdline.d.
    fn check_arguments(&self) -> [OsString; 9] {
        [
            "check".into(),
            "--sysfs".into(),
            self.tree.root().into(),
            "--host-root".into(),
            self.host.clone().into(),
            "--cmdline".into(),
            self.cmdline.clone().into(),
            "--cmdline-dir".into(),
            self.host.join("etc/cmdline.d").into(),
        ]
    }

    /// `vfio-bind check` as on that machine.
    fn check(&self) -> (Option<i32>, String) {
        let output: Output = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
            .args(self.check_arguments())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

fn assert_healthy(machine: &Machine, says: &str) {
    let (status, stdout) = machine.check();
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
    assert!(stdout.contains(says), "wanted {says:?} in:\n{stdout}");
    assert_eq!(status, Some(0), "{stdout}");
}

fn assert_problem(machine: &Machine, problem: &str) {
    let (status, stdout) = machine.check();
    assert!(
        stdout.contains(&format!("PROBLEM {problem}")),
        "wanted PROBLEM {problem:?} in:\n{stdout}"
    );
    assert_eq!(status, Some(1), "{stdout}");
}

// ---- Arch Linux: GRUB --------------------------------------------------------------------

/// Arch with GRUB (wiki: GRUB, mkinitcpio): /boot holds vmlinuz-linux, initramfs-linux.img
/// (zstd, mkinitcpio's default) and the microcode images; GRUB's command line starts
/// `BOOT_IMAGE=/vmlinuz-linux` when /boot is its own partition. The rule is in
/// /etc/cmdline.d/vfio-bind.conf, which the hook copies into the image.
fn arch_grub(image: &[Entry]) -> Machine {
    let machine = Machine::new(
        "6.12.4-arch1-1",
        "usr/lib/modules",
        "BOOT_IMAGE=/vmlinuz-linux root=UUID=0a3407de-014b-458b-b5c1-848e92a327a3 rw loglevel=3 quiet",
    );
    let mut initramfs = microcode("GenuineIntel");
    initramfs.extend(main_archive("zstd", image));
    machine
        .file("boot/vmlinuz-linux", b"MZ")
        .file("boot/intel-ucode.img", &microcode("GenuineIntel"))
        .file("boot/initramfs-linux.img", &initramfs)
        .file("boot/initramfs-linux-fallback.img", b"")
        .file(
            "etc/cmdline.d/vfio-bind.conf",
            format!("{RULE}\n").as_bytes(),
        );
    machine
}

#[test]
fn arch_with_grub() {
    let healthy = arch_grub(&[BINARY, MKINITCPIO_HOOK, MKINITCPIO_UNIT, RULE_FRAGMENT]);
    assert_healthy(
        &healthy,
        "ok      the booted image /boot/initramfs-linux.img carries vfio-bind and its hook",
    );
    // The rule was added to /etc/cmdline.d after the image was built.
    let stale = arch_grub(&[BINARY, MKINITCPIO_HOOK, MKINITCPIO_UNIT]);
    assert_problem(&stale, "the rule 1002:73ff@0000:07:00 is in the host's /etc/cmdline.d/vfio-bind.conf but not in the booted image /boot/initramfs-linux.img: the image was built before it was added. Fix: rebuild the image");
}

// ---- Arch Linux: systemd-boot, type-1 entries with microcode ----------------------------

/// Arch with systemd-boot (wiki: systemd-boot, Microcode): the ESP at /boot, an entry
/// `loader/entries/arch.conf` with `initrd /intel-ucode.img` (or amd-ucode) before
/// `initrd /initramfs-linux.img`; systemd-boot passes them on as `initrd=\...` options,
/// and the kernel unpacks them as one image, microcode first. The rule is in the entry's
/// options.
fn arch_systemd_boot(ucode: &str, vendor: &str, image: &[Entry]) -> Machine {
    let cmdline = format!(
        "initrd=\\{ucode} initrd=\\initramfs-linux.img root=PARTUUID=5b2a4e4e-8e3f-4c43-9b4e-2f1e4c7d9a10 rw {RULE}"
    );
    let machine = Machine::new("6.12.4-arch1-1", "usr/lib/modules", &cmdline);
    machine
        .file(
            "boot/loader/entries/arch.conf",
            format!("title Arch Linux\nlinux /vmlinuz-linux\ninitrd /{ucode}\ninitrd /initramfs-linux.img\noptions root=PARTUUID=5b2a4e4e-8e3f-4c43-9b4e-2f1e4c7d9a10 rw {RULE}\n").as_bytes(),
        )
        .file("boot/vmlinuz-linux", b"MZ")
        .file(&format!("boot/{ucode}"), &microcode(vendor))
        .file("boot/initramfs-linux.img", &main_archive("zstd", image))
        .efi_variable("LoaderEntrySelected", "arch.conf");
    machine
}

#[test]
fn arch_with_systemd_boot_and_intel_microcode() {
    let healthy = arch_systemd_boot(
        "intel-ucode.img",
        "GenuineIntel",
        &[BINARY, MKINITCPIO_HOOK, MKINITCPIO_UNIT],
    );
    assert_healthy(&healthy, "ok      the booted image /boot/intel-ucode.img + /boot/initramfs-linux.img carries vfio-bind and its hook");
    // vfio-bind is not in HOOKS: the image has the binary (another hook added it) but
    // nothing runs it.
    let without_hook = arch_systemd_boot("intel-ucode.img", "GenuineIntel", &[BINARY]);
    assert_problem(&without_hook, "the booted image /boot/intel-ucode.img + /boot/initramfs-linux.img has /usr/bin/vfio-bind but no hook or unit that runs it");
}

#[test]
fn arch_with_systemd_boot_and_amd_microcode() {
    let healthy = arch_systemd_boot(
        "amd-ucode.img",
        "AuthenticAMD",
        &[BINARY, MKINITCPIO_HOOK, MKINITCPIO_UNIT],
    );
    assert_healthy(&healthy, "ok      the booted image /boot/amd-ucode.img + /boot/initramfs-linux.img carries vfio-bind and its hook");
    let without = arch_systemd_boot("amd-ucode.img", "AuthenticAMD", &[]);
    assert_problem(&without, "the booted image /boot/amd-ucode.img + /boot/initramfs-linux.img has no /usr/bin/vfio-bind, so nothing binds at boot");
}

// ---- Arch Linux: a unified kernel image from mkinitcpio's uki preset ----------------------

/// Arch with a UKI (wiki: Unified kernel image): the preset's `default_uki=` puts
/// /efi/EFI/Linux/arch-linux.efi on the ESP at /efi; with no /etc/kernel/cmdline, mkinitcpio
/// joins /etc/cmdline.d/*.conf into its .cmdline. systemd-boot finds it (type 2) and names
/// it in LoaderEntrySelected; systemd-stub sets StubInfo. /proc/cmdline is the .cmdline.
fn arch_uki(fragment: &str, built_from: &str) -> Machine {
    let embedded = format!("root=UUID=0a3407de-014b-458b-b5c1-848e92a327a3 rw quiet {built_from}");
    let machine = Machine::new("6.12.4-arch1-1", "usr/lib/modules", &embedded);
    let mut initramfs = microcode("AuthenticAMD");
    initramfs.extend(main_archive(
        "zstd",
        &[BINARY, MKINITCPIO_HOOK, MKINITCPIO_UNIT],
    ));
    let uki = pe(&[
        (b".osrel\0\0", b"NAME=\"Arch Linux\"\nID=arch\n"),
        (b".cmdline", format!("{embedded}\n\0").as_bytes()),
        (b".uname\0\0", b"6.12.4-arch1-1"),
        (b".linux\0\0", b"MZ"),
        (b".initrd\0", &initramfs),
    ]);
    machine
        .file("efi/EFI/Linux/arch-linux.efi", &uki)
        .file(
            "etc/cmdline.d/root.conf",
            b"root=UUID=0a3407de-014b-458b-b5c1-848e92a327a3 rw quiet\n",
        )
        .file(
            "etc/cmdline.d/10-gpu.conf",
            format!("{fragment}\n").as_bytes(),
        )
        .efi_variable("StubInfo", "systemd-stub 257.2-1-arch")
        .efi_variable("LoaderEntrySelected", "arch-linux.efi");
    machine
}

#[test]
fn arch_with_a_unified_kernel_image_from_mkinitcpio() {
    // The rule is in a fragment of its own, which no hook copies into the image, but the
    // UKI's .cmdline carries it: no advice to move it.
    let healthy = arch_uki(RULE, RULE);
    assert_healthy(&healthy, "ok      the booted image /efi/EFI/Linux/arch-linux.efi (its .initrd) carries vfio-bind and its hook");
    let (_, stdout) = healthy.check();
    assert!(!stdout.contains("move"), "{stdout}");
    // A second rule added to the fragment after the UKI was built.
    let stale = arch_uki(&format!("{RULE},1002:ab28@07:00.1"), RULE);
    assert_problem(&stale, "the rule 1002:ab28@0000:07:00.1 is in /etc/cmdline.d/10-gpu.conf but not on the command line embedded in the booted unified kernel image /efi/EFI/Linux/arch-linux.efi");
}

// ---- Fedora: GRUB with BLS entries, dracut -----------------------------------------------

const FEDORA_RELEASE: &str = "6.11.4-301.fc41.x86_64";
const MACHINE_ID: &str = "6a9857a393724b7a981ebb5b8495b9ea";

/// An image as dracut builds it on Fedora: an early cpio (the `early_cpio` marker and the
/// microcode), then the main archive, zstd-compressed, run by systemd.
fn dracut_image(entries: &[Entry]) -> Vec<u8> {
    let mut image = newc(&[
        ("early_cpio", 0o100644, b"1\n"),
        ("kernel", 0o040755, b""),
        ("kernel/x86", 0o040755, b""),
        ("kernel/x86/microcode", 0o040755, b""),
        (
            "kernel/x86/microcode/GenuineIntel.bin",
            0o100644,
            b"microcode",
        ),
    ]);
    let mut files = vec![("etc/initrd-release", 0o100644, b"NAME=Fedora\n" as &[u8])];
    files.extend_from_slice(entries);
    image.extend(main_archive("zstd", &files));
    image
}

/// Fedora (its docs: "Working with the GRUB 2 boot loader", BLS): /boot is its own ext4
/// partition holding vmlinuz-VERSION, initramfs-VERSION.img and loader/entries/
/// MACHINE-ID-VERSION.conf; the ESP is at /boot/efi. GRUB's command line starts
/// `BOOT_IMAGE=(hd0,gpt2)/vmlinuz-VERSION`.
fn fedora_grub(fragment_name: &str, image: &[Entry]) -> Machine {
    let machine = Machine::new(
        FEDORA_RELEASE,
        "usr/lib/modules",
        &format!("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-{FEDORA_RELEASE} root=UUID=9f2d6a6e-2d8a-4f0e-9d1e-3c1b2a4d5e6f ro rootflags=subvol=root rhgb quiet"),
    );
    machine
        .file(
            &format!("boot/loader/entries/{MACHINE_ID}-{FEDORA_RELEASE}.conf"),
            format!("title Fedora Linux ({FEDORA_RELEASE}) 41 (Workstation Edition)\nversion {FEDORA_RELEASE}\nlinux /vmlinuz-{FEDORA_RELEASE}\ninitrd /initramfs-{FEDORA_RELEASE}.img\noptions root=UUID=9f2d6a6e-2d8a-4f0e-9d1e-3c1b2a4d5e6f ro rootflags=subvol=root rhgb quiet\n").as_bytes(),
        )
        .file(&format!("boot/vmlinuz-{FEDORA_RELEASE}"), b"MZ")
        .file(&format!("boot/initramfs-{FEDORA_RELEASE}.img"), &dracut_image(image))
        .file("boot/efi/EFI/fedora/grubx64.efi", b"MZ")
        .file(&format!("etc/cmdline.d/{fragment_name}"), format!("{RULE}\n").as_bytes());
    machine
}

#[test]
fn fedora_with_grub_bls_and_dracut() {
    let healthy = fedora_grub(
        "vfio-bind.conf",
        &[BINARY, DRACUT_UNIT, DRACUT_NG_HOOK, RULE_FRAGMENT],
    );
    assert_healthy(&healthy, &format!("ok      the booted image /boot/initramfs-{FEDORA_RELEASE}.img carries vfio-bind and its hook"));
    // The rule in a fragment of another name: no hook copies it, so no rebuild helps.
    let elsewhere = fedora_grub("10-gpu.conf", &[BINARY, DRACUT_UNIT, DRACUT_NG_HOOK]);
    assert_problem(&elsewhere, "the rule 1002:73ff@0000:07:00 is in /etc/cmdline.d/10-gpu.conf, which no hook copies into the initramfs, and not on the kernel command line: nothing applies it at boot. Fix: move it to /etc/cmdline.d/vfio-bind.conf, which every hook copies");
}

/// dracut-ng's cmdline hook alone (a build without systemd) shows the hook: its path is
/// var/lib/dracut/hooks/, not dracut 059's usr/lib/dracut/hooks/.
#[test]
fn fedora_dracut_ng_hook_path_counts_as_the_hook() {
    let with_hook = fedora_grub("vfio-bind.conf", &[BINARY, DRACUT_NG_HOOK, RULE_FRAGMENT]);
    assert_healthy(&with_hook, "carries vfio-bind and its hook");
    let without = fedora_grub("vfio-bind.conf", &[BINARY, RULE_FRAGMENT]);
    assert_problem(&without, "the booted image");
}

// ---- Fedora: a unified kernel image installed by kernel-install ---------------------------

/// Fedora with `layout=uki` in /etc/kernel/install.conf: kernel-install puts
/// EFI/Linux/ENTRY-TOKEN-VERSION.efi on the ESP ($BOOT is /boot/efi when /boot is not
/// XBOOTLDR; the entry token is the machine ID), with the command line of
/// /etc/kernel/cmdline in its .cmdline and dracut's image in its .initrd.
fn fedora_uki(etc_kernel_cmdline: &str, built_from: &str) -> Machine {
    let embedded =
        format!("root=UUID=9f2d6a6e-2d8a-4f0e-9d1e-3c1b2a4d5e6f ro rhgb quiet {built_from}");
    let machine = Machine::new(FEDORA_RELEASE, "usr/lib/modules", &embedded);
    let name = format!("{MACHINE_ID}-{FEDORA_RELEASE}.efi");
    let uki = pe(&[
        (b".osrel\0\0", b"NAME=\"Fedora Linux\"\nID=fedora\n"),
        (b".cmdline", embedded.as_bytes()),
        (b".linux\0\0", b"MZ"),
        (
            b".initrd\0",
            &dracut_image(&[BINARY, DRACUT_UNIT, DRACUT_NG_HOOK]),
        ),
    ]);
    machine
        .file(&format!("boot/efi/EFI/Linux/{name}"), &uki)
        .file("etc/kernel/install.conf", b"layout=uki\n")
        .file(
            "etc/kernel/cmdline",
            format!("root=UUID=9f2d6a6e-2d8a-4f0e-9d1e-3c1b2a4d5e6f ro rhgb quiet {etc_kernel_cmdline}\n").as_bytes(),
        )
        .efi_variable("StubInfo", "systemd-stub 256.11-1.fc41")
        .efi_variable("LoaderEntrySelected", &name);
    machine
}

#[test]
fn fedora_with_a_unified_kernel_image_from_kernel_install() {
    let healthy = fedora_uki(RULE, RULE);
    assert_healthy(&healthy, &format!("ok      the booted image /boot/efi/EFI/Linux/{MACHINE_ID}-{FEDORA_RELEASE}.efi (its .initrd) carries vfio-bind and its hook"));
    let stale = fedora_uki(&format!("{RULE},1002:ab28@07:00.1"), RULE);
    assert_problem(&stale, &format!("the rule 1002:ab28@0000:07:00.1 is in /etc/kernel/cmdline but not in the command line embedded in /boot/efi/EFI/Linux/{MACHINE_ID}-{FEDORA_RELEASE}.efi"));
}

// ---- Debian and Ubuntu: GRUB, initramfs-tools ----------------------------------------------

/// Debian and Ubuntu (initramfs-tools(7), update-initramfs(8)): /boot holds
/// vmlinuz-VERSION and initrd.img-VERSION; GRUB's command line starts
/// `BOOT_IMAGE=/boot/vmlinuz-VERSION` (/boot on the root file system). The image is an
/// uncompressed early-microcode archive, then the main one, zstd (COMPRESS=zstd, the
/// default since Debian 12 and Ubuntu 21.10).
fn debian_like(release: &str, vendor: &str, fragment_name: &str, image: &[Entry]) -> Machine {
    let machine = Machine::new(
        release,
        "lib/modules",
        &format!("BOOT_IMAGE=/boot/vmlinuz-{release} root=UUID=2c6b9a0e-7d1f-4b43-a9c2-6f1e0d3b8a55 ro quiet"),
    );
    let mut initrd = microcode(vendor);
    initrd.extend(main_archive("zstd", image));
    machine
        .file(&format!("boot/vmlinuz-{release}"), b"MZ")
        .file(&format!("boot/initrd.img-{release}"), &initrd)
        .file("boot/grub/grub.cfg", b"")
        .file(
            &format!("etc/cmdline.d/{fragment_name}"),
            format!("{RULE}\n").as_bytes(),
        );
    machine
}

/// [`debian_like`] with the binary, the hook and the rule's fragment in its image and the
/// fragment in /etc/cmdline.d/vfio-bind.conf is healthy.
fn assert_debian_like_healthy(release: &str, vendor: &str) {
    let healthy = debian_like(
        release,
        vendor,
        "vfio-bind.conf",
        &[BINARY, INITRAMFS_TOOLS_HOOK, RULE_FRAGMENT],
    );
    assert_healthy(
        &healthy,
        &format!(
            "ok      the booted image /boot/initrd.img-{release} carries vfio-bind and its hook"
        ),
    );
}

#[test]
fn debian_with_grub_and_initramfs_tools() {
    let release = "6.1.0-57-amd64";
    assert_debian_like_healthy(release, "AuthenticAMD");
    // The package was installed after the image was built, and no rebuild followed.
    let before = debian_like(release, "AuthenticAMD", "vfio-bind.conf", &[]);
    assert_problem(&before, &format!("the booted image /boot/initrd.img-{release} has no /usr/bin/vfio-bind, so nothing binds at boot"));
}

#[test]
fn ubuntu_with_grub_and_initramfs_tools() {
    let release = "6.8.0-49-generic";
    assert_debian_like_healthy(release, "GenuineIntel");
    let elsewhere = debian_like(
        release,
        "GenuineIntel",
        "gpu.conf",
        &[BINARY, INITRAMFS_TOOLS_HOOK],
    );
    assert_problem(&elsewhere, "the rule 1002:73ff@0000:07:00 is in /etc/cmdline.d/gpu.conf, which no hook copies into the initramfs");
}

// ---- Proxmox VE: systemd-boot through proxmox-boot-tool -----------------------------------

/// Proxmox VE with ZFS on root under UEFI (its admin guide, "Host Bootloader"):
/// systemd-boot on ESPs that proxmox-boot-tool keeps unmounted, each kernel and image
/// copied there under EFI/proxmox/VERSION/ from /boot; the command line (from
/// /etc/kernel/cmdline) carries `initrd=\EFI\proxmox\VERSION\initrd.img-VERSION`.
fn proxmox(image: &[Entry]) -> Machine {
    let release = "6.8.12-4-pve";
    let machine = Machine::new(
        release,
        "lib/modules",
        &format!("initrd=\\EFI\\proxmox\\{release}\\initrd.img-{release} root=ZFS=rpool/ROOT/pve-1 boot=zfs {RULE}"),
    );
    let mut initrd = microcode("GenuineIntel");
    initrd.extend(main_archive("zstd", image));
    machine
        .file(&format!("boot/vmlinuz-{release}"), b"MZ")
        .file(&format!("boot/initrd.img-{release}"), &initrd)
        .file("boot/efi/.keep", b"")
        .file("etc/kernel/proxmox-boot-uuids", b"5A1B-2C3D\n")
        .file(
            "etc/kernel/cmdline",
            format!("root=ZFS=rpool/ROOT/pve-1 boot=zfs {RULE}\n").as_bytes(),
        )
        .efi_variable("LoaderEntrySelected", &format!("proxmox-{release}.conf"));
    machine
}

#[test]
fn proxmox_ve_with_proxmox_boot_tool() {
    let healthy = proxmox(&[BINARY, INITRAMFS_TOOLS_HOOK]);
    assert_healthy(
        &healthy,
        "ok      the booted image /boot/initrd.img-6.8.12-4-pve carries vfio-bind and its hook",
    );
    let (_, stdout) = healthy.check();
    assert!(
        stdout.contains("ok      the boot loader's initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve is on an ESP that is not mounted; read /boot/initrd.img-6.8.12-4-pve instead"),
        "{stdout}"
    );
    let without_hook = proxmox(&[BINARY]);
    assert_problem(&without_hook, "the booted image /boot/initrd.img-6.8.12-4-pve has /usr/bin/vfio-bind but no hook or unit that runs it");
}

// ---- /boot not mounted, or not readable ---------------------------------------------------

#[test]
fn with_boot_not_mounted_the_doctor_warns_and_finds_no_problem() {
    let machine = arch_grub(&[BINARY, MKINITCPIO_HOOK, RULE_FRAGMENT]);
    std::fs::remove_dir_all(machine.host.join("boot")).unwrap();
    std::fs::create_dir(machine.host.join("boot")).unwrap();
    assert_healthy(
        &machine,
        "warning cannot tell which initramfs booted (no initrd= or BOOT_IMAGE= match in /boot, and no image for the running release: is /boot mounted?)",
    );
}

/// Run as a user who cannot read the image (Fedora's /boot/efi is 0700, images are 0600
/// on several distributions): a warning, never a PROBLEM.
#[test]
fn with_an_image_it_cannot_read_the_doctor_warns_and_finds_no_problem() {
    use std::os::unix::fs::PermissionsExt as _;
    let machine = arch_grub(&[BINARY, MKINITCPIO_HOOK, RULE_FRAGMENT]);
    let image = machine.host.join("boot/initramfs-linux.img");
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600)).unwrap();
    // /proc/self belongs to the process's effective user.
    let as_root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    let output = if as_root {
        // As root, drop to nobody for the run, as a user would run it.
        let mut path = machine.tree.root().to_path_buf();
        while let Some(parent) = path.parent() {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            if parent == Path::new("/tmp") || parent == Path::new("/") {
                break;
            }
            path = parent.to_path_buf();
        }
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_vfio-bind"))
            .args(machine.check_arguments())
            .output()
            .expect("setpriv (util-linux)")
    } else {
        Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
            .args(machine.check_arguments())
            .output()
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning cannot read the booted image /boot/initramfs-linux.img"),
        "{stdout}"
    );
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
    assert_eq!(output.status.code(), Some(0), "{stdout}");
}

/// A unified kernel image without an .initrd (a signed kernel with systemd-stub), loaded
/// by a type-1 entry that gives it an `initrd`: the image the loader passed is read (was:
/// the UKI's missing .initrd read as an empty image, PROBLEM).
#[test]
fn a_unified_kernel_image_without_initrd_gets_the_loaders_image_read() {
    let cmdline = format!(
        "initrd=\\initramfs-linux.img root=UUID=0a3407de-014b-458b-b5c1-848e92a327a3 rw {RULE}"
    );
    let machine = Machine::new("6.12.4-arch1-1", "usr/lib/modules", &cmdline);
    machine
        .file(
            "efi/EFI/Linux/arch-linux.efi",
            &pe(&[(b".osrel\0\0", b"ID=arch\n"), (b".linux\0\0", b"MZ")]),
        )
        .file(
            "efi/initramfs-linux.img",
            &main_archive("zstd", &[BINARY, MKINITCPIO_HOOK]),
        )
        .efi_variable("StubInfo", "systemd-stub 257.2-1-arch")
        .efi_variable("LoaderEntrySelected", "arch-linux.efi");
    assert_healthy(
        &machine,
        "ok      the booted image /efi/initramfs-linux.img carries vfio-bind and its hook",
    );
}
