//! vfio-test-report: the VM test's reporter, run inside the guest's initramfs once drivers have
//! loaded. Test-only; never installed on a real machine.
//!
//! It writes what the guest kernel itself says to the second serial port (/dev/ttyS1), one
//! record per line, then powers the machine off:
//!
//! ```text
//! vfio-test: begin
//! fn 0000:00:05.0 1234:1111 vfio-pci vfio-pci 2     address ids driver override group
//! group 2 viable                                    from VFIO_GROUP_GET_STATUS on /dev/vfio/2
//! kmsg 6 vfio-bind: ...                             kernel log records that mention vfio
//! unit vfio-bind.service Before=sysinit.target ...  systemd's view of the units that race
//! unit vfio-bind.service ActiveEnterTimestampMonotonic=2345678     the binder, when PID 1 is
//!                                                   systemd (`systemctl show`), verbatim
//! uptime 4.21
//! vfio-test: end
//! ```
//!
//! A missing driver, override or group is written `-`. Built by the xtask with plain `rustc`
//! as a static binary; it uses only std and three libc calls.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn reboot(cmd: i32) -> i32;
    fn sync();
}

/// `VFIO_GROUP_GET_STATUS`: `_IO(VFIO_TYPE, VFIO_BASE + 3)` with `VFIO_TYPE` `';'` and
/// `VFIO_BASE` 100 (include/uapi/linux/vfio.h).
const VFIO_GROUP_GET_STATUS: u64 = (b';' as u64) << 8 | (100 + 3);
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
const LINUX_REBOOT_CMD_POWER_OFF: i32 = 0x4321_FEDC_u32 as i32;
const O_NONBLOCK: i32 = 0o4000;

#[repr(C)]
struct VfioGroupStatus {
    argsz: u32,
    flags: u32,
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}

fn link_name(path: &str) -> Option<String> {
    fs::read_link(path)
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn hex_id(path: &str) -> String {
    read_trimmed(path)
        .map(|text| text.trim_start_matches("0x").to_string())
        .unwrap_or_else(|| "????".into())
}

fn functions(out: &mut Vec<String>) {
    let mut names: Vec<String> = match fs::read_dir("/sys/bus/pci/devices") {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(error) => {
            out.push(format!("error cannot list /sys/bus/pci/devices: {error}"));
            return;
        }
    };
    names.sort();
    for name in names {
        let dir = format!("/sys/bus/pci/devices/{name}");
        let driver = link_name(&format!("{dir}/driver")).unwrap_or_else(|| "-".into());
        let over = match read_trimmed(&format!("{dir}/driver_override")) {
            Some(text) if text != "(null)" && !text.is_empty() => text,
            _ => "-".into(),
        };
        let group = link_name(&format!("{dir}/iommu_group")).unwrap_or_else(|| "-".into());
        out.push(format!(
            "fn {name} {}:{} {driver} {over} {group}",
            hex_id(&format!("{dir}/vendor")),
            hex_id(&format!("{dir}/device")),
        ));
    }
}

fn groups(out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir("/dev/vfio") else {
        return;
    };
    let mut numbers: Vec<u32> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
        .collect();
    numbers.sort_unstable();
    for number in numbers {
        let path = format!("/dev/vfio/{number}");
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(error) => {
                out.push(format!("group {number} open-failed {}", errno_name(&error)));
                continue;
            }
        };
        let mut status = VfioGroupStatus {
            argsz: std::mem::size_of::<VfioGroupStatus>() as u32,
            flags: 0,
        };
        // SAFETY: the request takes a pointer to a struct vfio_group_status, which lives
        // for the duration of the call.
        let result = unsafe {
            ioctl(
                file.as_raw_fd(),
                VFIO_GROUP_GET_STATUS,
                &mut status as *mut VfioGroupStatus,
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            out.push(format!(
                "group {number} status-failed {}",
                errno_name(&error)
            ));
        } else if status.flags & VFIO_GROUP_FLAGS_VIABLE != 0 {
            out.push(format!("group {number} viable"));
        } else {
            out.push(format!("group {number} not-viable"));
        }
    }
}

fn errno_name(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(1) => "EPERM".into(),
        Some(2) => "ENOENT".into(),
        Some(16) => "EBUSY".into(),
        Some(19) => "ENODEV".into(),
        Some(22) => "EINVAL".into(),
        Some(code) => format!("errno{code}"),
        None => "error".into(),
    }
}

