//! `vfio-bind check` as a passthrough doctor, through the binary, on a fixture sysfs and a
//! fixture host root (/proc, /lib/modules, /boot, /etc, the ESP and EFI variables).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sysfs_fixture::images::{compressed_by, efi_variable, newc, pe};
use sysfs_fixture::*;

mod common;

use common::{vfio_bind_on_fixture, write};

const RELEASE: &str = "6.1.0-57-amd64";
const SYSTEMD_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The guest card on vfio-pci, with no reset method, behind a VT-d unit without interrupt
/// remapping.
fn bound_card() -> SysfsTree {
    let tree = guest_card_after_boot("vfio-pci").unwrap();
    write(&tree.attribute("0000:07:00.0", "reset_method"), b"\n");
    write(&tree.attribute("0000:07:00.1", "reset_method"), b"flr\n");
    write(
        &tree.root().join("class/iommu/dmar0/intel-iommu/ecap"),
        b"f0210\n",
    );
    tree
}

/// A host whose initramfs was built before the rule in /etc/cmdline.d was added, with
/// vfio-pci as a module, booted by GRUB.
fn stale_host(host: &Path) {
    write(
        &host.join("proc/sys/kernel/osrelease"),
        format!("{RELEASE}\n").as_bytes(),
    );
    write(
        &host.join("proc/interrupts"),
        b"           CPU0\n 24:   1  IO-APIC   5-edge  ACPI:Ged\n 28:   0  PCI-MSI-0000:00:1f.2  0-edge  ahci\n",
    );
    let modules = host.join("lib/modules").join(RELEASE);
    write(
        &modules.join("modules.builtin"),
        b"kernel/drivers/vfio/vfio.ko\n",
    );
    write(
        &modules.join("modules.dep"),
        b"kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/vfio_iommu_type1.ko: kernel/drivers/vfio/vfio.ko\n",
    );
    let mut image = newc(&[("kernel/x86/microcode/AuthenticAMD.bin", 0o100644, b"u")]);
    image.extend(compressed_by(
        "gzip",
        &newc(&[
            ("usr/bin/vfio-bind", 0o100755, b"\x7fELF"),
            ("hooks/vfio-bind", 0o100644, b"run_earlyhook() { :; }"),
            (
                "etc/cmdline.d/vfio-bind.conf",
                0o100644,
                b"vfio.bind=1002:73ff@07:00\n",
            ),
        ]),
    ));
    // Arch's names: the image is found from GRUB's BOOT_IMAGE, not from the release.
    write(&host.join("boot/initramfs-linux.img"), &image);
    write(
        &host.join("proc/cmdline"),
        b"BOOT_IMAGE=/vmlinuz-linux root=/dev/sda2 rw vfio.bind=1002:73ff@07:00\n",
    );
    write(
        &host.join("etc/cmdline.d/vfio-bind.conf"),
        b"vfio.bind=1002:73ff@07:00,1002:ab28@07:00.1\n",
    );
}

/// [`bound_card`] with [`stale_host`] as its host root (`host` in the fixture).
fn bound_card_on_a_stale_host() -> (SysfsTree, PathBuf) {
    let tree = bound_card();
    let host = tree.root().join("host");
    stale_host(&host);
    (tree, host)
}

fn check(tree: &SysfsTree, host: &Path, cmdline: &str) -> Output {
    let no_fragments = host.join("no-such-dir");
    Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(["check", "--sysfs"])
        .arg(tree.root())
        .arg("--host-root")
        .arg(host)
        .args(["--cmdline", cmdline, "--cmdline-dir"])
        .arg(no_fragments)
        .output()
        .unwrap()
}

/// The EFI variables of a boot by systemd-boot and systemd-stub 256: StubInfo, and
/// LoaderEntrySelected naming `entry`.
fn booted_by_systemd_stub(tree: &SysfsTree, entry: &str) {
    let efivars = tree.root().join("firmware/efi/efivars");
    write(
        &efivars.join(format!("StubInfo-{SYSTEMD_GUID}")),
        &efi_variable("systemd-stub 256"),
    );
    write(
        &efivars.join(format!("LoaderEntrySelected-{SYSTEMD_GUID}")),
        &efi_variable(entry),
    );
}

