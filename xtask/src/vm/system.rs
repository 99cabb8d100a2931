//! Scenario 21, the installed Debian system: the whole life of the tool on a real Debian 12
//! system, booted from its own disk.
//!
//! The disk: a root file system from Debian's packages (`mmdebstrap --variant=minbase`),
//! into which the kernel package the VM test uses and then the project's `.deb` are
//! installed with `dpkg -i` (xtask/guest/system/customize). The rule is in
//! `/etc/cmdline.d/vfio-bind.conf` before the project's package goes in, so the package's
//! trigger alone must rebuild the image with the hook and the rule. A GPT disk: an EFI
//! system partition holding GRUB (`grub-mkstandalone`, whose built-in grub.cfg loads
//! `/boot/vmlinuz-RELEASE` and `/boot/initrd.img-RELEASE` from the root file system), and
//! the root file system, ext4 made with `mkfs.ext4 -d` (nothing is mounted). Cached under
//! `target/vm/system/` by the hash of its inputs.
//!
//! Two boots of one copy of the disk under UEFI (OVMF): the firmware starts GRUB from the
//! disk, GRUB reads the kernel and the image from the disk's own `/boot` (the image `dpkg`
//! rebuilt, at the second boot) and adds `BOOT_IMAGE=`, as on a user's machine. No rule on
//! the kernel command line. In the guest, a unit of the test's own (xtask/guest/system/vfio-test-system)
//! runs each step and reports it on the second serial port: the first boot's state,
//! `vfio-bind check --json`, `list --json`, the libvirt hook the README documents run as
//! libvirt runs it, the host-safety guard (step 5, [`judge_guard`]),
//! `dpkg -r vfio-bind`; the second boot's state. All judged here by the guest's own state.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use super::host::{die_with_parent, run_captured};
use super::prepare::Setup;
use super::qemu::{self, seconds};
use super::report::{self, full_address, GuestState};
use super::scenario::{
    self, Cards, Scenario, SYSTEM_AS_BOOTED, SYSTEM_BOOTED, SYSTEM_PREPARED, SYSTEM_REMOVED,
};
use super::stage::BAKED_RULE;
use crate::util::{create_dir_all, project_root, TaskResult};

/// Debian's release the root file system is built from.
const SUITE: &str = "bookworm";
/// What `mmdebstrap --variant=minbase` adds: an init, udev to load the cards' drivers,
/// initramfs-tools and its zstd, and linux-base for the kernel package's scripts.
const PACKAGES: &str = "systemd-sysv,udev,kmod,initramfs-tools,zstd,linux-base";
const MIB: u64 = 1024 * 1024;
/// The EFI system partition: FAT, 1 MiB into the disk, holding GRUB alone.
const ESP_OFFSET: u64 = MIB;
const ESP_MIB: u64 = 32;
/// The root file system's size (ext4, in the GPT partition after the ESP).
const FS_MIB: u64 = 1400;
/// Where the root partition, and so the file system, starts.
const FS_OFFSET: u64 = ESP_OFFSET + ESP_MIB * MIB;
/// GRUB's modules in its EFI image: the partition table, ext4, the kernel loader, and
/// finding the root file system by its label.
const GRUB_MODULES: &str = "part_gpt ext2 linux search search_label normal configfile echo";
/// The guest the libvirt hook is written for (its domain XML is
/// xtask/guest/system/win11.xml), and the first twin that guest gets.
const HOOK_GUEST: &str = "win11";
const HOOK_RULE: &str = "1234:1111@00:04";
/// The README's example rule in that hook, replaced by [`HOOK_RULE`].
const README_HOOK_RULE: &str = "1002:73ff@07:00";
/// The kernel command line: the disk's root, no rule (the rule is in /etc/cmdline.d).
const APPEND: &str = "root=LABEL=root systemd.firstboot=off";
/// The root disk's controller, pinned so the guard step knows where it is.
const DISK_SLOT: &str = "06.0";

/// Whether `--only` selects this scenario (no filter selects everything).
pub fn selected(only: Option<&str>) -> bool {
    match only {
        None => true,
        Some(filter) if filter.chars().all(|c| c.is_ascii_digit()) => {
            filter == scenario::SYSTEM_NUMBER.to_string()
        }
        Some(filter) => scenario::SYSTEM_NAME.contains(filter),
    }
}

/// The cached disk image.
pub struct Disk {
    pub path: PathBuf,
    /// The kernel release whose image and kernel are in the disk's /boot.
    pub release: String,
}