/// Kernel log records worth a test's attention: everything about vfio (the binder's own
/// lines start `vfio-bind: `), rate-limit notes and kernel warnings.
fn interesting(message: &str) -> bool {
    message.contains("vfio")
        || message.contains("callbacks suppressed")
        || message.contains("WARNING:")
        || message.contains("BUG:")
        || message.contains("Oops")
}

fn kmsg(out: &mut Vec<String>) {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open("/dev/kmsg")
    {
        Ok(file) => file,
        Err(error) => {
            out.push(format!("error cannot open /dev/kmsg: {error}"));
            return;
        }
    };
    let mut buffer = vec![0u8; 8192];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(length) => {
                let record = String::from_utf8_lossy(&buffer[..length]);
                // "PRI,SEQ,TIME,FLAGS;MESSAGE\n" then optional " KEY=VALUE" lines.
                let Some((header, rest)) = record.split_once(';') else {
                    continue;
                };
                let message = rest.lines().next().unwrap_or("");
                let level = header
                    .split(',')
                    .next()
                    .and_then(|pri| pri.parse::<u32>().ok())
                    .map_or(9, |pri| pri & 7);
                if interesting(message) {
                    let clean: String = message
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect();
                    out.push(format!("kmsg {level} {clean}"));
                }
            }
            // EPIPE: a record was overwritten while reading; go on with the next one.
            Err(error) if error.raw_os_error() == Some(32) => continue,
            Err(_) => break,
        }
    }
}

/// The units whose order against vfio-bind.service a systemd-based image must keep: the
/// binder must be active before dracut's cmdline hooks and its rd.driver.pre= loading start.
const RACING_UNITS: [&str; 3] = [
    "vfio-bind.service",
    "dracut-cmdline.service",
    "dracut-pre-udev.service",
];
/// What systemd knows of their order: when each became active and started (microseconds
/// of CLOCK_MONOTONIC, 0 if never), and the ordering the unit declares.
const UNIT_PROPERTIES: &str =
    "Id,ActiveEnterTimestampMonotonic,InactiveExitTimestampMonotonic,Before,ActiveState";

/// systemd's own account of the units' order, when systemd is PID 1 (sd_booted(3): the
/// directory /run/systemd/system exists). Nothing on other images.
fn units(out: &mut Vec<String>) {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return;
    }
    let output = match std::process::Command::new("systemctl")
        .args(["show", "-p", UNIT_PROPERTIES])
        .args(RACING_UNITS)
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            out.push(format!("error cannot run systemctl: {error}"));
            return;
        }
    };
    if !output.status.success() {
        out.push(format!(
            "error systemctl show exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
        return;
    }
    // One block of KEY=VALUE lines per unit, blocks separated by an empty line.
    let text = String::from_utf8_lossy(&output.stdout);
    for block in text.split("\n\n") {
        let properties: Vec<(&str, &str)> = block
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let Some((_, id)) = properties.iter().find(|(key, _)| *key == "Id") else {
            continue;
        };
        for (key, value) in &properties {
            if *key != "Id" {
                out.push(format!("unit {id} {key}={value}"));
            }
        }
    }
}

fn main() {
    let mut out = vec!["vfio-test: begin".to_string()];
    functions(&mut out);
    groups(&mut out);
    kmsg(&mut out);
    units(&mut out);
    if let Some(uptime) = read_trimmed("/proc/uptime") {
        out.push(format!(
            "uptime {}",
            uptime.split_whitespace().next().unwrap_or("?")
        ));
    }
    out.push("vfio-test: end".to_string());
    let mut text = out.join("\n");
    text.push('\n');

    let no_poweroff = std::env::args().any(|arg| arg == "--no-poweroff");
    match File::create("/dev/ttyS1") {
        Ok(mut port) => {
            let _ = port.write_all(text.as_bytes());
            let _ = port.flush();
        }
        Err(error) => eprintln!("vfio-test-report: cannot open /dev/ttyS1: {error}"),
    }
    // Also on the console, so the console log alone tells the story.
    let _ = io::stdout().write_all(text.as_bytes());
    if !no_poweroff {
        // SAFETY: plain system calls without pointers.
        unsafe {
            sync();
            reboot(LINUX_REBOOT_CMD_POWER_OFF);
        }
    }
}
