//! The runtime hooks of every generator (mkinitcpio, dracut, initramfs-tools), run in the
//! shells that run them at boot against a fake root given by VFIO_BIND_ROOT: a fake binder
//! that logs its arguments, a fake /proc/cmdline and a regular file standing for /dev/kmsg.

mod hooks_common;

use std::fs;
use std::process::{Command, Output};

use hooks_common::*;

/// How each runtime hook is run at boot, as a shell script that prints `survived` after it.
/// `set -e` in the caller makes any failing command that escapes the hook fatal.
fn runtime_cases() -> Vec<(&'static str, Shell, &'static str)> {
    // mkinitcpio's /init sources the hook, then calls run_earlyhook; the hook must keep its
    // variables local.
    let mkinitcpio = r#"
        set -e
        root=keep cmdline=keep status=keep
        . "$HOOK"
        run_earlyhook
        [ "$root $cmdline $status" = "keep keep keep" ] || echo "variables leaked: $root $cmdline $status"
        echo survived
    "#;
    // dracut's /init sources every cmdline hook; nothing of ours may stay behind.
    let dracut = r#"
        set -e
        . "$HOOK"
        if set | grep -q '^_vfio_bind'; then echo "variables leaked"; fi
        echo survived
    "#;
    // initramfs-tools runs init-top scripts as programs, from its ORDER file (tested on its
    // own below); sourcing must be harmless too.
    let itools_source = r#"
        set -e
        . "$HOOK"
        if set | grep -q '^vfio_bind_'; then echo "variables leaked"; fi
        echo survived
    "#;
    vec![
        (MKINITCPIO_HOOK, busybox_ash(), mkinitcpio),
        (MKINITCPIO_HOOK, dash(), mkinitcpio),
        (DRACUT_HOOK, dash(), dracut),
        (DRACUT_HOOK, bash(), dracut),
        (DRACUT_HOOK, busybox_sh(), dracut),
        (ITOOLS_SCRIPT, busybox_sh(), itools_source),
        (ITOOLS_SCRIPT, dash(), itools_source),
        (ITOOLS_SCRIPT, klibc(), itools_source),
    ]
}

#[test]
fn runtime_hooks_run_the_binder_with_apply_and_stay_quiet_when_it_succeeds() {
    for (hook, shell, script) in runtime_cases() {
        let context = format!("{hook} in {}", shell.name);
        let boot = Boot::new(
            "ok",
            Binder::Exits(0),
            "root=/dev/vda vfio.bind=1002:73ff@07:00",
            true,
        );
        let output = boot.run(&shell, hook, script);
        assert_ran_the_binder_quietly(&boot, &output, &context);
    }
}

#[test]
fn runtime_hooks_report_a_failing_binder_and_the_boot_goes_on() {
    for status in [1u8, 2, 127] {
        for (hook, shell, script) in runtime_cases() {
            let context = format!("{hook} in {}, binder exit {status}", shell.name);
            let boot = Boot::new("fails", Binder::Exits(status), "quiet", true);
            let output = boot.run(&shell, hook, script);
            assert_survived(&output, &context);
            assert_eq!(text(&output.stdout), "survived\n", "{context}");
            assert_eq!(boot.binder_calls(), ["apply"], "{context}");
            assert_eq!(
                boot.kmsg(),
                [format!(
                    "<3>vfio-bind: 'vfio-bind apply' exited with status {status}; boot continues"
                )],
                "{context}"
            );
        }
    }
}

#[test]
fn runtime_hooks_report_a_missing_binder_and_the_boot_goes_on() {
    for binder in [Binder::Missing, Binder::NotExecutable] {
        for (hook, shell, script) in runtime_cases() {
            let context = format!("{hook} in {}", shell.name);
            let boot = Boot::new("missing", binder, "quiet", true);
            let output = boot.run(&shell, hook, script);
            assert_survived(&output, &context);
            assert_eq!(text(&output.stdout), "survived\n", "{context}");
            assert!(boot.binder_calls().is_empty(), "{context}");
            assert_eq!(boot.kmsg(), [format!("<3>{MISSING_MESSAGE}")], "{context}");
        }
    }
}