/// The disk image for these inputs: the cached one, or built now.
pub fn disk(setup: &Setup) -> TaskResult<Disk> {
    let dir = setup.vm_dir.join("system");
    create_dir_all(&dir)?;
    let hook = dir.join("libvirt-hook-qemu");
    fs::write(&hook, libvirt_hook()?)
        .with_context(|| format!("cannot write {}", hook.display()))?;
    let grub_cfg = dir.join("grub.cfg");
    fs::write(&grub_cfg, grub_config(&setup.kernel.release))
        .with_context(|| format!("cannot write {}", grub_cfg.display()))?;
    let key = inputs_hash(setup, &[("hook", &hook), ("grub.cfg", &grub_cfg)])?;
    let path = dir.join(format!("disk-{}.img", &key[..16]));
    let release = setup.kernel.release.clone();
    if path.is_file() {
        println!("system disk: cached {}", path.display());
        return Ok(Disk { path, release });
    }
    let started = Instant::now();
    build_disk(setup, &hook, &grub_cfg, &dir, &path)?;
    println!(
        "system disk: built in {} ({})",
        seconds(started.elapsed()),
        path.display()
    );
    // Older disks (other inputs) are of no further use.
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("disk-") && name.ends_with(".img") && entry.path() != path {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(Disk { path, release })
}

/// GRUB's configuration: the disk's kernel and image by the running release, the usual
/// words and the root, no rule.
fn grub_config(release: &str) -> String {
    let command_line =
        scenario::kernel_command_line(true, super::image::Generator::InitramfsTools, &[APPEND]);
    format!(
        "set timeout=0\nsearch --no-floppy --label root --set=root\nlinux /boot/vmlinuz-{release} {command_line}\ninitrd /boot/initrd.img-{release}\nboot\n"
    )
}

/// The hook script the README documents for a guest named win11, with the first twin's rule
/// in place of the README's example rule.
fn libvirt_hook() -> TaskResult<String> {
    let path = project_root().join("README.md");
    let readme =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let script = readme_hook_script(&readme).with_context(|| {
        format!("README.md has no ```sh block after \"/etc/libvirt/hooks/qemu`, for a guest named `{HOOK_GUEST}`\"")
    })?;
    if !script.contains(README_HOOK_RULE) {
        bail!("README.md's hook script for {HOOK_GUEST} no longer has the rule {README_HOOK_RULE} this test replaces:\n{script}");
    }
    Ok(script.replace(README_HOOK_RULE, HOOK_RULE))
}

/// The first ```sh block after the README's line introducing the hook for win11.
fn readme_hook_script(readme: &str) -> Option<String> {
    let intro = format!("/etc/libvirt/hooks/qemu`, for a guest named `{HOOK_GUEST}`");
    let after = &readme[readme.find(&intro)?..];
    let body = &after[after.find("```sh\n")? + "```sh\n".len()..];
    Some(body[..body.find("```")?].to_string())
}

/// The hash of everything the disk is made of: the recipe, the kernel package, what the
/// project's package holds (files and control data, not its build time), and the test's
/// guest files.
fn inputs_hash(setup: &Setup, files: &[(&str, &Path)]) -> TaskResult<String> {
    let mut manifest = format!(
        "recipe 2: {SUITE} minbase {PACKAGES}; ESP {ESP_MIB} MiB at {ESP_OFFSET}, GRUB {GRUB_MODULES}; {FS_MIB} MiB at {FS_OFFSET}; rule {BAKED_RULE}\nkernel {}\n",
        setup
            .kernel
            .deb
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    );
    let control = tempfile::tempdir().context("cannot create a temporary directory")?;
    run_captured(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&setup.staged.deb)
            .arg(control.path().join("DEBIAN")),
    )?;
    let unpacked = super::stage::debian_root(&setup.staged.stage);
    let guest = setup.guest.join("system");
    for (label, root) in [
        ("package", unpacked.as_path()),
        ("control", control.path()),
        ("guest", guest.as_path()),
    ] {
        for file in files_below(root)? {
            let relative = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            writeln!(
                manifest,
                "{label} {relative} {}",
                sha256(&fs::read(&file)?)?
            )?;
        }
    }
    let reporter = [("reporter", setup.staged.reporter.as_path())];
    for &(label, file) in reporter.iter().chain(files) {
        let bytes = fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        writeln!(manifest, "{label} {}", sha256(&bytes)?)?;
    }
    sha256(manifest.as_bytes())
}

/// Every regular file below `root`, sorted.
fn files_below(root: &Path) -> TaskResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            let metadata = fs::symlink_metadata(&path)?;
            if metadata.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `sha256sum` of `bytes`, as hex.
fn sha256(bytes: &[u8]) -> TaskResult<String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run sha256sum")?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(bytes)?;
    let output = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.split_whitespace().next() {
        Some(hex) if output.status.success() => Ok(hex.to_string()),
        _ => Err(anyhow!("sha256sum failed")),
    }
}