#[test]
fn the_doctor_names_reset_interrupt_remapping_modules_and_a_stale_image() {
    let (tree, host) = bound_card_on_a_stale_host();
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().skip(3).collect();
    assert_eq!(
        lines,
        [
            "warning 0000:07:00.0: the kernel has no way to reset it between VM runs (its reset_method is empty): a second VM start may find it dead. Fix: a bus reset needs the card alone behind its bridge (then reset_method lists bus); for AMD cards the vendor-reset module adds one; otherwise reboot the host between VM runs",
            "PROBLEM interrupt remapping is off (a VT-d unit does not offer it (ecap bit 3 is clear)), so vfio_iommu_type1 refuses to assign devices to a VM. Fix: enable interrupt remapping in the firmware (it comes with VT-d/AMD-Vi; do not boot with intremap=off), or accept the risk with vfio_iommu_type1.allow_unsafe_interrupts=1",
            "ok      vfio-pci is a module of kernel 6.1.0-57-amd64",
            "ok      vfio_iommu_type1 is a module of kernel 6.1.0-57-amd64",
            "ok      the booted image /boot/initramfs-linux.img carries vfio-bind and its hook",
            "PROBLEM the rule 1002:ab28@0000:07:00.1 is in the host's /etc/cmdline.d/vfio-bind.conf but not in the booted image /boot/initramfs-linux.img: the image was built before it was added. Fix: rebuild the image (mkinitcpio -P, dracut -f, or update-initramfs -u) and reboot",
        ],
        "{stdout}"
    );
}

#[test]
fn the_doctor_finds_an_image_without_the_hook_and_vfio_missing() {
    let (tree, host) = bound_card_on_a_stale_host();
    write(
        &host.join("lib/modules").join(RELEASE).join("modules.dep"),
        b"kernel/drivers/gpu/drm/amd/amdgpu/amdgpu.ko:\n",
    );
    write(
        &host.join("boot/initramfs-linux.img"),
        &newc(&[("init", 0o100755, b"#!/bin/sh")]),
    );
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "PROBLEM vfio-pci is neither built into kernel 6.1.0-57-amd64 nor one of its modules"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("PROBLEM the booted image /boot/initramfs-linux.img has no /usr/bin/vfio-bind, so nothing binds at boot"), "{stdout}");
}

#[test]
fn the_doctor_reads_a_booted_unified_kernel_image() {
    let (tree, host) = bound_card_on_a_stale_host();
    booted_by_systemd_stub(&tree, "arch-linux.efi");
    let embedded = "root=/dev/nvme0n1p2 rw vfio.bind=1002:73ff@07:00";
    write(
        &host.join("efi/EFI/Linux/arch-linux.efi"),
        &pe(&[(b".cmdline", embedded.as_bytes())]),
    );
    write(
        &host.join("etc/kernel/cmdline"),
        b"root=/dev/nvme0n1p2 rw vfio.bind=1002:73ff@07:00,1002:ab28@07:00.1\n",
    );
    write(
        &host.join("proc/cmdline"),
        format!("{embedded}\n").as_bytes(),
    );
    let output = check(&tree, &host, embedded);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok      booted the unified kernel image /efi/EFI/Linux/arch-linux.efi; its embedded command line is the one in use, so edits at the boot menu or in a loader entry are ignored. Fix: keep rules in /etc/kernel/cmdline"), "{stdout}");
    assert!(stdout.contains("PROBLEM the rule 1002:ab28@0000:07:00.1 is in /etc/kernel/cmdline but not in the command line embedded in /efi/EFI/Linux/arch-linux.efi"), "{stdout}");
}

#[test]
fn without_a_host_root_a_fixture_check_reads_nothing_of_the_host() {
    let tree = bound_card();
    let output = vfio_bind_on_fixture(&["check"], &tree, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout,
        "ok      the IOMMU is on\n\
         ok      1002:73ff@0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci\n\
         ok      IOMMU group 17 is viable\n"
    );
}

#[test]
fn a_booted_unified_kernel_image_over_the_image_limit_is_too_large_to_read() {
    let (tree, host) = bound_card_on_a_stale_host();
    booted_by_systemd_stub(&tree, "huge.efi");
    // Sparse: 512 MiB and one byte, none of it written.
    let uki = host.join("efi/EFI/Linux/huge.efi");
    write(&uki, b"MZ");
    std::fs::File::options()
        .write(true)
        .open(&uki)
        .unwrap()
        .set_len((512 << 20) + 1)
        .unwrap();
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("warning booted the unified kernel image /efi/EFI/Linux/huge.efi, too large to read (over 512 MiB), so its embedded command line was not compared"), "{stdout}");
    assert!(!stdout.contains("no embedded command line"), "{stdout}");
}

