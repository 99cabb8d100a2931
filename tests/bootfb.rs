//! The card that shows the console, on fixture trees with a simulated kernel: at boot its
//! firmware framebuffer is let go before vfio-pci takes it; at runtime `bind` lets go of
//! the framebuffer consoles too and `release` takes them back; a driver that will not let
//! go leaves everything as it was; `check` names every claim left in a vfio-pci BAR.

mod common;

use std::process::Command;
use std::time::Instant;

use common::{
    capture_log, captured, check_text, gathered_from, without_timing, Run, SimulatedKernel,
};
use nix::errno::Errno;
use sysfs_fixture::*;
use vfio_bind::boot::sources::Gathered;
use vfio_bind::machine::sysfs::{Attribute, Sysfs};

/// bochs-display: a display controller of class 0x0380, which vfio-pci does not clear of
/// firmware framebuffers itself.
const CLASS_OTHER_DISPLAY: u32 = 0x038000;
const BOOT: &str = "0000:00:02.0";
const TWIN: &str = "0000:00:03.0";

/// The line of the boot card's BAR0 and efifb's claim in it, as OVMF leaves them.
const BAR0: &str = "  80000000-80ffffff : 0000:00:02.0";
const EFIFB: &str = "    80000000-802fffff : efifb";

/// QEMU q35 under OVMF: the boot display (00:02.0, efifb in its BAR0) and its twin
/// (00:03.0), both bochs-display, each in its own IOMMU group.
fn uefi_twins(boot_driver: Option<&str>, twin_driver: Option<&str>) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    for (address, group, driver) in [(BOOT, 1, boot_driver), (TWIN, 2, twin_driver)] {
        let mut function = Function::new(address, 0x1234, 0x1111, CLASS_OTHER_DISPLAY).group(group);
        if let Some(driver) = driver {
            function = function.driver(driver);
        }
        tree.add(function).unwrap();
    }
    tree.set_iomem(&format!(
        "00000000-00000fff : Reserved\n\
         00001000-0009ffff : System RAM\n\
         80000000-afffffff : PCI Bus 0000:00\n\
         {BAR0}\n\
         \x20 81000000-81000fff : 0000:00:02.0\n\
         \x20 82000000-82ffffff : 0000:00:03.0\n\
         \x20 83000000-83000fff : 0000:00:03.0\n"
    ))
    .unwrap();
    tree.add_platform_framebuffer("efi-framebuffer.0", Some("efi-framebuffer"), BAR0, EFIFB)
        .unwrap();
    tree
}

fn sysfs_of(tree: &SysfsTree) -> Sysfs {
    Sysfs::new(tree.root())
        .unwrap()
        .with_iomem(&tree.iomem_path())
        .unwrap()
}

fn gathered(cmdline: &str, tree: &SysfsTree) -> Gathered {
    gathered_from(tree, cmdline)
}

/// `apply` (or `bind`: the same function) with the tree's iomem.
fn apply_with_iomem(kernel: &mut SimulatedKernel<'_>, cmdline: &str) -> Run {
    capture_log();
    let sysfs = sysfs_of(kernel.tree);
    let gathered = gathered(cmdline, kernel.tree);
    let status = vfio_bind::boot::apply::apply(&sysfs, &gathered, kernel, Instant::now(), None);
    Run {
        status,
        writes: std::mem::take(&mut kernel.writes),
        modules: std::mem::take(&mut kernel.modules_loaded),
        log: captured(),
    }
}

fn release_with_iomem(kernel: &mut SimulatedKernel<'_>, cmdline: &str) -> Run {
    capture_log();
    let sysfs = sysfs_of(kernel.tree);
    let gathered = gathered(cmdline, kernel.tree);
    let status = vfio_bind::boot::apply::release_rules(&sysfs, &gathered, kernel, Instant::now());
    Run {
        status,
        writes: std::mem::take(&mut kernel.writes),
        modules: std::mem::take(&mut kernel.modules_loaded),
        log: captured(),
    }
}

#[test]
fn at_boot_the_firmware_framebuffer_is_let_go_before_vfio_pci_takes_the_card() {
    let mut tree = uefi_twins(None, None);
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(
        run.writes,
        [
            "bus/platform/drivers/efi-framebuffer/unbind = efi-framebuffer.0",
            "bus/pci/devices/0000:00:02.0/driver_override = vfio-pci",
        ]
    );
    assert_eq!(
        without_timing(&run.log),
        [
            "info: released the boot console for 0000:00:02.0: efi-framebuffer.0",
            "info: 1234:1111@0000:00:02.0: 0000:00:02.0 on vfio-pci",
            "info: 1 of 1 rules applied, 1 functions on vfio-pci",
        ]
    );
    assert_eq!(tree.driver_of(BOOT).as_deref(), Some("vfio-pci"));
    assert_eq!(tree.platform_driver_of("efi-framebuffer.0"), None);
    assert!(!tree.iomem().contains("efifb"), "{}", tree.iomem());
}

