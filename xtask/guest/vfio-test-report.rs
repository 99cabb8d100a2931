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
//! bars 0000:00:05.0 mapped                          every mappable BAR mmapped through VFIO
//! bars 0000:00:04.0 BAR0:EBUSY                      or the BARs that did not map, and why
//! iomem     c0000000-c0ffffff : 0000:00:04.0        on a failure: /proc/iomem under the function
//! iomem       c0000000-c03e7fff : efifb
//! fb fb0 0000:00:04.0                               each framebuffer and the device under it
//! vtcon vtcon1 1 frame buffer device                each virtual console driver: bound?, name
//! kmsg 6 vfio-bind: ...                             kernel log records that mention vfio
//! unit vfio-bind.service Before=sysinit.target ...  systemd's view of the units that race
//! unit vfio-bind.service ActiveEnterTimestampMonotonic=2345678     the binder, when PID 1 is
//!                                                   systemd (`systemctl show`), verbatim
//! uptime 4.21
//! vfio-test: end
//! ```
//!
//! A missing driver, override or group is written `-`.
//!
//! "Viable" is not "usable": a firmware framebuffer left in a card's BAR makes QEMU fail with
//! "BAR 0: can't reserve" although the group is viable. So for every function on vfio-pci the
//! reporter does what QEMU does: a container (`/dev/vfio/vfio`), the type1 IOMMU, the group
//! set to the container, `VFIO_GROUP_GET_DEVICE_FD`, `VFIO_DEVICE_GET_INFO`, then
//! `VFIO_DEVICE_GET_REGION_INFO` for each BAR and `mmap` of every BAR region flagged
//! mappable (the kernel reserves the BAR at the first mmap; that is where it says EBUSY).
//!
//! `vfio-test-report --bars-to-kmsg LABEL` only maps the BARs and writes one kernel log record,
//! `vfio-test: LABEL bars: ADDR=mapped ...`, for a test hook that checks a card between two
//! runtime steps; it does not power off.
//!
//! Built by the xtask with plain `rustc` as a static binary; it uses only std and a few libc
//! calls.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn mmap(addr: *mut u8, length: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> *mut u8;
    fn munmap(addr: *mut u8, length: usize) -> i32;
    fn reboot(cmd: i32) -> i32;
    fn sync();
}

/// `VFIO_GROUP_GET_STATUS`: `_IO(VFIO_TYPE, VFIO_BASE + 3)` with `VFIO_TYPE` `';'` and
/// `VFIO_BASE` 100 (include/uapi/linux/vfio.h).
const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
/// The other requests QEMU makes to open a device (include/uapi/linux/vfio.h).
const VFIO_SET_IOMMU: u64 = vfio_io(2);
const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
/// `VFIO_TYPE1v2_IOMMU` (what QEMU picks when the kernel has it), then `VFIO_TYPE1_IOMMU`.
const VFIO_TYPE1_IOMMUS: [u64; 2] = [3, 1];
const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
/// BAR0 to BAR5 are regions 0 to 5 (`VFIO_PCI_BAR0_REGION_INDEX` ...).
const PCI_BARS: u32 = 6;
const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_SHARED: i32 = 1;
const LINUX_REBOOT_CMD_POWER_OFF: i32 = 0x4321_FEDC_u32 as i32;
const O_NONBLOCK: i32 = 0o4000;

/// `_IO(VFIO_TYPE, VFIO_BASE + n)`.
const fn vfio_io(n: u64) -> u64 {
    (b';' as u64) << 8 | (100 + n)
}