#[test]
fn an_image_that_cannot_be_found_or_read_is_said_not_guessed() {
    let (tree, host) = bound_card_on_a_stale_host();
    // Garbage where the image should be.
    write(&host.join("boot/initramfs-linux.img"), b"not an initramfs");
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("warning the booted image /boot/initramfs-linux.img was read only in part (byte 0 starts neither a cpio archive nor a known compression (the kernel stops there too)), so what that part lacks is not judged"), "{stdout}");
    // /boot without any image the command line or the release names.
    std::fs::remove_file(host.join("boot/initramfs-linux.img")).unwrap();
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning cannot tell which initramfs booted"),
        "{stdout}"
    );
    // No /boot at all (a container, a fixture): nothing about the image.
    std::fs::remove_dir_all(host.join("boot")).unwrap();
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("initramfs"), "{stdout}");
    assert!(
        stdout.contains("vfio-pci is a module of kernel"),
        "{stdout}"
    );
}

/// A card of four functions (display, HDMI audio, USB-C, UCSI), all left on their native
/// drivers: one finding per rule and cause, naming the functions, not one per function.
#[test]
fn a_card_whose_functions_are_all_off_vfio_pci_gets_one_line_per_rule_and_cause() {
    let mut tree = SysfsTree::new().unwrap();
    for (function, device, class, driver) in [
        ("0", 0x73ff, CLASS_VGA, "amdgpu"),
        ("1", 0xab28, CLASS_AUDIO, "snd_hda_intel"),
        ("2", 0x73a6, CLASS_USB, "xhci_hcd"),
        ("3", 0x73a4, CLASS_SERIAL_BUS, "ucsi_ccg"),
    ] {
        tree.add(
            Function::new(&format!("0000:07:00.{function}"), 0x1002, device, class)
                .group(17)
                .driver(driver),
        )
        .unwrap();
    }
    let output = vfio_bind_on_fixture(&["check"], &tree, "vfio.bind=@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "ok      the IOMMU is on\n\
         PROBLEM @0000:07:00: 0000:07:00.0 (on amdgpu), 0000:07:00.1 (on snd_hda_intel), 0000:07:00.2 (on xhci_hcd), 0000:07:00.3 (on ucsi_ccg) are not on vfio-pci. Fix: check that the vfio-bind hook is in the initramfs and runs before the GPU driver (dmesg | grep vfio-bind), or run vfio-bind apply\n\
         PROBLEM IOMMU group 17 is not viable: 0000:07:00.0 (1002:73ff) is on amdgpu, 0000:07:00.1 (1002:ab28) is on snd_hda_intel, 0000:07:00.2 (1002:73a6) is on xhci_hcd, 0000:07:00.3 (1002:73a4) is on ucsi_ccg; the rules above select them, so the fix is theirs\n"
    );
}