#[test]
fn a_framebuffer_in_a_card_no_rule_selects_is_never_touched() {
    // The twin goes to vfio-pci; the boot display keeps its efifb and its console.
    let mut tree = uefi_twins(None, Some("bochs-drm"));
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:03.0");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert!(
        run.writes.iter().all(|w| !w.contains("platform")),
        "{:?}",
        run.writes
    );
    assert!(
        run.log.iter().all(|l| !l.contains("console")),
        "{:?}",
        run.log
    );
    assert_eq!(
        tree.platform_driver_of("efi-framebuffer.0").as_deref(),
        Some("efi-framebuffer")
    );
    assert!(tree.iomem().contains(EFIFB));
    assert_eq!(tree.driver_of(TWIN).as_deref(), Some("vfio-pci"));
}

#[test]
fn the_boot_display_of_two_twins_goes_while_the_other_keeps_its_driver() {
    let mut tree = uefi_twins(None, Some("bochs-drm"));
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(tree.driver_of(BOOT).as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of(TWIN).as_deref(), Some("bochs-drm"));
    assert!(!tree.iomem().contains("efifb"));
}

#[test]
fn when_the_card_is_not_handed_over_its_boot_console_is_given_back() {
    let mut tree = uefi_twins(None, None);
    let mut kernel = SimulatedKernel::new(&mut tree);
    kernel.failing.push((
        Attribute::DriverOverride(BOOT.parse().unwrap()),
        Errno::EACCES,
    ));
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(run.status, 1, "{:?}", run.log);
    assert_eq!(
        tree.platform_driver_of("efi-framebuffer.0").as_deref(),
        Some("efi-framebuffer")
    );
    assert!(tree.iomem().contains(EFIFB), "{}", tree.iomem());
    assert!(
        run.log.iter().any(|l| l
            == "warning: 0000:00:02.0: not handed over, so the console was given back (efi-framebuffer.0)"),
        "{:?}",
        run.log
    );
}

#[test]
fn sysfbs_bootfb_cannot_be_unbound_and_apply_says_what_to_boot_with() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new(BOOT, 0x1234, 0x1111, CLASS_OTHER_DISPLAY).group(1))
        .unwrap();
    tree.set_iomem(&format!(
        "80000000-afffffff : PCI Bus 0000:00\n{BAR0}\n    80000000-802fffff : BOOTFB\n      80000000-802fffff : simpledrm\n"
    ))
    .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert!(run.writes.iter().all(|w| !w.contains("platform")));
    assert!(
        run.log.iter().any(|l| l.starts_with(
            "warning: 0000:00:02.0: the kernel's boot framebuffer (BOOTFB at 80000000-802fffff"
        ) && l.ends_with("boot with initcall_blacklist=sysfb_init")),
        "{:?}",
        run.log
    );
}

/// A running desktop: the boot display on bochs-drm, whose framebuffer fb0 carries the
/// framebuffer console (vtcon1); vtcon0 is the dummy console.
fn desktop_on_the_boot_display(driver: &str) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(
        Function::new(BOOT, 0x1234, 0x1111, CLASS_OTHER_DISPLAY)
            .group(1)
            .driver(driver),
    )
    .unwrap();
    tree.add_graphics_framebuffer(0, BOOT)
        .unwrap()
        .add_vtconsole(0, "(S) dummy device", false)
        .unwrap()
        .add_vtconsole(1, "(M) frame buffer device", true)
        .unwrap();
    tree.set_iomem(&format!(
        "80000000-afffffff : PCI Bus 0000:00\n{BAR0}\n    80000000-80ffffff : {driver}\n"
    ))
    .unwrap();
    tree
}

