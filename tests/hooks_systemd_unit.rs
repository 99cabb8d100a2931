//! The systemd unit that runs the binder in systemd-based images (mkinitcpio's and dracut's
//! systemd flavours).

mod hooks_common;

use std::fs;

use hooks_common::*;

/// The unit's settings: every non-comment, non-empty line.
fn unit_settings() -> Vec<String> {
    fs::read_to_string(project(UNIT))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(String::from)
        .collect()
}

/// The words of every `KEY=` line of the unit (systemd adds up repeated list settings).
fn unit_list(settings: &[String], key: &str) -> Vec<String> {
    settings
        .iter()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .flat_map(|value| value.split_whitespace().map(String::from))
        .collect()
}

#[test]
fn the_unit_runs_before_module_loading_and_udev_and_never_fails_the_boot() {
    let settings = unit_settings();
    for wanted in [
        "[Unit]",
        "DefaultDependencies=no",
        "ConditionPathExists=/etc/initrd-release",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=-/usr/bin/vfio-bind apply",
    ] {
        assert!(
            settings.iter().any(|line| line == wanted),
            "{wanted} missing from the unit"
        );
    }
    let before = unit_list(&settings, "Before");
    for unit in [
        "systemd-modules-load.service",
        "systemd-udevd.service",
        "systemd-udev-trigger.service",
        "sysinit.target",
    ] {
        assert!(
            before.iter().any(|word| word == unit),
            "Before= lacks {unit}"
        );
    }
    // Nothing may enable it on the host, and nothing may order it after udev.
    assert!(!settings.iter().any(|line| line == "[Install]"));
    assert!(!settings.iter().any(|line| line.starts_with("After=")));
    assert!(!settings.iter().any(|line| line.starts_with("Requires=")));
}

/// dracut in systemd mode loads `rd.driver.pre=` (what `force_drivers+=` writes into the
/// image's /etc/cmdline.d) from dracut-pre-udev.service, and runs cmdline hooks (which may
/// load modules) from dracut-cmdline.service: the binder must be done before either starts.
#[test]
fn the_unit_runs_before_dracut_loads_forced_drivers() {
    let before = unit_list(&unit_settings(), "Before");
    for unit in ["dracut-cmdline.service", "dracut-pre-udev.service"] {
        assert!(
            before.iter().any(|word| word == unit),
            "Before= lacks {unit}: {before:?}"
        );
    }
}

/// systemd gives Type=oneshot units no start timeout at all; the boot must never wait on
/// the binder for ever. The bound must leave room for the binder's own watchdog (about
/// 10 s), which logs what it gave up on before systemd would kill it.
#[test]
fn the_unit_has_a_finite_start_timeout_beyond_the_binders_watchdog() {
    let settings = unit_settings();
    let values: Vec<&str> = settings
        .iter()
        .filter_map(|line| line.strip_prefix("TimeoutStartSec="))
        .collect();
    assert_eq!(values.len(), 1, "one TimeoutStartSec= expected: {values:?}");
    let value = values[0];
    let seconds: u64 = value
        .strip_suffix('s')
        .unwrap_or(value)
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStartSec={value}: expected plain seconds"));
    assert!(
        (15..=60).contains(&seconds),
        "TimeoutStartSec={value}: expected between 15 and 60 seconds"
    );
    // TimeoutSec= or a later TimeoutStartSec=infinity would undo it.
    assert!(!settings.iter().any(|line| line.starts_with("TimeoutSec=")));
}

/// The escape hatch is the binder's (it parses the command line and fragments as the
/// kernel does); a ConditionKernelCommandLine= would decide it a second, different way
/// (systemd's parser, blind to /etc/cmdline.d) before the binder could log why it did nothing.
#[test]
fn the_unit_leaves_the_escape_hatch_to_the_binder() {
    let settings = unit_settings();
    assert!(
        !settings
            .iter()
            .any(|line| line.starts_with("ConditionKernelCommandLine=")),
        "{settings:#?}"
    );
}
