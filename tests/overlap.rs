//! What apply, check and release report must be the truth about every function: when rules
//! overlap, when a give-back itself fails, when an override is not ours, when a module
//! does not load.

mod common;

use common::{check_text, gathered_from, run_apply, run_release, without_timing, SimulatedKernel};
use nix::errno::Errno;
use sysfs_fixture::*;
use vfio_bind::machine::sysfs::{Attribute, Sysfs};

fn address(text: &str) -> vfio_bind::rules::address::PciAddress {
    text.parse().unwrap()
}

/// Runs `check` as the command does, returning its exit status and what it printed.
fn check(tree: &SysfsTree, cmdline: &str) -> (u8, String) {
    check_text(
        &Sysfs::new(tree.root()).unwrap(),
        &gathered_from(tree, cmdline),
    )
}

#[test]
fn check_reports_a_function_two_rules_share_under_both_rules() {
    let tree = guest_card_after_boot("snd_hda_intel").unwrap();
    let (status, stdout) = check(&tree, "vfio.bind=@07:00,1002:ab28@07:00.1");
    assert_eq!(status, 1, "{stdout}");
    assert_eq!(
        stdout,
        "ok      the IOMMU is on\n\
         PROBLEM @0000:07:00: 0000:07:00.1 is on snd_hda_intel, not vfio-pci. Fix: check that the vfio-bind hook is in the initramfs and runs before the GPU driver (dmesg | grep vfio-bind), or run vfio-bind apply\n\
         PROBLEM 1002:ab28@0000:07:00.1: 0000:07:00.1 is on snd_hda_intel, not vfio-pci. Fix: check that the vfio-bind hook is in the initramfs and runs before the GPU driver (dmesg | grep vfio-bind), or run vfio-bind apply\n\
         PROBLEM IOMMU group 17 is not viable: 0000:07:00.1 (1002:ab28) is on snd_hda_intel; the rules above select it, so the fix is theirs\n"
    );
}

#[test]
fn a_failure_in_an_ids_rule_does_not_split_the_card_of_an_overlapping_card_rule() {
    // 1002:ab28 selects both audio functions (03:00.1, 07:00.1); the card rule selects
    // 07:00.0 and 07:00.1. The host's audio function refuses the override.
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    kernel.failing.push((
        Attribute::DriverOverride(address("0000:03:00.1")),
        Errno::EACCES,
    ));
    let run = run_apply(&mut kernel, "vfio.bind=1002:ab28,1002:73ff@07:00");
    assert_eq!(run.status, 1, "{:?}", run.log);
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(
        tree.driver_of("0000:07:00.1").as_deref(),
        Some("vfio-pci"),
        "the card rule applied whole: its audio function stays"
    );
    assert_eq!(tree.override_of("0000:03:00.1"), "(null)");
    assert_eq!(
        without_timing(&run.log),
        [
            "err: 1002:ab28 not applied: cannot write 0000:03:00.1/driver_override (Permission denied); untouched: 0000:03:00.1; kept on vfio-pci for another rule: 0000:07:00.1",
            "info: 1002:73ff@0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci",
            "err: 1 of 2 rules applied, 2 functions on vfio-pci",
        ]
    );
}

#[test]
fn a_function_two_rules_share_counts_once_and_both_rules_report_it() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=@07:00,1002:ab28@07:00.1");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(
        without_timing(&run.log),
        [
            "info: @0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci",
            "info: 1002:ab28@0000:07:00.1: 0000:07:00.1 on vfio-pci",
            "info: 2 of 2 rules applied, 2 functions on vfio-pci",
        ]
    );
}

