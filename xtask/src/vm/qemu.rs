//! One QEMU boot: q35 with an emulated Intel IOMMU (first, before every other device), the
//! kernel console on the first serial port and the reporter on the second, under SeaBIOS
//! (QEMU's default) or UEFI (Debian's OVMF). Every run has a timeout, and QEMU is killed when
//! the run is dropped or the xtask dies.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::host::{die_with_parent, tail, OVMF_PATH};
use crate::util::{create_dir_all, TaskResult};

/// What to boot.
pub struct BootSpec<'a> {
    /// The kernel and the initramfs QEMU loads itself (`-kernel`, `-initrd`); `None` boots
    /// the disk among the devices through the firmware (UEFI) and the disk's boot loader.
    pub direct: Option<(&'a Path, &'a Path)>,
    /// The whole kernel command line, for a direct boot (a boot loader has its own).
    pub append: String,
    /// Device arguments after `-device intel-iommu`.
    pub devices: Vec<String>,
    /// Where the console and result logs go (created, emptied first).
    pub dir: PathBuf,
    pub timeout: Duration,
    pub firmware: Firmware,
}

/// The guest's firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default: no firmware framebuffer; the kernel may boot the bare vmlinux.
    SeaBios,
    /// OVMF: the first display card it drives is the boot display, and the kernel's efifb
    /// claims the start of that card's BAR0. The kernel must be the bzImage (EFI stub).
    Uefi,
}

/// What came back.
pub struct Boot {
    pub console: String,
    pub result: String,
    pub elapsed: Duration,
    pub timed_out: bool,
    pub console_path: PathBuf,
}

/// Kills and reaps QEMU when dropped: on a timeout, an error or a panic.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long a run took, as the lines print it: `12.3s`.
pub fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// The last 40 lines of a boot's console, indented.
pub fn print_console_tail(console: &str) {
    println!("console (last 40 lines):");
    for line in tail(console, 40).lines() {
        println!("  | {line}");
    }
}

/// What a boot that ran out of time says, in the table, the failure and the console log.
pub fn timed_out_after(timeout: Duration) -> String {
    format!("timed out after {} s", timeout.as_secs())
}

pub fn boot(spec: &BootSpec) -> TaskResult<Boot> {
    create_dir_all(&spec.dir)?;
    let console_path = spec.dir.join("console.log");
    let result_path = spec.dir.join("result.log");
    for path in [&console_path, &result_path] {
        fs::write(path, b"").with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut command = qemu_command(spec, &console_path, &result_path);
    die_with_parent(&mut command);
    let started = Instant::now();
    let child = command.spawn().context("cannot start qemu-system-x86_64")?;
    let mut guard = Guard(child);
    // None: it ran out of time and was killed.
    let status = wait_or_kill(&mut guard.0, started, spec.timeout)?;
    let timed_out = status.is_none();
    let elapsed = started.elapsed();
    let mut qemu_output = String::new();
    if let Some(mut stderr) = guard.0.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut qemu_output);
    }
    let mut console = read_log(&console_path);
    let result = read_log(&result_path);
    if let Some(status) = status {
        if !status.success() {
            console.push_str(&format!(
                "\n[xtask] QEMU exited with {status}: {}",
                qemu_output.trim()
            ));
        }
    }
    if timed_out {
        console.push_str(&format!("\n[xtask] {}", timed_out_after(spec.timeout)));
    }
    drop(guard);
    Ok(Boot {
        console,
        result,
        elapsed,
        timed_out,
        console_path,
    })
}

/// The QEMU command line: the q35 machine with an emulated IOMMU, the scenario's devices,
/// the firmware, the kernel and image, and the two serial ports written to files.
fn qemu_command(spec: &BootSpec, console_path: &Path, result_path: &Path) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
        ])
        .args(["-m", "512", "-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-audiodev", "none,id=snd0"])
        .args(["-device", "intel-iommu"])
        .args(&spec.devices);
    if spec.firmware == Firmware::Uefi {
        command.arg("-bios").arg(OVMF_PATH);
    }
    if let Some((kernel, initrd)) = spec.direct {
        command
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .arg("-append")
            .arg(&spec.append);
    }
    command
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()))
        .arg("-serial")
        .arg(format!("file:{}", result_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// QEMU's exit status, or `None` when it was still running `timeout` after `started` and
/// was killed.
fn wait_or_kill(
    child: &mut std::process::Child,
    started: Instant,
    timeout: Duration,
) -> TaskResult<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            return Ok(Some(status));
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A serial log as text, carriage returns dropped; empty when it cannot be read.
fn read_log(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).replace('\r', "")
}
