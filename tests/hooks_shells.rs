//! Every shell file of the initramfs integration: its declared dialect, shellcheck, and that it
//! parses in each shell that runs it.

mod hooks_common;

use std::fs;
use std::process::Command;

use hooks_common::*;

#[test]
fn every_shell_file_declares_its_dialect_and_passes_shellcheck() {
    for (file, dialect) in SHELL_FILES {
        let contents = fs::read_to_string(project(file)).unwrap();
        assert!(
            contents.contains(&format!("\n# shellcheck shell={dialect}\n")),
            "{file} must say `# shellcheck shell={dialect}`"
        );
    }
    if std::env::var_os("VFIO_BIND_SKIP_SHELLCHECK").is_some() {
        eprintln!("VFIO_BIND_SKIP_SHELLCHECK is set: shellcheck NOT run on the hooks");
        return;
    }
    let shellcheck = require(
        "shellcheck",
        "shellcheck (or set VFIO_BIND_SKIP_SHELLCHECK=1 to skip this check knowingly)",
    );
    let output = output_of(
        Command::new(shellcheck)
            .arg("--severity=style")
            .args(SHELL_FILES.iter().map(|(file, _)| project(file))),
    )
    .expect("shellcheck runs");
    assert!(
        output.status.success(),
        "shellcheck found problems:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn hook_files_parse_in_the_shells_that_run_them() {
    let checks: Vec<(&str, Shell)> = vec![
        (MKINITCPIO_INSTALL, bash()),
        (MKINITCPIO_HOOK, busybox_ash()),
        (DRACUT_SETUP, bash()),
        (DRACUT_HOOK, dash()),
        (DRACUT_HOOK, busybox_sh()),
        (ITOOLS_HOOK, dash()),
        (ITOOLS_SCRIPT, busybox_sh()),
        (ITOOLS_SCRIPT, klibc()),
    ];
    for (file, shell) in checks {
        let mut command = Command::new(&shell.argv[0]);
        command.args(&shell.argv[1..]).arg("-n").arg(project(file));
        let output = output_of(&mut command).expect("shell runs");
        assert!(
            output.status.success(),
            "{file} does not parse in {}: {}",
            shell.name,
            text(&output.stderr)
        );
    }
}
