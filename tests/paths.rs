//! Path rules (`@00:1c.0/00`) and subsystem-ID guards on fixture trees laid out as the
//! kernel lays them out: twins behind two root ports, renumbered by a USB card in front.
//! What ends on vfio-pci, what the log says, and that a path that leads nowhere says which
//! hop in one line and touches nothing.

mod common;

use common::{run_apply, run_release, vfio_bind, without_timing, SimulatedKernel};
use sysfs_fixture::*;

/// The left twin (behind root port 00:1c.0) and the right one (behind 00:1d.0), at the bus
/// numbers the firmware gives them on each topology.
fn twins(usb_in_front: bool) -> (&'static str, &'static str) {
    if usb_in_front {
        ("0000:02:00.0", "0000:03:00.0")
    } else {
        ("0000:01:00.0", "0000:02:00.0")
    }
}

#[test]
fn a_path_rule_takes_the_same_twin_on_both_topologies() {
    for usb_in_front in [false, true] {
        let (left, right) = twins(usb_in_front);
        let mut tree = twins_behind_root_ports(usb_in_front).unwrap();
        let mut kernel = SimulatedKernel::new(&mut tree);
        let run = run_apply(&mut kernel, "vfio.bind=1234:1111@00:1c.0/00");
        assert_eq!(run.status, 0, "{:?}", run.log);
        let slot = &left[..10];
        assert_eq!(
            without_timing(&run.log),
            [
                format!("info: 1234:1111@0000:00:1c.0/00: resolved to {slot}"),
                format!("info: 1234:1111@0000:00:1c.0/00: {left} on vfio-pci"),
                "info: 1 of 1 rules applied, 1 functions on vfio-pci".to_string(),
            ]
        );
        assert_eq!(
            run.writes,
            [format!("bus/pci/devices/{left}/driver_override = vfio-pci")]
        );
        assert_eq!(tree.driver_of(left).as_deref(), Some("vfio-pci"));
        assert_eq!(tree.driver_of(right), None);
        assert_eq!(tree.override_of(right), "(null)");
    }
}

/// The hazard the path form exists for, shown rather than assumed: the same bus rule,
/// same IDs, lands on the other physical twin once a card in front shifts the buses, and
/// the ID guard cannot notice.
#[test]
fn the_same_bus_rule_lands_on_the_other_twin_after_renumbering() {
    let mut taken_behind = Vec::new();
    for usb_in_front in [false, true] {
        let (left, right) = twins(usb_in_front);
        let mut tree = twins_behind_root_ports(usb_in_front).unwrap();
        let mut kernel = SimulatedKernel::new(&mut tree);
        let run = run_apply(&mut kernel, "vfio.bind=1234:1111@02:00");
        assert_eq!(run.status, 0, "{:?}", run.log);
        let port = if tree.driver_of(right).as_deref() == Some("vfio-pci") {
            "1d.0"
        } else {
            assert_eq!(tree.driver_of(left).as_deref(), Some("vfio-pci"));
            "1c.0"
        };
        taken_behind.push(port);
    }
    assert_eq!(taken_behind, ["1d.0", "1c.0"]);
}

#[test]
fn a_function_path_and_a_deep_path_through_a_switch_resolve() {
    let mut tree = twins_behind_root_ports(false).unwrap();
    // A switch behind root port 00:1e.0: upstream port 03:00.0, downstream port 04:02.0,
    // and a card at 05:00 with two functions.
    tree.add(Function::new("0000:00:1e.0", 0x1b36, 0x000c, CLASS_BRIDGE).group(5))
        .unwrap()
        .add(
            Function::new("0000:03:00.0", 0x10b5, 0x8747, CLASS_BRIDGE)
                .group(5)
                .behind("0000:00:1e.0"),
        )
        .unwrap()
        .add(
            Function::new("0000:04:02.0", 0x10b5, 0x8747, CLASS_BRIDGE)
                .group(5)
                .behind("0000:03:00.0"),
        )
        .unwrap();
    for function in [0, 1] {
        tree.add(
            Function::new(
                &format!("0000:05:00.{function}"),
                0x1002,
                0x73ff - function,
                CLASS_VGA,
            )
            .group(5)
            .behind("0000:04:02.0"),
        )
        .unwrap();
    }
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=@00:1e.0/00.0/02.0/00.1");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(
        run.log[0],
        "info: @0000:00:1e.0/00.0/02.0/00.1: resolved to 0000:05:00.1"
    );
    assert_eq!(tree.driver_of("0000:05:00.1").as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of("0000:05:00.0"), None);

    // A path that ends at a bridge selects it, and it is refused as any bridge is.
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=@00:1e.0/00.0/02.0");
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty(), "{:?}", run.writes);
    assert_eq!(
        without_timing(&run.log),
        [
            "info: @0000:00:1e.0/00.0/02.0: resolved to 0000:04:02.0",
            "err: @0000:00:1e.0/00.0/02.0 not applied: it selects only PCI bridges, which vfio-pci cannot take",
            "warning: @0000:00:1e.0/00.0/02.0: 0000:04:02.0 is a PCI bridge, which vfio-pci cannot take; it is left alone",
            "err: 0 of 1 rules applied, 0 functions on vfio-pci",
        ]
    );
}