#[test]
fn runtime_bind_lets_go_of_the_console_and_release_takes_it_back_twice() {
    let mut tree = desktop_on_the_boot_display("bochs-drm");
    let mut kernel = SimulatedKernel::new(&mut tree).native(BOOT, "bochs-drm");
    for round in 0..2 {
        let bound = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
        assert_eq!(bound.status, 0, "round {round}: {:?}", bound.log);
        assert_eq!(
            bound.writes[..3],
            [
                "class/vtconsole/vtcon1/bind = 0",
                "bus/pci/devices/0000:00:02.0/driver_override = vfio-pci",
                "bus/pci/devices/0000:00:02.0/driver/unbind = 0000:00:02.0",
            ],
            "round {round}"
        );
        assert!(
            bound
                .log
                .contains(&"info: released the boot console for 0000:00:02.0: vtcon1".to_string()),
            "{:?}",
            bound.log
        );
        assert!(!kernel.tree.vtconsole_bound(1));
        assert_eq!(kernel.tree.driver_of(BOOT).as_deref(), Some("vfio-pci"));

        let released = release_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
        assert_eq!(released.status, 0, "round {round}: {:?}", released.log);
        assert_eq!(kernel.tree.driver_of(BOOT).as_deref(), Some("bochs-drm"));
        assert!(kernel.tree.vtconsole_bound(1), "round {round}");
        assert!(
            !kernel.tree.vtconsole_bound(0),
            "the dummy console was touched"
        );
        assert_eq!(
            without_timing(&released.log),
            [
                "info: 1234:1111@0000:00:02.0: 0000:00:02.0 is back on bochs-drm",
                "info: 0000:00:02.0: the console is back (vtcon1)",
                "info: 1 of 1 rules released",
            ]
        );
    }
}

#[test]
fn a_driver_that_will_not_let_go_leaves_the_card_and_its_consoles_as_they_were() {
    // nvidia keeps efifb in place and refuses to unbind while something holds it.
    let mut tree = desktop_on_the_boot_display("nvidia");
    tree.set_iomem(&format!("80000000-afffffff : PCI Bus 0000:00\n{BAR0}\n"))
        .unwrap();
    // Binding the platform device puts efifb's claim below BAR0.
    tree.add_platform_framebuffer("efi-framebuffer.0", Some("efi-framebuffer"), BAR0, EFIFB)
        .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree).native(BOOT, "nvidia");
    kernel
        .failing
        .push((Attribute::Unbind(BOOT.parse().unwrap()), Errno::EBUSY));
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(run.status, 1, "{:?}", run.log);
    assert_eq!(kernel.tree.driver_of(BOOT).as_deref(), Some("nvidia"));
    assert_eq!(kernel.tree.override_of(BOOT), "");
    assert!(kernel.tree.vtconsole_bound(1));
    assert_eq!(
        kernel
            .tree
            .platform_driver_of("efi-framebuffer.0")
            .as_deref(),
        Some("efi-framebuffer")
    );
    assert_eq!(kernel.tree.iomem().matches("efifb").count(), 1);
    assert!(
        run.log.contains(&"err: 0000:00:02.0: nvidia did not let go, so the console was given back (vtcon1, efi-framebuffer.0); it is usually held by the display manager or a program on the card: stop it first".to_string()),
        "{:?}",
        run.log
    );
}

fn check_output(tree: &SysfsTree, cmdline: &str) -> (u8, String) {
    capture_log();
    let sysfs = sysfs_of(tree);
    check_text(&sysfs, &gathered(cmdline, tree))
}

#[test]
fn check_names_a_framebuffer_left_in_a_vfio_pci_bar_with_the_fix() {
    let mut tree = uefi_twins(Some("vfio-pci"), Some("bochs-drm"));
    let (status, out) = check_output(&tree, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("PROBLEM 0000:00:02.0: its BAR holds the firmware framebuffer efifb at 80000000-802fffff (BAR 80000000-80ffffff), so a VM cannot map it (QEMU: \"can't reserve\"). Fix: echo efi-framebuffer.N > /sys/bus/platform/drivers/efi-framebuffer/unbind (vfio-bind apply does it at boot), or boot with video=efifb:off"),
        "{out}"
    );
    tree.simulate_platform_unbind("efi-framebuffer", "efi-framebuffer.0")
        .unwrap();
    let (status, out) = check_output(&tree, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("ok      0000:00:02.0: no framebuffer or other claim in its BARs"),
        "{out}"
    );
}

