//! The `vfio-bind` binary as a user or a script runs it: exit status, stdout, stderr, and
//! the files it leaves in a fixture tree (where no kernel reacts to what is written).

use std::path::Path;
use std::process::{Command, Output};

use sysfs_fixture::*;

fn vfio_bind(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(arguments)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `apply`/`list`/`check` arguments that keep the host's /proc/cmdline and /etc out.
fn on_fixture<'a>(tree: &'a SysfsTree, no_fragments: &'a str, cmdline: &'a str) -> Vec<&'a str> {
    vec![
        "--sysfs",
        tree.root().to_str().unwrap(),
        "--cmdline-dir",
        no_fragments,
        "--cmdline",
        cmdline,
    ]
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tree = seed_003_machine().unwrap();
    let mut arguments = vec!["apply", "--dry-run"];
    arguments.extend(on_fixture(
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    ));
    let output = vfio_bind(&arguments);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "1002:73ff@0000:07:00: would hand to vfio-pci: 0000:07:00.0 (1002:73ff, no driver yet) 0000:07:00.1 (1002:ab28, no driver yet)\n"
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "(null)");
    assert_eq!(tree.read("bus/pci/drivers_probe"), "");
}

#[test]
fn without_a_kernel_to_bind_apply_gives_the_card_back_and_fails() {
    let tree = seed_003_machine().unwrap();
    let mut arguments = vec!["apply"];
    arguments.extend(on_fixture(
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    ));
    let output = vfio_bind(&arguments);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("vfio-bind: vfio-pci is not registered"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "vfio-bind: 1002:73ff@0000:07:00 not applied: vfio-pci did not take 0000:07:00.0"
        ),
        "{stderr}"
    );
    assert!(stderr
        .lines()
        .last()
        .unwrap()
        .starts_with("vfio-bind: 0 of 1 rules applied, 0 functions on vfio-pci in "));
    // The override was written, then cleared again: the card is free for its own driver.
    assert_eq!(tree.override_of("0000:07:00.0"), "");
    assert_eq!(tree.override_of("0000:07:00.1"), "");
    assert_eq!(tree.override_of("0000:03:00.1"), "(null)");
}

#[test]
fn rules_are_read_from_cmdline_d_fragments_too() {
    let tree = seed_003_machine().unwrap();
    let fragments = tree.root().join("cmdline.d");
    std::fs::create_dir(&fragments).unwrap();
    std::fs::write(
        fragments.join("vfio-bind.conf"),
        "# the guest's RX 6600\nvfio.bind=1002:73ff@07:00\n",
    )
    .unwrap();
    std::fs::write(fragments.join("other.txt"), "vfio.bind=1002:73df@03:00\n").unwrap();
    let output = vfio_bind(&[
        "apply",
        "--dry-run",
        "--sysfs",
        tree.root().to_str().unwrap(),
        "--cmdline-dir",
        fragments.to_str().unwrap(),
        "--cmdline",
        "vfio.bind=1002:ab28@03:00.1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("1002:ab28@0000:03:00.1: would hand to vfio-pci: 0000:03:00.1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1002:73ff@0000:07:00: would hand to vfio-pci: 0000:07:00.0"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("03:00.0"),
        "only *.conf files are read: {stdout}"
    );
}

#[test]
fn bad_arguments_exit_2_and_help_exits_0_with_examples() {
    assert_eq!(vfio_bind(&["apply", "--bogus"]).status.code(), Some(2));
    assert_eq!(vfio_bind(&[]).status.code(), Some(2));
    assert_eq!(vfio_bind(&["frobnicate"]).status.code(), Some(2));
    let output = vfio_bind(&["rule", "7:00"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("\"7:00\" is not a PCI address"));
    assert_eq!(
        vfio_bind(&["bind"]).status.code(),
        Some(2),
        "bind needs a rule"
    );
    assert_eq!(
        vfio_bind(&["release"]).status.code(),
        Some(2),
        "release needs a rule"
    );
    for command in ["apply", "list", "rule", "check", "bind", "release"] {
        let output = vfio_bind(&[command, "--help"]);
        assert_eq!(output.status.code(), Some(0), "{command}");
        assert!(
            text(&output.stdout).contains("Examples:"),
            "{command}: {}",
            text(&output.stdout)
        );
    }
    let output = vfio_bind(&["--help"]);
    assert!(text(&output.stdout).contains("vfio.bind=RULE[,RULE]..."));
}

#[test]
fn a_command_line_beyond_the_kernels_maximum_is_read_up_to_it_without_panic() {
    let tree = seed_003_machine().unwrap();
    let mut cmdline = "vfio.bind=1002:73ff@07:00 ".to_string();
    cmdline.push_str(&"quiet ".repeat(2000));
    cmdline.push_str("vfio.bind=1002:73df@03:00");
    let mut arguments = vec!["apply", "--dry-run"];
    arguments.extend(on_fixture(&tree, "/nonexistent", &cmdline));
    let output = vfio_bind(&arguments);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("the kernel command line is longer than 4096 bytes"));
    assert!(text(&output.stdout).contains("1002:73ff@0000:07:00"));
    assert!(
        !text(&output.stdout).contains("1002:73df"),
        "past the limit is not read"
    );
}

#[test]
fn list_groups_functions_and_marks_the_selected_ones() {
    let tree = seed_003_machine().unwrap();
    let mut arguments = vec!["list"];
    arguments.extend(on_fixture(
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    ));
    let output = vfio_bind(&arguments);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("IOMMU on: 5 groups\n"), "{stdout}");
    let group_17 = stdout.split("IOMMU group 17\n").nth(1).unwrap();
    assert!(group_17.starts_with("* 0000:07:00.0  1002:73ff  [0300]  driver=none path=0000:00:01.2/00.0\n* 0000:07:00.1  1002:ab28  [0403]  driver=none path=0000:00:01.2/00.1"), "{stdout}");
    assert!(
        stdout.contains(
            "  0000:03:00.0  1002:73df  [0300]  driver=none boot_vga path=0000:00:01.1/00.0\n  0000:03:00.1  1002:ab28"
        ),
        "{stdout}"
    );
}