/// Command lines that carry the escape hatch in the forms the kernel's parser accepts
/// (lib/cmdline.c next_arg: any whitespace between words, quotes around a value).
const ESCAPE_HATCH_CMDLINES: &[&str] = &[
    "root=/dev/vda vfio.bind=1002:73ff@07:00 rd.vfio_bind=0 quiet",
    "rd.vfio_bind=0",
    "vfio.bind=1002:73ff@07:00\trd.vfio_bind=0",
    "vfio.bind=1002:73ff@07:00 rd.vfio_bind=\"0\"",
    "rd.vfio_bind=01",
    "xrd.vfio_bind=0",
];

/// The binder alone decides on `rd.vfio_bind=0` (`vfio-bind apply` parses the command line
/// and /etc/cmdline.d as the kernel does, logs one line and exits 0), so that every init
/// honours the same forms. The hooks run it whatever the command line says, and add no
/// line of their own when it exits 0.
#[test]
fn runtime_hooks_leave_rd_vfio_bind_0_to_the_binder() {
    for cmdline in ESCAPE_HATCH_CMDLINES {
        for (hook, shell, script) in runtime_cases() {
            let context = format!("{hook} in {}, command line {cmdline:?}", shell.name);
            let boot = Boot::new("escape-hatch", Binder::Exits(0), cmdline, true);
            let output = boot.run(&shell, hook, script);
            assert_ran_the_binder_quietly(&boot, &output, &context);
        }
    }
}

#[test]
fn runtime_hooks_fall_back_to_the_console_without_kmsg() {
    for (hook, shell, script) in runtime_cases() {
        let context = format!("{hook} in {}", shell.name);
        // No /dev/kmsg and no /proc/cmdline in the fake root: neither stops the hook.
        let boot = Boot::new("nokmsg", Binder::Missing, "", false);
        fs::remove_file(boot.root.join("proc/cmdline")).unwrap();
        let output = boot.run(&shell, hook, script);
        assert_survived(&output, &context);
        assert_eq!(
            text(&output.stderr),
            format!("{MISSING_MESSAGE}\n"),
            "{context}"
        );
    }
}

/// A tiny image for a runtime hook to run in with VFIO_BIND_ROOT unset, so that it uses the
/// paths it uses at boot: a static busybox at /bin, the binder (or none) at
/// /usr/bin/vfio-bind, a regular file at /dev/kmsg and the hook at /hook. It is entered
/// with `unshare -r chroot`: an unprivileged user namespace, nothing of the host is touched.
struct Image {
    scratch: Scratch,
}

impl Image {
    fn new(binder: Binder) -> Image {
        let scratch = Scratch::new("image");
        fs::create_dir_all(scratch.join("image/bin")).unwrap();
        writing_executable(|| {
            fs::copy(
                require("busybox", "busybox-static"),
                scratch.join("image/bin/busybox"),
            )
        })
        .unwrap();
        for applet in ["sh", "ash", "grep"] {
            std::os::unix::fs::symlink("busybox", scratch.join(&format!("image/bin/{applet}")))
                .unwrap();
        }
        scratch.write("image/dev/kmsg", "", 0o644);
        let fake =
            |status: u8| format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >>/binder.log\nexit {status}\n");
        match binder {
            Binder::Exits(status) => {
                scratch.write("image/usr/bin/vfio-bind", &fake(status), 0o755);
            }
            Binder::NotExecutable => {
                scratch.write("image/usr/bin/vfio-bind", &fake(0), 0o644);
            }
            Binder::Missing => {}
        }
        Image { scratch }
    }