/// Names read from EFI variables and file names under /boot reach the terminal escaped, as
/// the JSON output escapes them: an ESC in them must not drive the terminal.
#[test]
fn control_characters_in_names_from_the_host_are_escaped_in_text_output() {
    let (tree, host) = bound_card_on_a_stale_host();
    booted_by_systemd_stub(&tree, "evil\u{1b}]0;owned\u{7}.efi");
    write(&host.join("boot/\u{1b}[2Jinitrd.img"), b"not an image");
    let cmdline = "initrd=\\\u{1b}[2Jinitrd.img vfio.bind=1002:73ff@07:00";
    write(&host.join("proc/cmdline"), cmdline.as_bytes());
    let output = check(&tree, &host, "vfio.bind=1002:73ff@07:00");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{stdout:?}"
    );
    assert!(
        stdout.contains("(entry \"evil\\u001b]0;owned\\u0007.efi\")"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the booted image /boot/\\u001b[2Jinitrd.img"),
        "{stdout}"
    );
}

/// `check` on the stale host with `image` as its booted image, its memory capped at
/// 256 MiB of address space (prlimit), so that a run that unpacks a bomb into memory fails
/// instead of taking the machine's.
fn check_image_bounded(image: &[u8]) -> (Option<i32>, String) {
    let (tree, host) = bound_card_on_a_stale_host();
    write(&host.join("boot/initramfs-linux.img"), image);
    let output = Command::new("prlimit")
        .arg(format!("--as={}", 256 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(["check", "--sysfs"])
        .arg(tree.root())
        .arg("--host-root")
        .arg(&host)
        .args([
            "--cmdline",
            "vfio.bind=1002:73ff@07:00",
            "--cmdline-dir",
            "/nonexistent",
        ])
        .output()
        .expect("prlimit (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout)
}

/// The stale host's image parts, with the hook and its fragment in `extra`.
fn early_and_main() -> (Vec<u8>, Vec<u8>) {
    let early = newc(&[("kernel/x86/microcode/AuthenticAMD.bin", 0o100644, b"u")]);
    let main = newc(&[
        ("usr/bin/vfio-bind", 0o100755, b"\x7fELF"),
        (
            "etc/cmdline.d/vfio-bind.conf",
            0o100644,
            b"vfio.bind=1002:73ff@07:00,1002:ab28@07:00.1\n",
        ),
    ]);
    (early, main)
}

/// The kernel unpacks `gzip(main) + cpio(extra)` whole, and any number of archives: the
/// doctor reads what it reads (was: nothing after a compressed segment, and 16 archives
/// at most, judged as if they were the whole image).
#[test]
fn what_the_kernel_unpacks_after_a_compressed_segment_or_past_16_archives_is_read() {
    let (early, main) = early_and_main();
    let hook = newc(&[("hooks/vfio-bind", 0o100644, b"run_earlyhook() { :; }")]);
    let mut after_gzip = early.clone();
    after_gzip.extend(compressed_by("gzip", &main));
    after_gzip.extend(&hook);
    let mut many = early;
    for index in 0..20 {
        many.extend(newc(&[(
            Box::leak(format!("usr/lib/firmware/part{index}").into_boxed_str()),
            0o100644,
            b"firmware",
        )]));
    }
    many.extend(&main);
    many.extend(&hook);
    for image in [after_gzip, many] {
        let (status, stdout) = check_image_bounded(&image);
        assert!(
            stdout.contains(
                "ok      the booted image /boot/initramfs-linux.img carries vfio-bind and its hook"
            ),
            "{stdout}"
        );
        assert!(!stdout.contains("PROBLEM the booted image"), "{stdout}");
        assert!(!stdout.contains("PROBLEM the rule"), "{stdout}");
        assert_eq!(
            status,
            Some(1),
            "interrupt remapping is off there: {stdout}"
        );
    }
}

/// A gzip-of-gzip-of-gzip image of a few KiB that unpacks to 256 MiB (was: check grew to
/// that size). The kernel does not unpack a compressed segment inside another ("junk
/// within compressed archive"), so neither does the doctor.
#[test]
fn a_gzip_of_gzip_bomb_is_not_unpacked() {
    let bomb = Command::new("sh")
        .args([
            "-c",
            "head -c 268435456 /dev/zero | gzip -1 | gzip -9 | gzip -9",
        ])
        .output()
        .unwrap()
        .stdout;
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let (early, _) = early_and_main();
    let mut image = early;
    image.extend(bomb);
    let (status, stdout) = check_image_bounded(&image);
    assert!(stdout.contains("warning the booted image /boot/initramfs-linux.img was read only in part (byte 0 of what its Gzip-compressed part unpacks to is not a cpio archive (the kernel stops there too)), so what that part lacks is not judged"), "{stdout}");
    assert!(!stdout.contains("PROBLEM the booted image"), "{stdout}");
    assert_eq!(status, Some(1), "{stdout}");
}

/// A zstd frame of 40 KiB that unpacks to 1.25 GiB: read up to the 1 GiB limit as a
/// stream (the memory stays small), then "too large to read".
#[test]
fn an_image_that_unpacks_past_the_limit_is_too_large_to_read() {
    let (early, _) = early_and_main();
    let mut plain = newc(&[("usr/lib/firmware/huge", 0o100644, b"")]);
    // A file entry claiming 4 GiB of contents, which the RLE blocks supply.
    plain.truncate(plain.len() - 124);
    let size = format!("{:08x}", u32::MAX);
    plain[54..62].copy_from_slice(size.as_bytes());
    let mut bomb = sysfs_fixture::images::zstd_raw(&plain);
    // Not the last block: clear the flag, then append the RLE blocks.
    let header = 6;
    bomb[header] &= !1;
    bomb.extend(&sysfs_fixture::images::zstd_rle(b'A', 5 << 28)[6..]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let mut image = early;
    image.extend(bomb);
    let (status, stdout) = check_image_bounded(&image);
    assert!(stdout.contains("warning the booted image /boot/initramfs-linux.img was read only in part (too large to read: it unpacks to more than 1024 MiB), so what that part lacks is not judged"), "{stdout}");
    assert!(!stdout.contains("PROBLEM the booted image"), "{stdout}");
    assert_eq!(status, Some(1), "{stdout}");
}

/// Each compressed segment is a decompressor run: 100 of them (a few KiB) would be 100
/// processes. At most 64 are unpacked.
#[test]
fn an_image_of_many_compressed_segments_is_read_up_to_the_limit() {
    let (early, _) = early_and_main();
    let mut image = early;
    for _ in 0..100 {
        image.extend(sysfs_fixture::images::gzip_stored(&newc(&[])));
    }
    let (status, stdout) = check_image_bounded(&image);
    assert!(stdout.contains("warning the booted image /boot/initramfs-linux.img was read only in part (it has more than 64 compressed parts)"), "{stdout}");
    assert_eq!(status, Some(1), "{stdout}");
}
