//! What the host itself needs: the PCI functions behind its mounted filesystems and active
//! swap, behind its default routes, and the card of its only console display. The facts
//! come from [`crate::machine::host_usage`], which reads them from `/proc` and `/sys`; here
//! they are followed down to PCI functions and judged.
//!
//! Storage and network passthrough are real uses, so a device's class decides nothing: a
//! function is held when the host is *using* it now. Binding one of them takes the host's
//! root filesystem, its network or its console away (at runtime at once, at boot before
//! the root is even mounted), so `rule` warns, `check` reports a problem, and runtime `bind`
//! refuses without `--force`.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use core::fmt;

use crate::rules::address::PciAddress;

/// How deep a stack of block devices is followed (dm on md on a partition is three).
const MAX_DEPTH: usize = 8;
/// How many things a function holds are named in one line; the rest are counted.
const SHOWN: usize = 3;

/// One line of `/proc/self/mountinfo`, the parts the guard uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `MAJ:MIN` of the device (`0:N` for filesystems with no single block device).
    pub device: (u32, u32),
    pub mount_point: String,
    pub fstype: String,
    /// What was mounted, as `mount` names it: `/dev/nvme0n1p2`, `/dev/mapper/root`.
    pub source: String,
}

/// What a block device that is not a disk is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    /// device-mapper, with its `dm/uuid` (`CRYPT-LUKS2-...`, `LVM-...`).
    DeviceMapper { uuid: String },
    /// md RAID, with its `md/level` (`raid1`).
    Md { level: String },
    /// A loop device, with its `loop/backing_file`.
    Loop { backing_file: String },
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::DeviceMapper { uuid } if uuid.starts_with("CRYPT-LUKS") => f.write_str("LUKS"),
            Layer::DeviceMapper { uuid } if uuid.starts_with("CRYPT-") => f.write_str("dm-crypt"),
            Layer::DeviceMapper { uuid } if uuid.starts_with("LVM-") => f.write_str("LVM"),
            Layer::DeviceMapper { .. } => f.write_str("device-mapper"),
            Layer::Md { level } if level.is_empty() => f.write_str("md RAID"),
            Layer::Md { level } => write!(f, "md {level}"),
            Layer::Loop { backing_file } => write!(f, "loop file {backing_file}"),
        }
    }
}

/// One entry of `/sys/class/block`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockDevice {
    /// The kernel's name: `nvme0n1p2`, `dm-0`, `md127`, `loop0`.
    pub name: String,
    /// Its `dev` attribute, `MAJ:MIN`.
    pub number: Option<(u32, u32)>,
    /// The PCI function its device directory lies below (the deepest one on its path).
    pub function: Option<PciAddress>,
    /// The block devices it is built on: its `slaves/` directory, an NVMe multipath head
    /// disk's paths, a partition's disk.
    pub slaves: Vec<String>,
    /// For a device-mapper device, its `dm/name` (what `/dev/mapper/` calls it).
    pub mapper_name: Option<String>,
    pub layer: Option<Layer>,
}

/// One entry of `/sys/class/net`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// The PCI function it lies below, if any (a bond, bridge or VLAN has none).
    pub function: Option<PciAddress>,
    /// The interfaces it is built on (its `lower_*` links): a bond's or bridge's ports, a
    /// VLAN's parent.
    pub lowers: Vec<String>,
}

/// A display the host has: a framebuffer (`fb0`) or a DRM card (`card0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Display {
    pub name: String,
    /// The PCI function it lies below; `None` for a platform framebuffer (efifb, simplefb).
    pub function: Option<PciAddress>,
}

