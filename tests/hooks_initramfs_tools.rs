//! The initramfs-tools build hook, against the stand-in for hook-functions
//! (tests/hooks/initramfs-tools-stubs.sh), and the init-top script's place in the boot order.

mod hooks_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hooks_common::*;

/// An init-top directory as the host has it (Debian 12's stock scripts, and plymouth's,
/// which needs udev first), with ours under `name`.
fn make_init_top(scratch: &Scratch, name: &str) -> PathBuf {
    let prereq_script = |prereq: &str| {
        format!(
            "#!/bin/sh\nPREREQ=\"{prereq}\"\ncase $1 in prereqs) echo \"$PREREQ\"; exit 0;; esac\n"
        )
    };
    let dir = format!("{name}-init-top");
    for stock in ["all_generic_ide", "blacklist", "keymap", "udev"] {
        scratch.write(&format!("{dir}/{stock}"), &prereq_script(""), 0o755);
    }
    scratch.write(&format!("{dir}/plymouth"), &prereq_script("udev"), 0o755);
    let ours = fs::read_to_string(project(ITOOLS_SCRIPT)).unwrap();
    scratch.write(&format!("{dir}/{name}"), &ours, 0o755);
    scratch.join(&dir)
}

/// The order initramfs-tools gives `dir`'s scripts: hook-functions' get_prereq_pairs
/// (every executable script paired with itself and with each of its PREREQs) piped through
/// tsort, keeping only the scripts that exist (cache_run_scripts).
fn init_top_order(dir: &Path) -> Vec<String> {
    let script = r#"
        cd "$DIR" || exit 1
        for x in *; do
            [ -x "$x" ] || continue
            echo "$x $x"
            for p in $("./$x" prereqs); do echo "$p $x"; done
        done | tsort | while read -r x; do [ -f "$x" ] && echo "$x"; done
    "#;
    let output = run(&dash(), script, &[("DIR", dir)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).lines().map(String::from).collect()
}

fn itools_hook(scratch: &Scratch, host: &Host) -> (Output, Vec<String>) {
    let root = make_host(scratch, host);
    let log = scratch.join("log");
    let script = r#"
        . "$STUBS" || exit 90
        ( . "$HOOK" )
    "#;
    let output = run(
        &dash(),
        script,
        &[
            ("HOOK_LOG", &log),
            ("STUBS", &project("tests/hooks/initramfs-tools-stubs.sh")),
            ("HOOK", &project(ITOOLS_HOOK)),
            ("VFIO_BIND_ROOT", &root),
        ],
    );
    (output, log_lines(scratch, "log"))
}

#[test]
fn initramfs_tools_hook_adds_modules_and_binary() {
    let scratch = Scratch::new("itools-plain");
    let (output, log) = itools_hook(&scratch, &FULL_HOST);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        log,
        lines(&[
            "manual_add_modules vfio vfio_iommu_type1 vfio-pci",
            "copy_exec ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind",
        ])
    );
}

#[test]
fn initramfs_tools_hook_copies_host_rules_when_there_are_some() {
    let scratch = Scratch::new("itools-rules");
    let host = Host {
        rules: true,
        ..FULL_HOST
    };
    let (output, log) = itools_hook(&scratch, &host);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        log,
        lines(&[
            "manual_add_modules vfio vfio_iommu_type1 vfio-pci",
            "copy_exec ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind",
            "copy_file config ROOT/host/etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf",
        ])
    );
}

#[test]
fn initramfs_tools_hook_warns_and_succeeds_without_binary() {
    let scratch = Scratch::new("itools-missing");
    let host = Host {
        binary: false,
        unit: false,
        rules: false,
    };
    let (output, log) = itools_hook(&scratch, &host);
    // A failing hook would abort mkinitramfs.
    assert!(output.status.success());
    assert_eq!(
        log,
        lines(&["manual_add_modules vfio vfio_iommu_type1 vfio-pci"])
    );
    let root = scratch.join("host");
    assert_eq!(
        text(&output.stderr),
        format!(
            "W: vfio-bind: {}/usr/bin/vfio-bind not found; the image will not bind anything\n",
            root.display()
        )
    );
}

#[test]
fn initramfs_tools_init_top_script_runs_first_by_its_name() {
    let scratch = Scratch::new("itools-order");
    let position = |order: &[String], name: &str| order.iter().position(|x| x == name);

    let order = init_top_order(&make_init_top(&scratch, "00-vfio-bind"));
    assert_eq!(
        order.first().map(String::as_str),
        Some("00-vfio-bind"),
        "{order:?}"
    );
    assert!(position(&order, "udev") < position(&order, "plymouth"));
    assert_eq!(order.len(), 6, "{order:?}");

    // Why the name: called "vfio-bind" it would run after udev had triggered coldplug,
    // and no PREREQ can move a script earlier.
    let order = init_top_order(&make_init_top(&scratch, "vfio-bind"));
    assert!(
        position(&order, "vfio-bind") > position(&order, "udev"),
        "{order:?}"
    );

    // set_initlist skips names with anything but [[:alnum:]._-].
    let name = Path::new(ITOOLS_SCRIPT)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
}

#[test]
fn initramfs_tools_scripts_answer_prereqs_with_nothing() {
    for file in [ITOOLS_HOOK, ITOOLS_SCRIPT] {
        let output = output_of(
            Command::new(require("dash", "dash"))
                .arg(project(file))
                .arg("prereqs"),
        )
        .unwrap();
        assert!(output.status.success(), "{file}");
        assert_eq!(text(&output.stdout), "\n", "{file}");
    }
}

#[test]
fn initramfs_tools_init_top_script_exits_0_when_run_as_a_program() {
    let shells = [busybox_sh(), dash(), klibc()];
    for binder in [Binder::Exits(0), Binder::Exits(1), Binder::Missing] {
        for shell in &shells {
            let boot = Boot::new("itools-run", binder, "quiet", true);
            let mut command = Command::new(&shell.argv[0]);
            command
                .args(&shell.argv[1..])
                .arg(project(ITOOLS_SCRIPT))
                .env("VFIO_BIND_ROOT", &boot.root);
            let output = output_of(&mut command).unwrap();
            assert!(
                output.status.success(),
                "{}: {:?} {}",
                shell.name,
                output.status,
                text(&output.stderr)
            );
            if let Binder::Exits(_) = binder {
                assert_eq!(boot.binder_calls(), ["apply"], "{}", shell.name);
            }
        }
    }
}