#[test]
fn check_names_any_other_claim_and_not_vfios_own() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(
        Function::new(BOOT, 0x1234, 0x1111, CLASS_OTHER_DISPLAY)
            .group(1)
            .driver("vfio-pci"),
    )
    .unwrap()
    .add(
        Function::new(TWIN, 0x1234, 0x1111, CLASS_OTHER_DISPLAY)
            .group(2)
            .driver("vfio-pci"),
    )
    .unwrap();
    tree.set_iomem(
        "80000000-afffffff : PCI Bus 0000:00\n\
         \x20 80000000-80ffffff : 0000:00:02.0\n\
         \x20   80000000-80ffffff : vfio\n\
         \x20 82000000-82ffffff : 0000:00:03.0\n\
         \x20   82000000-8200ffff : bochs-drm\n\
         \x20 90000000-9000ffff : BOOTFB\n",
    )
    .unwrap();
    let (status, out) = check_output(&tree, "vfio.bind=1234:1111");
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("ok      0000:00:02.0: no framebuffer or other claim"),
        "{out}"
    );
    assert!(
        out.contains("PROBLEM 0000:00:03.0: its BAR is claimed by bochs-drm at 82000000-8200ffff"),
        "{out}"
    );
    // With real ranges, a framebuffer outside every BAR is in nobody's way.
    assert!(!out.contains("cannot be told"), "{out}");
}

#[test]
fn check_without_root_reads_nesting_but_does_not_guess_where_a_loose_framebuffer_lies() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(
        Function::new(BOOT, 0x1234, 0x1111, CLASS_OTHER_DISPLAY)
            .group(1)
            .driver("vfio-pci"),
    )
    .unwrap();
    tree.set_iomem(
        "00000000-00000000 : PCI Bus 0000:00\n\
         \x20 00000000-00000000 : 0000:00:02.0\n\
         00000000-00000000 : vesafb\n",
    )
    .unwrap();
    let (status, out) = check_output(&tree, "vfio.bind=1234:1111");
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("PROBLEM the firmware framebuffer vesafb is in the iomem tree, but whether it lies in a vfio-pci function's BAR cannot be told"), "{out}");
}

#[test]
fn the_binary_takes_iomem_on_check() {
    let tree = uefi_twins(Some("vfio-pci"), None);
    let output = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(["check", "--sysfs"])
        .arg(tree.root())
        .arg("--iomem")
        .arg(tree.iomem_path())
        .args([
            "--cmdline-dir",
            "/nonexistent",
            "--cmdline",
            "vfio.bind=1234:1111@00:02.0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("its BAR holds the firmware framebuffer efifb"),
        "{stdout}"
    );
}

#[test]
fn release_with_no_native_driver_gives_the_firmware_framebuffer_back_to_the_card() {
    let mut tree = uefi_twins(None, None);
    tree.add_vtconsole(0, "(S) dummy device", false)
        .unwrap()
        .add_vtconsole(1, "(M) frame buffer device", true)
        .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let bound = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(bound.status, 0, "{:?}", bound.log);
    assert!(!kernel.tree.iomem().contains("efifb"));
    // The kernel let go of the console with the framebuffer.
    std::fs::write(
        kernel.tree.root().join("class/vtconsole/vtcon1/bind"),
        "0\n",
    )
    .unwrap();

    let released = release_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(released.status, 0, "{:?}", released.log);
    assert_eq!(
        kernel
            .tree
            .platform_driver_of("efi-framebuffer.0")
            .as_deref(),
        Some("efi-framebuffer")
    );
    assert!(kernel.tree.iomem().contains(&format!("{BAR0}\n{EFIFB}\n")));
    assert!(
        kernel.tree.vtconsole_bound(1),
        "{:?} {:?}",
        released.writes,
        released.log
    );
    assert!(
        released.log.contains(
            &"info: 0000:00:02.0: the console is back (vtcon1, efi-framebuffer.0)".to_string()
        ),
        "{:?}",
        released.log
    );
}

#[test]
fn release_never_rebinds_a_framebuffer_while_a_display_card_is_on_vfio_pci() {
    // Both twins on vfio-pci, efifb let go at boot; the twin comes back, the boot display
    // stays with its VM, and the framebuffer that lay in it stays unbound.
    let mut tree = uefi_twins(None, None);
    let mut kernel = SimulatedKernel::new(&mut tree);
    let bound = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111");
    assert_eq!(bound.status, 0, "{:?}", bound.log);
    let released = release_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:03.0");
    assert_eq!(released.status, 0, "{:?}", released.log);
    assert!(
        released.writes.iter().all(|w| !w.contains("platform")),
        "{:?}",
        released.writes
    );
    assert_eq!(kernel.tree.platform_driver_of("efi-framebuffer.0"), None);
    assert!(!kernel.tree.iomem().contains("efifb"));
}

#[test]
fn an_unreadable_iomem_is_said_once_and_only_when_a_display_card_is_selected() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new(BOOT, 0x1234, 0x1111, CLASS_OTHER_DISPLAY).group(1))
        .unwrap()
        .add(Function::new("0000:00:1b.0", 0x8086, 0x293e, CLASS_AUDIO).group(3))
        .unwrap();
    let missing = tree.root().join("no-such-iomem");
    let mut kernel = SimulatedKernel::new(&mut tree);
    for (rule, warned) in [
        ("vfio.bind=8086:293e", false),
        ("vfio.bind=1234:1111", true),
    ] {
        capture_log();
        let sysfs = Sysfs::new(kernel.tree.root())
            .unwrap()
            .with_iomem(&missing)
            .unwrap();
        let gathered = gathered(rule, kernel.tree);
        let status =
            vfio_bind::boot::apply::apply(&sysfs, &gathered, &mut kernel, Instant::now(), None);
        let log = captured();
        assert_eq!(status, 0, "{log:?}");
        let warnings: Vec<&String> = log.iter().filter(|l| l.contains("no-such-iomem")).collect();
        assert_eq!(warnings.len(), usize::from(warned), "{rule}: {log:?}");
        if warned {
            assert!(warnings[0].starts_with("warning: cannot read "), "{log:?}");
            assert!(warnings[0].ends_with("(No such file or directory): firmware framebuffers in the cards' BARs were not looked for"), "{log:?}");
        }
    }
}

