//! `vfio-bind apply` on fixture trees with a simulated kernel: what it writes, in which
//! order, what the kernel ends up binding, what it logs, and its exit status.

mod common;

use common::{run_apply, without_timing, SimulatedKernel};
use nix::errno::Errno;
use sysfs_fixture::*;
use vfio_bind::machine::sysfs::Attribute;

fn address(text: &str) -> vfio_bind::rules::address::PciAddress {
    text.parse().unwrap()
}

#[test]
fn binds_the_guest_card_by_address_and_leaves_the_host_audio_alone() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(
        &mut kernel,
        "root=/dev/sda1 vfio.bind=1002:73ff@07:00 quiet",
    );
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(
        run.writes,
        [
            "bus/pci/devices/0000:07:00.0/driver_override = vfio-pci",
            "bus/pci/devices/0000:07:00.1/driver_override = vfio-pci",
        ]
    );
    assert_eq!(run.modules, ["vfio_iommu_type1", "vfio-pci"]);
    assert_eq!(
        without_timing(&run.log),
        [
            "info: 1002:73ff@0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci",
            "info: 1 of 1 rules applied, 2 functions on vfio-pci",
        ]
    );
    assert!(run.log.last().unwrap().ends_with(" us"));
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of("0000:07:00.1").as_deref(), Some("vfio-pci"));
    // The host card's audio function has the same IDs and is not touched.
    assert_eq!(tree.override_of("0000:03:00.1"), "(null)");
    assert_eq!(tree.driver_of("0000:03:00.1"), None);
}

#[test]
fn ids_only_rule_takes_both_audio_functions_like_vfio_pci_ids() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:ab28");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(tree.driver_of("0000:03:00.1").as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of("0000:07:00.1").as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of("0000:07:00.0"), None);
    // Each audio function shares its group with a GPU no rule selects.
    assert_eq!(
        without_timing(&run.log),
        [
            "info: 1002:ab28: 0000:03:00.1, 0000:07:00.1 on vfio-pci",
            "warning: IOMMU group 14 of 0000:03:00.1 also holds 0000:03:00.0 (1002:73df), which no rule selects; \
             a VM cannot use the group while a driver holds it. Add: vfio.bind=1002:73df@0000:03:00.0",
            "warning: IOMMU group 17 of 0000:07:00.1 also holds 0000:07:00.0 (1002:73ff), which no rule selects; \
             a VM cannot use the group while a driver holds it. Add: vfio.bind=1002:73ff@0000:07:00.0",
            "info: 1 of 1 rules applied, 2 functions on vfio-pci",
        ]
    );
}

/// Two identical 4-function Turing cards (VGA, audio, USB, UCSI) beside an Intel iGPU.
fn identical_turing_cards(bound: bool) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(
        Function::new("0000:00:02.0", 0x8086, 0x3e92, CLASS_VGA)
            .group(1)
            .boot_vga(true)
            .driver("i915"),
    )
    .unwrap();
    for (bus, group) in [("01", 2), ("02", 3)] {
        let functions = [
            (0, 0x1e84, CLASS_VGA, "nouveau"),
            (1, 0x10f8, CLASS_AUDIO, "snd_hda_intel"),
            (2, 0x1ad8, CLASS_USB, "xhci_hcd"),
            (3, 0x1ad9, CLASS_SERIAL_BUS, "nvidia-gpu"),
        ];
        for (function, device, class, driver) in functions {
            let mut spec =
                Function::new(&format!("0000:{bus}:00.{function}"), 0x10de, device, class)
                    .group(group);
            if class == CLASS_VGA {
                spec = spec.boot_vga(false);
            }
            if bound {
                spec = spec.driver(driver);
            }
            tree.add(spec).unwrap();
        }
    }
    tree
}

#[test]
fn identical_cards_are_told_apart_by_address() {
    let mut tree = identical_turing_cards(false);
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=10de:1e84@02:00");
    assert_eq!(run.status, 0, "{:?}", run.log);
    for function in 0..4 {
        assert_eq!(
            tree.driver_of(&format!("0000:02:00.{function}")).as_deref(),
            Some("vfio-pci")
        );
        assert_eq!(
            tree.override_of(&format!("0000:01:00.{function}")),
            "(null)"
        );
    }
    assert_eq!(run.log.len(), 2, "{:?}", run.log);
}

