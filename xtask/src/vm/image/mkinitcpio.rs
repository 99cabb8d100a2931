//! mkinitcpio images. mkinitcpio is not packaged for Debian, so the xtask plays its build
//! side: it sources the project's install hook and calls `build()` with stand-ins for
//! `add_module`, `add_binary`, `add_file`, `add_symlink`, `add_dir` and `add_runscript`
//! (xtask/guest/mkinitcpio/build-driver.bash), which record each call; the xtask then
//! carries the calls out as mkinitcpio does (binaries with their libraries, modules with
//! their dependencies, runtime scripts registered by the `run_*` functions they define).
//!
//! - busybox flavour: a cpio whose /init (xtask/guest/mkinitcpio/init) follows mkinitcpio's
//!   order, with HOOKS=(base vfio-test-preload vfio-bind udev vfio-test) and MODULES=(bochs):
//!   the GPU driver in MODULES loads right after the early hooks and must lose the race.
//! - systemd flavour (HOOKS=(base systemd), `mkinitcpio -A vfio-bind -S base`): a systemd
//!   initrd built by dracut *without* the project's dracut module, carrying exactly the
//!   files the mkinitcpio install hook asked for (the unit and its sysinit.target.wants link
//!   among them, and no runtime script: `base` is skipped), built with nullglob set, and
//!   MODULES=(bochs) as /etc/modules-load.d/MODULES.conf, which is how mkinitcpio's systemd
//!   hook hands MODULES to systemd-modules-load.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context};

use super::{
    install_binary, install_file, install_modules, install_symlink, module_files, Inputs,
    DISPLAY_DRIVERS, EARLY_DRIVER,
};
use crate::util::{create_dir_all, find_program, TaskResult};
use crate::vm::cpio;
use crate::vm::host::run_captured;

const INSTALL_HOOK: &str = "usr/lib/initcpio/install/vfio-bind";
const HOOKS_DIR: &str = "usr/lib/initcpio/hooks";

/// One call the install hook made.
#[derive(Debug, PartialEq, Eq)]
struct Call {
    function: String,
    args: Vec<String>,
}

/// A runtime script and the run_* functions it defines.
struct Runscript {
    name: String,
    functions: Vec<String>,
}

/// What carrying out the calls produced.
#[derive(Default)]
struct Built {
    modules: Vec<String>,
    runscripts: Vec<Runscript>,
}

/// Runs the install hook's build() under the stand-ins and returns its calls.
fn record_build(
    inputs: &Inputs,
    stage: &Path,
    dir: &Path,
    buildroot: &Path,
    nullglob: bool,
    hooks: &str,
    options: &[&str],
) -> TaskResult<Vec<Call>> {
    let hook = stage.join(INSTALL_HOOK);
    if !hook.exists() {
        bail!(
            "the project's mkinitcpio install hook {} is not in the staging root",
            hook.display()
        );
    }
    let records = dir.join("build-calls");
    fs::write(&records, b"").with_context(|| format!("cannot write {}", records.display()))?;
    let log = run_captured(
        Command::new("bash")
            .arg(inputs.guest.join("mkinitcpio/build-driver.bash"))
            .args(options)
            .arg(&hook)
            .arg(stage.join(HOOKS_DIR))
            .env("VFIO_TEST_RECORDS", &records)
            .env("VFIO_BIND_ROOT", stage)
            .env("BUILDROOT", buildroot)
            .env("KERNELVERSION", &inputs.kernel.release)
            .env("VFIO_TEST_NULLGLOB", if nullglob { "1" } else { "0" })
            .env("VFIO_TEST_HOOKS", hooks),
    )
    .context("the mkinitcpio install hook's build() failed")?;
    let _ = fs::write(dir.join("build.log"), &log);
    let text = fs::read(&records).with_context(|| format!("cannot read {}", records.display()))?;
    Ok(parse_calls(&text))
}

fn parse_calls(text: &[u8]) -> Vec<Call> {
    String::from_utf8_lossy(text)
        .split("\0\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.split('\0').map(str::to_string);
            Call {
                function: fields.next().unwrap_or_default(),
                args: fields.collect(),
            }
        })
        .collect()
}

