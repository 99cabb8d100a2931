//! Helpers shared by the hooks tests (tests/hooks_*.rs): the hook files, the shells that run
//! them, a scratch directory per test, a fake host for install hooks and a fake root for
//! runtime hooks.
//!
//! Install hooks run against stand-ins for the generator's functions (tests/hooks/*-stubs*
//! for dracut and initramfs-tools; for mkinitcpio the VM test's own, see
//! `MKINITCPIO_STAND_IN`), which log every request; the tests compare that log with what
//! each hook must ask for.
//! Runtime hooks run in the shells that run them at boot (busybox ash, dash, klibc sh, bash)
//! against a fake root given by VFIO_BIND_ROOT: a fake binder that logs its arguments, a
//! fake /proc/cmdline and a regular file standing for /dev/kmsg. Every shell these tests
//! need must be installed: a missing one fails the test instead of skipping it.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// Keeps forks away from executables being written. A process forked while another test
/// thread holds a new script open for writing keeps that descriptor until it execs, and a
/// shell that runs the script in that window gets ETXTBSY ("Text file busy"): the fake
/// binder then seems not to run at all. Writers of files take it exclusively; every spawn
/// takes it shared, for the fork and exec only.
static FORK_GUARD: RwLock<()> = RwLock::new(());

/// Runs `write`, which creates a file that will be executed, with no fork in between.
pub fn writing_executable<T>(write: impl FnOnce() -> T) -> T {
    let _exclusive = FORK_GUARD
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    write()
}

/// Runs `command` to completion, started under [`FORK_GUARD`].
pub fn output_of(command: &mut Command) -> std::io::Result<Output> {
    let child = {
        let _shared = FORK_GUARD
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?
    };
    child.wait_with_output()
}

pub const MKINITCPIO_INSTALL: &str = "mkinitcpio/install/vfio-bind";
pub const MKINITCPIO_HOOK: &str = "mkinitcpio/hooks/vfio-bind";
/// The stand-in for mkinitcpio's build side, shared with the VM test.
pub const MKINITCPIO_STAND_IN: &str = "xtask/guest/mkinitcpio/build-driver.bash";
pub const DRACUT_SETUP: &str = "dracut/90vfio-bind/module-setup.sh";
pub const DRACUT_HOOK: &str = "dracut/90vfio-bind/vfio-bind.sh";
pub const ITOOLS_HOOK: &str = "initramfs-tools/hooks/vfio-bind";
pub const ITOOLS_SCRIPT: &str = "initramfs-tools/scripts/init-top/00-vfio-bind";
pub const UNIT: &str = "systemd/vfio-bind.service";

/// Every shell file of the integration, with the dialect it must be checked as.
pub const SHELL_FILES: &[(&str, &str)] = &[
    (MKINITCPIO_INSTALL, "bash"),
    (MKINITCPIO_HOOK, "ash"),
    (DRACUT_SETUP, "bash"),
    (DRACUT_HOOK, "sh"),
    (ITOOLS_HOOK, "sh"),
    (ITOOLS_SCRIPT, "sh"),
    (MKINITCPIO_STAND_IN, "bash"),
    ("tests/hooks/dracut-stubs.bash", "bash"),
    ("tests/hooks/initramfs-tools-stubs.sh", "sh"),
];

pub const MISSING_MESSAGE: &str =
    "vfio-bind: /usr/bin/vfio-bind is missing from the initramfs; nothing was bound (rebuild the image)";

pub fn project(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The path of `program`, or a failed test that says what to install.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("these tests need `{program}` in PATH: install {package}"))
}

/// klibc's sh: what initramfs-tools images run their scripts with when busybox is absent.
pub fn klibc_sh() -> PathBuf {
    let path = PathBuf::from("/usr/lib/klibc/bin/sh");
    assert!(
        path.is_file(),
        "these tests need klibc's sh at {}: install klibc-utils (initramfs-tools depends on it)",
        path.display()
    );
    path
}

/// A shell to run a script with: the program and the arguments before `-c`.
pub struct Shell {
    pub name: &'static str,
    pub argv: Vec<PathBuf>,
}

pub fn busybox_ash() -> Shell {
    Shell {
        name: "busybox ash",
        argv: vec![require("busybox", "busybox-static"), "ash".into()],
    }
}

pub fn busybox_sh() -> Shell {
    Shell {
        name: "busybox sh",
        argv: vec![require("busybox", "busybox-static"), "sh".into()],
    }
}

pub fn dash() -> Shell {
    Shell {
        name: "dash",
        argv: vec![require("dash", "dash")],
    }
}