#[test]
fn bound_functions_are_overridden_before_unbinding_and_probed_last() {
    let mut tree = identical_turing_cards(true);
    tree.add_driver("vfio-pci").unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=10de:1e84@02:00");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert!(
        run.modules.is_empty(),
        "vfio-pci is registered: no module load"
    );
    let mut expected = Vec::new();
    for function in 0..4 {
        expected.push(format!(
            "bus/pci/devices/0000:02:00.{function}/driver_override = vfio-pci"
        ));
        expected.push(format!(
            "bus/pci/devices/0000:02:00.{function}/driver/unbind = 0000:02:00.{function}"
        ));
    }
    for function in 0..4 {
        expected.push(format!("bus/pci/drivers_probe = 0000:02:00.{function}"));
    }
    assert_eq!(run.writes, expected);
    assert_eq!(
        without_timing(&run.log)[0],
        "info: 10de:1e84@0000:02:00: 0000:02:00.0 (from nouveau), 0000:02:00.1 (from snd_hda_intel), \
         0000:02:00.2 (from xhci_hcd), 0000:02:00.3 (from nvidia-gpu) on vfio-pci"
    );
    assert_eq!(tree.driver_of("0000:01:00.0").as_deref(), Some("nouveau"));
    assert_eq!(tree.driver_of("0000:02:00.3").as_deref(), Some("vfio-pci"));
}

#[test]
fn a_moved_card_fails_the_guard_and_nothing_is_written() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    // The rule expects the RX 6600 at 03:00, where the host's RX 6750 XT now is.
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@03:00");
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty());
    assert!(run.modules.is_empty());
    assert_eq!(
        without_timing(&run.log),
        [
            "err: 1002:73ff@0000:03:00 not applied: expected 1002:73ff at 0000:03:00 but found 1002:73df, 1002:ab28; \
             nothing there was touched (did a card move?)",
            "err: 0 of 1 rules applied, 0 functions on vfio-pci",
        ]
    );
}

#[test]
fn a_malformed_rule_is_named_and_skipped_and_the_good_one_applies() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:73f@07:00,1002:73ff@07:00");
    assert_eq!(run.status, 1, "a malformed rule is a failure");
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(
        without_timing(&run.log),
        [
            "err: skipped malformed rule \"1002:73f@07:00\" from the kernel command line: \
             the device ID must be 4 hex digits (IDs are VVVV:DDDD; an address needs a leading @)",
            "info: 1002:73ff@0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci",
            "err: 1 of 2 rules applied, 2 functions on vfio-pci",
        ]
    );
}

#[test]
fn no_rule_means_no_write_no_line_and_success() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(
        &mut kernel,
        "root=/dev/sda1 vfio.enable_unsafe_noiommu_mode=0 vfio-pci.ids=1002:ab28",
    );
    assert_eq!((run.status, run.writes.len(), run.log.len()), (0, 0, 0));
}

/// The machine of `host_and_guest_share_audio_ids` with the IOMMU off: no groups.
fn host_and_guest_without_iommu() -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new("0000:03:00.0", 0x1002, 0x73df, CLASS_VGA).boot_vga(true))
        .unwrap()
        .add(Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA).driver("amdgpu"))
        .unwrap()
        .add(Function::new("0000:07:00.1", 0x1002, 0xab28, CLASS_AUDIO))
        .unwrap();
    tree
}

#[test]
fn iommu_off_touches_nothing_and_says_what_to_enable() {
    let mut tree = host_and_guest_without_iommu();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@07:00");
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty());
    assert_eq!(run.log.len(), 2, "{:?}", run.log);
    assert!(
        run.log[0].starts_with("err: the IOMMU is off"),
        "{}",
        run.log[0]
    );
    assert!(run.log[0].contains("intel_iommu=on") && run.log[0].contains("VT-d or AMD-Vi"));
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("amdgpu"));
}

