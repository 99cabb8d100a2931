//! The `vfio-bind` binary as a user or a script runs it: exit status, stdout, stderr, and
//! the files it leaves in a fixture tree (where no kernel reacts to what is written).

use std::path::Path;
use std::process::{Command, Output};

use sysfs_fixture::*;

mod common;

use common::{output_unless_hung, text, vfio_bind};

/// One log line without the run's timing at its end (` in 123 us`).
fn without_timing(line: &str) -> String {
    match (line.rfind(" in "), line.strip_suffix(" us\n")) {
        (Some(index), Some(_)) => format!("{}\n", &line[..index]),
        _ => line.to_string(),
    }
}

/// `apply`/`list`/`check` arguments that keep the host's /proc/cmdline and /etc out.
/// `command` (one or more words) followed by [`on_fixture`]'s options.
fn command_on_fixture<'a>(
    command: &[&'a str],
    tree: &'a SysfsTree,
    no_fragments: &'a str,
    cmdline: &'a str,
) -> Vec<&'a str> {
    let mut arguments = command.to_vec();
    arguments.extend(on_fixture(tree, no_fragments, cmdline));
    arguments
}

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
    let tree = host_and_guest_share_audio_ids().unwrap();
    let arguments = command_on_fixture(
        &["apply", "--dry-run"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
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
    let tree = host_and_guest_share_audio_ids().unwrap();
    let arguments = command_on_fixture(
        &["apply"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
    let output = vfio_bind(&arguments);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr).replace(tree.root().to_str().unwrap(), "SYSFS");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "vfio-bind: vfio-pci is not registered (SYSFS/bus/pci/drivers/vfio-pci is missing), \
             and modules are loaded only when working on /sys",
            "vfio-bind: 1002:73ff@0000:07:00 not applied: vfio-pci did not take 0000:07:00.0 \
             (see the kernel's vfio-pci lines); given back: 0000:07:00.0, 0000:07:00.1",
        ],
        "{stderr}"
    );
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[2].starts_with("vfio-bind: 0 of 1 rules applied, 0 functions on vfio-pci in ")
            && lines[2].ends_with(" us"),
        "{stderr}"
    );
    // The override was written, then cleared again: the card is free for its own driver.
    assert_eq!(tree.override_of("0000:07:00.0"), "");
    assert_eq!(tree.override_of("0000:07:00.1"), "");
    assert_eq!(tree.override_of("0000:03:00.1"), "(null)");
}

#[test]
fn rules_are_read_from_cmdline_d_fragments_too() {
    let tree = host_and_guest_share_audio_ids().unwrap();
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
    // Only *.conf files are read: other.txt's 03:00.0 is not there.
    assert_eq!(
        text(&output.stdout),
        "1002:ab28@0000:03:00.1: would hand to vfio-pci: 0000:03:00.1 (1002:ab28, no driver yet)\n\
         1002:73ff@0000:07:00: would hand to vfio-pci: 0000:07:00.0 (1002:73ff, no driver yet) \
         0000:07:00.1 (1002:ab28, no driver yet)\n"
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
fn a_command_line_beyond_the_kernels_maximum_is_read_up_to_it_and_fails() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let mut cmdline = "vfio.bind=1002:73ff@07:00 ".to_string();
    cmdline.push_str(&"quiet ".repeat(2000));
    cmdline.push_str("vfio.bind=1002:73df@03:00");
    let arguments = command_on_fixture(&["apply", "--dry-run"], &tree, "/nonexistent", &cmdline);
    let output = vfio_bind(&arguments);
    // Rules past the limit are lost: said once, and the run fails.
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("the kernel command line is longer than 4096 bytes"));
    assert!(text(&output.stdout).contains("1002:73ff@0000:07:00"));
    assert!(
        !text(&output.stdout).contains("1002:73df"),
        "past the limit is not read"
    );
}