    /// Copies `hook` to /hook and runs `script` with `/bin/busybox ash -c` inside the image.
    ///
    /// The busybox copy was just written, and a process forked meanwhile by another test
    /// thread holds it open for writing until it runs its own program: exec then fails with
    /// ETXTBSY before anything in the image has run. That, and only that, is tried again.
    fn run(&self, hook: &str, script: &str) -> Output {
        let contents = fs::read_to_string(project(hook)).unwrap();
        self.scratch.write("image/hook", &contents, 0o755);
        let mut attempts = 0;
        let output = loop {
            let output = output_of(
                Command::new(require("unshare", "util-linux"))
                    .arg("-r")
                    .arg(require("chroot", "coreutils"))
                    .arg(self.scratch.join("image"))
                    .args(["/bin/busybox", "ash", "-c", script])
                    .env_clear()
                    .env("PATH", "/bin"),
            )
            .expect("unshare runs");
            attempts += 1;
            let busy = text(&output.stderr)
                .ends_with("failed to run command '/bin/busybox': Text file busy\n");
            if !busy || attempts == 20 {
                break output;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stderr = text(&output.stderr);
        assert!(
            !stderr.starts_with("unshare:") && !stderr.starts_with("chroot:"),
            "these tests need unprivileged user namespaces (`unshare -r chroot DIR` as this \
             user): {stderr}"
        );
        output
    }

    fn lines(&self, relative: &str) -> Vec<String> {
        self.scratch
            .read(relative)
            .lines()
            .map(String::from)
            .collect()
    }
}

/// With VFIO_BIND_ROOT unset (even under `set -u`, for the hooks that are sourced), each
/// runtime hook runs the image's
/// /usr/bin/vfio-bind with `apply` and reports to the image's /dev/kmsg, without leaving
/// `set -e` on or exiting the shell that sourced it. (That the hooks leave the command line
/// to the binder is `runtime_hooks_leave_rd_vfio_bind_0_to_the_binder`.)
#[test]
fn runtime_hooks_use_the_image_paths_at_boot() {
    let after = r#"case $- in *e*) echo "set -e left on";; esac; echo survived"#;
    let scripts = [
        (
            MKINITCPIO_HOOK,
            format!("set -u; . /hook; run_earlyhook; {after}"),
        ),
        (DRACUT_HOOK, format!("set -u; . /hook; {after}")),
        // initramfs-tools runs init-top scripts as programs, with no arguments.
        (ITOOLS_SCRIPT, "/hook && echo survived".to_string()),
    ];
    let failed = |status: u8| {
        vec![format!(
            "<3>vfio-bind: 'vfio-bind apply' exited with status {status}; boot continues"
        )]
    };
    let cases = [
        (Binder::Exits(0), vec!["apply"], vec![]),
        (Binder::Exits(1), vec!["apply"], failed(1)),
        (
            Binder::Missing,
            vec![],
            vec![format!("<3>{MISSING_MESSAGE}")],
        ),
        (
            Binder::NotExecutable,
            vec![],
            vec![format!("<3>{MISSING_MESSAGE}")],
        ),
    ];
    for (hook, script) in &scripts {
        for (binder, calls, kmsg) in &cases {
            let image = Image::new(*binder);
            let output = image.run(hook, script);
            assert_eq!(
                (text(&output.stdout), text(&output.stderr)),
                ("survived\n".to_string(), String::new()),
                "{hook}, {binder:?}: {:?}",
                output.status
            );
            assert!(output.status.success(), "{hook}: {:?}", output.status);
            assert_eq!(
                image.lines("image/binder.log"),
                *calls,
                "{hook}, {binder:?}"
            );
            assert_eq!(image.lines("image/dev/kmsg"), *kmsg, "{hook}, {binder:?}");
        }
    }
}

/// The hook survived, ran `vfio-bind apply` once, and said nothing itself: no kernel-log
/// record, nothing on stderr.
fn assert_ran_the_binder_quietly(boot: &Boot, output: &std::process::Output, context: &str) {
    assert_survived(output, context);
    assert_eq!(text(&output.stdout), "survived\n", "{context}");
    assert_eq!(boot.binder_calls(), ["apply"], "{context}");
    assert!(boot.kmsg().is_empty(), "{context}: {:?}", boot.kmsg());
    assert_eq!(text(&output.stderr), "", "{context}");
}