#[test]
fn noiommu_mode_proceeds_and_a_failed_bind_gives_the_card_back_to_its_driver() {
    let mut tree = host_and_guest_without_iommu();
    let mut kernel = SimulatedKernel::new(&mut tree).native("0000:07:00.0", "amdgpu");
    // The simulated vfio-pci, like one without no-IOMMU support, refuses group-less devices.
    let run = run_apply(
        &mut kernel,
        "vfio.bind=1002:73ff@07:00 vfio.enable_unsafe_noiommu_mode=1",
    );
    assert_eq!(run.status, 1);
    assert!(run
        .writes
        .contains(&"bus/pci/devices/0000:07:00.0/driver/unbind = 0000:07:00.0".to_string()));
    assert_eq!(
        tree.override_of("0000:07:00.0"),
        "",
        "override cleared (the kernel would show (null))"
    );
    assert_eq!(
        tree.driver_of("0000:07:00.0").as_deref(),
        Some("amdgpu"),
        "given back, not left driverless"
    );
    assert!(
        run.log.iter().any(|l| l.starts_with(
            "err: 1002:73ff@0000:07:00 not applied: vfio-pci did not take 0000:07:00.0"
        )),
        "{:?}",
        run.log
    );
}

#[test]
fn a_bridge_is_left_alone_with_a_warning_and_does_not_spoil_the_group() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(
        Function::new("0000:00:01.0", 0x8086, 0x1901, CLASS_BRIDGE)
            .group(1)
            .driver("pcieport"),
    )
    .unwrap()
    .add(
        Function::new("0000:01:00.0", 0x10de, 0x1b80, CLASS_VGA)
            .group(1)
            .behind("0000:00:01.0"),
    )
    .unwrap()
    .add(
        Function::new("0000:01:00.1", 0x10de, 0x10f0, CLASS_AUDIO)
            .group(1)
            .behind("0000:00:01.0"),
    )
    .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=10de:1b80@01:00,@00:01.0");
    assert_eq!(run.status, 1, "a rule naming only a bridge does not apply");
    assert!(
        run.writes.iter().all(|w| !w.contains("0000:00:01.0")),
        "{:?}",
        run.writes
    );
    assert_eq!(tree.driver_of("0000:00:01.0").as_deref(), Some("pcieport"));
    assert_eq!(tree.driver_of("0000:01:00.1").as_deref(), Some("vfio-pci"));
    let log = without_timing(&run.log);
    assert!(log.contains(
        &"err: @0000:00:01.0 not applied: it selects only PCI bridges, which vfio-pci cannot take"
            .into()
    ));
    assert!(log.contains(&"warning: @0000:00:01.0: 0000:00:01.0 is a PCI bridge, which vfio-pci cannot take; it is left alone".into()));
    assert!(
        !log.iter().any(|l| l.contains("IOMMU group")),
        "bridges never make a group unviable: {log:?}"
    );
}

#[test]
fn taking_the_boot_display_is_warned_about() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:73df@03:00");
    assert_eq!(run.status, 0);
    assert!(
        run.log.contains(&"warning: 0000:03:00.0 is the boot display: the host console on it goes dark now that vfio-pci has it".into()),
        "{:?}",
        run.log
    );
}

#[test]
fn a_group_companion_left_out_is_named_with_the_rule_that_adds_it() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    tree.add(
        Function::new("0000:07:00.2", 0x1002, 0x73a6, CLASS_USB)
            .group(17)
            .behind("0000:00:01.2"),
    )
    .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@07:00.0,1002:ab28@07:00.1");
    assert_eq!(run.status, 0);
    assert!(
        run.log.contains(
            &"warning: IOMMU group 17 of 0000:07:00.0 also holds 0000:07:00.2 (1002:73a6), which no rule selects; \
              a VM cannot use the group while a driver holds it. Add: vfio.bind=1002:73a6@0000:07:00.2"
                .into()
        ),
        "{:?}",
        run.log
    );
    assert_eq!(tree.driver_of("0000:07:00.2"), None);
}

