//! The initramfs hooks, driven the way each generator drives them.
//!
//! Install hooks run against stand-ins for the generator's functions (tests/hooks/*-stubs*),
//! which log every request; the tests compare that log with what each hook must ask for.
//! Runtime hooks run in the shells that run them at boot (busybox ash, dash, klibc sh, bash)
//! against a fake root given by VFIO_BIND_ROOT: a fake binder that logs its arguments, a
//! fake /proc/cmdline and a regular file standing for /dev/kmsg. Every shell these tests
//! need must be installed: a missing one fails the test instead of skipping it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const MKINITCPIO_INSTALL: &str = "mkinitcpio/install/vfio-bind";
const MKINITCPIO_HOOK: &str = "mkinitcpio/hooks/vfio-bind";
const DRACUT_SETUP: &str = "dracut/90vfio-bind/module-setup.sh";
const DRACUT_HOOK: &str = "dracut/90vfio-bind/vfio-bind.sh";
const ITOOLS_HOOK: &str = "initramfs-tools/hooks/vfio-bind";
const ITOOLS_SCRIPT: &str = "initramfs-tools/scripts/init-top/00-vfio-bind";
const UNIT: &str = "systemd/vfio-bind.service";

/// Every shell file of the integration, with the dialect it must be checked as.
const SHELL_FILES: &[(&str, &str)] = &[
    (MKINITCPIO_INSTALL, "bash"),
    (MKINITCPIO_HOOK, "ash"),
    (DRACUT_SETUP, "bash"),
    (DRACUT_HOOK, "sh"),
    (ITOOLS_HOOK, "sh"),
    (ITOOLS_SCRIPT, "sh"),
    ("tests/hooks/mkinitcpio-stubs.bash", "bash"),
    ("tests/hooks/dracut-stubs.bash", "bash"),
    ("tests/hooks/initramfs-tools-stubs.sh", "sh"),
];

const MISSING_MESSAGE: &str =
    "vfio-bind: /usr/bin/vfio-bind is missing from the initramfs; nothing was bound (rebuild the image)";

fn project(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The path of `program`, or a failed test that says what to install.
fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("these tests need `{program}` in PATH: install {package}"))
}

/// klibc's sh: what initramfs-tools images run their scripts with when busybox is absent.
fn klibc_sh() -> PathBuf {
    let path = PathBuf::from("/usr/lib/klibc/bin/sh");
    assert!(
        path.is_file(),
        "these tests need klibc's sh at {}: install klibc-utils (initramfs-tools depends on it)",
        path.display()
    );
    path
}

/// A shell to run a script with: the program and the arguments before `-c`.
struct Shell {
    name: &'static str,
    argv: Vec<PathBuf>,
}

fn busybox_ash() -> Shell {
    Shell {
        name: "busybox ash",
        argv: vec![require("busybox", "busybox-static"), "ash".into()],
    }
}

fn busybox_sh() -> Shell {
    Shell {
        name: "busybox sh",
        argv: vec![require("busybox", "busybox-static"), "sh".into()],
    }
}

fn dash() -> Shell {
    Shell {
        name: "dash",
        argv: vec![require("dash", "dash")],
    }
}

fn bash() -> Shell {
    Shell {
        name: "bash",
        argv: vec![require("bash", "bash")],
    }
}

fn klibc() -> Shell {
    Shell {
        name: "klibc sh",
        argv: vec![klibc_sh()],
    }
}

/// Runs `script` with `shell -c`, with VFIO_BIND_ROOT and the test's own variables only.
fn run(shell: &Shell, script: &str, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(&shell.argv[0]);
    command.args(&shell.argv[1..]).arg("-c").arg(script);
    command.env_remove("VFIO_BIND_ROOT").env_remove("DESTDIR");
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", shell.name))
}