/// The `run_*` functions a runtime script defines, as mkinitcpio's funcgrep finds them.
fn run_functions(script: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in script.lines() {
        let line = line.trim_start();
        let Some(open) = line.find('(') else { continue };
        let name = line[..open].trim_end();
        let after = line[open + 1..].trim_start();
        if name.starts_with("run_")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && after.starts_with(')')
            && !found.iter().any(|f| f == name)
        {
            found.push(name.to_string());
        }
    }
    found
}

fn add_runscript(root: &Path, name: &str, script: &Path, built: &mut Built) -> TaskResult {
    install_file(root, script, &format!("/hooks/{name}"), 0o755)?;
    let text =
        fs::read_to_string(script).with_context(|| format!("cannot read {}", script.display()))?;
    built.runscripts.push(Runscript {
        name: name.to_string(),
        functions: run_functions(&text),
    });
    Ok(())
}

/// Carries out the recorded calls into `root`, as mkinitcpio's functions would.
fn carry_out(calls: &[Call], root: &Path, built: &mut Built) -> TaskResult {
    for call in calls {
        let arg = |index: usize| call.args.get(index).map(String::as_str);
        let missing = || anyhow!("{}: missing argument", call.function);
        match call.function.as_str() {
            "add_module" => built.modules.push(arg(0).ok_or_else(missing)?.to_string()),
            "add_binary" => {
                let source = arg(0).ok_or_else(missing)?;
                let path = if source.contains('/') {
                    PathBuf::from(source)
                } else {
                    find_program(source)
                        .with_context(|| format!("add_binary: {source} not found"))?
                };
                let dest = arg(1).unwrap_or(source);
                install_binary(root, &path, dest)?;
            }
            "add_file" => {
                use std::os::unix::fs::PermissionsExt;
                let source = arg(0).ok_or_else(missing)?;
                let dest = arg(1).filter(|d| !d.is_empty()).unwrap_or(source);
                let mode = match arg(2) {
                    Some(mode) => u32::from_str_radix(mode, 8)
                        .with_context(|| format!("add_file: bad mode {mode}"))?,
                    None => {
                        fs::metadata(source)
                            .with_context(|| format!("add_file: {source}"))?
                            .permissions()
                            .mode()
                            & 0o7777
                    }
                };
                install_file(root, Path::new(source), dest, mode)?;
            }
            "add_dir" => {
                let path = super::in_root(root, arg(0).ok_or_else(missing)?);
                create_dir_all(&path)?;
            }
            "add_symlink" => {
                let link = arg(0).ok_or_else(missing)?;
                let target = match arg(1) {
                    Some(target) => target.to_string(),
                    None => fs::canonicalize(link)
                        .with_context(|| format!("add_symlink {link}"))?
                        .to_string_lossy()
                        .into_owned(),
                };
                install_symlink(root, link, &target)?;
            }
            "add_runscript" => {
                let name = arg(0).ok_or_else(missing)?;
                let script = arg(1).ok_or_else(missing)?;
                add_runscript(root, name, Path::new(script), built)?;
            }
            // The staging root has every file the hook reads and the image has what the
            // hook's runtime script needs, so a warning is a fault of the hook: the build
            // fails on it (printed by the stand-in too, as mkinitcpio prints it).
            "warning" => bail!(
                "the install hook warned: {}",
                printf(arg(0).ok_or_else(missing)?, &call.args[1..])
            ),
            other => {
                bail!(
                    "the install hook called {other}, which the VM test's mkinitcpio stand-in does not carry out"
                )
            }
        }
    }
    Ok(())
}

/// A `warning FORMAT ARGS...` record as mkinitcpio prints it: each `%s` replaced by the
/// next argument.
fn printf(format: &str, args: &[String]) -> String {
    let mut args = args.iter();
    let mut text = String::new();
    let mut parts = format.split("%s");
    text.push_str(parts.next().unwrap_or_default());
    for part in parts {
        text.push_str(args.next().map(String::as_str).unwrap_or_default());
        text.push_str(part);
    }
    text
}

/// mkinitcpio's base layout: a merged /usr with /bin, /sbin, /lib, /lib64 pointing into it.
fn layout(root: &Path) -> TaskResult {
    for dir in [
        "new_root",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
        "var",
        "usr/bin",
        "usr/lib",
        "usr/local/bin",
        "hooks",
    ] {
        create_dir_all(&root.join(dir))?;
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib"),
        ("usr/sbin", "bin"),
        ("usr/lib64", "lib"),
        ("usr/local/sbin", "bin"),
    ] {
        install_symlink(root, link, target)?;
    }
    fs::write(
        root.join("etc/initrd-release"),
        "NAME=vfio-bind VM test (mkinitcpio order)\n",
    )
    .with_context(|| format!("cannot write {}", root.display()))
}