/// Everything the guard judges, as read from the host.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub mounts: Vec<Mount>,
    /// The `Filename` column of `/proc/swaps`.
    pub swaps: Vec<String>,
    /// The interfaces with a default route, IPv4 ones first.
    pub default_routes: Vec<(IpFamily, String)>,
    pub block_devices: Vec<BlockDevice>,
    /// The member devices of each btrfs filesystem (`/sys/fs/btrfs/UUID/devices`).
    pub btrfs_members: Vec<Vec<String>>,
    pub interfaces: Vec<Interface>,
    /// `class/graphics/fb*`, in number order: `fb0` is the one the console draws on.
    pub framebuffers: Vec<Display>,
    /// `class/drm/card*` (the cards, not their connectors).
    pub drm_cards: Vec<Display>,
    /// The function whose `boot_vga` reads 1: the card a platform framebuffer lies in.
    pub boot_vga: Option<PciAddress>,
    /// `class/tty/console/active`, the kernel's consoles (`tty0 ttyS0`); `None` when the
    /// kernel does not say.
    pub kernel_consoles: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Something the host needs that a function carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// A mounted filesystem: `/ (ext4 on /dev/nvme0n1p2 via LUKS)`.
    Mount {
        mount_point: String,
        fstype: String,
        /// The block device on the function itself (the bottom of the stack).
        device: String,
        /// The layers between the filesystem and that device, top first.
        layers: Vec<String>,
    },
    /// Active swap: `swap (/dev/nvme0n1p3)`, `swap (/swapfile on /dev/vda2)`.
    Swap {
        name: String,
        device: String,
        layers: Vec<String>,
    },
    /// A default route: the interface that has it, then each one below it to this
    /// function's own.
    Route {
        family: IpFamily,
        chain: Vec<String>,
    },
    /// The console's framebuffer, on the only display the host has.
    Console { framebuffer: String },
}

impl Held {
    /// What the host loses, in a few words: `/`, `swap`, `its IPv4 default route`.
    pub fn short(&self) -> String {
        match self {
            Held::Mount { mount_point, .. } => mount_point.clone(),
            Held::Swap { .. } => "swap".to_string(),
            Held::Route { family, .. } => format!("its {family} default route"),
            Held::Console { .. } => "its only display".to_string(),
        }
    }
}

/// `via LUKS`, `via LVM on LUKS`, or nothing.
struct Via<'a>(&'a [String]);

impl fmt::Display for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() {
            write!(f, " via {}", self.0.join(" on "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Mount {
                mount_point,
                fstype,
                device,
                layers,
            } => write!(
                f,
                "{mount_point} ({fstype} on /dev/{device}{})",
                Via(layers)
            ),
            Held::Swap {
                name,
                device,
                layers,
            } if name.trim_start_matches("/dev/") == device && layers.is_empty() => {
                write!(f, "swap ({name})")
            }
            Held::Swap {
                name,
                device,
                layers,
            } => write!(f, "swap ({name} on /dev/{device}{})", Via(layers)),
            Held::Route { family, chain } => match chain.split_first() {
                Some((top, below)) if !below.is_empty() => write!(
                    f,
                    "the {family} default route ({top} via {})",
                    below.join(" on ")
                ),
                _ => write!(f, "the {family} default route ({})", chain.join("")),
            },
            Held::Console { framebuffer } => {
                write!(f, "the console ({framebuffer}), the host's only display")
            }
        }
    }
}

/// What each held function holds, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    held: Vec<(PciAddress, Held)>,
}