/// A directory of its own for one test, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
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

    fn path(&self) -> &Path {
        &self.path
    }

    fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }

    fn write(&self, relative: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.join(relative)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The lines of a stand-in log, with the scratch root written as `ROOT`.
fn log_lines(scratch: &Scratch, relative: &str) -> Vec<String> {
    let root = scratch.path().to_str().unwrap();
    scratch
        .read(relative)
        .lines()
        .map(|line| line.replace(root, "ROOT"))
        .collect()
}

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|line| line.to_string()).collect()
}

/// What the host has, under VFIO_BIND_ROOT = `scratch/host`.
struct Host {
    binary: bool,
    unit: bool,
    rules: bool,
}

const FULL_HOST: Host = Host {
    binary: true,
    unit: true,
    rules: false,
};

fn make_host(scratch: &Scratch, host: &Host) -> PathBuf {
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

// ---------------------------------------------------------------------------------------
// shellcheck and dialects

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
    let output = Command::new(shellcheck)
        .arg("--severity=style")
        .args(SHELL_FILES.iter().map(|(file, _)| project(file)))
        .output()
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
        let output = command.output().expect("shell runs");
        assert!(
            output.status.success(),
            "{file} does not parse in {}: {}",
            shell.name,
            text(&output.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------
// mkinitcpio install hook

/// Sources the install hook the way mkinitcpio does (bash, extglob, the hook's `build` then
/// `help`) with `HOOKS` as given, and returns the stand-in log.
fn mkinitcpio_build(scratch: &Scratch, host: &Host, hooks: &str, nullglob: bool) -> Vec<String> {
    let root = make_host(scratch, host);
    let log = scratch.join("log");
    let _ = fs::remove_file(&log);
    let script = format!(
        r#"
        shopt -s extglob {nullglob}
        . "$STUBS" || exit 90
        HOOKS=({hooks})
        . "$HOOK" || exit 91
        build || exit 92
        help >"$HELP" || exit 93
        "#,
        nullglob = if nullglob { "nullglob" } else { "" },
    );
    let output = run(
        &bash(),
        &script,
        &[
            ("HOOK_LOG", &log),
            ("STUBS", &project("tests/hooks/mkinitcpio-stubs.bash")),
            ("HOOK", &project(MKINITCPIO_INSTALL)),
            ("HELP", &scratch.join("help")),
            ("VFIO_BIND_ROOT", &root),
        ],
    );
    assert!(
        output.status.success(),
        "mkinitcpio build failed: {:?}\n{}",
        output.status,
        text(&output.stderr)
    );
    log_lines(scratch, "log")
}

const MKINITCPIO_MODULES: [&str; 3] = [
    "add_module vfio?",
    "add_module vfio_iommu_type1?",
    "add_module vfio-pci?",
];
const MKINITCPIO_UNIT: [&str; 2] = [
    "add_file ROOT/host/usr/lib/vfio-bind/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service 644",
    "add_symlink /etc/systemd/system/sysinit.target.wants/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service",
];

#[test]
fn mkinitcpio_install_adds_binary_modules_runscript_and_unit_in_every_flavour() {
    let scratch = Scratch::new("mkinitcpio-flavours");
    let mut expected = lines(&MKINITCPIO_MODULES);
    expected.push("add_binary ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind".into());
    expected.push("add_runscript vfio-bind".into());
    expected.extend(lines(&MKINITCPIO_UNIT));

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
    assert!(help.contains("disablehooks=vfio-bind"), "{help}");
    assert!(help.contains("rd.vfio_bind=0"), "{help}");
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
    assert!(
        !log.iter().any(|line| line.starts_with("add_runscript")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|line| line.contains("sysinit.target.wants")),
        "{log:?}"
    );
    // `base` after the hook still makes a busybox image: the runscript is added.
    let log = mkinitcpio_build(&scratch, &FULL_HOST, "vfio-bind base udev", false);
    assert!(
        log.contains(&"add_runscript vfio-bind".to_string()),
        "{log:?}"
    );
}

#[test]
fn mkinitcpio_install_copies_host_rules_when_there_are_some() {
    let scratch = Scratch::new("mkinitcpio-rules");
    let host = Host {
        rules: true,
        ..FULL_HOST
    };
    let log = mkinitcpio_build(&scratch, &host, "base systemd vfio-bind", false);
    assert_eq!(
        log.last().map(String::as_str),
        Some("add_file ROOT/host/etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf 644")
    );
    assert_eq!(log.len(), 8, "{log:#?}");
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
    expected.push("add_runscript vfio-bind".into());
    expected.push(
        "warning vfio-bind: '%s' not found; a systemd-based image will not run the binder ROOT/host/usr/lib/vfio-bind/vfio-bind.service"
            .into(),
    );
    assert_eq!(log, expected);
}

#[test]
fn mkinitcpio_install_reads_the_host_root_by_default() {
    // Without VFIO_BIND_ROOT the paths are the host's own: check the text, not the host.
    let contents = fs::read_to_string(project(MKINITCPIO_INSTALL)).unwrap();
    for path in [
        "\"$root/usr/bin/vfio-bind\"",
        "\"$root/usr/lib/vfio-bind/vfio-bind.service\"",
        "\"$root/etc/cmdline.d/vfio-bind.conf\"",
    ] {
        assert!(contents.contains(path), "{path}");
    }
    assert!(contents.contains("local root=\"${VFIO_BIND_ROOT:-}\""));
    // add_systemd_unit looks in the host's unit directories and copies the host's links.
    assert!(!code(&contents).contains("add_systemd_unit"));
}

// ---------------------------------------------------------------------------------------
// dracut module-setup.sh

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
    let output = Command::new(require("bash", "bash"))
        .arg("-c")
        .arg(script)
        .env_remove("VFIO_BIND_ROOT")
        .env("HOOK_LOG", &log)
        .env("STUBS", project("tests/hooks/dracut-stubs.bash"))
        .env("SETUP", project(DRACUT_SETUP))
        .env("STUB_MODDIR", project("dracut/90vfio-bind"))
        .env("STUB_DRACUT_MODULES", modules)
        .env("VFIO_BIND_ROOT", &root)
        .output()
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

#[test]
fn dracut_without_systemd_installs_a_cmdline_hook_at_00_and_no_unit() {
    let scratch = Scratch::new("dracut-plain");
    let log = dracut_setup(&scratch, &FULL_HOST, false);
    let mut expected = lines(&DRACUT_PREAMBLE);
    expected.push("inst_binary ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind".into());
    expected.push("inst_hook cmdline 00 MODDIR/vfio-bind.sh".into());
    assert_eq!(log, expected);
    // dracut only sources hooks whose names end in .sh.
    assert!(project(DRACUT_HOOK).is_file());
}

#[test]
fn dracut_with_systemd_installs_the_unit_wanted_by_sysinit_and_no_hook() {
    let scratch = Scratch::new("dracut-systemd");
    let log = dracut_setup(&scratch, &FULL_HOST, true);
    let mut expected = lines(&DRACUT_PREAMBLE);
    expected.push("inst_binary ROOT/host/usr/bin/vfio-bind /usr/bin/vfio-bind".into());
    expected.push(
        "inst_simple ROOT/host/usr/lib/vfio-bind/vfio-bind.service /usr/lib/systemd/system/vfio-bind.service"
            .into(),
    );
    expected.push("systemctl -q --root /INITDIR add-wants sysinit.target vfio-bind.service".into());
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
        assert_eq!(
            log.last().map(String::as_str),
            Some(
                "inst_simple ROOT/host/etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf"
            ),
            "systemd={systemd}"
        );
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
    assert_eq!(
        log.last().map(String::as_str),
        Some("inst_hook cmdline 00 MODDIR/vfio-bind.sh")
    );
}

// ---------------------------------------------------------------------------------------
// initramfs-tools build hook

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
        log.last().map(String::as_str),
        Some(
            "copy_file config ROOT/host/etc/cmdline.d/vfio-bind.conf /etc/cmdline.d/vfio-bind.conf"
        )
    );
    assert_eq!(log.len(), 3);
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
    assert!(
        text(&output.stderr).contains("W: vfio-bind: ")
            && text(&output.stderr).contains("not found"),
        "{}",
        text(&output.stderr)
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
        let output = Command::new(require("dash", "dash"))
            .arg(project(file))
            .arg("prereqs")
            .output()
            .unwrap();
        assert!(output.status.success(), "{file}");
        assert_eq!(text(&output.stdout), "\n", "{file}");
    }
}

// ---------------------------------------------------------------------------------------
// Runtime hooks

/// What the fake root holds when a runtime hook runs.
#[derive(Clone, Copy)]
enum Binder {
    /// A binder that logs its arguments and exits with this status.
    Exits(u8),
    /// No binder in the image.
    Missing,
    /// A file that is there but cannot be run.
    NotExecutable,
}

struct Boot {
    scratch: Scratch,
    root: PathBuf,
}

impl Boot {
    fn new(name: &str, binder: Binder, cmdline: &str, kmsg: bool) -> Boot {
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

    fn binder_calls(&self) -> Vec<String> {
        self.scratch
            .read("binder.log")
            .lines()
            .map(String::from)
            .collect()
    }

    fn kmsg(&self) -> Vec<String> {
        self.scratch
            .read("root/dev/kmsg")
            .lines()
            .map(String::from)
            .collect()
    }

    /// Runs `script` in `shell` with VFIO_BIND_ROOT at the fake root and HOOK at `hook`.
    fn run(&self, shell: &Shell, hook: &str, script: &str) -> Output {
        run(
            shell,
            script,
            &[("VFIO_BIND_ROOT", &self.root), ("HOOK", &project(hook))],
        )
    }
}

/// The sourcing shell ran on past the hook: it printed `survived` last and exited 0.
fn assert_survived(output: &Output, context: &str) {
    assert!(
        output.status.success() && text(&output.stdout).ends_with("survived\n"),
        "{context}: the sourcing shell did not survive: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

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
        assert_survived(&output, &context);
        assert_eq!(text(&output.stdout), "survived\n", "{context}");
        assert_eq!(boot.binder_calls(), ["apply"], "{context}");
        assert!(boot.kmsg().is_empty(), "{context}: {:?}", boot.kmsg());
        assert_eq!(text(&output.stderr), "", "{context}");
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
            assert_survived(&output, &context);
            assert_eq!(text(&output.stdout), "survived\n", "{context}");
            assert_eq!(boot.binder_calls(), ["apply"], "{context}");
            assert!(boot.kmsg().is_empty(), "{context}: {:?}", boot.kmsg());
            assert_eq!(text(&output.stderr), "", "{context}");
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
            let output = command.output().unwrap();
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

#[test]
fn runtime_hooks_use_the_image_paths_at_boot() {
    // With VFIO_BIND_ROOT unset every path is the image's own.
    for hook in [MKINITCPIO_HOOK, DRACUT_HOOK, ITOOLS_SCRIPT] {
        let contents = fs::read_to_string(project(hook)).unwrap();
        for path in ["/usr/bin/vfio-bind\" apply", "/dev/kmsg\""] {
            assert!(contents.contains(path), "{hook}: {path}");
        }
        // The command line is the binder's to read: a hook that reads it would decide on
        // the escape hatch a second way.
        assert!(!code(&contents).contains("/proc/cmdline"), "{hook}");
        assert!(contents.contains("${VFIO_BIND_ROOT:-}"), "{hook}");
        assert!(!code(&contents).contains("set -e"), "{hook}");
    }
    // The hooks that are sourced must not exit at all.
    for hook in [MKINITCPIO_HOOK, DRACUT_HOOK] {
        let contents = fs::read_to_string(project(hook)).unwrap();
        let code = code(&contents);
        let mut words = code.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
        assert!(!words.any(|word| word == "exit"), "{hook}");
    }
}

/// A shell file without its comment lines.
fn code(contents: &str) -> String {
    contents
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// The unit

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
