//! Identical twins named by bus number: a rule `10de:1e89@0a:00` on a host with the same
//! card at 06:00 is the rule that moves onto the other twin when a card is added in an
//! earlier slot, and its ID guard cannot notice. `check` and `apply --dry-run` warn and give
//! the path form, as `rule` does. Through the binary, on fixture trees.

use sysfs_fixture::*;

mod common;

use common::{text, vfio_bind_on_fixture};

/// Two cards of one model and one board maker (same IDs, same subsystem IDs), each with
/// its HDMI audio function: at 06:00 behind root port 00:1c.0, at 0a:00 behind 00:1d.0.
fn identical_twins(second_subsystem: u16) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    for (port, bus, group, subsystem) in [
        ("0000:00:1c.0", "06", 6, 0x3750),
        ("0000:00:1d.0", "0a", 10, second_subsystem),
    ] {
        tree.add(Function::new(port, 0x8086, 0x7ab8, CLASS_BRIDGE).group(group + 100))
            .unwrap()
            .add(
                Function::new(&format!("0000:{bus}:00.0"), 0x10de, 0x1e89, CLASS_VGA)
                    .group(group)
                    .subsystem(0x1462, subsystem)
                    .behind(port),
            )
            .unwrap()
            .add(
                Function::new(&format!("0000:{bus}:00.1"), 0x10de, 0x10f8, CLASS_AUDIO)
                    .group(group)
                    .subsystem(0x1462, subsystem)
                    .behind(port),
            )
            .unwrap();
    }
    tree
}

const TWIN: &str = "0000:0a:00.0 has a twin at 0000:06:00.0 (10de:1e89:1462:3750): bus numbers move when a card is added in an earlier slot, and this rule would then take the other one";

/// The lines of `text` that speak of a twin.
fn twin_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|line| line.contains("twin")).collect()
}

#[test]
fn check_warns_about_a_bus_number_rule_for_one_of_twins_and_gives_its_path() {
    let tree = identical_twins(0x3750);
    let output = vfio_bind_on_fixture(&["check"], &tree, "vfio.bind=10de:1e89@0a:00");
    let stdout = text(&output.stdout);
    assert_eq!(
        twin_lines(&stdout),
        [format!("warning 10de:1e89@0000:0a:00: {TWIN}. Fix: name it by its path: vfio.bind=10de:1e89@0000:00:1d.0/00")],
        "{stdout}"
    );
}

#[test]
fn apply_dry_run_warns_about_it_too() {
    let tree = identical_twins(0x3750);
    let output = vfio_bind_on_fixture(
        &["apply", "--dry-run"],
        &tree,
        "vfio.bind=10de:1e89@0a:00.0",
    );
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    assert_eq!(
        twin_lines(&stderr),
        [format!("vfio-bind: 10de:1e89@0000:0a:00.0: {}; name it by its path instead: vfio.bind=10de:1e89@0000:00:1d.0/00.0", TWIN)],
        "{stderr}"
    );
}

#[test]
fn no_warning_for_a_path_rule_or_a_rule_whose_subsystem_ids_tell_the_twins_apart() {
    let tree = identical_twins(0x3751);
    for rule in [
        // The path form stays right when buses are renumbered.
        "vfio.bind=10de:1e89@00:1d.0/00",
        // Other subsystem IDs at 06:00: the guard would notice a move.
        "vfio.bind=10de:1e89:1462:3751@0a:00",
    ] {
        let output = vfio_bind_on_fixture(&["check"], &tree, rule);
        let stdout = text(&output.stdout);
        assert!(twin_lines(&stdout).is_empty(), "{rule}: {stdout}");
        let output = vfio_bind_on_fixture(&["apply", "--dry-run"], &tree, rule);
        let stderr = text(&output.stderr);
        assert!(twin_lines(&stderr).is_empty(), "{rule}: {stderr}");
    }
    // A card with no twin: nothing to say.
    let tree = host_and_guest_share_audio_ids().unwrap();
    let output = vfio_bind_on_fixture(&["check"], &tree, "vfio.bind=1002:73ff@07:00");
    assert!(twin_lines(&text(&output.stdout)).is_empty());
}