#[test]
fn rule_prints_the_guarded_rule_and_the_group_companions() {
    let mut tree = seed_003_machine().unwrap();
    tree.add(
        Function::new("0000:08:00.0", 0x1b21, 0x2142, CLASS_USB)
            .group(17)
            .driver("xhci_hcd"),
    )
    .unwrap();
    let output = vfio_bind(&["rule", "07:00", "--sysfs", tree.root().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("vfio.bind=1002:73ff@0000:07:00\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  0000:08:00.0  1b21:2142  driver=xhci_hcd"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("vfio.bind=1002:73ff@0000:07:00,1b21:2142@0000:08:00.0\n"),
        "{stdout}"
    );

    let output = vfio_bind(&[
        "rule",
        "0000:07:00.1",
        "--sysfs",
        tree.root().to_str().unwrap(),
    ]);
    assert!(text(&output.stdout).starts_with("vfio.bind=1002:ab28@0000:07:00.1\n"));
    let output = vfio_bind(&["rule", "09:00", "--sysfs", tree.root().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "no PCI function at 0000:09:00\n");
}

/// Seed 003's machine after a boot where the binder did its job, but the guest card's
/// audio function is on snd_hda_intel when `audio_on_host` is set.
fn seed_003_after_boot(audio_on_host: bool) -> SysfsTree {
    let mut tree = SysfsTree::new().unwrap();
    let audio_driver = if audio_on_host {
        "snd_hda_intel"
    } else {
        "vfio-pci"
    };
    tree.add(
        Function::new("0000:03:00.0", 0x1002, 0x73df, CLASS_VGA)
            .group(14)
            .boot_vga(true)
            .driver("amdgpu"),
    )
    .unwrap()
    .add(
        Function::new("0000:03:00.1", 0x1002, 0xab28, CLASS_AUDIO)
            .group(14)
            .driver("snd_hda_intel"),
    )
    .unwrap()
    .add(
        Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA)
            .group(17)
            .driver("vfio-pci"),
    )
    .unwrap()
    .add(
        Function::new("0000:07:00.1", 0x1002, 0xab28, CLASS_AUDIO)
            .group(17)
            .driver(audio_driver),
    )
    .unwrap();
    tree
}

fn check(tree: &SysfsTree, cmdline: &str) -> (Option<i32>, String) {
    let mut arguments = vec!["check"];
    arguments.extend(on_fixture(tree, "/nonexistent", cmdline));
    let output = vfio_bind(&arguments);
    (output.status.code(), text(&output.stdout))
}

#[test]
fn check_passes_when_every_rule_is_bound_and_its_group_viable() {
    let tree = seed_003_after_boot(false);
    let (status, stdout) = check(&tree, "vfio.bind=1002:73ff@07:00");
    assert_eq!(status, Some(0), "{stdout}");
    assert_eq!(
        stdout,
        "ok      the IOMMU is on\n\
         ok      1002:73ff@0000:07:00: 0000:07:00.0, 0000:07:00.1 on vfio-pci\n\
         ok      IOMMU group 17 is viable\n"
    );
}

#[test]
fn check_names_each_problem_with_its_fix() {
    let tree = seed_003_after_boot(true);
    let (status, stdout) = check(&tree, "vfio.bind=1002:73ff@07:00.0,1002:73ff@03:00");
    assert_eq!(status, Some(1));
    assert!(stdout.contains(
        "PROBLEM IOMMU group 17 is not viable: 0000:07:00.1 (1002:ab28) is on snd_hda_intel. Fix: add vfio.bind=1002:ab28@0000:07:00.1"
    ), "{stdout}");
    assert!(stdout.contains("PROBLEM 1002:73ff@0000:03:00: found 1002:73df, 1002:ab28 there instead of the rule's IDs"), "{stdout}");

    let (status, stdout) = check(&tree, "root=/dev/sda1");
    assert_eq!(status, Some(1));
    assert!(stdout.contains("PROBLEM no vfio.bind= rules"), "{stdout}");

    let mut no_iommu = SysfsTree::new().unwrap();
    no_iommu
        .add(Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA).driver("amdgpu"))
        .unwrap();
    let (status, stdout) = check(&no_iommu, "vfio.bind=1002:73ff@07:00");
    assert_eq!(status, Some(1));
    assert!(stdout.starts_with("PROBLEM the IOMMU is off"), "{stdout}");
    assert!(
        stdout.contains("PROBLEM 1002:73ff@0000:07:00: 0000:07:00.0 is on amdgpu, not vfio-pci"),
        "{stdout}"
    );
}

#[test]
fn the_sysfs_root_is_checked() {
    let long_root = "/x".repeat(300);
    let output = vfio_bind(&["list", "--sysfs", &long_root]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!Path::new(&long_root).exists());
}