pub fn bash() -> Shell {
    Shell {
        name: "bash",
        argv: vec![require("bash", "bash")],
    }
}

pub fn klibc() -> Shell {
    Shell {
        name: "klibc sh",
        argv: vec![klibc_sh()],
    }
}

/// Runs `script` with `shell -c`, with VFIO_BIND_ROOT and the test's own variables only.
pub fn run(shell: &Shell, script: &str, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(&shell.argv[0]);
    command.args(&shell.argv[1..]).arg("-c").arg(script);
    command.env_remove("VFIO_BIND_ROOT").env_remove("DESTDIR");
    for (name, value) in env {
        command.env(name, value);
    }
    output_of(&mut command).unwrap_or_else(|error| panic!("cannot run {}: {error}", shell.name))
}

/// A directory of its own for one test, removed when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vfio-bind-hooks-{}-{}-{name}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("scratch directory");
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }

    pub fn write(&self, relative: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        writing_executable(|| {
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        });
        path
    }

    pub fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.join(relative)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The lines of a stand-in log, with the scratch root written as `ROOT`.
pub fn log_lines(scratch: &Scratch, relative: &str) -> Vec<String> {
    let root = scratch.path().to_str().unwrap();
    scratch
        .read(relative)
        .lines()
        .map(|line| line.replace(root, "ROOT"))
        .collect()
}

pub fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|line| line.to_string()).collect()
}

/// What the host has, under VFIO_BIND_ROOT = `scratch/host`.
pub struct Host {
    pub binary: bool,
    pub unit: bool,
    pub rules: bool,
}

pub const FULL_HOST: Host = Host {
    binary: true,
    unit: true,
    rules: false,
};

pub fn make_host(scratch: &Scratch, host: &Host) -> PathBuf {
    fs::create_dir_all(scratch.join("host")).unwrap();
    if host.binary {
        scratch.write("host/usr/bin/vfio-bind", "#!/bin/sh\n", 0o755);
    }
    if host.unit {
        let unit = fs::read_to_string(project(UNIT)).unwrap();
        scratch.write("host/usr/lib/vfio-bind/vfio-bind.service", &unit, 0o644);
    }
    if host.rules {
        scratch.write(
            "host/etc/cmdline.d/vfio-bind.conf",
            "vfio.bind=1002:73ff@07:00\n",
            0o644,
        );
    }
    scratch.join("host")
}

/// What the fake root holds when a runtime hook runs.
#[derive(Clone, Copy, Debug)]
pub enum Binder {
    /// A binder that logs its arguments and exits with this status.
    Exits(u8),
    /// No binder in the image.
    Missing,
    /// A file that is there but cannot be run.
    NotExecutable,
}

pub struct Boot {
    pub scratch: Scratch,
    pub root: PathBuf,
}

impl Boot {
    pub fn new(name: &str, binder: Binder, cmdline: &str, kmsg: bool) -> Boot {
        let scratch = Scratch::new(name);
        let root = scratch.join("root");
        fs::create_dir_all(&root).unwrap();
        scratch.write("root/proc/cmdline", &format!("{cmdline}\n"), 0o444);
        if kmsg {
            scratch.write("root/dev/kmsg", "", 0o644);
        }
        let fake = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >>\"{}\"\nexit {}\n",
            scratch.join("binder.log").display(),
            match binder {
                Binder::Exits(status) => status,
                _ => 0,
            }
        );
        match binder {
            Binder::Exits(_) => {
                scratch.write("root/usr/bin/vfio-bind", &fake, 0o755);
            }
            Binder::NotExecutable => {
                scratch.write("root/usr/bin/vfio-bind", &fake, 0o644);
            }
            Binder::Missing => {}
        }
        Boot { scratch, root }
    }

    pub fn binder_calls(&self) -> Vec<String> {
        self.scratch
            .read("binder.log")
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn kmsg(&self) -> Vec<String> {
        self.scratch
            .read("root/dev/kmsg")
            .lines()
            .map(String::from)
            .collect()
    }

    /// Runs `script` in `shell` with VFIO_BIND_ROOT at the fake root and HOOK at `hook`.
    pub fn run(&self, shell: &Shell, hook: &str, script: &str) -> Output {
        run(
            shell,
            script,
            &[("VFIO_BIND_ROOT", &self.root), ("HOOK", &project(hook))],
        )
    }
}

/// The sourcing shell ran on past the hook: it printed `survived` last and exited 0.
pub fn assert_survived(output: &Output, context: &str) {
    assert!(
        output.status.success() && text(&output.stdout).ends_with("survived\n"),
        "{context}: the sourcing shell did not survive: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}