#[repr(C)]
struct VfioGroupStatus {
    argsz: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct VfioDeviceInfo {
    argsz: u32,
    flags: u32,
    num_regions: u32,
    num_irqs: u32,
    cap_offset: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct VfioRegionInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    cap_offset: u32,
    size: u64,
    offset: u64,
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

/// The VFIO groups, by number, and in each the functions bound to vfio-pci.
fn vfio_functions() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = fs::read_dir("/dev/vfio") else {
        return Vec::new();
    };
    let mut numbers: Vec<u32> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
        .into_iter()
        .map(|number| {
            let mut names: Vec<String> =
                fs::read_dir(format!("/sys/kernel/iommu_groups/{number}/devices"))
                    .map(|entries| {
                        entries
                            .filter_map(|entry| entry.ok())
                            .map(|entry| entry.file_name().to_string_lossy().into_owned())
                            .filter(|name| {
                                link_name(&format!("/sys/bus/pci/devices/{name}/driver")).as_deref()
                                    == Some("vfio-pci")
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            names.sort();
            (number, names)
        })
        .filter(|(_, names)| !names.is_empty())
        .collect()
}

/// Opens group `number` as QEMU does and maps the BARs of each function in `names`: one
/// (function, outcome) per function, the outcome `mapped` or what failed.
fn map_group(number: u32, names: &[String]) -> Vec<(String, String)> {
    let all = |outcome: String| {
        names
            .iter()
            .map(|name| (name.clone(), outcome.clone()))
            .collect()
    };
    let group = match OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/vfio/{number}"))
    {
        Ok(file) => file,
        Err(error) => return all(format!("group-open:{}", errno_name(&error))),
    };
    let mut status = VfioGroupStatus {
        argsz: std::mem::size_of::<VfioGroupStatus>() as u32,
        flags: 0,
    };
    // SAFETY: the request takes a pointer to a struct vfio_group_status.
    if unsafe { ioctl(group.as_raw_fd(), VFIO_GROUP_GET_STATUS, &mut status) } < 0 {
        return all(format!(
            "group-status:{}",
            errno_name(&io::Error::last_os_error())
        ));
    }
    if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
        // VFIO_GROUP_SET_CONTAINER refuses a group that is not viable: nothing can map.
        return all("group-not-viable".into());
    }
    let container = match OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/vfio/vfio")
    {
        Ok(file) => file,
        Err(error) => return all(format!("container-open:{}", errno_name(&error))),
    };
    let container_fd: i32 = container.as_raw_fd();
    // SAFETY: the request takes a pointer to the container's file descriptor.
    if unsafe { ioctl(group.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &container_fd) } < 0 {
        return all(format!(
            "set-container:{}",
            errno_name(&io::Error::last_os_error())
        ));
    }
    // SAFETY: the request takes the IOMMU type by value.
    let iommu_set = VFIO_TYPE1_IOMMUS
        .iter()
        .any(|&kind| unsafe { ioctl(container_fd, VFIO_SET_IOMMU, kind) } == 0);
    if !iommu_set {
        return all(format!(
            "set-iommu:{}",
            errno_name(&io::Error::last_os_error())
        ));
    }
    names
        .iter()
        .map(|name| (name.clone(), map_device(&group, name)))
        .collect()
}

/// `mapped`, or each BAR that failed (`BAR0:EBUSY`), or the step before the BARs that failed.
fn map_device(group: &File, name: &str) -> String {
    let mut c_name = name.as_bytes().to_vec();
    c_name.push(0);
    // SAFETY: the request takes a pointer to a NUL-terminated device name.
    let fd = unsafe { ioctl(group.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, c_name.as_ptr()) };
    if fd < 0 {
        return format!("device-fd:{}", errno_name(&io::Error::last_os_error()));
    }
    // SAFETY: the kernel gave us this descriptor; the File closes it once.
    let device = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
    let mut info = VfioDeviceInfo {
        argsz: std::mem::size_of::<VfioDeviceInfo>() as u32,
        ..VfioDeviceInfo::default()
    };
    // SAFETY: the request takes a pointer to a struct vfio_device_info.
    if unsafe { ioctl(device.as_raw_fd(), VFIO_DEVICE_GET_INFO, &mut info) } < 0 {
        return format!("device-info:{}", errno_name(&io::Error::last_os_error()));
    }
    let mut failures = Vec::new();
    let mut mapped = 0;
    for index in 0..info.num_regions.min(PCI_BARS) {
        let mut region = VfioRegionInfo {
            argsz: std::mem::size_of::<VfioRegionInfo>() as u32,
            index,
            ..VfioRegionInfo::default()
        };
        // SAFETY: the request takes a pointer to a struct vfio_region_info.
        if unsafe { ioctl(device.as_raw_fd(), VFIO_DEVICE_GET_REGION_INFO, &mut region) } < 0 {
            let error = io::Error::last_os_error();
            failures.push(format!("BAR{index}-info:{}", errno_name(&error)));
            continue;
        }
        if region.size == 0 || region.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            continue;
        }
        let length = region.size as usize;
        // SAFETY: a fresh shared mapping of the device's region, unmapped right away and
        // never read or written.
        let address = unsafe {
            mmap(
                std::ptr::null_mut(),
                length,
                PROT_READ | PROT_WRITE,
                MAP_SHARED,
                device.as_raw_fd(),
                region.offset as i64,
            )
        };
        if address as isize == -1 {
            let error = io::Error::last_os_error();
            failures.push(format!("BAR{index}:{}", errno_name(&error)));
        } else {
            mapped += 1;
            // SAFETY: exactly the mapping made above.
            unsafe { munmap(address, length) };
        }
    }
    if !failures.is_empty() {
        failures.join(",")
    } else if mapped == 0 {
        "no-mappable-bar".into()
    } else {
        "mapped".into()
    }
}

/// Every vfio-pci function and whether its BARs map.
fn bar_outcomes() -> Vec<(String, String)> {
    vfio_functions()
        .iter()
        .flat_map(|(number, names)| map_group(*number, names))
        .collect()
}

/// The lines of /proc/iomem for `name`'s resources and everything nested in them.
fn iomem_under(iomem: &str, name: &str) -> Vec<String> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut lines = Vec::new();
    let mut inside: Option<usize> = None;
    for line in iomem.lines() {
        if let Some(depth) = inside {
            if indent(line) > depth {
                lines.push(line.to_string());
                continue;
            }
            inside = None;
        }
        if line.rsplit(" : ").next() == Some(name) {
            inside = Some(indent(line));
            lines.push(line.to_string());
        }
    }
    lines
}

fn bars(out: &mut Vec<String>) {
    let outcomes = bar_outcomes();
    let iomem = fs::read_to_string("/proc/iomem").unwrap_or_default();
    for (name, outcome) in &outcomes {
        out.push(format!("bars {name} {outcome}"));
    }
    for (name, outcome) in &outcomes {
        if outcome != "mapped" {
            for line in iomem_under(&iomem, name) {
                out.push(format!("iomem {line}"));
            }
        }
    }
}

/// Where the console is: each framebuffer device (`/sys/class/graphics/fbN`) with the device
/// it belongs to (a PCI function, or a platform device such as `efi-framebuffer.0`), and each
/// console driver (`/sys/class/vtconsole/vtconN`) with its `bind` state and name.
fn consoles(out: &mut Vec<String>) {
    let sorted = |dir: &str, prefix: &str| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| {
                        // fb0, vtcon1: not /sys/class/graphics/fbcon.
                        name.strip_prefix(prefix).is_some_and(|number| {
                            !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    for fb in sorted("/sys/class/graphics", "fb") {
        let device =
            link_name(&format!("/sys/class/graphics/{fb}/device")).unwrap_or_else(|| "-".into());
        out.push(format!("fb {fb} {device}"));
    }
    for vtcon in sorted("/sys/class/vtconsole", "vtcon") {
        let dir = format!("/sys/class/vtconsole/{vtcon}");
        let bind = read_trimmed(&format!("{dir}/bind")).unwrap_or_else(|| "-".into());
        let name = read_trimmed(&format!("{dir}/name")).unwrap_or_else(|| "-".into());
        out.push(format!("vtcon {vtcon} {bind} {name}"));
    }
}

/// `--bars-to-kmsg LABEL`: one kernel log record with every vfio-pci function's outcome.
fn bars_to_kmsg(label: &str) {
    let mut record = format!("<6>vfio-test: {label} bars:");
    for (name, outcome) in bar_outcomes() {
        record.push_str(&format!(" {name}={outcome}"));
    }
    match OpenOptions::new().write(true).open("/dev/kmsg") {
        // One write is one record.
        Ok(mut kmsg) => {
            let _ = kmsg.write_all(record.as_bytes());
        }
        Err(error) => eprintln!("vfio-test-report: cannot open /dev/kmsg: {error}"),
    }
}

fn errno_name(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(1) => "EPERM".into(),
        Some(2) => "ENOENT".into(),
        Some(5) => "EIO".into(),
        Some(6) => "ENXIO".into(),
        Some(12) => "ENOMEM".into(),
        Some(13) => "EACCES".into(),
        Some(14) => "EFAULT".into(),
        Some(16) => "EBUSY".into(),
        Some(19) => "ENODEV".into(),
        Some(22) => "EINVAL".into(),
        Some(25) => "ENOTTY".into(),
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
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--bars-to-kmsg") {
        bars_to_kmsg(args.get(at + 1).map_or("", String::as_str));
        return;
    }
    let mut out = vec!["vfio-test: begin".to_string()];
    functions(&mut out);
    groups(&mut out);
    bars(&mut out);
    consoles(&mut out);
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

    let no_poweroff = args.iter().any(|arg| arg == "--no-poweroff");
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
