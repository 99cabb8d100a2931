//! PCI sysfs trees in the kernel's own layout, for tests and benchmarks.
//!
//! The layout follows a real `/sys`: devices live under `devices/pciDDDD:BB/` (nested
//! below their parent bridge when one is given), `bus/pci/devices/ADDR` are relative
//! symlinks to them, and each device's `driver` and `iommu_group` are relative symlinks to
//! `bus/pci/drivers/NAME` and `kernel/iommu_groups/N`. Code under test that resolves a link
//! outside the fixture root would escape the tree, which is what these fixtures catch.
//!
//! [`SysfsTree::simulate_*`] apply what the kernel itself would do on a write, so that a
//! test can play the kernel's part after the binder wrote a file.

pub mod images;

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Display controller (VGA compatible).
pub const CLASS_VGA: u32 = 0x030000;
/// Display controller (3D, e.g. a second NVIDIA GPU).
pub const CLASS_3D: u32 = 0x030200;
/// HD audio controller.
pub const CLASS_AUDIO: u32 = 0x040300;
/// USB controller (xHCI).
pub const CLASS_USB: u32 = 0x0c0330;
/// Serial bus controller (NVIDIA's USB-C UCSI function).
pub const CLASS_SERIAL_BUS: u32 = 0x0c8000;
/// PCI-to-PCI bridge.
pub const CLASS_BRIDGE: u32 = 0x060400;
/// Host bridge.
pub const CLASS_HOST_BRIDGE: u32 = 0x060000;

/// One PCI function to put in a tree.
#[derive(Clone, Debug)]
pub struct Function {
    /// Full sysfs name, `DDDD:BB:SS.F`.
    pub address: String,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    /// The driver bound now, if any.
    pub driver: Option<String>,
    /// The IOMMU group, when the IOMMU is on.
    pub iommu_group: Option<u32>,
    /// `Some` writes a `boot_vga` attribute (the kernel has it on VGA devices only).
    pub boot_vga: Option<bool>,
    /// The bridge this function sits behind, if any (its address).
    pub parent: Option<String>,
    /// `subsystem_vendor` and `subsystem_device`; not written when `None`.
    pub subsystem: Option<(u16, u16)>,
}

impl Function {
    pub fn new(address: &str, vendor: u16, device: u16, class: u32) -> Self {
        Function {
            address: address.to_string(),
            vendor,
            device,
            class,
            driver: None,
            iommu_group: None,
            boot_vga: None,
            parent: None,
            subsystem: None,
        }
    }

    pub fn subsystem(mut self, vendor: u16, device: u16) -> Self {
        self.subsystem = Some((vendor, device));
        self
    }

    pub fn driver(mut self, name: &str) -> Self {
        self.driver = Some(name.to_string());
        self
    }

    pub fn group(mut self, group: u32) -> Self {
        self.iommu_group = Some(group);
        self
    }

    pub fn boot_vga(mut self, boot_vga: bool) -> Self {
        self.boot_vga = Some(boot_vga);
        self
    }

    pub fn behind(mut self, bridge: &str) -> Self {
        self.parent = Some(bridge.to_string());
        self
    }
}

/// A sysfs tree in a temporary directory, removed on drop.
pub struct SysfsTree {
    root: PathBuf,
    /// For each firmware-framebuffer platform device: the iomem line its driver's claim
    /// adds, and the line (its BAR) it is nested below, so unbind and bind can play it.
    framebuffer_claims: Vec<(String, String, String)>,
    /// `class/graphics/fbN` of each GPU function: a native driver registers it on probe.
    graphics: Vec<(u32, String)>,
}

static NEXT_TREE: AtomicUsize = AtomicUsize::new(0);

/// `"../"` repeated once for each component of `relative`, i.e. the way from inside that
/// directory back up to the tree's root.
fn up_to_root(relative: &Path) -> PathBuf {
    relative.components().map(|_| "..").collect()
}

