//! What the host is using, read for [`crate::machine::guard`]: its mounts, swaps and default
//! routes from `/proc` under a host root, and the block devices, network interfaces and displays
//! behind them from the sysfs tree (the real `/sys`, or a fixture standing in for it).
//!
//! Links are followed with the whole path canonicalised, then taken relative to the sysfs
//! root: a link that leads outside the tree counts as leading nowhere. What cannot be read
//! is simply not there; the guard then knows less, and says less.

use std::fs;
use std::path::{Path, PathBuf};

use crate::machine::guard::{
    self, BlockDevice, Display, Facts, Holdings, Interface, IpFamily, Layer,
};
use crate::machine::order;
use crate::machine::sysfs::Sysfs;

/// The most entries read from one sysfs class directory (a host has dozens).
const MAX_ENTRIES: usize = 4096;

/// What the host needs, from `/proc` under `host_root` and `sysfs`.
pub fn holdings(host_root: &Path, sysfs: &Sysfs) -> Holdings {
    guard::judge(&read(host_root, sysfs))
}

/// The facts the guard judges.
pub fn read(host_root: &Path, sysfs: &Sysfs) -> Facts {
    let proc_text = |relative: &str| read_regular(&host_root.join(relative)).unwrap_or_default();
    let reader = Reader::new(sysfs);
    let mut default_routes: Vec<(IpFamily, String)> = Vec::new();
    for interface in guard::ipv4_default_routes(&proc_text("proc/net/route")) {
        default_routes.push((IpFamily::V4, interface));
    }
    for interface in guard::ipv6_default_routes(&proc_text("proc/net/ipv6_route")) {
        default_routes.push((IpFamily::V6, interface));
    }
    let mut boot_vga = None;
    let _ = sysfs.for_each_function(|function| {
        if function.boot_vga && boot_vga.is_none() {
            boot_vga = Some(function.address);
        }
    });
    Facts {
        mounts: guard::parse_mountinfo(&proc_text("proc/self/mountinfo")),
        swaps: guard::parse_swaps(&proc_text("proc/swaps")),
        default_routes,
        block_devices: reader.block_devices(),
        btrfs_members: reader.btrfs_members(),
        interfaces: reader.interfaces(),
        framebuffers: reader.displays("class/graphics", "fb"),
        drm_cards: reader.displays("class/drm", "card"),
        boot_vga,
        kernel_consoles: read_regular(&reader.root.join("class/tty/console/active")),
    }
}