/// mmdebstrap into a directory (the customize hook installs the packages), then the disk:
/// a GPT partition table, the ESP with GRUB, and `mkfs.ext4 -d` into the root partition.
fn build_disk(setup: &Setup, hook: &Path, grub_cfg: &Path, dir: &Path, out: &Path) -> TaskResult {
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    let guest = setup.guest.join("system");
    println!("system disk: mmdebstrap {SUITE} with the kernel and the project's package (about a minute)");
    let mut command = Command::new("mmdebstrap");
    command
        .args(["--variant=minbase", "--mode=root", "--quiet"])
        .arg(format!("--include={PACKAGES}"))
        .arg(format!(
            "--customize-hook={}",
            guest.join("customize").display()
        ))
        .arg(SUITE)
        .arg(&root)
        .env("VFIO_TEST_KERNEL_DEB", &setup.kernel.deb)
        .env("VFIO_TEST_PROJECT_DEB", &setup.staged.deb)
        .env("VFIO_TEST_RULE", BAKED_RULE)
        .env("VFIO_TEST_GUEST", &guest)
        .env("VFIO_TEST_REPORTER", &setup.staged.reporter)
        .env("VFIO_TEST_LIBVIRT_HOOK", hook);
    die_with_parent(&mut command);
    let log = run_captured(&mut command).context("mmdebstrap failed")?;
    let _ = fs::write(dir.join("mmdebstrap.log"), &log);

    let partial = out.with_extension("partial");
    let _ = fs::remove_file(&partial);
    let file = fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    // The partitions, then 1 MiB for the GPT's backup at the end.
    file.set_len(FS_OFFSET + FS_MIB * MIB + MIB)?;
    drop(file);
    let mut sfdisk = Command::new("sfdisk");
    sfdisk.arg("--quiet").arg(&partial).stdin(Stdio::piped());
    let table = format!(
        "label: gpt\n\
         start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n\
         start={}, size={}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n",
        ESP_OFFSET / 512,
        ESP_MIB * 2048,
        FS_OFFSET / 512,
        FS_MIB * 2048
    );
    write_to(&mut sfdisk, table.as_bytes()).context("sfdisk failed")?;
    run_captured(
        Command::new("mkfs.ext4")
            .arg("-q")
            .arg("-L")
            .arg("root")
            .arg("-E")
            .arg(format!("offset={FS_OFFSET}"))
            .arg("-d")
            .arg(&root)
            .arg(&partial)
            .arg(format!("{FS_MIB}M")),
    )?;
    write_esp(dir, grub_cfg, &partial)?;
    fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    let _ = fs::remove_dir_all(&root);
    Ok(())
}

/// Runs `command` with `input` on its stdin; an error carries its output.
fn write_to(command: &mut Command, input: &[u8]) -> TaskResult {
    use std::io::Write;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)?;
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(())
    } else {
        bail!(
            "{command:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

/// The EFI system partition: GRUB as the removable-media loader (`EFI/BOOT/BOOTX64.EFI`,
/// which OVMF starts with no boot entry), its grub.cfg built in; written into `disk` at
/// [`ESP_OFFSET`].
fn write_esp(dir: &Path, grub_cfg: &Path, disk: &Path) -> TaskResult {
    use std::io::{Seek, SeekFrom};
    let grub = dir.join("BOOTX64.EFI");
    run_captured(
        Command::new("grub-mkstandalone")
            .args(["-O", "x86_64-efi", "--locales=", "--fonts=", "--themes="])
            .arg(format!("--modules={GRUB_MODULES}"))
            .arg("-o")
            .arg(&grub)
            .arg(format!("boot/grub/grub.cfg={}", grub_cfg.display())),
    )?;
    let esp = dir.join("esp.img");
    let _ = fs::remove_file(&esp);
    run_captured(
        Command::new("mkfs.vfat")
            .args(["-C", "-n", "ESP"])
            .arg(&esp)
            .arg((ESP_MIB * 1024).to_string()),
    )?;
    let image = esp.display().to_string();
    run_captured(Command::new("mmd").args(["-i", &image, "::/EFI", "::/EFI/BOOT"]))?;
    run_captured(
        Command::new("mcopy")
            .args(["-i", &image])
            .arg(&grub)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )?;
    let mut from = fs::File::open(&esp).with_context(|| format!("cannot read {image}"))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .with_context(|| format!("cannot write {}", disk.display()))?;
    to.seek(SeekFrom::Start(ESP_OFFSET))?;
    std::io::copy(&mut from, &mut to)?;
    let _ = fs::remove_file(&esp);
    Ok(())
}

/// One boot of the scenario and what it reported.
pub struct SystemBoot {
    pub label: &'static str,
    pub boot: Option<qemu::Boot>,
    pub problems: Vec<String>,
}

/// What the whole scenario came to: each boot, in order.
pub struct SystemOutcome {
    pub boots: Vec<SystemBoot>,
    pub elapsed: Duration,
}

impl SystemOutcome {
    /// The disk could not be built: the scenario fails without booting.
    pub fn not_built(error: &anyhow::Error) -> SystemOutcome {
        SystemOutcome {
            boots: vec![SystemBoot {
                label: "first boot",
                boot: None,
                problems: vec![format!("the disk could not be built: {error:#}")],
            }],
            elapsed: Duration::ZERO,
        }
    }

    pub fn passed(&self) -> bool {
        self.boots.iter().all(|boot| boot.problems.is_empty())
    }
}

/// Boots a fresh copy of the disk twice and judges each boot.
pub fn run(setup: &Setup, disk: &Disk, timeout: Duration) -> SystemOutcome {
    let started = Instant::now();
    let dir = setup
        .vm_dir
        .join("runs")
        .join(format!("{}-system", scenario::SYSTEM_NUMBER));
    let mut boots = Vec::new();
    let copy = dir.join("disk.img");
    if let Err(error) = create_dir_all(&dir).and_then(|()| {
        run_captured(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&disk.path)
                .arg(&copy),
        )
        .map(drop)
    }) {
        boots.push(SystemBoot {
            label: "first boot",
            boot: None,
            problems: vec![format!("cannot copy the disk: {error:#}")],
        });
        return SystemOutcome {
            boots,
            elapsed: started.elapsed(),
        };
    }
    for (label, judge) in [
        (
            "first boot",
            judge_first_boot as fn(&str, &str, &str) -> Vec<String>,
        ),
        ("second boot", judge_second_boot),
    ] {
        let outcome = boot_disk(&copy, &dir.join(label.replace(' ', "-")), timeout)
            .map(|boot| {
                let mut problems = Vec::new();
                if boot.timed_out {
                    problems.push(format!(
                        "{}: QEMU was killed before the guest powered off",
                        qemu::timed_out_after(timeout)
                    ));
                }
                problems.extend(judge(&boot.result, &boot.console, &disk.release));
                SystemBoot {
                    label,
                    boot: Some(boot),
                    problems,
                }
            })
            .unwrap_or_else(|error| SystemBoot {
                label,
                boot: None,
                problems: vec![format!("{error:#}")],
            });
        // The second boot tells something only if the first got through its steps (and so
        // removed the package and powered off cleanly).
        let finished = outcome
            .boot
            .as_ref()
            .is_some_and(|boot| !boot.timed_out && boot.result.contains("system: done"));
        boots.push(outcome);
        if !finished {
            break;
        }
    }
    SystemOutcome {
        boots,
        elapsed: started.elapsed(),
    }
}

/// The twins and the disk on its own slot, under UEFI: OVMF starts GRUB from the disk.
fn boot_disk(disk: &Path, dir: &Path, timeout: Duration) -> TaskResult<qemu::Boot> {
    let mut devices = Cards::Twins.qemu_args();
    devices.extend([
        "-drive".to_string(),
        format!("file={},if=none,id=root,format=raw", disk.display()),
        "-device".to_string(),
        format!("virtio-blk-pci,drive=root,addr={DISK_SLOT}"),
    ]);
    qemu::boot(&qemu::BootSpec {
        direct: None,
        append: String::new(),
        devices,
        dir: dir.to_path_buf(),
        timeout,
        firmware: qemu::Firmware::Uefi,
    })
}

/// One step of the guest's report: `system: begin NAME`, what it printed, `system: end NAME
/// rc=N`.
#[derive(Debug, PartialEq, Eq)]
struct Section<'a> {
    name: &'a str,
    body: &'a str,
    rc: Option<i32>,
}