impl Holdings {
    /// What `address` holds; empty when the host does not need it.
    pub fn of(&self, address: PciAddress) -> Vec<&Held> {
        self.held
            .iter()
            .filter(|(held_by, _)| *held_by == address)
            .map(|(_, held)| held)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn add(&mut self, address: PciAddress, held: Held) {
        if !self.held.contains(&(address, held.clone())) {
            self.held.push((address, held));
        }
    }
}

/// `/ (ext4 on /dev/vda2), swap (/dev/vda3) and 2 more`: what a function holds, for one
/// line.
pub struct HeldList<'a>(pub &'a [&'a Held]);

impl fmt::Display for HeldList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, held) in self.0.iter().take(SHOWN).enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{held}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// `/ and swap`, `/, /home and 1 more`: what the host loses, for one line.
pub struct LostList<'a>(pub &'a [&'a Held]);

impl fmt::Display for LostList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shorts: Vec<String> = Vec::new();
        for held in self.0 {
            let short = held.short();
            if !shorts.contains(&short) {
                shorts.push(short);
            }
        }
        let shown = shorts.len().min(SHOWN);
        for (index, short) in shorts.iter().take(shown).enumerate() {
            if index > 0 {
                f.write_str(if index + 1 == shown && shorts.len() <= SHOWN {
                    " and "
                } else {
                    ", "
                })?;
            }
            f.write_str(short)?;
        }
        if shorts.len() > SHOWN {
            write!(f, " and {} more", shorts.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Judges the facts: every function the host needs, and what for.
pub fn judge(facts: &Facts) -> Holdings {
    let mut holdings = Holdings::default();
    for mount in &facts.mounts {
        for (function, device, layers) in mount_functions(facts, mount, &[]) {
            holdings.add(
                function,
                Held::Mount {
                    mount_point: mount.mount_point.clone(),
                    fstype: mount.fstype.clone(),
                    device,
                    layers,
                },
            );
        }
    }
    for swap in &facts.swaps {
        let found = match block_named(facts, swap) {
            Some(device) => block_functions(facts, device, Vec::new(), &[]),
            // A swap file: what holds the filesystem it is on.
            None => file_functions(facts, swap, Vec::new(), &[]),
        };
        for (function, device, layers) in found {
            holdings.add(
                function,
                Held::Swap {
                    name: swap.clone(),
                    device,
                    layers,
                },
            );
        }
    }
    for (family, interface) in &facts.default_routes {
        for (function, chain) in interface_functions(facts, interface, 0) {
            holdings.add(
                function,
                Held::Route {
                    family: *family,
                    chain,
                },
            );
        }
    }
    if let Some((function, framebuffer)) = only_console(facts) {
        holdings.add(function, Held::Console { framebuffer });
    }
    holdings
}

/// (function, the block device on it, the layers above that device)
type Found = (PciAddress, String, Vec<String>);

/// The functions a mount is on. `through` is, here and below, the block devices already
/// followed down to it (a loop device's file leads back up to a mount).
fn mount_functions<'f>(facts: &'f Facts, mount: &Mount, through: &[&'f str]) -> Vec<Found> {
    let by_number = facts
        .block_devices
        .iter()
        .find(|device| mount.device.0 != 0 && device.number == Some(mount.device));
    let Some(device) = by_number.or_else(|| block_named(facts, &mount.source)) else {
        return Vec::new();
    };
    let mut found = block_functions(facts, device, Vec::new(), through);
    if mount.fstype == "btrfs" {
        // A btrfs filesystem may span several devices; mountinfo names one of them.
        for members in &facts.btrfs_members {
            if !members.contains(&device.name) {
                continue;
            }
            for member in members.iter().filter(|member| **member != device.name) {
                if let Some(member) = facts.block_devices.iter().find(|d| d.name == *member) {
                    found.extend(block_functions(facts, member, Vec::new(), through));
                }
            }
        }
    }
    found
}

/// The block device `/dev/NAME` or `/dev/mapper/NAME` names.
fn block_named<'f>(facts: &'f Facts, path: &str) -> Option<&'f BlockDevice> {
    let name = path.strip_prefix("/dev/")?;
    if let Some(mapped) = name.strip_prefix("mapper/") {
        return facts
            .block_devices
            .iter()
            .find(|device| device.mapper_name.as_deref() == Some(mapped));
    }
    facts
        .block_devices
        .iter()
        .find(|device| device.name == name)
}

fn block_functions<'f>(
    facts: &'f Facts,
    device: &'f BlockDevice,
    mut layers: Vec<String>,
    through: &[&'f str],
) -> Vec<Found> {
    // A device already on the way down is a cycle: a loop file kept on a filesystem the
    // loop is part of (or, the same to the guard, a file whose mount is not visible at
    // its path now, so that its path falls to `/`). That way leads nowhere new.
    if through.len() > MAX_DEPTH || through.contains(&device.name.as_str()) {
        return Vec::new();
    }
    let mut through = through.to_vec();
    through.push(&device.name);
    if let Some(function) = device.function {
        return vec![(function, device.name.clone(), layers)];
    }
    if let Some(layer) = &device.layer {
        layers.push(layer.to_string());
    }
    if let Some(Layer::Loop { backing_file }) = &device.layer {
        return file_functions(facts, backing_file, layers, &through);
    }
    let mut found = Vec::new();
    for slave in &device.slaves {
        if let Some(slave) = facts.block_devices.iter().find(|d| d.name == *slave) {
            found.extend(block_functions(facts, slave, layers.clone(), &through));
        }
    }
    found
}

/// What holds the filesystem a file is on: the mount with the longest mount point that
/// contains it.
///
/// A loop device's file is known by its path alone (`loop/backing_file`; sysfs gives no
/// device number for it): a file whose mount is not visible at that path now is looked for
/// on the mount that holds the path now, which is already held for itself.
fn file_functions<'f>(
    facts: &'f Facts,
    file: &str,
    layers: Vec<String>,
    through: &[&'f str],
) -> Vec<Found> {
    let contains = |mount: &&Mount| {
        let point = mount.mount_point.trim_end_matches('/');
        file.strip_prefix(point)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    // The last mount on a mount point hides those before it.
    let Some(mount) = facts
        .mounts
        .iter()
        .rev()
        .filter(contains)
        .max_by_key(|mount| mount.mount_point.len())
    else {
        return Vec::new();
    };
    mount_functions(facts, mount, through)
        .into_iter()
        .map(|(function, device, mut below)| {
            let mut all = layers.clone();
            all.append(&mut below);
            (function, device, all)
        })
        .collect()
}

/// Each function below an interface, with the interfaces from it down to the function's.
fn interface_functions(facts: &Facts, name: &str, depth: usize) -> Vec<(PciAddress, Vec<String>)> {
    let Some(interface) = facts.interfaces.iter().find(|i| i.name == name) else {
        return Vec::new();
    };
    if depth > MAX_DEPTH {
        return Vec::new();
    }
    if let Some(function) = interface.function {
        return vec![(function, vec![interface.name.clone()])];
    }
    let mut found = Vec::new();
    for lower in &interface.lowers {
        for (function, chain) in interface_functions(facts, lower, depth + 1) {
            let mut full = vec![interface.name.clone()];
            full.extend(chain);
            found.push((function, full));
        }
    }
    found
}

/// The card the console draws on (`fb0`), when no other display is left to the host: no
/// framebuffer or DRM card lies on another function. A kernel whose consoles are all serial
/// (`console=ttyS0`: a headless server) has no console there to lose; one that does not
/// list its consoles is taken to have one.
fn only_console(facts: &Facts) -> Option<(PciAddress, String)> {
    if let Some(consoles) = &facts.kernel_consoles {
        if !consoles.split_whitespace().any(is_virtual_terminal) {
            return None;
        }
    }
    let console = facts.framebuffers.first()?;
    // A platform framebuffer (efifb, simplefb) lies in the boot card's memory.
    let card = console.function.or(facts.boot_vga)?;
    let elsewhere = facts
        .framebuffers
        .iter()
        .chain(facts.drm_cards.iter())
        .any(|display| display.function.is_some_and(|function| function != card));
    (!elsewhere).then(|| (card, console.name.clone()))
}

/// A virtual terminal's console name (`tty0`, `tty1`), not a serial or hypervisor one
/// (`ttyS0`, `ttyAMA0`, `hvc0`).
fn is_virtual_terminal(console: &str) -> bool {
    console
        .strip_prefix("tty")
        .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

/// `/proc/self/mountinfo`: `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [TAGS] - FSTYPE
/// SOURCE SUPER_OPTIONS`. Lines that do not read so are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fields = before.split(' ');
            let number = fields.nth(2)?;
            let mount_point = fields.nth(1)?;
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let source = after.next().unwrap_or_default();
            Some(Mount {
                device: parse_device_number(number)?,
                mount_point: unescape(mount_point),
                fstype: unescape(fstype),
                source: unescape(source),
            })
        })
        .collect()
}

/// `MAJ:MIN`, as in mountinfo and a block device's `dev` attribute.
pub fn parse_device_number(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `/proc/swaps`: the first column of each line after the header.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(unescape)
        .collect()
}

/// The kernel's escapes in mountinfo and swaps: `\040` for a space, `\011`, `\012`, `\134`.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RTF_UP and RTF_REJECT (include/uapi/linux/route.h, ipv6_route.h).
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// `/proc/net/route`: the interfaces of the routes up to `00000000/00000000`.
pub fn ipv4_default_routes(text: &str) -> Vec<String> {
    let mut interfaces = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(interface), Some(destination), Some(flags), Some(mask)) =
            (fields.first(), fields.get(1), fields.get(3), fields.get(7))
        else {
            continue;
        };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        if *destination == "00000000"
            && *mask == "00000000"
            && flags & RTF_UP != 0
            && flags & RTF_REJECT == 0
            && !interfaces.iter().any(|known| known == interface)
        {
            interfaces.push(interface.to_string());
        }
    }
    interfaces
}

