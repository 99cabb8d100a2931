//! A `driver_override` someone else set (a card parked on `pci-stub` by its administrator)
//! is not vfio-bind's to overwrite: `bind` and `apply` refuse the rule that selects it, with
//! one line naming the override, and touch nothing of that rule (a rule applies whole or
//! not at all). Through the binary, on fixture trees.

use std::process::Output;

use sysfs_fixture::*;

mod common;

use common::{text, vfio_bind, vfio_bind_on_fixture};

const PARKED: &str = "0000:0b:00.0";
const TWIN: &str = "0000:0a:00.0";

/// Two identical cards; the one at 0b:00 parked on pci-stub by its administrator
/// (`driver_override=pci-stub`, bound to pci-stub), its audio function on snd_hda_intel.
/// vfio-pci is registered.
fn card_parked_on_pci_stub() -> SysfsTree {
    let mut tree = twin_cards_at_0a_and_0b(["nouveau", "pci-stub"]).unwrap();
    tree.add_driver("vfio-pci").unwrap();
    std::fs::write(tree.attribute(PARKED, "driver_override"), "pci-stub\n").unwrap();
    tree
}

/// `bind 10de:2204@0b:00` on the fixture: the parked card's rule.
fn bind_the_parked_card(tree: &SysfsTree) -> Output {
    vfio_bind(&[
        "bind",
        "10de:2204@0b:00",
        "--sysfs",
        tree.root().to_str().unwrap(),
    ])
}

const REFUSAL: &str = "vfio-bind: 10de:2204@0000:0b:00 not applied: 0000:0b:00.0 has driver_override=pci-stub, which vfio-bind did not set; nothing it selects was touched (to hand it over, clear it first: echo > /sys/bus/pci/devices/0000:0b:00.0/driver_override)";

/// Nothing of the parked card was written: its override, its drivers, the probe file.
fn assert_parked_card_untouched(tree: &SysfsTree) {
    assert_eq!(tree.override_of(PARKED), "pci-stub");
    assert_eq!(tree.override_of("0000:0b:00.1"), "(null)");
    for written in [
        "bus/pci/drivers/pci-stub/unbind",
        "bus/pci/drivers/snd_hda_intel/unbind",
        "bus/pci/drivers_probe",
    ] {
        let contents = tree.read(written);
        assert!(!contents.contains("0000:0b"), "{written}: {contents}");
    }
}

#[test]
fn bind_refuses_a_card_parked_on_pci_stub_in_one_line_and_touches_nothing() {
    let tree = card_parked_on_pci_stub();
    let output = bind_the_parked_card(&tree);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0], REFUSAL);
    assert!(
        lines[1].starts_with("vfio-bind: 0 of 1 rules applied, 0 functions on vfio-pci in "),
        "{stderr}"
    );
    assert_parked_card_untouched(&tree);
}

#[test]
fn apply_refuses_the_parked_cards_rule_and_still_applies_the_others() {
    let tree = card_parked_on_pci_stub();
    let output = vfio_bind_on_fixture(
        &["apply"],
        &tree,
        "vfio.bind=10de:2204@0b:00,10de:2204@0a:00",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().next(), Some(REFUSAL), "{stderr}");
    assert_parked_card_untouched(&tree);
    // The twin's rule went ahead: its override was written (and, as no kernel binds in a
    // fixture, cleared again when it was given back).
    assert_eq!(tree.override_of(TWIN), "");
    assert!(
        stderr.contains("10de:2204@0000:0a:00 not applied: 0000:0a:00.0 is on nouveau"),
        "{stderr}"
    );
}

#[test]
fn apply_dry_run_says_the_parked_card_would_not_be_taken() {
    let tree = card_parked_on_pci_stub();
    let output = vfio_bind_on_fixture(&["apply", "--dry-run"], &tree, "vfio.bind=10de:2204@0b:00");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr).lines().next(), Some(REFUSAL));
    assert_eq!(
        text(&output.stdout),
        "10de:2204@0000:0b:00: not applied (see the messages above)\n"
    );
}

#[test]
fn an_override_to_vfio_pci_is_no_foreign_one() {
    // Set by vfio-bind at boot, or by driverctl to the same end: the card is handed over.
    let tree = card_parked_on_pci_stub();
    std::fs::write(tree.attribute(PARKED, "driver_override"), "vfio-pci\n").unwrap();
    let output = bind_the_parked_card(&tree);
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("did not set"), "{stderr}");
    assert!(
        tree.read("bus/pci/drivers/pci-stub/unbind")
            .contains(PARKED),
        "{stderr}"
    );
}

#[test]
fn check_says_why_a_rule_on_a_parked_card_is_not_applied() {
    let tree = card_parked_on_pci_stub();
    let output = vfio_bind_on_fixture(&["check"], &tree, "vfio.bind=10de:2204@0b:00");
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let about_the_rule: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("10de:2204@0000:0b:00"))
        .collect();
    assert_eq!(
        about_the_rule,
        ["PROBLEM 10de:2204@0000:0b:00: 0000:0b:00.0 has driver_override=pci-stub, which vfio-bind does not overwrite, so the rule is not applied. Fix: to hand it over, clear it (echo > /sys/bus/pci/devices/0000:0b:00.0/driver_override) where it is set; or take the rule out"],
        "{stdout}"
    );
}