impl SysfsTree {
    /// An empty tree: no devices, no drivers, the IOMMU off (no groups).
    pub fn new() -> io::Result<Self> {
        let unique = NEXT_TREE.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("sysfs-fixture-{}-{unique}", std::process::id()));
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        Self::create_at(root)
    }

    /// An empty tree at `root`, which must not exist yet; it is removed on drop.
    pub fn create_at(root: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(root.join("bus/pci/devices"))?;
        fs::create_dir_all(root.join("bus/pci/drivers"))?;
        fs::create_dir_all(root.join("kernel/iommu_groups"))?;
        fs::write(root.join("bus/pci/drivers_probe"), "")?;
        Ok(SysfsTree {
            root,
            framebuffer_claims: Vec::new(),
            graphics: Vec::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The device's directory below `devices/`, relative to the root.
    fn device_dir(&self, address: &str) -> io::Result<PathBuf> {
        let link = fs::read_link(self.root.join("bus/pci/devices").join(address))?;
        // The link is `../../../devices/...`: drop the three `..`.
        Ok(link.components().skip(3).collect())
    }

    /// Registers a driver: `bus/pci/drivers/NAME` with its `bind`, `unbind` and `new_id`.
    pub fn add_driver(&mut self, name: &str) -> io::Result<&mut Self> {
        let dir = self.root.join("bus/pci/drivers").join(name);
        fs::create_dir_all(&dir)?;
        for file in ["bind", "unbind", "new_id", "remove_id"] {
            fs::write(dir.join(file), "")?;
        }
        Ok(self)
    }

    pub fn has_driver(&self, name: &str) -> bool {
        self.root.join("bus/pci/drivers").join(name).is_dir()
    }

    /// Adds a function with every attribute and link the binder reads.
    pub fn add(&mut self, function: Function) -> io::Result<&mut Self> {
        let (domain, rest) = function.address.split_once(':').expect("DDDD:BB:SS.F");
        let bus = &rest[..2];
        let relative = match &function.parent {
            Some(parent) => self.device_dir(parent)?.join(&function.address),
            None => PathBuf::from(format!("devices/pci{domain}:{bus}")).join(&function.address),
        };
        let dir = self.root.join(&relative);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), format!("0x{:04x}\n", function.vendor))?;
        fs::write(dir.join("device"), format!("0x{:04x}\n", function.device))?;
        fs::write(dir.join("class"), format!("0x{:06x}\n", function.class))?;
        fs::write(dir.join("driver_override"), "(null)\n")?;
        if let Some((vendor, device)) = function.subsystem {
            fs::write(dir.join("subsystem_vendor"), format!("0x{vendor:04x}\n"))?;
            fs::write(dir.join("subsystem_device"), format!("0x{device:04x}\n"))?;
        }
        if let Some(boot_vga) = function.boot_vga {
            fs::write(dir.join("boot_vga"), if boot_vga { "1\n" } else { "0\n" })?;
        }
        symlink(
            Path::new("../../..").join(&relative),
            self.root.join("bus/pci/devices").join(&function.address),
        )?;
        if let Some(group) = function.iommu_group {
            let group_dir = self
                .root
                .join(format!("kernel/iommu_groups/{group}/devices"));
            fs::create_dir_all(&group_dir)?;
            symlink(
                up_to_root(&relative).join(format!("kernel/iommu_groups/{group}")),
                dir.join("iommu_group"),
            )?;
            symlink(
                Path::new("../../../..").join(&relative),
                group_dir.join(&function.address),
            )?;
        }
        if let Some(driver) = &function.driver {
            if !self.has_driver(driver) {
                self.add_driver(driver)?;
            }
            self.link_driver(&function.address, driver)?;
        }
        Ok(self)
    }

    fn link_driver(&self, address: &str, driver: &str) -> io::Result<()> {
        let relative = self.device_dir(address)?;
        symlink(
            up_to_root(&relative).join("bus/pci/drivers").join(driver),
            self.root.join(&relative).join("driver"),
        )?;
        symlink(
            Path::new("../../../..").join(&relative),
            self.root.join("bus/pci/drivers").join(driver).join(address),
        )
    }

    /// Path of a device's attribute, through the `bus/pci/devices` link as a user would.
    pub fn attribute(&self, address: &str, name: &str) -> PathBuf {
        self.root.join("bus/pci/devices").join(address).join(name)
    }

    /// Contents of a file below the root, or the error's kind as text.
    pub fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.root.join(relative))
            .unwrap_or_else(|error| format!("<{:?}>", error.kind()))
    }

    /// The driver the device is bound to now (the `driver` link's last component).
    pub fn driver_of(&self, address: &str) -> Option<String> {
        let target = fs::read_link(self.attribute(address, "driver")).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The device's `driver_override` as the kernel shows it (`(null)` when unset).
    pub fn override_of(&self, address: &str) -> String {
        fs::read_to_string(self.attribute(address, "driver_override"))
            .map(|text| text.trim_end().to_string())
            .unwrap_or_default()
    }

    /// What writing `driver/unbind` does: the device loses its driver.
    pub fn simulate_unbind(&mut self, address: &str) -> io::Result<()> {
        let Some(driver) = self.driver_of(address) else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        fs::remove_file(self.attribute(address, "driver"))?;
        fs::remove_file(self.root.join("bus/pci/drivers").join(driver).join(address))?;
        // The driver's framebuffers go with it, and with the last framebuffer the kernel's
        // framebuffer console unregisters its vtconsole (seen in Debian's 6.1).
        let (mut removed, mut left) = (0, 0);
        if let Ok(entries) = fs::read_dir(self.root.join("class/graphics")) {
            for entry in entries.flatten() {
                let device = fs::read_link(entry.path().join("device")).ok();
                if device.is_some_and(|device| device.ends_with(address)) {
                    fs::remove_dir_all(entry.path())?;
                    removed += 1;
                } else {
                    left += 1;
                }
            }
        }
        if removed > 0 && left == 0 {
            if let Some(number) = self.framebuffer_vtconsole() {
                fs::remove_dir_all(self.root.join(format!("class/vtconsole/vtcon{number}")))?;
            }
        }
        Ok(())
    }

    /// The number of the framebuffer console's vtconsole, if it is registered.
    fn framebuffer_vtconsole(&self) -> Option<u8> {
        (0..16).find(|number| {
            self.read(&format!("class/vtconsole/vtcon{number}/name"))
                .contains("frame buffer device")
        })
    }

    /// What a probe does for a driverless device: `driver` binds it when the override names
    /// it (or, with no override, when `native` is given and registered). vfio-pci fails to
    /// probe a function with no IOMMU group, as the real one does (-EINVAL).
    pub fn simulate_probe(&mut self, address: &str, native: Option<&str>) -> io::Result<()> {
        if self.driver_of(address).is_some() {
            return Ok(());
        }
        let wanted = match self.override_of(address).as_str() {
            "(null)" | "" => native.map(str::to_string),
            named => Some(named.to_string()),
        };
        let Some(driver) = wanted.filter(|driver| self.has_driver(driver)) else {
            return Ok(());
        };
        if driver == "vfio-pci" && !self.attribute(address, "iommu_group").exists() {
            return Err(io::Error::from_raw_os_error(22));
        }
        self.link_driver(address, &driver)?;
        if driver != "vfio-pci" {
            self.register_graphics(address)?;
        }
        Ok(())
    }

    /// Where the tree's stand-in for `/proc/iomem` is (written by [`Self::set_iomem`]).
    pub fn iomem_path(&self) -> PathBuf {
        self.root.join("proc-iomem")
    }

    /// Writes the iomem tree, in the kernel's format (two spaces a nesting level).
    pub fn set_iomem(&mut self, text: &str) -> io::Result<&mut Self> {
        fs::write(self.iomem_path(), text)?;
        Ok(self)
    }

    /// The iomem tree as it is now.
    pub fn iomem(&self) -> String {
        fs::read_to_string(self.iomem_path()).unwrap_or_default()
    }

    /// Adds a firmware-framebuffer platform device (`efi-framebuffer.0`), bound to `driver`
    /// when given. `claim` is its driver's iomem line and `bar` the line it sits below; the
    /// claim is put in the iomem tree when bound.
    pub fn add_platform_framebuffer(
        &mut self,
        device: &str,
        driver: Option<&str>,
        bar: &str,
        claim: &str,
    ) -> io::Result<&mut Self> {
        let dir = self.root.join("devices/platform").join(device);
        fs::create_dir_all(&dir)?;
        fs::create_dir_all(self.root.join("bus/platform/devices"))?;
        symlink(
            Path::new("../../../devices/platform").join(device),
            self.root.join("bus/platform/devices").join(device),
        )?;
        self.framebuffer_claims
            .push((device.to_string(), bar.to_string(), claim.to_string()));
        if let Some(driver) = driver {
            self.add_platform_driver(driver)?;
            self.simulate_platform_bind(driver, device)?;
        }
        Ok(self)
    }

    /// Registers a platform driver: `bus/platform/drivers/NAME` with `bind` and `unbind`.
    pub fn add_platform_driver(&mut self, name: &str) -> io::Result<&mut Self> {
        let dir = self.root.join("bus/platform/drivers").join(name);
        fs::create_dir_all(&dir)?;
        for file in ["bind", "unbind"] {
            fs::write(dir.join(file), "")?;
        }
        Ok(self)
    }

    /// The platform driver a platform device is bound to now.
    pub fn platform_driver_of(&self, device: &str) -> Option<String> {
        let link = self
            .root
            .join("bus/platform/devices")
            .join(device)
            .join("driver");
        let target = fs::read_link(link).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// What writing a platform driver's `unbind` does: the device loses the driver, and the
    /// driver's iomem claim goes.
    pub fn simulate_platform_unbind(&mut self, driver: &str, device: &str) -> io::Result<()> {
        if self.platform_driver_of(device).as_deref() != Some(driver) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        fs::remove_file(
            self.root
                .join("devices/platform")
                .join(device)
                .join("driver"),
        )?;
        fs::remove_file(
            self.root
                .join("bus/platform/drivers")
                .join(driver)
                .join(device),
        )?;
        if let Some((_, _, claim)) = self.framebuffer_claims.iter().find(|(d, _, _)| d == device) {
            let text: String = self
                .iomem()
                .lines()
                .filter(|line| line != claim)
                .map(|line| format!("{line}\n"))
                .collect();
            fs::write(self.iomem_path(), text)?;
        }
        Ok(())
    }

    /// What writing a platform driver's `bind` does: the driver takes the device and claims
    /// its memory again, below the BAR's line.
    pub fn simulate_platform_bind(&mut self, driver: &str, device: &str) -> io::Result<()> {
        if self.platform_driver_of(device).is_some() {
            return Err(io::Error::from_raw_os_error(16));
        }
        symlink(
            Path::new("../../../bus/platform/drivers").join(driver),
            self.root
                .join("devices/platform")
                .join(device)
                .join("driver"),
        )?;
        symlink(
            Path::new("../../../../devices/platform").join(device),
            self.root
                .join("bus/platform/drivers")
                .join(driver)
                .join(device),
        )?;
        if let Some((_, bar, claim)) = self.framebuffer_claims.iter().find(|(d, _, _)| d == device)
        {
            let mut text = String::new();
            for line in self.iomem().lines() {
                text.push_str(line);
                text.push('\n');
                if line == bar {
                    text.push_str(claim);
                    text.push('\n');
                }
            }
            fs::write(self.iomem_path(), text)?;
        }
        Ok(())
    }

    /// Adds `class/vtconsole/vtconN` with its `name` (e.g. `(M) frame buffer device`).
    pub fn add_vtconsole(&mut self, number: u8, name: &str, bound: bool) -> io::Result<&mut Self> {
        let dir = self.root.join(format!("class/vtconsole/vtcon{number}"));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("name"), format!("{name}\n"))?;
        fs::write(dir.join("bind"), if bound { "1\n" } else { "0\n" })?;
        Ok(self)
    }

    /// Whether `vtconN` is bound now (its `bind` reads 1).
    pub fn vtconsole_bound(&self, number: u8) -> bool {
        self.read(&format!("class/vtconsole/vtcon{number}/bind"))
            .trim()
            == "1"
    }

    /// Adds `class/graphics/fbN` drawn by the PCI function at `address` (a GPU driver's
    /// framebuffer); it goes when the function's driver is unbound.
    pub fn add_graphics_framebuffer(
        &mut self,
        number: u32,
        address: &str,
    ) -> io::Result<&mut Self> {
        self.graphics.push((number, address.to_string()));
        self.register_graphics(address)?;
        Ok(self)
    }

    /// What a GPU driver's probe does: registers the function's framebuffers.
    fn register_graphics(&self, address: &str) -> io::Result<()> {
        let relative = self.device_dir(address)?;
        for (number, _) in self.graphics.iter().filter(|(_, a)| a == address) {
            let dir = self.root.join(format!("class/graphics/fb{number}"));
            if dir.exists() {
                continue;
            }
            fs::create_dir_all(&dir)?;
            symlink(Path::new("../../..").join(&relative), dir.join("device"))?;
        }
        // A framebuffer registering brings the framebuffer console back, bound, when a
        // fixture has consoles at all.
        let has_consoles = self.root.join("class/vtconsole/vtcon0").exists();
        if has_consoles && self.framebuffer_vtconsole().is_none() {
            let number = (1..16)
                .find(|n| !self.root.join(format!("class/vtconsole/vtcon{n}")).exists())
                .unwrap_or(15);
            let dir = self.root.join(format!("class/vtconsole/vtcon{number}"));
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("name"), "(M) frame buffer device\n")?;
            fs::write(dir.join("bind"), "1\n")?;
        }
        Ok(())
    }

    /// Adds `class/CLASS/NAME`, a link to `DIRECTORY` (relative to the root), which is
    /// created; returns the directory's path.
    fn add_class_entry(&self, class: &str, name: &str, directory: &Path) -> io::Result<PathBuf> {
        let dir = self.root.join(directory);
        fs::create_dir_all(&dir)?;
        let class_dir = self.root.join("class").join(class);
        fs::create_dir_all(&class_dir)?;
        symlink(Path::new("../..").join(directory), class_dir.join(name))?;
        Ok(dir)
    }

    /// The directory a `class/CLASS/NAME` link leads to, relative to the root.
    fn class_entry_dir(&self, class: &str, name: &str) -> io::Result<PathBuf> {
        let link = fs::read_link(self.root.join("class").join(class).join(name))?;
        // The link is `../../devices/...`: drop the two `..`.
        Ok(link.components().skip(2).collect())
    }

    /// Adds a whole disk on the PCI function at `address`, at `below` inside its directory
    /// (`nvme/nvme0` for NVMe, `virtio1` for virtio-blk, `ata1/host0/target0:0:0/0:0:0:0`
    /// for AHCI), as the kernel lays it out: `.../block/NAME` with its `dev` number.
    pub fn add_disk(
        &mut self,
        name: &str,
        number: (u32, u32),
        address: &str,
        below: &str,
    ) -> io::Result<&mut Self> {
        let directory = self
            .device_dir(address)?
            .join(below)
            .join("block")
            .join(name);
        let dir = self.add_class_entry("block", name, &directory)?;
        fs::write(dir.join("dev"), format!("{}:{}\n", number.0, number.1))?;
        Ok(self)
    }

    /// Adds a partition of a disk added before: a directory inside the disk's.
    pub fn add_partition(
        &mut self,
        disk: &str,
        name: &str,
        number: (u32, u32),
    ) -> io::Result<&mut Self> {
        let directory = self.class_entry_dir("block", disk)?.join(name);
        let dir = self.add_class_entry("block", name, &directory)?;
        fs::write(dir.join("dev"), format!("{}:{}\n", number.0, number.1))?;
        fs::write(dir.join("partition"), "2\n")?;
        Ok(self)
    }

    /// Adds a block device of no hardware (`devices/virtual/block/NAME`: device-mapper, md,
    /// loop, zram) built on `slaves`, with `attributes` as `(path, contents)`:
    /// `("dm/uuid", "CRYPT-LUKS2-...")`, `("dm/name", "root")`, `("md/level", "raid1")`,
    /// `("loop/backing_file", "/srv/disk.img")`.
    pub fn add_virtual_block(
        &mut self,
        name: &str,
        number: (u32, u32),
        slaves: &[&str],
        attributes: &[(&str, &str)],
    ) -> io::Result<&mut Self> {
        let directory = Path::new("devices/virtual/block").join(name);
        let dir = self.add_class_entry("block", name, &directory)?;
        fs::write(dir.join("dev"), format!("{}:{}\n", number.0, number.1))?;
        fs::create_dir_all(dir.join("slaves"))?;
        for slave in slaves {
            let target = self.class_entry_dir("block", slave)?;
            symlink(
                up_to_root(&directory.join("slaves")).join(target),
                dir.join("slaves").join(slave),
            )?;
        }
        for (path, contents) in attributes {
            let file = dir.join(path);
            fs::create_dir_all(file.parent().expect("an attribute's directory"))?;
            fs::write(file, format!("{contents}\n"))?;
        }
        Ok(self)
    }

    /// Adds a network interface: on the PCI function at `on` (its address, and the path
    /// inside its directory, e.g. `virtio2`; empty for a NIC's own function), or virtual (a
    /// bond, a bridge, a VLAN) when `None`, with a `lower_NAME` link to each of `lowers`.
    pub fn add_interface(
        &mut self,
        name: &str,
        on: Option<(&str, &str)>,
        lowers: &[&str],
    ) -> io::Result<&mut Self> {
        let directory = match on {
            Some((address, below)) => self.device_dir(address)?.join(below).join("net").join(name),
            None => Path::new("devices/virtual/net").join(name),
        };
        let dir = self.add_class_entry("net", name, &directory)?;
        if let Some((address, _)) = on {
            symlink(
                up_to_root(&directory).join(self.device_dir(address)?),
                dir.join("device"),
            )?;
        }
        for lower in lowers {
            let target = self.class_entry_dir("net", lower)?;
            symlink(
                up_to_root(&directory).join(target),
                dir.join(format!("lower_{lower}")),
            )?;
        }
        Ok(self)
    }

    /// Adds DRM card `cardN` of the PCI function at `address` (`.../drm/cardN`).
    pub fn add_drm_card(&mut self, number: u32, address: &str) -> io::Result<&mut Self> {
        let directory = self
            .device_dir(address)?
            .join("drm")
            .join(format!("card{number}"));
        self.add_class_entry("drm", &format!("card{number}"), &directory)?;
        Ok(self)
    }

    /// Adds framebuffer `fbN` of a platform device (`efi-framebuffer.0`, `simple-framebuffer.0`).
    pub fn add_platform_graphics(&mut self, number: u32, device: &str) -> io::Result<&mut Self> {
        let directory = Path::new("devices/platform")
            .join(device)
            .join("graphics")
            .join(format!("fb{number}"));
        self.add_class_entry("graphics", &format!("fb{number}"), &directory)?;
        Ok(self)
    }

    /// Removes a device the way a hot unplug does (its link and its directory).
    pub fn remove_device(&mut self, address: &str) -> io::Result<()> {
        let relative = self.device_dir(address)?;
        fs::remove_file(self.root.join("bus/pci/devices").join(address))?;
        fs::remove_dir_all(self.root.join(relative))
    }
}