/// Each way a path can lead nowhere: one line naming the hop, nothing written, the other
/// rules still applied.
#[test]
fn a_path_that_leads_nowhere_says_which_hop_in_one_line() {
    let cases = [
        (
            "1234:1111@00:1c.0/05",
            "err: 1234:1111@0000:00:1c.0/05 not applied: hop 05: the bridge 0000:00:1c.0 has no device at 05",
        ),
        (
            "@00:1c.0/00.0/00.0",
            "err: @0000:00:1c.0/00.0/00.0 not applied: hop 00.0 is below 0000:01:00.0, which is not a bridge, so nothing is below it",
        ),
        (
            "@00:02.0/00.0",
            "err: @0000:00:02.0/00.0 not applied: hop 00.0 is below 0000:00:02.0, which is not a bridge, so nothing is below it",
        ),
        (
            "@00:1f.0/00",
            "err: @0000:00:1f.0/00 not applied: the path starts at 0000:00:1f.0, which is not a function on root bus pci0000:00",
        ),
        (
            "@0001:00:1c.0/00",
            "err: @0001:00:1c.0/00 not applied: the path starts at 0001:00:1c.0, which is not a function on root bus pci0001:00",
        ),
    ];
    for (rule, line) in cases {
        let mut tree = twins_behind_root_ports(false).unwrap();
        let mut kernel = SimulatedKernel::new(&mut tree);
        let run = run_apply(&mut kernel, &format!("vfio.bind={rule},@00:1d.0/00.0"));
        assert_eq!(run.status, 1, "{rule}");
        assert_eq!(
            without_timing(&run.log),
            [
                line,
                "info: @0000:00:1d.0/00.0: resolved to 0000:02:00.0",
                "info: @0000:00:1d.0/00.0: 0000:02:00.0 on vfio-pci",
                "err: 1 of 2 rules applied, 1 functions on vfio-pci",
            ],
            "{rule}"
        );
        assert_eq!(
            run.writes,
            ["bus/pci/devices/0000:02:00.0/driver_override = vfio-pci"],
            "{rule}"
        );
    }
}

#[test]
fn an_overlong_path_is_a_malformed_rule() {
    let mut tree = twins_behind_root_ports(false).unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let long = "@00:1c.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00";
    let run = run_apply(&mut kernel, &format!("vfio.bind={long}"));
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty());
    assert_eq!(
        without_timing(&run.log),
        [
            format!("err: skipped malformed rule \"{long}\" from the kernel command line: a path has at most 8 hops below its root-bus function"),
            "err: no valid rule; nothing was bound".to_string(),
        ]
    );
}

#[test]
fn subsystem_ids_tell_twins_of_two_board_makers_apart() {
    let (left, right) = twins(true);
    let mut tree = twins_behind_root_ports(true).unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1234:1111:1af4:1101");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(tree.driver_of(right).as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of(left), None);

    // A guard with the right twin's subsystem IDs at the left twin's address: refused whole.
    let mut tree = twins_behind_root_ports(true).unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1234:1111:1af4:1101@02:00");
    assert_eq!(run.status, 1);
    assert!(run.writes.is_empty());
    assert!(
        run.log[0].starts_with(
            "err: 1234:1111:1af4:1101@0000:02:00 not applied: expected 1234:1111:1af4:1101 at 0000:02:00"
        ),
        "{:?}",
        run.log
    );
    // With a path and a subsystem guard together.
    let mut kernel = SimulatedKernel::new(&mut tree);
    let run = run_apply(&mut kernel, "vfio.bind=1234:1111:1af4:1100@00:1c.0/00");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(tree.driver_of(left).as_deref(), Some("vfio-pci"));
    assert_eq!(tree.driver_of(right), None);
}