/// What mkinitcpio's `base` hook adds: busybox with every applet, kmod's tools, /init.
fn base(inputs: &Inputs, root: &Path) -> TaskResult {
    let busybox = find_program("busybox")
        .context("busybox is not installed (apt-get install busybox-static)")?;
    if !super::libraries_of(&busybox)?.is_empty() {
        bail!(
            "{} is not static; install busybox-static",
            busybox.display()
        );
    }
    install_file(root, &busybox, "/usr/bin/busybox", 0o755)?;
    let list = run_captured(Command::new(&busybox).arg("--list"))?;
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        install_symlink(root, &format!("/usr/bin/{applet}"), "busybox")?;
    }
    let kmod = find_program("kmod").context("kmod is not installed (apt-get install kmod)")?;
    install_binary(root, &kmod, "/usr/bin/kmod")?;
    for tool in ["depmod", "insmod", "rmmod", "lsmod", "modprobe", "modinfo"] {
        install_symlink(root, &format!("/usr/bin/{tool}"), "kmod")?;
    }
    let guest = inputs.guest.join("mkinitcpio");
    install_file(root, &guest.join("init"), "/init", 0o755)?;
    install_file(
        root,
        &guest.join("init_functions"),
        "/init_functions",
        0o644,
    )
}

/// What mkinitcpio's `udev` hook adds: udevd, udevadm, the rules that load drivers.
fn udev(inputs: &Inputs, root: &Path, built: &mut Built) -> TaskResult {
    let udevadm =
        find_program("udevadm").context("udevadm is not installed (apt-get install udev)")?;
    install_binary(root, &udevadm, "/usr/bin/udevadm")?;
    // systemd-udevd is udevadm under another name on Debian; the name picks the role.
    install_binary(root, &udevadm, "/usr/lib/systemd/systemd-udevd")?;
    for rule in ["50-udev-default.rules", "80-drivers.rules"] {
        let source = Path::new("/usr/lib/udev/rules.d").join(rule);
        install_file(
            root,
            &source,
            &format!("/usr/lib/udev/rules.d/{rule}"),
            0o644,
        )?;
    }
    if Path::new("/etc/udev/udev.conf").exists() {
        install_file(
            root,
            Path::new("/etc/udev/udev.conf"),
            "/etc/udev/udev.conf",
            0o644,
        )?;
    }
    add_runscript(
        root,
        "udev",
        &inputs.guest.join("mkinitcpio/hooks/udev"),
        built,
    )
}

