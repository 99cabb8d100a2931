//! The dracut module (module-setup.sh), called the way dracut calls it, against the stand-in
//! for dracut's functions (tests/hooks/dracut-stubs.bash), which logs every request.

mod hooks_common;

use std::fs;
use std::process::Command;

use hooks_common::*;

/// Calls check, depends, installkernel and install the way dracut does, with the
/// `systemd` module included or not; returns the stand-in log.
fn dracut_setup(scratch: &Scratch, host: &Host, systemd: bool) -> Vec<String> {
    let root = make_host(scratch, host);
    let log = scratch.join("log");
    let _ = fs::remove_file(&log);
    let script = r#"
        . "$STUBS" || exit 90
        . "$SETUP" || exit 91
        check; _stub_log "check=$?"
        depends; _stub_log "depends=$?"
        installkernel
        _stub_log "hostonly-after=[$hostonly]"
        install
    "#;
    let modules = if systemd { "systemd base" } else { "base" };
    let output = output_of(
        Command::new(require("bash", "bash"))
            .arg("-c")
            .arg(script)
            .env_remove("VFIO_BIND_ROOT")
            .env("HOOK_LOG", &log)
            .env("STUBS", project("tests/hooks/dracut-stubs.bash"))
            .env("SETUP", project(DRACUT_SETUP))
            .env("STUB_MODDIR", project("dracut/90vfio-bind"))
            .env("STUB_DRACUT_MODULES", modules)
            .env("VFIO_BIND_ROOT", &root),
    )
    .expect("bash runs");
    assert!(
        output.status.success(),
        "dracut module failed: {:?}\n{}",
        output.status,
        text(&output.stderr)
    );
    let moddir = project("dracut/90vfio-bind");
    log_lines(scratch, "log")
        .into_iter()
        .map(|line| line.replace(moddir.to_str().unwrap(), "MODDIR"))
        .collect()
}

const DRACUT_PREAMBLE: [&str; 4] = [
    "check=255",
    "depends=0",
    "instmods hostonly=[] vfio vfio_iommu_type1 vfio-pci",
    "hostonly-after=[-h]",
];

const DRACUT_BINARY: &str = "inst_binary ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind";
const DRACUT_CMDLINE_HOOK: &str = "inst_hook cmdline 00 MODDIR/vfio-bind.sh";
const DRACUT_UNIT: [&str; 2] = [
    "inst_simple ROOT/host/usr/lib/vfio-bind/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service",
    "systemctl -q --root /INITDIR add-wants sysinit.target vfio-bind.service",
];

#[test]
fn dracut_without_systemd_installs_a_cmdline_hook_at_00_and_no_unit() {
    let scratch = Scratch::new("dracut-plain");
    let log = dracut_setup(&scratch, &FULL_HOST, false);
    let mut expected = lines(&DRACUT_PREAMBLE);
    expected.push(DRACUT_BINARY.into());
    expected.push(DRACUT_CMDLINE_HOOK.into());
    assert_eq!(log, expected);
    // dracut only sources hooks whose names end in .sh.
    assert!(project(DRACUT_HOOK).is_file());
}

#[test]
fn dracut_with_systemd_installs_the_unit_wanted_by_sysinit_and_no_hook() {
    let scratch = Scratch::new("dracut-systemd");
    let log = dracut_setup(&scratch, &FULL_HOST, true);
    let mut expected = lines(&DRACUT_PREAMBLE);
    expected.push(DRACUT_BINARY.into());
    expected.extend(lines(&DRACUT_UNIT));
    assert_eq!(log, expected);
}

#[test]
fn dracut_copies_host_rules_in_both_flavours() {
    for systemd in [false, true] {
        let scratch = Scratch::new("dracut-rules");
        let host = Host {
            rules: true,
            ..FULL_HOST
        };
        let log = dracut_setup(&scratch, &host, systemd);
        let mut expected = lines(&DRACUT_PREAMBLE);
        expected.push(DRACUT_BINARY.into());
        if systemd {
            expected.extend(lines(&DRACUT_UNIT));
        } else {
            expected.push(DRACUT_CMDLINE_HOOK.into());
        }
        expected.push(
            "inst_simple ROOT/host/etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf"
                .into(),
        );
        assert_eq!(log, expected, "systemd={systemd}");
    }
}

#[test]
fn dracut_warns_and_goes_on_without_binary_or_unit() {
    let host = Host {
        binary: false,
        unit: false,
        rules: false,
    };
    let scratch = Scratch::new("dracut-missing");
    let log = dracut_setup(&scratch, &host, true);
    let mut expected = lines(&DRACUT_PREAMBLE);
    expected.push(
        "dwarn vfio-bind: 'ROOT/host/usr/bin/vfio-bind' not found; the image will not bind anything"
            .into(),
    );
    expected.push(
        "dwarn vfio-bind: 'ROOT/host/usr/lib/vfio-bind/vfio-bind.service' not found; the image will not run the binder"
            .into(),
    );
    assert_eq!(log, expected);

    // Without systemd the hook is still installed: at boot it reports the missing binary.
    let scratch = Scratch::new("dracut-missing-plain");
    let log = dracut_setup(&scratch, &host, false);
    let mut expected = lines(&DRACUT_PREAMBLE);
    expected.push(
        "dwarn vfio-bind: 'ROOT/host/usr/bin/vfio-bind' not found; the image will not bind anything"
            .into(),
    );
    expected.push(DRACUT_CMDLINE_HOOK.into());
    assert_eq!(log, expected);
}