#[test]
fn release_takes_a_path_rule_too() {
    let (left, right) = twins(true);
    let mut tree = twins_behind_root_ports(true).unwrap();
    let mut kernel = SimulatedKernel::new(&mut tree).native(right, "bochs-drm");
    assert_eq!(run_apply(&mut kernel, "vfio.bind=@00:1d.0/00.0").status, 0);
    let run = run_release(&mut kernel, "@00:1d.0/00.0");
    assert_eq!(run.status, 0, "{:?}", run.log);
    assert_eq!(
        run.log[0],
        format!("info: @0000:00:1d.0/00.0: resolved to {right}")
    );
    assert_eq!(tree.override_of(right), "");
    assert_eq!(tree.driver_of(left), None);
}

#[test]
fn rule_offers_the_path_form_and_list_shows_paths() {
    let tree = twins_behind_root_ports(true).unwrap();
    let root = tree.root().to_str().unwrap();
    let output = vfio_bind(&["rule", "03:00", "--sysfs", root]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("vfio.bind=1234:1111@0000:03:00"));
    assert_eq!(
        lines.next(),
        Some("or by its path, which stays right when bus numbers move (they do when a card is added in an earlier slot): vfio.bind=1234:1111@0000:00:1d.0/00")
    );
    let output = vfio_bind(&["rule", "03:00.0", "--sysfs", root]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "vfio.bind=1234:1111@0000:03:00.0\n\
         or by its path, which stays right when bus numbers move (they do when a card is added \
         in an earlier slot): vfio.bind=1234:1111@0000:00:1d.0/00.0\n  \
         takes 0000:03:00.0  1234:1111  driver=none\n"
    );
    // A card on the root bus has no path to offer.
    let output = vfio_bind(&["rule", "00:02", "--sysfs", root]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "vfio.bind=1af4:1050@0000:00:02\n  takes 0000:00:02.0  1af4:1050  driver=none\n"
    );

    let output = vfio_bind(&[
        "list",
        "--sysfs",
        root,
        "--cmdline-dir",
        "/nonexistent",
        "--cmdline",
        "vfio.bind=1234:1111@00:1c.0/00",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [
            "IOMMU on: 5 groups",
            "* = selected by the current vfio.bind rules (1 rules)",
            "",
            "IOMMU group 0",
            "  0000:00:00.0  8086:29c0  [0600]  driver=none",
            "",
            "IOMMU group 1",
            "  0000:00:02.0  1af4:1050  [0300]  driver=none boot_vga",
            "",
            "IOMMU group 2",
            "  0000:00:1b.0  1b36:000c  [0604]  driver=none",
            "  0000:01:00.0  1b36:000d  [0c03]  driver=none path=0000:00:1b.0/00.0",
            "",
            "IOMMU group 3",
            "  0000:00:1c.0  1b36:000c  [0604]  driver=none",
            "* 0000:02:00.0  1234:1111  [0380]  driver=none path=0000:00:1c.0/00.0",
            "",
            "IOMMU group 4",
            "  0000:00:1d.0  1b36:000c  [0604]  driver=none",
            "  0000:03:00.0  1234:1111  [0380]  driver=none path=0000:00:1d.0/00.0",
        ]
    );
}

#[test]
fn check_follows_a_path_rule_after_boot() {
    // The left twin as the binder left it: on vfio-pci behind root port 00:1c.0, bus 02.
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new("0000:00:1b.0", 0x1b36, 0x000c, CLASS_BRIDGE).group(2))
        .unwrap()
        .add(Function::new("0000:00:1c.0", 0x1b36, 0x000c, CLASS_BRIDGE).group(3))
        .unwrap()
        .add(
            Function::new("0000:02:00.0", 0x1234, 0x1111, 0x038000)
                .group(3)
                .driver("vfio-pci")
                .behind("0000:00:1c.0"),
        )
        .unwrap();
    let root = tree.root().to_str().unwrap();
    let arguments = |rule: &'static str| {
        [
            "check",
            "--sysfs",
            root,
            "--cmdline-dir",
            "/nonexistent",
            "--cmdline",
            rule,
        ]
    };
    let output = vfio_bind(&arguments("vfio.bind=1234:1111@00:1c.0/00"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok      1234:1111@0000:00:1c.0/00: 0000:02:00.0 on vfio-pci\n"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("1234:1111@0000:00:1c.0/00: resolved to 0000:02:00"));
    let output = vfio_bind(&arguments("vfio.bind=1234:1111@00:1b.0/00"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "1234:1111@0000:00:1b.0/00 not applied: hop 00: the bridge 0000:00:1b.0 has no device at 00"
        ),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
