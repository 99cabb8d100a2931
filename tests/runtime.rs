//! `vfio-bind bind` and `release` at runtime, as a libvirt hook runs them around a VM.

mod common;

use common::{run_apply, run_release, without_timing, SimulatedKernel};
use sysfs_fixture::*;

/// Two identical cards, both on their native drivers, as on a running desktop.
fn twins_on_native_drivers() -> SysfsTree {
    twin_cards_at_0a_and_0b(["nouveau", "nouveau"]).unwrap()
}

#[test]
fn a_card_goes_to_vfio_pci_and_back_twice_and_its_twin_is_never_touched() {
    let mut tree = twins_on_native_drivers();
    let mut kernel = SimulatedKernel::new(&mut tree)
        .native("0000:0b:00.0", "nouveau")
        .native("0000:0b:00.1", "snd_hda_intel");
    for round in 0..2 {
        // The first round loads vfio-pci; the second finds it registered and probes.
        let bound = run_apply(&mut kernel, "vfio.bind=10de:2204@0b:00");
        assert_eq!(bound.status, 0, "round {round}: {:?}", bound.log);
        assert_eq!(bound.modules.len(), if round == 0 { 2 } else { 0 });
        assert_eq!(
            kernel.tree.driver_of("0000:0b:00.0").as_deref(),
            Some("vfio-pci")
        );
        assert_eq!(
            kernel.tree.driver_of("0000:0b:00.1").as_deref(),
            Some("vfio-pci")
        );

        let released = run_release(&mut kernel, "10de:2204@0b:00");
        assert_eq!(released.status, 0, "round {round}: {:?}", released.log);
        assert_eq!(
            released.writes,
            [
                "bus/pci/devices/0000:0b:00.0/driver_override = ",
                "bus/pci/devices/0000:0b:00.0/driver/unbind = 0000:0b:00.0",
                "bus/pci/drivers_probe = 0000:0b:00.0",
                "bus/pci/devices/0000:0b:00.1/driver_override = ",
                "bus/pci/devices/0000:0b:00.1/driver/unbind = 0000:0b:00.1",
                "bus/pci/drivers_probe = 0000:0b:00.1",
            ]
        );
        assert_eq!(
            without_timing(&released.log),
            [
                "info: 10de:2204@0000:0b:00: 0000:0b:00.0 is back on nouveau",
                "info: 10de:2204@0000:0b:00: 0000:0b:00.1 is back on snd_hda_intel",
                "info: 1 of 1 rules released",
            ]
        );
        assert_eq!(kernel.tree.override_of("0000:0b:00.0"), "");
        for writes in [&bound.writes, &released.writes] {
            assert!(
                writes.iter().all(|w| !w.contains("0000:0a:00")),
                "the twin was touched: {writes:?}"
            );
        }
        assert_eq!(
            kernel.tree.driver_of("0000:0a:00.0").as_deref(),
            Some("nouveau")
        );
        assert_eq!(
            kernel.tree.driver_of("0000:0a:00.1").as_deref(),
            Some("snd_hda_intel")
        );
    }
}

#[test]
fn release_of_a_rule_that_matches_nothing_fails_and_writes_nothing() {
    let mut tree = twins_on_native_drivers();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_release(&mut kernel, "1002:73ff@0b:00");
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty());
    assert!(
        run.log[0]
            .starts_with("err: 1002:73ff@0000:0b:00 not applied: expected 1002:73ff at 0000:0b:00"),
        "{:?}",
        run.log
    );
}

#[test]
fn a_released_function_with_no_driver_to_take_it_is_reported_but_released() {
    let mut tree = twins_on_native_drivers();
    let mut kernel = SimulatedKernel::new(&mut tree);
    assert_eq!(
        run_apply(&mut kernel, "vfio.bind=10de:1aef@0b:00.1").status,
        0
    );
    // No native driver is known to the simulated kernel for 0b:00.1: nothing takes it.
    let run = run_release(&mut kernel, "10de:1aef@0b:00.1");
    assert_eq!(run.status, 0);
    assert_eq!(
        run.log[0],
        "warning: 10de:1aef@0000:0b:00.1: 0000:0b:00.1 is off vfio-pci, but no driver took it (is its module loaded?)"
    );
    assert_eq!(kernel.tree.driver_of("0000:0b:00.1"), None);
}