impl Drop for SysfsTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The guest's card alone (the RX 6600 of [`host_and_guest_share_audio_ids`], both
/// functions in IOMMU group 17) after a boot: the display on vfio-pci, the HDMI-audio
/// function on `audio_driver` (`vfio-pci` when the binder took the whole card).
pub fn guest_card_after_boot(audio_driver: &str) -> io::Result<SysfsTree> {
    let mut tree = SysfsTree::new()?;
    tree.add(
        Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA)
            .group(17)
            .driver("vfio-pci"),
    )?
    .add(
        Function::new("0000:07:00.1", 0x1002, 0xab28, CLASS_AUDIO)
            .group(17)
            .driver(audio_driver),
    )?;
    Ok(tree)
}

/// A host card and a guest card of one vendor: the host's RX 6750 XT at 03:00 (boot VGA) and
/// the guest's RX 6600 at 07:00, whose HDMI-audio functions share the IDs 1002:ab28, so an
/// ID-only rule would take the host's audio too. Each card in its own IOMMU group, behind its
/// own root port. Nothing bound yet (early boot).
pub fn host_and_guest_share_audio_ids() -> io::Result<SysfsTree> {
    let mut tree = SysfsTree::new()?;
    tree.add(Function::new("0000:00:00.0", 0x1022, 0x14d8, CLASS_HOST_BRIDGE).group(0))?
        .add(Function::new("0000:00:01.1", 0x1022, 0x14db, CLASS_BRIDGE).group(1))?
        .add(
            Function::new("0000:03:00.0", 0x1002, 0x73df, CLASS_VGA)
                .group(14)
                .boot_vga(true)
                .behind("0000:00:01.1"),
        )?
        .add(
            Function::new("0000:03:00.1", 0x1002, 0xab28, CLASS_AUDIO)
                .group(14)
                .behind("0000:00:01.1"),
        )?
        .add(Function::new("0000:00:01.2", 0x1022, 0x14db, CLASS_BRIDGE).group(2))?
        .add(
            Function::new("0000:07:00.0", 0x1002, 0x73ff, CLASS_VGA)
                .group(17)
                .boot_vga(false)
                .behind("0000:00:01.2"),
        )?
        .add(
            Function::new("0000:07:00.1", 0x1002, 0xab28, CLASS_AUDIO)
                .group(17)
                .behind("0000:00:01.2"),
        )?;
    Ok(tree)
}