/// The /config mkinitcpio writes: MODULES and, per kind of runtime function, the hooks
/// that define it, in HOOKS order.
fn config(built: &Built, hooks: &[&str], modules: &[&str]) -> String {
    let with = |function: &str| -> String {
        hooks
            .iter()
            .filter(|hook| {
                built
                    .runscripts
                    .iter()
                    .any(|r| r.name == **hook && r.functions.iter().any(|f| f == function))
            })
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cleanup_hooks = with("run_cleanuphook");
    let mut cleanup: Vec<&str> = cleanup_hooks.split(' ').filter(|s| !s.is_empty()).collect();
    cleanup.reverse();
    format!(
        "MODULES='{}'\nEARLYHOOKS='{}'\nHOOKS='{}'\nLATEHOOKS='{}'\nCLEANUPHOOKS='{}'\nEMERGENCYHOOKS='{}'\n",
        modules.join(" "),
        with("run_earlyhook"),
        with("run_hook"),
        with("run_latehook"),
        cleanup.join(" "),
        with("run_emergencyhook"),
    )
}

/// Whether mkinitcpio v41 keeps this file of the modules directory after depmod: it runs
/// `rm modules.!(*.bin|devname|softdep)`, so of the indexes only the binary ones,
/// `modules.devname` and `modules.softdep` stay. Without `modules.dep`, busybox's modprobe
/// cannot load anything: only kmod's can.
fn mkinitcpio_keeps_module_index(name: &str) -> bool {
    match name.strip_prefix("modules.") {
        Some(rest) => rest.ends_with(".bin") || rest == "devname" || rest == "softdep",
        None => true,
    }
}

/// Removes the module indexes mkinitcpio v41 removes (see `mkinitcpio_keeps_module_index`).
fn keep_only_binary_module_indexes(root: &Path, release: &str) -> TaskResult {
    let dir = root.join("usr/lib/modules").join(release);
    let entries = fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !mkinitcpio_keeps_module_index(&name) && entry.path().is_file() {
            fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Every modprobe the image's programs may run must be kmod's, as mkinitcpio's `base` hook
/// links them, and not the busybox applet: the binder's (src/boot/apply.rs MODPROBE_PATHS,
/// /usr/sbin first) and /usr/bin/modprobe, where /init_functions sends a plain `modprobe`
/// (MODULES, the test hooks) that busybox's ash would otherwise run as its own applet.
fn check_modprobe_is_kmod(root: &Path) -> TaskResult {
    let kmod = fs::canonicalize(root.join("usr/bin/kmod"))
        .with_context(|| format!("cannot resolve {}/usr/bin/kmod", root.display()))?;
    for path in [
        "usr/sbin/modprobe",
        "sbin/modprobe",
        "usr/bin/modprobe",
        "bin/modprobe",
    ] {
        let resolved = fs::canonicalize(root.join(path))
            .with_context(|| format!("cannot resolve {}/{path}", root.display()))?;
        if resolved != kmod {
            bail!(
                "/{path} in the mkinitcpio image is {}, not kmod",
                resolved.display()
            );
        }
    }
    Ok(())
}

pub fn build_busybox(inputs: &Inputs, stage: &Path, dir: &Path, out: &Path) -> TaskResult {
    let root = dir.join("root");
    layout(&root)?;
    let mut built = Built::default();
    // HOOKS=(base vfio-test-preload vfio-bind udev vfio-test), processed in that order.
    let hooks = [
        "base",
        "vfio-test-preload",
        "vfio-bind",
        "udev",
        "vfio-test",
    ];
    base(inputs, &root)?;
    let guest_hooks = inputs.guest.join("mkinitcpio/hooks");
    add_runscript(
        &root,
        "vfio-test-preload",
        &guest_hooks.join("vfio-test-preload"),
        &mut built,
    )?;
    let calls = record_build(
        inputs,
        stage,
        dir,
        &root,
        false,
        "base vfio-test-preload vfio-bind udev vfio-test",
        &[],
    )?;
    carry_out(&calls, &root, &mut built)?;
    udev(inputs, &root, &mut built)?;
    add_runscript(
        &root,
        "vfio-test",
        &guest_hooks.join("vfio-test"),
        &mut built,
    )?;
    install_file(&root, inputs.reporter, "/usr/bin/vfio-test-report", 0o755)?;

    let mut modules: Vec<String> = vec![EARLY_DRIVER.to_string()];
    modules.extend(DISPLAY_DRIVERS.iter().map(|m| m.to_string()));
    modules.extend(built.modules.iter().cloned());
    install_modules(inputs.kernel, &root, &modules)?;
    keep_only_binary_module_indexes(&root, &inputs.kernel.release)?;
    check_modprobe_is_kmod(&root)?;
    fs::write(root.join("config"), config(&built, &hooks, &[EARLY_DRIVER]))
        .with_context(|| format!("cannot write {}", root.display()))?;

    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = cpio::Writer::new(BufWriter::new(file));
    let io = || format!("cannot write {}", out.display());
    writer.tree(&root).with_context(io)?;
    writer
        .char_device("dev/console", 0o600, 5, 1)
        .with_context(io)?;
    writer
        .char_device("dev/null", 0o666, 1, 3)
        .with_context(io)?;
    writer.finish().with_context(io)?;
    Ok(())
}

pub fn build_systemd(inputs: &Inputs, stage: &Path, dir: &Path, out: &Path) -> TaskResult {
    let overlay = dir.join("overlay");
    create_dir_all(&overlay)?;
    let mut built = Built::default();
    // What archinstall writes, HOOKS=(base systemd ...), built as `mkinitcpio -A vfio-bind
    // -S base`: the hook runs only because of `-A`, and `base` is skipped for this build,
    // so the image has no ash (the overlay gets none) and the hook must add no runtime
    // script, which would never run (mkinitcpio v41 warns "Possibly missing '/usr/bin/ash'",
    // and carry_out fails on that warning).
    let calls = record_build(
        inputs,
        stage,
        dir,
        &overlay,
        true,
        "base systemd",
        &["-A", "vfio-bind", "-S", "base"],
    )?;
    if calls.is_empty() {
        bail!("the mkinitcpio install hook did not run: the stand-in did not honour -A vfio-bind");
    }
    carry_out(&calls, &overlay, &mut built)?;
    if built.runscripts.iter().any(|r| r.name == "vfio-bind") {
        bail!("the mkinitcpio install hook added its runtime script to an image built with -S base, where nothing runs it");
    }
    // mkinitcpio's systemd hook turns MODULES=(...) into this file.
    let modules_load = overlay.join("etc/modules-load.d");
    create_dir_all(&modules_load)?;
    fs::write(
        modules_load.join("MODULES.conf"),
        format!("{EARLY_DRIVER}\n"),
    )
    .with_context(|| format!("cannot write {}", modules_load.display()))?;
    let mut drivers = Vec::new();
    for module in &built.modules {
        let (name, optional) = match module.strip_suffix('?') {
            Some(name) => (name, true),
            None => (module.as_str(), false),
        };
        match module_files(inputs.kernel, name)? {
            Some(_) => drivers.push(name.to_string()),
            None if optional => {}
            None => bail!("add_module {name}: no such module"),
        }
    }
    super::dracut::build(inputs, stage, dir, out, true, Some((&overlay, &drivers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_split_on_nul_fields() {
        let calls = parse_calls(b"add_module\0vfio-pci?\0\nadd_symlink\0/a b\0/c\0\n");
        assert_eq!(
            calls,
            vec![
                Call {
                    function: "add_module".into(),
                    args: vec!["vfio-pci?".into()]
                },
                Call {
                    function: "add_symlink".into(),
                    args: vec!["/a b".into(), "/c".into()]
                },
            ]
        );
    }

    #[test]
    fn warnings_read_as_mkinitcpio_prints_them() {
        let args = ["/usr/bin/ash".to_string(), "/hooks/vfio-bind".to_string()];
        assert_eq!(
            printf("Possibly missing '%s' for script: %s", &args),
            "Possibly missing '/usr/bin/ash' for script: /hooks/vfio-bind"
        );
        assert_eq!(
            printf("no %s here: %s", &args[..1]),
            "no /usr/bin/ash here: "
        );
        assert_eq!(printf("plain", &args), "plain");
    }

    #[test]
    fn keeps_the_module_indexes_mkinitcpio_keeps() {
        let kept: Vec<&str> = [
            "modules.alias",
            "modules.alias.bin",
            "modules.builtin",
            "modules.builtin.bin",
            "modules.builtin.modinfo",
            "modules.dep",
            "modules.dep.bin",
            "modules.devname",
            "modules.order",
            "modules.softdep",
            "modules.symbols",
            "modules.symbols.bin",
            "kernel",
        ]
        .into_iter()
        .filter(|name| mkinitcpio_keeps_module_index(name))
        .collect();
        assert_eq!(
            kept,
            [
                "modules.alias.bin",
                "modules.builtin.bin",
                "modules.dep.bin",
                "modules.devname",
                "modules.softdep",
                "modules.symbols.bin",
                "kernel",
            ]
        );
    }

    #[test]
    fn finds_run_functions_like_funcgrep() {
        let script = "#!/usr/bin/ash\nhelper() {\n}\nrun_earlyhook() {\n  :\n}\n  run_hook () {\n}\n# run_latehook() in a comment\n";
        assert_eq!(run_functions(script), vec!["run_earlyhook", "run_hook"]);
    }

    #[test]
    fn config_lists_hooks_in_hooks_order() {
        let built = Built {
            modules: vec![],
            runscripts: vec![
                Runscript {
                    name: "udev".into(),
                    functions: vec!["run_earlyhook".into(), "run_hook".into()],
                },
                Runscript {
                    name: "vfio-bind".into(),
                    functions: vec!["run_earlyhook".into()],
                },
            ],
        };
        let text = config(&built, &["base", "vfio-bind", "udev"], &["bochs"]);
        assert!(text.contains("EARLYHOOKS='vfio-bind udev'"));
        assert!(text.contains("HOOKS='udev'"));
        assert!(text.contains("MODULES='bochs'"));
    }
}