#[test]
fn two_cards_stay_well_under_the_kernel_log_rate_limit() {
    let mut tree = identical_turing_cards(true);
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=10de:1e84@01:00,10de:1e84@02:00");
    assert_eq!(run.status, 0, "{:?}", run.log);
    // One line per rule and the summary: far below the kernel's 10 lines per 5 s burst.
    assert_eq!(
        without_timing(&run.log),
        [
            "info: 10de:1e84@0000:01:00: 0000:01:00.0 (from nouveau), 0000:01:00.1 (from snd_hda_intel), \
             0000:01:00.2 (from xhci_hcd), 0000:01:00.3 (from nvidia-gpu) on vfio-pci",
            "info: 10de:1e84@0000:02:00: 0000:02:00.0 (from nouveau), 0000:02:00.1 (from snd_hda_intel), \
             0000:02:00.2 (from xhci_hcd), 0000:02:00.3 (from nvidia-gpu) on vfio-pci",
            "info: 2 of 2 rules applied, 8 functions on vfio-pci",
        ]
    );
}

#[test]
fn an_override_that_cannot_be_written_skips_the_rule_and_the_others_still_apply() {
    let mut tree = identical_turing_cards(true);
    tree.add_driver("vfio-pci").unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    kernel.failing.push((
        Attribute::DriverOverride(address("0000:01:00.1")),
        Errno::EACCES,
    ));
    let run = run_apply(&mut kernel, "vfio.bind=10de:1e84@01:00,10de:1e84@02:00");
    assert_eq!(run.status, 1);
    // 01:00.0 was overridden and unbound before 01:00.1 failed: it is given back.
    assert_eq!(tree.override_of("0000:01:00.0"), "");
    assert!(run
        .writes
        .contains(&"bus/pci/drivers_probe = 0000:01:00.0".to_string()));
    // Nothing after the failure in that rule was touched.
    assert!(
        !run.writes
            .iter()
            .any(|w| w.contains("0000:01:00.2") || w.contains("0000:01:00.3")),
        "{:?}",
        run.writes
    );
    assert_eq!(tree.driver_of("0000:01:00.2").as_deref(), Some("xhci_hcd"));
    assert_eq!(tree.driver_of("0000:02:00.0").as_deref(), Some("vfio-pci"));
    assert!(run.log.iter().any(|l| l.starts_with(
        "err: 10de:1e84@0000:01:00 not applied: cannot write 0000:01:00.1/driver_override (Permission denied)"
    )));
}

#[test]
fn a_failing_unbind_gives_the_rule_back() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    tree.add(
        Function::new("0000:0a:00.0", 0x10de, 0x1b80, CLASS_VGA)
            .group(30)
            .driver("nouveau"),
    )
    .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    kernel
        .failing
        .push((Attribute::Unbind(address("0000:0a:00.0")), Errno::EBUSY));
    let run = run_apply(&mut kernel, "vfio.bind=10de:1b80@0a:00,1002:73ff@07:00");
    assert_eq!(run.status, 1);
    assert_eq!(tree.driver_of("0000:0a:00.0").as_deref(), Some("nouveau"));
    assert_eq!(tree.override_of("0000:0a:00.0"), "");
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(
        without_timing(&run.log),
        [
            "err: 10de:1b80@0000:0a:00 not applied: cannot unbind 0000:0a:00.0 from nouveau \
             (Device or resource busy); given back: 0000:0a:00.0 (on nouveau)",
            "info: 1002:73ff@0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci",
            "err: 1 of 2 rules applied, 2 functions on vfio-pci",
        ]
    );
}

#[test]
fn when_vfio_pci_cannot_be_loaded_every_card_is_given_back() {
    let mut tree = identical_turing_cards(true);
    let mut kernel = SimulatedKernel::new(&mut tree);
    for (suffix, driver) in [
        ("0", "nouveau"),
        ("1", "snd_hda_intel"),
        ("2", "xhci_hcd"),
        ("3", "nvidia-gpu"),
    ] {
        kernel
            .native
            .insert(format!("0000:02:00.{suffix}"), driver.to_string());
    }
    kernel.modprobe_fails = true;
    let run = run_apply(&mut kernel, "vfio.bind=10de:1e84@02:00");
    assert_eq!(run.status, 1);
    for (suffix, driver) in [
        ("0", "nouveau"),
        ("1", "snd_hda_intel"),
        ("2", "xhci_hcd"),
        ("3", "nvidia-gpu"),
    ] {
        let address = format!("0000:02:00.{suffix}");
        assert_eq!(
            tree.driver_of(&address).as_deref(),
            Some(driver),
            "{address}"
        );
        assert_eq!(tree.override_of(&address), "");
    }
    assert!(
        run.log
            .iter()
            .any(|l| l.starts_with("err: modprobe vfio-pci failed")),
        "{:?}",
        run.log
    );
}

