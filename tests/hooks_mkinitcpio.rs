//! The mkinitcpio install hook, sourced the way mkinitcpio sources it, against the stand-in
//! for mkinitcpio's functions that the VM test uses too (xtask/guest/mkinitcpio/build-driver.bash),
//! which records every request.

mod hooks_common;

use std::fs;
use std::path::Path;

use hooks_common::*;

/// Builds with the install hook the way mkinitcpio does (bash, extglob, `HOOKS` as given,
/// the hook's `build` then `help`) with VFIO_BIND_ROOT at a fake host, and returns the
/// calls it made.
fn mkinitcpio_build(scratch: &Scratch, host: &Host, hooks: &str, nullglob: bool) -> Vec<String> {
    mkinitcpio_build_with_options(scratch, host, hooks, "", nullglob)
}

/// As `mkinitcpio_build`, for `mkinitcpio OPTIONS` (`-A HOOK,...`, `-S HOOK,...`): the hooks
/// that run are then HOOKS plus `-A`, minus `-S`, while HOOKS keeps the config's value.
fn mkinitcpio_build_with_options(
    scratch: &Scratch,
    host: &Host,
    hooks: &str,
    options: &str,
    nullglob: bool,
) -> Vec<String> {
    let root = make_host(scratch, host);
    mkinitcpio_build_from(scratch, Some(&root), hooks, options, nullglob)
}

/// As `mkinitcpio_build`, with VFIO_BIND_ROOT at `root`, or unset. Runs the stand-in the VM
/// test uses too (xtask/guest/mkinitcpio/build-driver.bash), and returns its records, one
/// call a line, fields joined by spaces, the scratch root written `ROOT` and the project's
/// runtime hooks directory `HOOKS`. The hook's variables must stay local: a caller's
/// `root`... are set before the build and checked when the stand-in exits.
fn mkinitcpio_build_from(
    scratch: &Scratch,
    root: Option<&Path>,
    hooks: &str,
    options: &str,
    nullglob: bool,
) -> Vec<String> {
    let records = scratch.join("records");
    let _ = fs::remove_file(&records);
    fs::write(&records, "").unwrap();
    let script = r#"
        root=keep binary=keep unit=keep rules=keep
        trap '[ "$root $binary $unit $rules" = "keep keep keep keep" ] || exit 94' EXIT
        . "$DRIVER" $OPTIONS "$HOOK" "$HOOKSDIR"
    "#;
    let driver = project(MKINITCPIO_STAND_IN);
    let hook = project(MKINITCPIO_INSTALL);
    let hooks_dir = project("mkinitcpio/hooks");
    let help = scratch.join("help");
    let mut env: Vec<(&str, &Path)> = vec![
        ("VFIO_TEST_RECORDS", &records),
        ("VFIO_TEST_HOOKS", Path::new(hooks)),
        (
            "VFIO_TEST_NULLGLOB",
            Path::new(if nullglob { "1" } else { "0" }),
        ),
        ("VFIO_TEST_HELP", &help),
        ("DRIVER", &driver),
        ("HOOK", &hook),
        ("HOOKSDIR", &hooks_dir),
        ("OPTIONS", Path::new(options)),
    ];
    if let Some(root) = root {
        env.push(("VFIO_BIND_ROOT", root));
    }
    let output = run(&bash(), script, &env);
    assert!(
        output.status.success(),
        "mkinitcpio build failed: {:?}\n{}",
        output.status,
        text(&output.stderr)
    );
    let scratch_root = scratch.path().to_str().unwrap();
    let hooks_dir = hooks_dir.to_str().unwrap();
    scratch
        .read("records")
        .split("\0\n")
        .filter(|record| !record.is_empty())
        .map(|record| {
            record
                .trim_end_matches('\0')
                .replace('\0', " ")
                .replace(hooks_dir, "HOOKS")
                .replace(scratch_root, "ROOT")
        })
        .collect()
}

const MKINITCPIO_MODULES: [&str; 3] = [
    "add_module vfio?",
    "add_module vfio_iommu_type1?",
    "add_module vfio-pci?",
];
const MKINITCPIO_BINARY: &str = "add_binary ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind";
const MKINITCPIO_RUNSCRIPT: &str = "add_runscript vfio-bind HOOKS/vfio-bind";
const MKINITCPIO_UNIT: [&str; 2] = [
    "add_file ROOT/host/usr/lib/vfio-bind/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service 644",
    "add_symlink /etc/systemd/system/sysinit.target.wants/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service",
];