/// The sections of a boot's report, in order (a section cut short by the end of the log
/// has no exit status).
fn sections(result: &str) -> Vec<Section<'_>> {
    let mut found = Vec::new();
    let mut rest = result;
    while let Some(at) = rest.find("system: begin ") {
        let after = &rest[at + "system: begin ".len()..];
        let name_end = after.find('\n').unwrap_or(after.len());
        let name = after[..name_end].trim();
        let body_start = (name_end + 1).min(after.len());
        let end_marker = format!("system: end {name} rc=");
        match after.find(&end_marker) {
            Some(end) => {
                let status = &after[end + end_marker.len()..];
                let rc = status
                    .split_whitespace()
                    .next()
                    .and_then(|word| word.parse().ok());
                found.push(Section {
                    name,
                    body: &after[body_start..end],
                    rc,
                });
                rest = &after[end + end_marker.len()..];
            }
            None => {
                found.push(Section {
                    name,
                    body: &after[body_start..],
                    rc: None,
                });
                break;
            }
        }
    }
    found
}

/// The section named `name`, with exit status 0 (or the problem).
fn step<'a>(sections: &'a [Section<'a>], name: &str) -> Result<&'a Section<'a>, String> {
    match sections.iter().find(|section| section.name == name) {
        None => Err(format!(
            "step {name}: expected in the guest's report; it never ran"
        )),
        Some(section) if section.rc == Some(0) => Ok(section),
        Some(section) => Err(format!(
            "step {name}: expected exit status 0, got {}; it printed:\n{}",
            section
                .rc
                .map_or("none (cut short)".into(), |rc| rc.to_string()),
            indent(section.body)
        )),
    }
}

/// The guest state the reporter wrote in step `name`, checked against `expected`.
fn judge_state(
    sections: &[Section],
    name: &str,
    expected: &Scenario,
    console: &str,
) -> Vec<String> {
    let section = match step(sections, name) {
        Ok(section) => section,
        Err(problem) => return vec![problem],
    };
    let Some(mut state) = report::parse(section.body) else {
        return vec![format!("step {name}: the reporter wrote no report")];
    };
    // systemd's view of the initrd's units does not outlive the initrd: on the booted
    // system it says nothing of the binder's order.
    state.units.clear();
    scenario::check(expected, &state, console)
        .into_iter()
        .map(|problem| format!("{name}: {problem}"))
        .collect()
}