/// `/proc/net/ipv6_route`: the interfaces of the routes up to `::/0`, but the loopback's
/// unreachable route.
pub fn ipv6_default_routes(text: &str) -> Vec<String> {
    let mut interfaces = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 {
            continue;
        }
        let flags = u32::from_str_radix(fields[8], 16).unwrap_or(0);
        let interface = fields[9];
        if fields[0].bytes().all(|digit| digit == b'0')
            && fields[1] == "00"
            && flags & RTF_UP != 0
            && flags & RTF_REJECT == 0
            && interface != "lo"
            && !interfaces.iter().any(|known| known == interface)
        {
            interfaces.push(interface.to_string());
        }
    }
    interfaces
}

/// Whether `path` (`nvme0c1n2`) is a path of the NVMe multipath head disk `head`
/// (`nvme0n2`): the same subsystem and namespace numbers, any controller.
pub fn is_nvme_path_of(path: &str, head: &str) -> bool {
    let numbers = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let (Some(path), Some(head)) = (path.strip_prefix("nvme"), head.strip_prefix("nvme")) else {
        return false;
    };
    let Some((subsystem, namespace)) = head.split_once('n') else {
        return false;
    };
    let Some((path_subsystem, rest)) = path.split_once('c') else {
        return false;
    };
    let Some((controller, path_namespace)) = rest.split_once('n') else {
        return false;
    };
    numbers(subsystem)
        && numbers(namespace)
        && numbers(controller)
        && subsystem == path_subsystem
        && namespace == path_namespace
}