/// The calls of a build that finds the binary on the host: the modules, the binary, then
/// `between` (the runscript, v41's warning), then the unit.
fn modules_binary_and_unit_with(between: &[&str]) -> Vec<String> {
    let mut calls = lines(&MKINITCPIO_MODULES);
    calls.push(MKINITCPIO_BINARY.into());
    calls.extend(lines(between));
    calls.extend(lines(&MKINITCPIO_UNIT));
    calls
}

#[test]
fn mkinitcpio_install_adds_binary_modules_runscript_and_unit_in_every_flavour() {
    let scratch = Scratch::new("mkinitcpio-flavours");
    let expected = modules_binary_and_unit_with(&[MKINITCPIO_RUNSCRIPT]);

    // busybox init, systemd before and after the hook, and under nullglob (which would eat
    // an unquoted 'vfio?').
    for (hooks, nullglob) in [
        (
            "base vfio-bind udev autodetect kms block filesystems",
            false,
        ),
        (
            "base systemd vfio-bind autodetect kms block filesystems",
            false,
        ),
        (
            "base vfio-bind systemd autodetect kms block filesystems",
            false,
        ),
        ("base systemd vfio-bind", true),
    ] {
        let log = mkinitcpio_build(&scratch, &FULL_HOST, hooks, nullglob);
        assert_eq!(log, expected, "HOOKS=({hooks}) nullglob={nullglob}");
    }
    let help = scratch.read("help");
    // `mkinitcpio -H vfio-bind` ends with the escape hatch, for both inits.
    assert!(
        help.ends_with(
            "\n\nBoot once without it: remove vfio.bind= from the command line, or add\n\
             `disablehooks=vfio-bind` (busybox init) or `rd.vfio_bind=0` (either init).\n"
        ),
        "{help}"
    );
}

#[test]
fn mkinitcpio_install_adds_the_runscript_only_where_the_image_has_a_busybox_init() {
    let scratch = Scratch::new("mkinitcpio-no-base");
    // A systemd image without `base`: no ash, and the runscript would never run; real
    // mkinitcpio warns "Possibly missing '/usr/bin/ash'" when it is added anyway.
    let log = mkinitcpio_build(
        &scratch,
        &FULL_HOST,
        "systemd vfio-bind autodetect kms",
        false,
    );
    let expected = modules_binary_and_unit_with(&[]);
    assert_eq!(log, expected);
    // `base` after the hook still makes a busybox image: the runscript is added. v41 warns
    // then, as base has not put ash into the image yet; the image is right all the same.
    let log = mkinitcpio_build(&scratch, &FULL_HOST, "vfio-bind base udev", false);
    let expected = modules_binary_and_unit_with(&[MKINITCPIO_RUNSCRIPT, MKINITCPIO_ASH_NOT_YET]);
    assert_eq!(log, expected);
}

/// What v41's add_binary warns when the runtime script is added before ash is in the image.
const MKINITCPIO_ASH_NOT_YET: &str =
    "warning Possibly missing '%s' for script: %s /usr/bin/ash HOOKS/vfio-bind";