#[test]
fn functions_changed_and_restored_are_not_reported_as_left_as_they_were() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("vfio-pci").unwrap();
    for function in 0..3 {
        tree.add(
            Function::new(&format!("0000:01:00.{function}"), 0x10de, 0x1e84, CLASS_VGA)
                .group(2)
                .driver("nouveau"),
        )
        .unwrap();
    }
    let mut kernel = SimulatedKernel::new(&mut tree).native("0000:01:00.0", "nouveau");
    kernel.failing.push((
        Attribute::DriverOverride(address("0000:01:00.1")),
        Errno::EACCES,
    ));
    let run = run_apply(&mut kernel, "vfio.bind=10de:1e84@01:00");
    assert_eq!(run.status, 1);
    assert_eq!(
        without_timing(&run.log)[0],
        "err: 10de:1e84@0000:01:00 not applied: cannot write 0000:01:00.1/driver_override (Permission denied); given back: 0000:01:00.0 (on nouveau); untouched: 0000:01:00.1, 0000:01:00.2"
    );
    assert_eq!(tree.driver_of("0000:01:00.0").as_deref(), Some("nouveau"));
    assert_eq!(tree.override_of("0000:01:00.0"), "");
}

#[test]
fn a_give_back_that_fails_is_reported_with_the_state_it_left() {
    // No IOMMU group: the simulated vfio-pci refuses the function, so apply gives it back,
    // but the override cannot be cleared.
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("amdgpu").unwrap();
    tree.add(Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA).driver("amdgpu"))
        .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree).native("0000:07:00.0", "amdgpu");
    kernel.refuses_clearing.push("0000:07:00.0".into());
    let run = run_apply(
        &mut kernel,
        "vfio.bind=1002:73ff@07:00 vfio.enable_unsafe_noiommu_mode=1",
    );
    assert_eq!(run.status, 1);
    assert_eq!(tree.override_of("0000:07:00.0"), "vfio-pci");
    assert_eq!(tree.driver_of("0000:07:00.0"), None);
    assert_eq!(
        without_timing(&run.log)[0],
        "err: 1002:73ff@0000:07:00 not applied: vfio-pci did not take 0000:07:00.0 (see the kernel's vfio-pci lines); NOT given back: 0000:07:00.0 (driver_override is still vfio-pci, no driver)"
    );
}

#[test]
fn a_failure_to_load_the_iommu_backend_is_reported() {
    let mut tree = host_and_guest_share_audio_ids().unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    kernel.failing_module = Some("vfio_iommu_type1");
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@07:00");
    assert_eq!(run.status, 1, "{:?}", run.log);
    assert!(
        run.log.contains(
            &"err: modprobe vfio_iommu_type1 failed (exit status 1): without it a VM cannot use vfio-pci devices; is the module in the initramfs?"
                .to_string()
        ),
        "{:?}",
        run.log
    );
    assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
}

#[test]
fn bind_without_an_iommu_proceeds_when_vfio_runs_in_no_iommu_mode() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA))
        .unwrap();
    let parameters = tree.root().join("module/vfio/parameters");
    std::fs::create_dir_all(&parameters).unwrap();
    std::fs::write(parameters.join("enable_unsafe_noiommu_mode"), "Y\n").unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1002:73ff@07:00");
    assert!(
        !run.log.iter().any(|line| line.contains("the IOMMU is off")),
        "{:?}",
        run.log
    );
    assert!(
        run.writes
            .contains(&"bus/pci/devices/0000:07:00.0/driver_override = vfio-pci".to_string()),
        "{:?}",
        run.writes
    );
}

#[test]
fn release_leaves_an_override_it_did_not_set_and_says_so() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add_driver("pci-stub").unwrap();
    tree.add(
        Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA)
            .group(17)
            .driver("pci-stub"),
    )
    .unwrap();
    std::fs::write(
        tree.attribute("0000:07:00.0", "driver_override"),
        "pci-stub\n",
    )
    .unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_release(&mut kernel, "@07:00.0");
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty(), "{:?}", run.writes);
    assert_eq!(tree.override_of("0000:07:00.0"), "pci-stub");
    assert_eq!(
        without_timing(&run.log),
        [
            "err: @0000:07:00.0: 0000:07:00.0 has driver_override=pci-stub, which vfio-bind did not set; left alone",
            "err: 0 of 1 rules released",
        ]
    );
}