#[test]
fn a_device_that_vanishes_before_the_write_fails_its_rule_only() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    tree.add(Function::new("0000:0a:00.0", 0x10de, 0x1b80, CLASS_VGA).group(30))
        .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    kernel.vanishes = Some("0000:07:00.0".into());
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@07:00,10de:1b80@0a:00");
    assert_eq!(run.status, 1);
    assert_eq!(tree.driver_of("0000:0a:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(
        without_timing(&run.log),
        [
            "err: 1002:73ff@0000:07:00 not applied: cannot write 0000:07:00.0/driver_override \
             (No such file or directory); untouched: 0000:07:00.0, 0000:07:00.1",
            "info: 10de:1b80@0000:0a:00: 0000:0a:00.0 on vfio-pci",
            "err: 1 of 2 rules applied, 1 functions on vfio-pci",
        ]
    );
    assert_eq!(
        tree.override_of("0000:07:00.1"),
        "(null)",
        "the rest of the vanished card's rule is not touched"
    );
}

#[test]
fn a_dangling_driver_link_fails_the_unbind_and_the_rule_is_given_back() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    // The driver's directory is gone but the device's link still names it.
    std::os::unix::fs::symlink(
        "../../../../bus/pci/drivers/ghost",
        tree.attribute("0000:07:00.1", "driver"),
    )
    .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@07:00");
    assert_eq!(run.status, 1);
    assert_eq!(
        without_timing(&run.log),
        [
            "err: 1002:73ff@0000:07:00 not applied: cannot unbind 0000:07:00.1 from ghost \
             (No such file or directory); given back: 0000:07:00.0, 0000:07:00.1 (on ghost)",
            "err: 0 of 1 rules applied, 0 functions on vfio-pci",
        ]
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "");
    assert_eq!(tree.override_of("0000:07:00.1"), "");
}

#[test]
fn a_missing_vendor_attribute_fails_the_guard_but_not_the_other_rules() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    std::fs::remove_file(tree.attribute("0000:07:00.0", "vendor")).unwrap();
    // An unreadable attribute: a directory where a file should be.
    std::fs::remove_file(tree.attribute("0000:03:00.1", "device")).unwrap();
    std::fs::create_dir(tree.attribute("0000:03:00.1", "device")).unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(
        &mut kernel,
        "vfio.bind=1002:73ff@07:00.0,1002:ab28@03:00.1,1002:ab28@07:00.1",
    );
    assert_eq!(run.status, 1);
    let log = without_timing(&run.log);
    assert!(log.contains(&"err: 1002:73ff@0000:07:00.0 not applied: expected 1002:73ff at 0000:07:00.0 but found unreadable IDs; nothing there was touched (did a card move?)".into()), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("err: 1002:ab28@0000:03:00.1 not applied")),
        "{log:?}"
    );
    assert_eq!(tree.driver_of("0000:07:00.1").as_deref(), Some("vfio-pci"));
    assert_eq!(
        log.last().unwrap(),
        "err: 1 of 3 rules applied, 1 functions on vfio-pci"
    );
}

#[test]
fn thousands_of_rules_keep_the_first_ones_and_say_so_once() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut cmdline = String::from("vfio.bind=1002:73ff@07:00");
    for n in 0..3000 {
        cmdline.push_str(&format!(",@{:02x}:{:02x}.{}", n % 256, n / 256 % 32, n % 8));
    }
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, &cmdline);
    assert_eq!(run.status, 1);
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
    let log = without_timing(&run.log);
    assert!(log.contains(&"err: the kernel command line is longer than 4096 bytes; only the parameters that fit were read".into()), "{log:?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("err: too many rules: at most 32 are kept;"))
            .count(),
        1,
        "{log:?}"
    );
}