/// A file's text, if it is a regular file (as `/proc` and sysfs files are): a FIFO or a
/// device in a host root or fixture is never opened, so nothing here can block.
fn read_regular(path: &Path) -> Option<String> {
    if !fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let bytes = fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

struct Reader {
    root: PathBuf,
    /// The root canonicalised, which every resolved path must stay below.
    canonical_root: Option<PathBuf>,
}

impl Reader {
    fn new(sysfs: &Sysfs) -> Self {
        let root = PathBuf::from(sysfs.root());
        Reader {
            canonical_root: fs::canonicalize(&root).ok(),
            root,
        }
    }

    /// Entry names of a directory below the root, sorted.
    fn entries(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join(relative))
            .map(|entries| {
                entries
                    .flatten()
                    .take(MAX_ENTRIES)
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        order::sort(&mut names);
        names
    }

    fn text(&self, relative: &str) -> Option<String> {
        Some(read_regular(&self.root.join(relative))?.trim().to_string())
    }

    /// Where a path below the root really is, relative to the root (`devices/pci0000:00/
    /// 0000:00:02.0/virtio1/block/vda`); `None` when it leads outside the tree or nowhere.
    fn resolve(&self, relative: &str) -> Option<String> {
        let canonical = fs::canonicalize(self.root.join(relative)).ok()?;
        let inside = canonical.strip_prefix(self.canonical_root.as_ref()?).ok()?;
        inside.to_str().map(str::to_string)
    }

    /// The PCI function a class entry lies below: the deepest one on its real path, or, for
    /// an entry that is a directory of its own, on the path of its `device` link.
    fn function_of(&self, relative: &str) -> Option<crate::rules::address::PciAddress> {
        self.resolve(relative)
            .and_then(|path| guard::function_on_path(&path))
            .or_else(|| {
                self.resolve(&format!("{relative}/device"))
                    .and_then(|path| guard::function_on_path(&path))
            })
    }

    fn block_devices(&self) -> Vec<BlockDevice> {
        let names = self.entries("class/block");
        names
            .iter()
            .map(|name| {
                let dir = format!("class/block/{name}");
                let layer = if let Some(uuid) = self.text(&format!("{dir}/dm/uuid")) {
                    Some(Layer::DeviceMapper { uuid })
                } else if self.root.join(&dir).join("md").is_dir() {
                    Some(Layer::Md {
                        level: self.text(&format!("{dir}/md/level")).unwrap_or_default(),
                    })
                } else {
                    self.text(&format!("{dir}/loop/backing_file"))
                        .map(|backing_file| Layer::Loop { backing_file })
                };
                BlockDevice {
                    number: self
                        .text(&format!("{dir}/dev"))
                        .and_then(|text| guard::parse_device_number(&text)),
                    function: self.function_of(&dir),
                    slaves: self.below(&dir, name, &names),
                    mapper_name: self.text(&format!("{dir}/dm/name")),
                    layer,
                    name: name.clone(),
                }
            })
            .collect()
    }

    /// The block devices the class/block entry `name` is built on: its `slaves/` (dm, md),
    /// the paths of an NVMe multipath head disk, and for a partition the disk it lies in
    /// (the parent directory of its real path: `md126` for
    /// `devices/virtual/block/md126/md126p2`), which has no `slaves/` link to it.
    fn below(&self, dir: &str, name: &str, names: &[String]) -> Vec<String> {
        let mut below = self.entries(&format!("{dir}/slaves"));
        let multipath = self.entries(&format!("{dir}/multipath"));
        if multipath.is_empty() {
            // Before Linux 6.15 there are no `multipath/` links: the paths of head disk
            // nvme{S}n{N} are the hidden disks nvme{S}c{C}n{N}, by the driver's naming.
            below.extend(
                names
                    .iter()
                    .filter(|path| guard::is_nvme_path_of(path, name))
                    .cloned(),
            );
        }
        below.extend(multipath);
        if self.root.join(dir).join("partition").is_file() {
            let disk = self.resolve(dir).and_then(|path| {
                let (parent, _) = path.rsplit_once('/')?;
                Some(parent.rsplit('/').next()?.to_string())
            });
            below.extend(disk);
        }
        below
    }

    fn btrfs_members(&self) -> Vec<Vec<String>> {
        self.entries("fs/btrfs")
            .into_iter()
            .map(|uuid| self.entries(&format!("fs/btrfs/{uuid}/devices")))
            .filter(|members| !members.is_empty())
            .collect()
    }

    fn interfaces(&self) -> Vec<Interface> {
        self.entries("class/net")
            .into_iter()
            .map(|name| {
                let dir = format!("class/net/{name}");
                Interface {
                    function: self.function_of(&dir),
                    lowers: self
                        .entries(&dir)
                        .into_iter()
                        .filter_map(|entry| entry.strip_prefix("lower_").map(str::to_string))
                        .collect(),
                    name,
                }
            })
            .collect()
    }

    /// `fbN` or `cardN` entries of a class, in number order (connectors like
    /// `card0-HDMI-A-1` are not cards).
    fn displays(&self, class: &str, prefix: &str) -> Vec<Display> {
        let mut numbered: Vec<(u32, String)> = self
            .entries(class)
            .into_iter()
            .filter_map(|name| {
                let number = name.strip_prefix(prefix)?.parse().ok()?;
                Some((number, name))
            })
            .collect();
        order::sort(&mut numbered);
        numbered
            .into_iter()
            .map(|(_, name)| Display {
                function: self.function_of(&format!("{class}/{name}")),
                name,
            })
            .collect()
    }
}