/// `found`, the problems of the state `name`, without those already in `earlier` (the
/// problems of the state `earlier_name`): a boot that went wrong stays wrong through the
/// later steps, and is said once.
fn not_again(
    earlier: &[String],
    earlier_name: &str,
    found: Vec<String>,
    name: &str,
) -> Vec<String> {
    let text = |problem: &str, state: &str| {
        problem
            .strip_prefix(state)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::to_string)
            .unwrap_or_else(|| problem.to_string())
    };
    let earlier: Vec<String> = earlier.iter().map(|p| text(p, earlier_name)).collect();
    let (repeated, new): (Vec<String>, Vec<String>) = found
        .into_iter()
        .partition(|problem| earlier.contains(&text(problem, name)));
    let mut problems = new;
    if !repeated.is_empty() {
        problems.push(format!(
            "{name}: {} more, the same as at {earlier_name}",
            repeated.len()
        ));
    }
    problems
}

fn state_table(name: &str, state: &GuestState) -> String {
    format!("{name}:\n{}", report::function_table(state))
}

/// `vfio-bind check --json`: no PROBLEM, and the booted image was found, read, and carries
/// the binder and its hook.
fn judge_check(sections: &[Section], release: &str) -> Vec<String> {
    let json = match json_of_step(sections, "check") {
        Ok(json) => json,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    if json["schema"] != "vfio-bind.check/1" || json["ok"] != true {
        problems.push(format!(
            "check --json: expected schema vfio-bind.check/1 and \"ok\": true; found {} and {}",
            json["schema"], json["ok"]
        ));
    }
    let findings = json["findings"].as_array().cloned().unwrap_or_default();
    for finding in &findings {
        if finding["severity"] == "problem" {
            problems.push(format!(
                "check --json: a PROBLEM on the installed system: {finding}"
            ));
        }
    }
    let image = format!("/boot/initrd.img-{release}");
    if !findings.iter().any(|finding| {
        finding["subject"] == "initramfs"
            && finding["severity"] == "ok"
            && finding["text"]
                .as_str()
                .is_some_and(|text| text.contains(&image))
    }) {
        problems.push(format!(
            "check --json: expected an ok finding about the booted image {image} (found, read, hook in it); the findings: {}",
            json["findings"]
        ));
    }
    problems
}

/// `vfio-bind list --json`: it parses, and the functions on vfio-pci are the second twin's,
/// selected by the rule.
fn judge_list(sections: &[Section]) -> Vec<String> {
    let json = match json_of_step(sections, "list") {
        Ok(json) => json,
        Err(problem) => return vec![problem],
    };
    let functions = json["functions"].as_array().cloned().unwrap_or_default();
    let on_vfio: Vec<(String, bool)> = functions
        .iter()
        .filter(|function| function["driver"] == "vfio-pci")
        .map(|function| {
            (
                function["address"].as_str().unwrap_or("?").to_string(),
                function["selected"] == true,
            )
        })
        .collect();
    let expected = vec![
        (full_address("00:05.0"), true),
        (full_address("00:05.1"), true),
    ];
    if json["schema"] != "vfio-bind.list/1" || on_vfio != expected {
        vec![format!(
            "list --json: expected schema vfio-bind.list/1 naming 0000:00:05.0 and 0000:00:05.1 on vfio-pci, selected; found schema {} and (address, selected) on vfio-pci {on_vfio:?}",
            json["schema"]
        )]
    } else {
        Vec::new()
    }
}

/// The JSON document that step `name` (`vfio-bind NAME --json`) printed, or the problem:
/// the step did not run or failed ([`step`]), or printed no JSON object.
fn json_of_step(sections: &[Section], name: &str) -> Result<Value, String> {
    let section = step(sections, name)?;
    json_line(section.body).ok_or_else(|| {
        format!(
            "{name} --json: expected one JSON document; it printed:\n{}",
            indent(section.body)
        )
    })
}

/// The first line of `body` that is a JSON object.
fn json_line(body: &str) -> Option<Value> {
    body.lines()
        .filter(|line| line.starts_with('{'))
        .find_map(|line| serde_json::from_str(line).ok())
}

/// What the booted image holds of vfio-bind (`lsinitramfs`, lines naming vfio-bind):
/// `present` says whether the binary and the init-top hook must be there.
fn judge_image(sections: &[Section], name: &str, present: bool) -> Vec<String> {
    let section = match step(sections, name) {
        Ok(section) => section,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    let expected: &[&str] = if present {
        &[
            "usr/bin/vfio-bind",
            "scripts/init-top/00-vfio-bind",
            "etc/cmdline.d/vfio-bind.conf",
        ]
    } else {
        &[]
    };
    let forbidden: &[&str] = if present {
        &[]
    } else {
        &["usr/bin/vfio-bind", "scripts/init-top/00-vfio-bind"]
    };
    let lines: Vec<&str> = section.body.lines().map(str::trim).collect();
    for file in expected {
        if !lines.contains(file) {
            problems.push(format!(
                "{name}: expected {file} in the booted image (built by the package's trigger); lsinitramfs lists:\n{}",
                indent(section.body)
            ));
        }
    }
    for file in forbidden {
        if lines.contains(file) {
            problems.push(format!(
                "{name}: expected no {file} in the image after dpkg -r (its trigger rebuilds the image); lsinitramfs lists:\n{}",
                indent(section.body)
            ));
        }
    }
    problems
}

/// The rule file is where the user left it (the package never owned it).
fn judge_rule_file(sections: &[Section]) -> Vec<String> {
    match step(sections, "rule-file") {
        Ok(section) if section.body.trim() == BAKED_RULE => Vec::new(),
        Ok(section) => vec![format!(
            "rule-file: expected /etc/cmdline.d/vfio-bind.conf to still hold {BAKED_RULE}; it holds:\n{}",
            indent(section.body)
        )],
        Err(problem) => vec![problem],
    }
}

/// Step 5, the host-safety guard on the root disk's controller (at [`DISK_SLOT`]): `rule`
/// warns that it holds `/`, `bind` refuses (non-zero), and the controller keeps its driver
/// with no override.
fn judge_guard(sections: &[Section]) -> Vec<String> {
    let mut problems = Vec::new();
    match step(sections, "guard-rule") {
        Ok(section)
            if section
                .body
                .lines()
                .any(|line| line.starts_with("warning: ") && line.contains(" holds / (")) => {}
        Ok(section) => problems.push(format!(
            "guard-rule: expected `vfio-bind rule` for the root disk's controller to warn; it printed:\n{}",
            indent(section.body)
        )),
        Err(problem) => problems.push(problem),
    }
    match sections.iter().find(|section| section.name == "guard-bind") {
        Some(section) if section.rc.is_some_and(|rc| rc != 0) => {}
        Some(section) => problems.push(format!(
            "guard-bind: expected `vfio-bind bind` of the root disk's controller to refuse (non-zero exit); exit {:?}, it printed:\n{}",
            section.rc,
            indent(section.body)
        )),
        None => problems.push("guard-bind: expected in the guest's report; it never ran".into()),
    }
    let disk = format!("00:{DISK_SLOT}");
    match step(sections, "guard-state").map(|section| report::parse(section.body)) {
        Ok(Some(state)) => match state.function(&disk) {
            Some(function)
                if function.driver.as_deref() == Some("virtio-pci")
                    && function.driver_override.is_none() => {}
            found => problems.push(format!(
                "guard-state: expected the root disk's controller {disk} on virtio-pci with no override; found {found:?}"
            )),
        },
        Ok(None) => problems.push("guard-state: the reporter wrote no report".into()),
        Err(problem) => problems.push(problem),
    }
    problems
}

/// The kernel was started by the disk's boot loader (`BOOT_IMAGE=` names the disk's kernel)
/// with no rule on its command line: the rule comes from /etc/cmdline.d alone.
fn judge_command_line(console: &str, release: &str) -> Vec<String> {
    let line = console
        .lines()
        .find_map(|line| line.split_once("Command line: ").map(|(_, words)| words));
    match line {
        Some(words)
            if words.starts_with(&format!("BOOT_IMAGE=/boot/vmlinuz-{release} "))
                && !words.contains("vfio.bind") => Vec::new(),
        found => vec![format!(
            "expected the kernel started by GRUB from the disk (BOOT_IMAGE=/boot/vmlinuz-{release}) with no vfio.bind= on its command line; the console says {found:?}"
        )],
    }
}

/// The first boot: booted, checked, listed, the hook's round, the guard, removal.
fn judge_first_boot(result: &str, console: &str, release: &str) -> Vec<String> {
    let sections = sections(result);
    let mut problems = judge_command_line(console, release);
    let booted = judge_state(&sections, "boot-state", &SYSTEM_BOOTED, console);
    problems.extend(booted.iter().cloned());
    problems.extend(judge_image(&sections, "image", true));
    problems.extend(judge_check(&sections, release));
    problems.extend(judge_list(&sections));
    for (hook, state, expected) in [
        ("hook-other-guest", "state-other-guest", &SYSTEM_AS_BOOTED),
        ("hook-prepare", "state-prepared", &SYSTEM_PREPARED),
        ("hook-release", "state-released", &SYSTEM_AS_BOOTED),
    ] {
        if let Err(problem) = step(&sections, hook) {
            problems.push(format!("{problem} (the libvirt hook, as libvirt runs it)"));
        }
        let found = judge_state(&sections, state, expected, "");
        problems.extend(not_again(&booted, "boot-state", found, state));
    }
    problems.extend(judge_guard(&sections));
    if let Err(problem) = step(&sections, "remove") {
        problems.push(problem);
    }
    problems.extend(judge_image(&sections, "image-after-remove", false));
    problems.extend(judge_rule_file(&sections));
    if !result.contains("system: done") {
        problems.push("expected the guest to finish its steps (`system: done`)".into());
    }
    problems
}

/// The second boot of the same disk, after `dpkg -r`: nothing bound, the rule file kept.
fn judge_second_boot(result: &str, console: &str, release: &str) -> Vec<String> {
    let sections = sections(result);
    let mut problems = judge_command_line(console, release);
    if !result.contains("system: boot 2") {
        problems.push(format!(
            "expected the disk's second boot (`system: boot 2`); the guest said {:?}",
            result.lines().find(|line| line.starts_with("system: boot"))
        ));
    }
    problems.extend(judge_state(
        &sections,
        "boot-state",
        &SYSTEM_REMOVED,
        console,
    ));
    problems.extend(judge_rule_file(&sections));
    if !result.contains("system: done") {
        problems.push("expected the guest to finish its steps (`system: done`)".into());
    }
    problems
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "      (nothing)".into();
    }
    super::host::tail(text, 30)
        .lines()
        .map(|line| format!("      {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The verdict cell: `pass 95.1s` or `FAIL ...`, with each boot's time.
pub fn cell(outcome: &SystemOutcome) -> String {
    let verdict = if outcome.passed() { "pass" } else { "FAIL" };
    let times: Vec<String> = outcome
        .boots
        .iter()
        .map(|boot| match &boot.boot {
            Some(qemu_boot) => format!("{} {}", boot.label, seconds(qemu_boot.elapsed)),
            None => format!("{} -", boot.label),
        })
        .collect();
    format!(
        "{verdict} {} ({})",
        seconds(outcome.elapsed),
        times.join(", ")
    )
}

/// A failure as the other scenarios print it: what was expected and found, the report's
/// states, the console's tail.
pub fn print_failure(outcome: &SystemOutcome) {
    println!(
        "\n=== FAIL: scenario {} ({})",
        scenario::SYSTEM_NUMBER,
        scenario::SYSTEM_NAME
    );
    for boot in &outcome.boots {
        if boot.problems.is_empty() {
            println!("{}: as expected", boot.label);
            continue;
        }
        println!("{}: expected vs found:", boot.label);
        for problem in &boot.problems {
            println!("  - {problem}");
        }
        if let Some(qemu_boot) = &boot.boot {
            println!(
                "logs: {}",
                qemu_boot
                    .console_path
                    .parent()
                    .unwrap_or(Path::new(""))
                    .display()
            );
            print_states(&qemu_boot.result);
            qemu::print_console_tail(&qemu_boot.console);
        }
    }
}

/// Each state the reporter wrote in a boot's report, as a function table.
pub fn print_states(result: &str) {
    for section in sections(result) {
        if let Some(state) = report::parse(section.body) {
            print!("{}", state_table(section.name, &state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_documents_the_hook_this_test_runs() {
        let readme = fs::read_to_string(project_root().join("README.md")).unwrap();
        let script = readme_hook_script(&readme).unwrap();
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(script.contains(README_HOOK_RULE), "{script}");
        assert!(libvirt_hook()
            .unwrap()
            .contains("vfio-bind bind 1234:1111@00:04"));
    }

    #[test]
    fn sections_split_the_report_by_step() {
        let result = "system: boot 1\nsystem: begin check\n{\"ok\":true}\nsystem: end check rc=0\nsystem: begin remove\nsome\nsystem: end remove rc=1\nsystem: begin cut\nhalf";
        assert_eq!(
            sections(result),
            [
                Section {
                    name: "check",
                    body: "{\"ok\":true}\n",
                    rc: Some(0)
                },
                Section {
                    name: "remove",
                    body: "some\n",
                    rc: Some(1)
                },
                Section {
                    name: "cut",
                    body: "half",
                    rc: None
                },
            ]
        );
        let found = sections(result);
        assert!(step(&found, "check").is_ok());
        assert!(step(&found, "remove")
            .unwrap_err()
            .contains("exit status 0, got 1"));
        assert!(step(&found, "gone").unwrap_err().contains("never ran"));
    }

    #[test]
    fn check_needs_no_problem_and_the_booted_image() {
        let report = |json: &str| format!("system: begin check\n{json}\nsystem: end check rc=0\n");
        let good = r#"{"schema":"vfio-bind.check/1","ok":true,"findings":[{"severity":"ok","subject":"initramfs","text":"the booted image /boot/initrd.img-6.1 carries vfio-bind and its hook","fix":null}]}"#;
        assert!(judge_check(&sections(&report(good)), "6.1").is_empty());
        let other_release = judge_check(&sections(&report(good)), "6.2");
        assert!(
            other_release[0].contains("/boot/initrd.img-6.2"),
            "{other_release:?}"
        );
        let problem = r#"{"schema":"vfio-bind.check/1","ok":false,"findings":[{"severity":"problem","subject":"initramfs","text":"the booted image /boot/initrd.img-6.1 has no /usr/bin/vfio-bind","fix":"rebuild"}]}"#;
        let found = judge_check(&sections(&report(problem)), "6.1");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[1].contains("has no /usr/bin/vfio-bind"));
    }

    #[test]
    fn list_must_name_the_second_twin_on_vfio() {
        let report = |json: &str| format!("system: begin list\n{json}\nsystem: end list rc=0\n");
        let function = |address: &str, driver: &str| {
            format!(
                r#"{{"address":"{address}","driver":"{driver}","selected":{}}}"#,
                driver == "vfio-pci"
            )
        };
        let json = |functions: &[String]| {
            format!(
                r#"{{"schema":"vfio-bind.list/1","iommu":true,"functions":[{}]}}"#,
                functions.join(",")
            )
        };
        let bound = json(&[
            function("0000:00:04.0", "bochs-drm"),
            function("0000:00:05.0", "vfio-pci"),
            function("0000:00:05.1", "vfio-pci"),
        ]);
        assert!(judge_list(&sections(&report(&bound))).is_empty());
        let unbound = json(&[function("0000:00:05.0", "bochs-drm")]);
        assert_eq!(judge_list(&sections(&report(&unbound))).len(), 1);
    }

    #[test]
    fn the_image_must_gain_the_hook_and_lose_it() {
        let with = "system: begin image\nusr/bin/vfio-bind\nscripts/init-top/00-vfio-bind\netc/cmdline.d/vfio-bind.conf\nsystem: end image rc=0\n";
        assert!(judge_image(&sections(with), "image", true).is_empty());
        assert_eq!(judge_image(&sections(with), "image", false).len(), 2);
        let without = "system: begin image\nsystem: end image rc=0\n";
        assert_eq!(judge_image(&sections(without), "image", true).len(), 3);
        assert!(judge_image(&sections(without), "image", false).is_empty());
    }

    /// Step 5: `rule` must warn that the controller holds `/`, `bind` refuse, and the
    /// disk's controller keep its driver.
    #[test]
    fn the_guard_step_is_judged() {
        let state = |driver: &str, over: &str| {
            format!(
                "vfio-test: begin\nfn 0000:00:06.0 1af4:1001 {driver} {over} 3\nvfio-test: end\n"
            )
        };
        let guarded = format!(
            "system: begin guard-rule\nvfio.bind=1af4:1001@0000:00:06.0\nwarning: 0000:00:06.0 holds / (ext4 on /dev/vda2): with this rule the host loses / at the next boot\nsystem: end guard-rule rc=0\n\
             system: begin guard-bind\nrefused\nsystem: end guard-bind rc=1\n\
             system: begin guard-state\n{}system: end guard-state rc=0\n",
            state("virtio-pci", "-")
        );
        assert_eq!(judge_guard(&sections(&guarded)), Vec::<String>::new());
        let silent = guarded.replace("warning: ", "note: ");
        assert_eq!(judge_guard(&sections(&silent)).len(), 1);
        let taken = guarded
            .replace("rc=1", "rc=0")
            .replace(&state("virtio-pci", "-"), &state("vfio-pci", "vfio-pci"));
        assert_eq!(
            judge_guard(&sections(&taken)).len(),
            2,
            "{:?}",
            judge_guard(&sections(&taken))
        );
        let missing = "system: begin guard\nskipped\nsystem: end guard rc=0\n";
        assert_eq!(judge_guard(&sections(missing)).len(), 3);
    }

    #[test]
    fn the_kernel_comes_from_the_boot_loader_without_a_rule() {
        let console = |line: &str| {
            format!("[    0.000000] Linux version 6.1\n[    0.000000] Command line: {line}\n")
        };
        assert!(judge_command_line(
            &console("BOOT_IMAGE=/boot/vmlinuz-6.1 root=LABEL=root"),
            "6.1"
        )
        .is_empty());
        assert_eq!(
            judge_command_line(&console("root=LABEL=root"), "6.1").len(),
            1
        );
        assert_eq!(
            judge_command_line(
                &console("BOOT_IMAGE=/boot/vmlinuz-6.1 vfio.bind=1234:1111@00:05"),
                "6.1"
            )
            .len(),
            1
        );
        assert_eq!(judge_command_line("", "6.1").len(), 1);
    }

    #[test]
    fn a_problem_of_the_boot_is_said_once() {
        let booted = vec!["boot-state: 00:05.0: expected driver vfio-pci".to_string()];
        let later = vec![
            "state-prepared: 00:05.0: expected driver vfio-pci".to_string(),
            "state-prepared: 00:04.0: expected driver vfio-pci".to_string(),
        ];
        assert_eq!(
            not_again(&booted, "boot-state", later, "state-prepared"),
            [
                "state-prepared: 00:04.0: expected driver vfio-pci",
                "state-prepared: 1 more, the same as at boot-state"
            ]
        );
    }

    #[test]
    fn only_selects_the_system_by_number_or_name() {
        assert!(selected(None));
        assert!(selected(Some("21")));
        assert!(selected(Some("system")));
        assert!(selected(Some("installed")));
        assert!(!selected(Some("1")));
        assert!(!selected(Some("dracut")));
    }
}