#[test]
fn binding_a_gpu_that_only_has_a_second_framebuffer_leaves_the_hosts_console_alone() {
    // Both twins on bochs-drm: the console draws on fb0 (the boot display), the twin has fb1.
    let mut tree = uefi_twins(Some("bochs-drm"), Some("bochs-drm"));
    tree.add_graphics_framebuffer(0, BOOT)
        .unwrap()
        .add_graphics_framebuffer(1, TWIN)
        .unwrap()
        .add_vtconsole(0, "(S) dummy device", false)
        .unwrap()
        .add_vtconsole(1, "(M) frame buffer device", true)
        .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree).native(TWIN, "bochs-drm");
    let bound = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:03.0");
    assert_eq!(bound.status, 0, "{:?}", bound.log);
    assert!(
        bound
            .writes
            .iter()
            .all(|w| !w.contains("vtconsole") && !w.contains("platform")),
        "{:?}",
        bound.writes
    );
    assert!(kernel.tree.vtconsole_bound(1));
    let released = release_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:03.0");
    assert_eq!(released.status, 0, "{:?}", released.log);
    assert!(
        released.log.iter().all(|l| !l.contains("console")),
        "{:?}",
        released.log
    );
}

#[test]
fn an_iomem_too_large_for_the_buffer_is_refused_whole_and_nothing_is_unbound() {
    let mut tree = uefi_twins(None, None);
    // 160 KiB of iomem: more than the 128 KiB read, efifb still in the boot card's BAR.
    let mut iomem = tree.iomem();
    while iomem.len() < 160 * 1024 {
        iomem.push_str("fee00000-fee00fff : Local APIC\n");
    }
    tree.set_iomem(&iomem).unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = apply_with_iomem(&mut kernel, "vfio.bind=1234:1111@00:02.0");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert!(
        run.writes.iter().all(|w| !w.contains("platform")),
        "{:?}",
        run.writes
    );
    assert!(
        run.log.iter().any(|l| l.starts_with("warning: cannot read ")
            && l.contains("(File too large): firmware framebuffers in the cards' BARs were not looked for")),
        "{:?}",
        run.log
    );
}

#[test]
fn the_binary_takes_iomem_on_apply_bind_and_release() {
    // No kernel reacts on a fixture: apply lets efifb go, vfio-pci never binds, so the
    // card and its framebuffer are given back; both writes are left in the files.
    let tree = uefi_twins(None, None);
    let run = |arguments: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
            .args(arguments)
            .arg("--sysfs")
            .arg(tree.root())
            .arg("--iomem")
            .arg(tree.iomem_path())
            .output()
            .unwrap()
    };
    let output = run(&[
        "apply",
        "--cmdline-dir",
        "/nonexistent",
        "--cmdline",
        "vfio.bind=1234:1111@00:02.0",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("released the boot console for 0000:00:02.0: efi-framebuffer.0"),
        "{stderr}"
    );
    assert_eq!(
        tree.read("bus/platform/drivers/efi-framebuffer/unbind"),
        "efi-framebuffer.0"
    );
    assert_eq!(
        tree.read("bus/platform/drivers/efi-framebuffer/bind"),
        "efi-framebuffer.0"
    );
    for command in ["bind", "release"] {
        let output = run(&[command, "1234:1111@00:03.0"]);
        assert_ne!(output.status.code(), Some(2), "{command}: {output:?}");
    }
}