/// The deepest PCI function on a device's sysfs path (`devices/pci0000:00/0000:00:1d.0/
/// 0000:3d:00.0/nvme/nvme0/nvme0n1` lies below `0000:3d:00.0`): the one a rule would take.
pub fn function_on_path(path: &str) -> Option<PciAddress> {
    path.rsplit('/')
        .find_map(|component| component.parse::<PciAddress>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> PciAddress {
        text.parse().unwrap()
    }

    fn disk(name: &str, number: (u32, u32), function: &str) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            number: Some(number),
            function: Some(address(function)),
            ..Default::default()
        }
    }

    fn layered(name: &str, number: (u32, u32), slaves: &[&str], layer: Layer) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            number: Some(number),
            slaves: slaves.iter().map(|s| s.to_string()).collect(),
            layer: Some(layer),
            ..Default::default()
        }
    }

    fn texts(holdings: &Holdings, function: &str) -> Vec<String> {
        holdings
            .of(address(function))
            .iter()
            .map(|held| held.to_string())
            .collect()
    }

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:2 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw
28 27 259:1 / /boot rw,relatime - vfat /dev/nvme0n1p1 rw
29 27 7:0 / /mnt/my\\040image rw - ext4 /dev/loop0 rw
";

    #[test]
    fn mountinfo_gives_each_mount_its_device_and_unescapes_names() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(
            mounts[1],
            Mount {
                device: (254, 2),
                mount_point: "/".into(),
                fstype: "ext4".into(),
                source: "/dev/mapper/root".into()
            }
        );
        assert_eq!(mounts[3].mount_point, "/mnt/my image");
        assert!(parse_mountinfo("garbage\n1 2 x / / rw - ext4 a b\n").is_empty());
    }

    #[test]
    fn root_on_lvm_on_luks_on_an_nvme_partition_is_held_by_the_nvme_function() {
        let facts = Facts {
            mounts: parse_mountinfo(MOUNTINFO),
            block_devices: vec![
                disk("nvme0n1p1", (259, 1), "0000:3d:00.0"),
                disk("nvme0n1p2", (259, 2), "0000:3d:00.0"),
                layered(
                    "dm-0",
                    (254, 0),
                    &["nvme0n1p2"],
                    Layer::DeviceMapper {
                        uuid: "CRYPT-LUKS2-abc-cryptroot".into(),
                    },
                ),
                BlockDevice {
                    mapper_name: Some("root".into()),
                    ..layered(
                        "dm-2",
                        (254, 2),
                        &["dm-0"],
                        Layer::DeviceMapper {
                            uuid: "LVM-xyz".into(),
                        },
                    )
                },
            ],
            ..Default::default()
        };
        let holdings = judge(&facts);
        assert_eq!(
            texts(&holdings, "0000:3d:00.0"),
            [
                "/ (ext4 on /dev/nvme0n1p2 via LVM on LUKS)",
                "/boot (vfat on /dev/nvme0n1p1)"
            ]
        );
        let held = holdings.of(address("0000:3d:00.0"));
        assert_eq!(LostList(&held).to_string(), "/ and /boot");
    }

    #[test]
    fn a_mount_on_a_loop_file_is_held_by_what_holds_the_file() {
        let facts = Facts {
            mounts: parse_mountinfo(
                "1 0 8:2 / / rw - ext4 /dev/sda2 rw\n2 1 7:0 / /mnt rw - ext4 /dev/loop0 rw\n",
            ),
            block_devices: vec![
                disk("sda2", (8, 2), "0000:00:17.0"),
                layered(
                    "loop0",
                    (7, 0),
                    &[],
                    Layer::Loop {
                        backing_file: "/srv/disk.img".into(),
                    },
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            texts(&judge(&facts), "0000:00:17.0"),
            [
                "/ (ext4 on /dev/sda2)",
                "/mnt (ext4 on /dev/sda2 via loop file /srv/disk.img)"
            ]
        );
    }

    #[test]
    fn md_raid_members_on_two_functions_hold_both() {
        let facts = Facts {
            mounts: parse_mountinfo("1 0 9:127 / / rw - xfs /dev/md127 rw\n"),
            swaps: parse_swaps("Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n/dev/zram0 partition 10 0 100\n"),
            block_devices: vec![
                disk("sda1", (8, 1), "0000:00:17.0"),
                disk("nvme0n1p1", (259, 1), "0000:3d:00.0"),
                layered(
                    "md127",
                    (9, 127),
                    &["sda1", "nvme0n1p1"],
                    Layer::Md {
                        level: "raid1".into(),
                    },
                ),
                BlockDevice { name: "zram0".into(), number: Some((253, 0)), ..Default::default() },
            ],
            ..Default::default()
        };
        let holdings = judge(&facts);
        for function in ["0000:00:17.0", "0000:3d:00.0"] {
            let texts = texts(&holdings, function);
            assert_eq!(texts.len(), 2, "{texts:?}");
            assert!(texts[0].starts_with("/ (xfs on /dev/"), "{texts:?}");
            assert!(texts[0].ends_with(" via md raid1)"), "{texts:?}");
            assert!(
                texts[1].starts_with("swap (/swapfile on /dev/"),
                "{texts:?}"
            );
        }
    }

    #[test]
    fn btrfs_over_two_disks_holds_both() {
        let facts = Facts {
            mounts: parse_mountinfo("1 0 0:31 / / rw - btrfs /dev/sda rw\n"),
            block_devices: vec![
                disk("sda", (8, 0), "0000:00:17.0"),
                disk("nvme0n1", (259, 0), "0000:3d:00.0"),
            ],
            btrfs_members: vec![vec!["nvme0n1".into(), "sda".into()]],
            ..Default::default()
        };
        let holdings = judge(&facts);
        assert_eq!(texts(&holdings, "0000:00:17.0"), ["/ (btrfs on /dev/sda)"]);
        assert_eq!(
            texts(&holdings, "0000:3d:00.0"),
            ["/ (btrfs on /dev/nvme0n1)"]
        );
    }

    #[test]
    fn default_routes_are_read_for_both_families_and_followed_through_a_bridge_and_a_bond() {
        let v4 = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                  br0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                  br0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(ipv4_default_routes(v4), ["br0"]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     vlan7\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert_eq!(ipv6_default_routes(v6), ["vlan7"]);
        let interface = |name: &str, function: Option<&str>, lowers: &[&str]| Interface {
            name: name.into(),
            function: function.map(address),
            lowers: lowers.iter().map(|l| l.to_string()).collect(),
        };
        let facts = Facts {
            default_routes: vec![(IpFamily::V4, "br0".into()), (IpFamily::V6, "vlan7".into())],
            interfaces: vec![
                interface("br0", None, &["bond0", "vnet0"]),
                interface("vnet0", None, &[]),
                interface("bond0", None, &["enp3s0", "enp4s0"]),
                interface("enp3s0", Some("0000:03:00.0"), &[]),
                interface("enp4s0", Some("0000:04:00.0"), &[]),
                interface("vlan7", None, &["enp4s0"]),
            ],
            ..Default::default()
        };
        let holdings = judge(&facts);
        assert_eq!(
            texts(&holdings, "0000:03:00.0"),
            ["the IPv4 default route (br0 via bond0 on enp3s0)"]
        );
        assert_eq!(
            texts(&holdings, "0000:04:00.0"),
            [
                "the IPv4 default route (br0 via bond0 on enp4s0)",
                "the IPv6 default route (vlan7 via enp4s0)"
            ]
        );
        let held = holdings.of(address("0000:04:00.0"));
        assert_eq!(
            LostList(&held).to_string(),
            "its IPv4 default route and its IPv6 default route"
        );
    }

    #[test]
    fn the_console_card_is_held_only_when_no_other_display_is_left() {
        let display = |name: &str, function: Option<&str>| Display {
            name: name.into(),
            function: function.map(address),
        };
        let mut facts = Facts {
            framebuffers: vec![display("fb0", None)],
            drm_cards: vec![display("card0", Some("0000:00:02.0"))],
            boot_vga: Some(address("0000:00:02.0")),
            ..Default::default()
        };
        assert_eq!(
            texts(&judge(&facts), "0000:00:02.0"),
            ["the console (fb0), the host's only display"]
        );
        facts.drm_cards.push(display("card1", Some("0000:07:00.0")));
        assert!(judge(&facts).is_empty());
        assert!(judge(&Facts::default()).is_empty());
    }

    #[test]
    fn the_function_of_a_device_is_the_deepest_on_its_path() {
        assert_eq!(
            function_on_path("devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"),
            Some(address("0000:3d:00.0"))
        );
        assert_eq!(function_on_path("devices/virtual/block/dm-0"), None);
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let held: Vec<Held> = (0..5)
            .map(|n| Held::Mount {
                mount_point: format!("/m{n}"),
                fstype: "ext4".into(),
                device: "sda".into(),
                layers: Vec::new(),
            })
            .collect();
        let refs: Vec<&Held> = held.iter().collect();
        assert_eq!(
            HeldList(&refs).to_string(),
            "/m0 (ext4 on /dev/sda), /m1 (ext4 on /dev/sda), /m2 (ext4 on /dev/sda) and 2 more"
        );
        assert_eq!(LostList(&refs).to_string(), "/m0, /m1, /m2 and 2 more");
        assert_eq!(LostList(&refs[..2]).to_string(), "/m0 and /m1");
    }

    #[test]
    fn nvme_multipath_paths_are_known_by_their_head_s_numbers() {
        assert!(is_nvme_path_of("nvme0c0n1", "nvme0n1"));
        assert!(is_nvme_path_of("nvme0c12n1", "nvme0n1"));
        assert!(is_nvme_path_of("nvme10c3n21", "nvme10n21"));
        for (path, head) in [
            ("nvme0c0n1", "nvme0n2"),
            ("nvme1c0n1", "nvme0n1"),
            ("nvme0c0n1p1", "nvme0n1"),
            ("nvme0n1", "nvme0n1"),
            ("nvme0c0n1", "nvme0n1p1"),
            ("nvme0cn1", "nvme0n1"),
            ("sda", "nvme0n1"),
        ] {
            assert!(!is_nvme_path_of(path, head), "{path} {head}");
        }
    }

    #[test]
    fn only_numbered_ttys_are_virtual_terminals() {
        for vt in ["tty0", "tty1", "tty63"] {
            assert!(is_virtual_terminal(vt), "{vt}");
        }
        for other in ["ttyS0", "ttyAMA0", "hvc0", "tty", "ttyUSB1", "netcon0"] {
            assert!(!is_virtual_terminal(other), "{other}");
        }
    }
}