#[test]
fn list_shows_groups_in_number_order_and_functions_without_a_group_last() {
    let mut tree = SysfsTree::new().unwrap();
    tree.add(Function::new("0000:00:1f.0", 0x8086, 0x7a84, 0x060100))
        .unwrap()
        .add(Function::new("0000:01:00.0", 0x1002, 0x73ff, 0x030000).group(10))
        .unwrap()
        .add(Function::new("0000:02:00.0", 0x10de, 0x2204, 0x030000).group(2))
        .unwrap();
    let output = vfio_bind(&command_on_fixture(&["list"], &tree, "/nonexistent", ""));
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    let sections: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("IOMMU group"))
        .collect();
    assert_eq!(
        sections,
        ["IOMMU group 2", "IOMMU group 10", "no IOMMU group"],
        "{stdout}"
    );
    assert!(
        stdout.ends_with("no IOMMU group\n  0000:00:1f.0  8086:7a84  [0601]  driver=none\n"),
        "{stdout}"
    );
}

#[test]
fn list_groups_functions_and_marks_the_selected_ones() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let arguments = command_on_fixture(
        &["list"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
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
    let mut tree = host_and_guest_share_audio_ids().unwrap();
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

/// The machine of `host_and_guest_share_audio_ids` after a boot where the binder did its
/// job, but the guest card's audio function is on snd_hda_intel when `audio_on_host` is set.
fn host_and_guest_after_the_binder_ran(audio_on_host: bool) -> SysfsTree {
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
    let arguments = command_on_fixture(&["check"], tree, "/nonexistent", cmdline);
    let output = vfio_bind(&arguments);
    (output.status.code(), text(&output.stdout))
}

#[test]
fn check_passes_when_every_rule_is_bound_and_its_group_viable() {
    let tree = host_and_guest_after_the_binder_ran(false);
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
    let tree = host_and_guest_after_the_binder_ran(true);
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

/// Runs the binary with arguments given as bytes (a user's shell passes any bytes).
fn vfio_bind_os(arguments: &[&[u8]]) -> Output {
    use std::os::unix::ffi::OsStrExt;
    Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(arguments.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
        .output()
        .expect("the binary runs")
}

fn fixture_root(tree: &SysfsTree) -> &[u8] {
    tree.root().to_str().unwrap().as_bytes()
}

#[test]
fn a_non_utf8_byte_in_the_command_line_drops_no_rule_after_it() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let output = vfio_bind_os(&[
        b"apply",
        b"--dry-run",
        b"--sysfs",
        fixture_root(&tree),
        b"--cmdline-dir",
        b"/nonexistent",
        b"--cmdline",
        b"root=LABEL=Donn\xe9es vfio.bind=1002:73ff@07:00",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("1002:73ff@0000:07:00: would hand to vfio-pci"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_latin1_comment_in_a_fragment_drops_no_rule_after_it() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let fragments = tree.root().join("cmdline.d");
    std::fs::create_dir(&fragments).unwrap();
    std::fs::write(
        fragments.join("vfio-bind.conf"),
        b"# la carte graphique de l'invit\xe9\nvfio.bind=1002:73ff@07:00\n",
    )
    .unwrap();
    let output = vfio_bind(&[
        "apply",
        "--dry-run",
        "--sysfs",
        tree.root().to_str().unwrap(),
        "--cmdline-dir",
        fragments.to_str().unwrap(),
        "--cmdline",
        "quiet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("1002:73ff@0000:07:00: would hand to vfio-pci"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_rule_that_is_not_utf8_gets_one_line_quoting_it_escaped_and_is_skipped() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let output = vfio_bind_os(&[
        b"apply",
        b"--dry-run",
        b"--sysfs",
        fixture_root(&tree),
        b"--cmdline-dir",
        b"/nonexistent",
        b"--cmdline",
        b"vfio.bind=1002:73ff@07:0\xe9,1002:73ff@07:00",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("malformed")).collect();
    assert_eq!(
        lines,
        ["vfio-bind: skipped malformed rule \"1002:73ff@07:0\\xe9\" from the kernel command line: not ASCII text"],
        "{stderr}"
    );
    assert!(text(&output.stdout).starts_with("1002:73ff@0000:07:00: would hand"));
}

#[test]
fn the_kernels_white_space_and_a_quoted_double_dash_are_honoured() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let run = |cmdline: &[u8]| {
        let output = vfio_bind_os(&[
            b"apply",
            b"--dry-run",
            b"--sysfs",
            fixture_root(&tree),
            b"--cmdline-dir",
            b"/nonexistent",
            b"--cmdline",
            cmdline,
        ]);
        (output.status.code(), text(&output.stdout))
    };
    // `\v` separates parameters, so the rule is a rule of its own.
    let (status, stdout) = run(b"quiet\x0bvfio.bind=1002:73ff@07:00");
    assert_eq!(status, Some(0));
    assert!(
        stdout.starts_with("1002:73ff@0000:07:00: would hand"),
        "{stdout}"
    );
    // After `"--"` the parameters are init's, not the kernel's: no rule.
    let (status, stdout) = run(b"quiet \"--\" vfio.bind=1002:73ff@07:00");
    assert_eq!((status, stdout.as_str()), (Some(0), ""));
}

#[test]
fn rd_vfio_bind_0_makes_apply_do_nothing_with_one_line() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    for cmdline in [
        "vfio.bind=1002:73ff@07:00 rd.vfio_bind=0",
        "vfio.bind=1002:73ff@07:00\trd.vfio-bind=off",
        "\"rd.vfio_bind=0\" vfio.bind=1002:73ff@07:00",
        "rd.vfio_bind=\"no\"\x0bvfio.bind=1002:73ff@07:00",
    ] {
        let arguments = command_on_fixture(&["apply"], &tree, "/nonexistent", cmdline);
        let output = vfio_bind(&arguments);
        assert_eq!(output.status.code(), Some(0), "{cmdline}");
        assert_eq!(
            without_timing(&text(&output.stderr)),
            "vfio-bind: not run: rd.vfio_bind=0 is on the kernel command line\n",
            "{cmdline}"
        );
        assert_eq!(tree.override_of("0000:07:00.0"), "(null)", "{cmdline}");
        assert_eq!(tree.read("bus/pci/drivers_probe"), "", "{cmdline}");
    }
    // From a fragment too.
    let fragments = tree.root().join("cmdline.d");
    std::fs::create_dir(&fragments).unwrap();
    std::fs::write(fragments.join("off.conf"), "rd.vfio_bind=0\n").unwrap();
    let arguments = command_on_fixture(
        &["apply"],
        &tree,
        fragments.to_str().unwrap(),
        "vfio.bind=1002:73ff@07:00",
    );
    let output = vfio_bind(&arguments);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        without_timing(&text(&output.stderr)),
        "vfio-bind: not run: rd.vfio_bind=0 is on the kernel command line\n"
    );
    assert_eq!(tree.override_of("0000:07:00.0"), "(null)");
    // Not the escape hatch: the binder runs (and, with no kernel, fails).
    for cmdline in [
        "vfio.bind=1002:73ff@07:00 rd.vfio_bind=1",
        "vfio.bind=1002:73ff@07:00 -- rd.vfio_bind=0",
    ] {
        let arguments = command_on_fixture(&["apply", "--dry-run"], &tree, "/nonexistent", cmdline);
        let output = vfio_bind(&arguments);
        assert!(
            text(&output.stdout).contains("would hand to vfio-pci"),
            "{cmdline}"
        );
    }
}

/// A fragment directory holding one `vfio-bind.conf` with a rule, next to `tree`.
fn fragment_dir(tree: &SysfsTree) -> std::path::PathBuf {
    let fragments = tree.root().join("cmdline.d");
    std::fs::create_dir(&fragments).unwrap();
    std::fs::write(
        fragments.join("vfio-bind.conf"),
        "vfio.bind=1002:73ff@07:00\n",
    )
    .unwrap();
    fragments
}

/// `command` with the fixture and `fragments`, and no kernel command-line rules, run under
/// a time limit: the binder must never wait on a fragment.
fn run_bounded(command: &[&str], tree: &SysfsTree, fragments: &Path) -> Output {
    let arguments = command_on_fixture(command, tree, fragments.to_str().unwrap(), "quiet");
    let child = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .args(&arguments)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    output_unless_hung(child, &format!("{command:?} blocked on a fragment"))
}

#[test]
fn a_fifo_or_a_tty_among_the_fragments_never_blocks_and_fails_the_run() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let fragments = fragment_dir(&tree);
    let fifo = fragments.join("fifo.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/tty", fragments.join("tty.conf")).unwrap();
    for command in [&["apply", "--dry-run"][..], &["list"], &["check"]] {
        let output = run_bounded(command, &tree, &fragments);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command:?}: {stderr}");
        for name in ["fifo.conf", "tty.conf"] {
            let lines = stderr
                .lines()
                .filter(|line| line.contains(name) && line.contains("not a regular file"))
                .count();
            assert_eq!(lines, 1, "{command:?} {name}: {stderr}");
        }
    }
    // The regular fragment beside them is still read.
    let output = run_bounded(&["apply", "--dry-run"], &tree, &fragments);
    assert!(text(&output.stdout).contains("1002:73ff@0000:07:00: would hand"));
}

#[test]
fn every_fragment_left_unread_gets_one_line_and_fails_the_run() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let fragments = fragment_dir(&tree);
    let apply = |fragments: &Path| run_bounded(&["apply", "--dry-run"], &tree, fragments);

    // A name that is not UTF-8, and one too long to keep.
    use std::os::unix::ffi::OsStrExt;
    let latin1 = fragments.join(std::ffi::OsStr::from_bytes(b"caf\xe9.conf"));
    std::fs::write(&latin1, "vfio.bind=1002:73df@03:00\n").unwrap();
    let long = fragments.join(format!("{}.conf", "x".repeat(80)));
    std::fs::write(&long, "vfio.bind=1002:73df@03:00\n").unwrap();
    let output = apply(&fragments);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("caf\\xe9.conf\""))
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("xxxxxxxx.conf\""))
            .count(),
        1,
        "{stderr}"
    );
    std::fs::remove_file(&latin1).unwrap();
    std::fs::remove_file(&long).unwrap();

    // A fragment over the size cap: read up to it, said once.
    let big = fragments.join("big.conf");
    std::fs::write(&big, "quiet ".repeat(1000)).unwrap();
    let output = apply(&fragments);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("big.conf is longer than 4096 bytes"));
    std::fs::remove_file(&big).unwrap();

    // More than 16 fragments.
    for n in 0..17 {
        std::fs::write(fragments.join(format!("{n:02}.conf")), "quiet\n").unwrap();
    }
    let output = apply(&fragments);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr)
            .lines()
            .filter(|l| l.contains("more than 16 *.conf files"))
            .count(),
        1
    );
    for n in 0..17 {
        std::fs::remove_file(fragments.join(format!("{n:02}.conf"))).unwrap();
    }

    // A fragment that cannot be read (a dangling link: no test runs as root-proof
    // otherwise; a mode-000 file is readable by root).
    std::os::unix::fs::symlink("/nonexistent/x", fragments.join("gone.conf")).unwrap();
    let output = apply(&fragments);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("gone.conf: No such file or directory"),
        "{}",
        text(&output.stderr)
    );
    std::fs::remove_file(fragments.join("gone.conf")).unwrap();

    // All clean again: success.
    let output = apply(&fragments);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn a_non_utf8_argument_is_reported_not_aborted_on() {
    let output = vfio_bind_os(&[b"rule", b"07:00\xff"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "vfio-bind: argument 2 is not UTF-8: \"07:00\\xff\"\n"
    );
    // A --sysfs that is not UTF-8 is refused with a usage error, not a crash.
    let output = vfio_bind_os(&[b"list", b"--sysfs", b"/tmp/sys\xff"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("\"/tmp/sys\\xff\""));
}

#[test]
fn a_fragment_directory_that_is_not_utf8_is_read() {
    use std::os::unix::ffi::OsStrExt;
    let tree = host_and_guest_share_audio_ids().unwrap();
    let fragments = tree
        .root()
        .join(std::ffi::OsStr::from_bytes(b"cmdline-\xe9.d"));
    std::fs::create_dir(&fragments).unwrap();
    std::fs::write(fragments.join("a.conf"), "vfio.bind=1002:73ff@07:00\n").unwrap();
    let output = vfio_bind_os(&[
        b"apply",
        b"--dry-run",
        b"--sysfs",
        fixture_root(&tree),
        b"--cmdline-dir",
        fragments.as_os_str().as_bytes(),
        b"--cmdline",
        b"quiet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("1002:73ff@0000:07:00: would hand"));
}

#[test]
fn bind_and_release_take_the_comma_list_their_help_promises() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let root = tree.root().to_str().unwrap();
    // On a fixture no kernel binds, so bind fails; what matters is that both rules of the
    // list were taken as rules (each tried, not one malformed text).
    let output = vfio_bind(&["bind", "1002:73ff@07:00,1002:ab28@03:00.1", "--sysfs", root]);
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("malformed"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("of 2 rules applied"),
        "{stderr}"
    );
    let output = vfio_bind(&[
        "release",
        "1002:73ff@07:00,1002:ab28@03:00.1",
        "--sysfs",
        root,
    ]);
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("malformed"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("of 2 rules released"),
        "{stderr}"
    );
}

#[test]
fn output_that_cannot_be_written_fails_with_one_line() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let root = tree.root().to_str().unwrap();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let dry_run = command_on_fixture(
        &["apply", "--dry-run"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
    let list = command_on_fixture(
        &["list"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
    let check = command_on_fixture(
        &["check"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
    let rule = vec!["rule", "07:00", "--sysfs", root];
    for arguments in [&dry_run, &list, &check, &rule, &vec!["--help"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
            .args(arguments)
            .stdout(full())
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{arguments:?}");
        assert!(
            output.status.code().is_some(),
            "{arguments:?} died: {stderr}"
        );
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot write"))
            .collect();
        assert_eq!(
            lines,
            ["vfio-bind: cannot write the output: No space left on device (os error 28)"],
            "{arguments:?}: {stderr}"
        );
    }
}

#[test]
fn output_to_a_closed_pipe_never_aborts() {
    let tree = host_and_guest_share_audio_ids().unwrap();
    let list = command_on_fixture(
        &["list"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
    let dry_run = command_on_fixture(
        &["apply", "--dry-run"],
        &tree,
        "/nonexistent",
        "vfio.bind=1002:73ff@07:00",
    );
    for arguments in [&list, &dry_run] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
            .args(arguments)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        // Exits by itself (no abort, no signal), fails, and says nothing of the pipe.
        assert_eq!(output.status.code(), Some(1), "{arguments:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("cannot write"), "{stderr}");
    }
}

#[test]
fn any_spelling_of_the_real_sysfs_counts_as_the_real_one() {
    use vfio_bind::machine::sysfs::Sysfs;
    assert!(Sysfs::new(Path::new("/sys")).unwrap().is_real());
    let link = std::env::temp_dir().join(format!("vfio-bind-sys-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/sys", &link).unwrap();
    for root in [
        Path::new("//sys"),
        Path::new("/sys/"),
        Path::new("/./sys"),
        &link,
    ] {
        assert!(Sysfs::new(root).unwrap().is_real(), "{}", root.display());
    }
    std::fs::remove_file(&link).unwrap();
    let tree = host_and_guest_share_audio_ids().unwrap();
    assert!(!Sysfs::new(tree.root()).unwrap().is_real());
    // And the binary reads `//sys` as it reads `/sys` (read-only: list).
    let real = vfio_bind(&[
        "list",
        "--sysfs",
        "/sys",
        "--cmdline",
        "",
        "--cmdline-dir",
        "/nonexistent",
    ]);
    let doubled = vfio_bind(&[
        "list",
        "--sysfs",
        "//sys",
        "--cmdline",
        "",
        "--cmdline-dir",
        "/nonexistent",
    ]);
    assert_eq!(real.status.code(), doubled.status.code());
    assert_eq!(text(&real.stdout), text(&doubled.stdout));
}

#[test]
fn a_program_name_that_is_not_utf8_is_no_bad_argument() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let output = Command::new(env!("CARGO_BIN_EXE_vfio-bind"))
        .arg0(std::ffi::OsStr::from_bytes(b"vfio-bind-\xe9"))
        .args(["rule", "--help"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}