/// Two identical cards on the root bus, 10de:2204 with its audio function 10de:1aef, at
/// 0a:00 (IOMMU group 20) and 0b:00 (group 21): their display functions on `gpu_drivers`
/// (0a's, then 0b's), their audio functions on snd_hda_intel.
pub fn twin_cards_at_0a_and_0b(gpu_drivers: [&str; 2]) -> io::Result<SysfsTree> {
    let mut tree = SysfsTree::new()?;
    for ((bus, group), driver) in [("0a", 20), ("0b", 21)].into_iter().zip(gpu_drivers) {
        tree.add(
            Function::new(&format!("0000:{bus}:00.0"), 0x10de, 0x2204, CLASS_VGA)
                .group(group)
                .driver(driver),
        )?
        .add(
            Function::new(&format!("0000:{bus}:00.1"), 0x10de, 0x1aef, CLASS_AUDIO)
                .group(group)
                .driver("snd_hda_intel"),
        )?;
    }
    Ok(tree)
}

/// The twins' vendor and device: identical cards, as two of one GPU model are.
pub const TWIN_IDS: (u16, u16) = (0x1234, 0x1111);

/// Identical twin display cards, each behind its own PCIe root port, the way the firmware
/// numbers buses: depth-first in slot order. The "left" twin sits behind root port 00:1c.0
/// and the "right" one behind 00:1d.0. With `usb_in_front`, a USB controller behind an
/// extra root port at 00:1b.0 takes bus 01, and the twins move from buses 01 and 02 to
/// 02 and 03: the renumbering that makes a bus-number rule take the wrong twin.
///
/// Also on the root bus: a host bridge at 00:00.0 and an endpoint (not a bridge) at
/// 00:02.0, for paths that try to go below it. The twins differ only in their subsystem
/// IDs (1af4:1100 left, 1af4:1101 right), as cards of two board makers do.
pub fn twins_behind_root_ports(usb_in_front: bool) -> io::Result<SysfsTree> {
    let mut tree = SysfsTree::new()?;
    tree.add(Function::new("0000:00:00.0", 0x8086, 0x29c0, CLASS_HOST_BRIDGE).group(0))?
        .add(
            Function::new("0000:00:02.0", 0x1af4, 0x1050, CLASS_VGA)
                .group(1)
                .boot_vga(true),
        )?;
    let mut bus = 1;
    if usb_in_front {
        tree.add(Function::new("0000:00:1b.0", 0x1b36, 0x000c, CLASS_BRIDGE).group(2))?
            .add(
                Function::new("0000:01:00.0", 0x1b36, 0x000d, CLASS_USB)
                    .group(2)
                    .behind("0000:00:1b.0"),
            )?;
        bus += 1;
    }
    let (vendor, device) = TWIN_IDS;
    for (port, group, subsystem) in [("1c", 3, 0x1100), ("1d", 4, 0x1101)] {
        let port = format!("0000:00:{port}.0");
        tree.add(Function::new(&port, 0x1b36, 0x000c, CLASS_BRIDGE).group(group))?
            .add(
                Function::new(&format!("0000:{bus:02x}:00.0"), vendor, device, 0x038000)
                    .group(group)
                    .subsystem(0x1af4, subsystem)
                    .behind(&port),
            )?;
        bus += 1;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_resolve_inside_the_tree() {
        let tree = host_and_guest_share_audio_ids().unwrap();
        let link = fs::read_link(tree.root().join("bus/pci/devices/0000:07:00.1")).unwrap();
        assert!(link.is_relative());
        assert_eq!(
            link,
            Path::new("../../../devices/pci0000:00/0000:00:01.2/0000:07:00.1")
        );
        let group = fs::read_link(tree.attribute("0000:07:00.1", "iommu_group")).unwrap();
        assert!(group.is_relative());
        assert!(tree
            .attribute("0000:07:00.1", "iommu_group")
            .join("devices/0000:07:00.0/vendor")
            .exists());
        assert_eq!(tree.read("bus/pci/devices/0000:07:00.1/device"), "0xab28\n");
        assert_eq!(tree.override_of("0000:07:00.1"), "(null)");
    }

    #[test]
    fn twins_move_down_a_bus_when_usb_takes_the_first() {
        let tree = twins_behind_root_ports(false).unwrap();
        assert_eq!(
            fs::read_link(tree.root().join("bus/pci/devices/0000:01:00.0")).unwrap(),
            Path::new("../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0")
        );
        let tree = twins_behind_root_ports(true).unwrap();
        assert_eq!(
            fs::read_link(tree.root().join("bus/pci/devices/0000:02:00.0")).unwrap(),
            Path::new("../../../devices/pci0000:00/0000:00:1c.0/0000:02:00.0")
        );
        assert_eq!(
            tree.read("bus/pci/devices/0000:03:00.0/subsystem_device"),
            "0x1101\n"
        );
    }

    #[test]
    fn simulated_kernel_binds_by_override_only_with_a_group() {
        let mut tree = host_and_guest_share_audio_ids().unwrap();
        tree.add(Function::new("0000:09:00.0", 0x10de, 0x1b80, CLASS_VGA).driver("nouveau"))
            .unwrap();
        assert_eq!(tree.driver_of("0000:09:00.0").as_deref(), Some("nouveau"));
        assert!(tree
            .root()
            .join("bus/pci/drivers/nouveau/0000:09:00.0/vendor")
            .exists());
        tree.simulate_unbind("0000:09:00.0").unwrap();
        assert_eq!(tree.driver_of("0000:09:00.0"), None);
        tree.add_driver("vfio-pci").unwrap();
        fs::write(
            tree.attribute("0000:09:00.0", "driver_override"),
            "vfio-pci\n",
        )
        .unwrap();
        assert_eq!(
            tree.simulate_probe("0000:09:00.0", Some("nouveau"))
                .unwrap_err()
                .raw_os_error(),
            Some(22)
        );
        fs::write(
            tree.attribute("0000:07:00.0", "driver_override"),
            "vfio-pci\n",
        )
        .unwrap();
        tree.simulate_probe("0000:07:00.0", Some("amdgpu")).unwrap();
        assert_eq!(tree.driver_of("0000:07:00.0").as_deref(), Some("vfio-pci"));
    }
}