/// `mkinitcpio -S base` (skip a hook for one build) and `-A` (add one): the hooks that run
/// are HOOKS plus `-A` minus `-S` (v41's `_hooks`), and the hook must decide from those,
/// not from HOOKS, which keeps the config's value.
#[test]
fn mkinitcpio_install_follows_the_hooks_that_run_with_skip_and_add() {
    let scratch = Scratch::new("mkinitcpio-skip-add");
    let unit_only = modules_binary_and_unit_with(&[]);
    // `base` in HOOKS but skipped: no busybox init, no ash, no runscript (real v41 printed
    // "Possibly missing '/usr/bin/ash' for script: .../hooks/vfio-bind" when the hook read
    // HOOKS).
    for (hooks, options) in [
        ("base systemd vfio-bind autodetect kms", "-S base"),
        ("base systemd autodetect kms", "-A vfio-bind -S base"),
        ("base udev systemd vfio-bind", "-S udev,base"),
    ] {
        let log = mkinitcpio_build_with_options(&scratch, &FULL_HOST, hooks, options, false);
        assert_eq!(log, unit_only, "HOOKS=({hooks}) mkinitcpio {options}");
    }
    // `base` only added with `-A`, after the hook: the image's /init is busybox's, so the
    // runscript must be there (with the warning v41 prints while ash is not there yet).
    let log =
        mkinitcpio_build_with_options(&scratch, &FULL_HOST, "systemd vfio-bind", "-A base", false);
    let expected = modules_binary_and_unit_with(&[MKINITCPIO_RUNSCRIPT, MKINITCPIO_ASH_NOT_YET]);
    assert_eq!(
        log, expected,
        "HOOKS=(systemd vfio-bind) mkinitcpio -A base"
    );
    // Added with `-A` to a busybox image: as if it were in HOOKS.
    let log =
        mkinitcpio_build_with_options(&scratch, &FULL_HOST, "base udev", "-A vfio-bind", false);
    let expected = modules_binary_and_unit_with(&[MKINITCPIO_RUNSCRIPT]);
    assert_eq!(log, expected, "HOOKS=(base udev) mkinitcpio -A vfio-bind");
    // Skipped itself: mkinitcpio does not run it.
    let log = mkinitcpio_build_with_options(
        &scratch,
        &FULL_HOST,
        "base vfio-bind udev",
        "-S vfio-bind",
        false,
    );
    assert_eq!(log, Vec::<String>::new());
}

#[test]
fn mkinitcpio_install_copies_host_rules_when_there_are_some() {
    let scratch = Scratch::new("mkinitcpio-rules");
    let host = Host {
        rules: true,
        ..FULL_HOST
    };
    let log = mkinitcpio_build(&scratch, &host, "base systemd vfio-bind", false);
    let mut expected = modules_binary_and_unit_with(&[MKINITCPIO_RUNSCRIPT]);
    expected.push(
        "add_file ROOT/host/etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf 644".into(),
    );
    assert_eq!(log, expected);
}

#[test]
fn mkinitcpio_install_warns_and_goes_on_without_binary_or_unit() {
    let scratch = Scratch::new("mkinitcpio-missing");
    let host = Host {
        binary: false,
        unit: false,
        rules: false,
    };
    let log = mkinitcpio_build(&scratch, &host, "base vfio-bind udev", false);
    let mut expected = lines(&MKINITCPIO_MODULES);
    expected.push(
        "warning vfio-bind: '%s' not found; the image will not bind anything ROOT/host/usr/bin/vfio-bind"
            .into(),
    );
    expected.push(MKINITCPIO_RUNSCRIPT.into());
    expected.push(
        "warning vfio-bind: '%s' not found; a systemd-based image will not run the binder ROOT/host/usr/lib/vfio-bind/vfio-bind.service"
            .into(),
    );
    assert_eq!(log, expected);
}

/// Without VFIO_BIND_ROOT the hook reads the host's own paths. What it asks for then
/// depends on what this host has installed, so the expectation is read from the host too.
/// add_systemd_unit is never asked for: it looks in the host's unit directories and copies
/// the host's links.
#[test]
fn mkinitcpio_install_reads_the_host_root_by_default() {
    let scratch = Scratch::new("mkinitcpio-host-root");
    let log = mkinitcpio_build_from(&scratch, None, "base vfio-bind udev", "", false);
    let has = |path: &str| Path::new(path).is_file();
    let mut expected = lines(&MKINITCPIO_MODULES);
    expected.push(if has("/usr/bin/vfio-bind") {
        "add_binary /usr/bin/vfio-bind /usr/bin/vfio-bind".into()
    } else {
        "warning vfio-bind: '%s' not found; the image will not bind anything /usr/bin/vfio-bind"
            .into()
    });
    expected.push(MKINITCPIO_RUNSCRIPT.into());
    if has("/usr/lib/vfio-bind/vfio-bind.service") {
        expected.extend(lines(&[
            "add_file /usr/lib/vfio-bind/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service 644",
            "add_symlink /etc/systemd/system/sysinit.target.wants/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service",
        ]));
    } else {
        expected.push(
            "warning vfio-bind: '%s' not found; a systemd-based image will not run the binder /usr/lib/vfio-bind/vfio-bind.service"
                .into(),
        );
    }
    if has("/etc/cmdline.d/vfio-bind.conf") {
        expected.push(
            "add_file /etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf 644".into(),
        );
    }
    assert_eq!(log, expected);
}
