//! Reading and writing PCI attributes under a sysfs root, with fixed buffers only.
//!
//! Every path is built as `ROOT/...` in a fixed-capacity buffer, and links (`driver`,
//! `iommu_group`) are only ever read for their last component, so a fixture tree standing
//! in for `/sys` is never escaped. Nothing here allocates on the heap: the apply path's cost
//! in memory does not grow with the number of devices.

use core::fmt::{self, Write as _};
use std::os::fd::AsFd;
use std::path::Path;

use heapless::String;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::NixPath;

use crate::machine::function::{DriverName, Function, DRIVER_NAME_CAPACITY};
use crate::rules::address::{parse_sysfs_hex, Location, PciAddress, PciIds, FUNCTIONS_PER_SLOT};

/// Longest path built under the root (the root itself included).
pub const PATH_CAPACITY: usize = 512;
/// Longest sysfs root accepted, leaving room for the attribute paths below it.
pub const ROOT_CAPACITY: usize = 384;

/// A path under the root, in a fixed buffer.
pub type PathBuffer = String<PATH_CAPACITY>;

/// A file the binder writes. Nothing else is ever written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// `bus/pci/devices/ADDR/driver_override`
    DriverOverride(PciAddress),
    /// `bus/pci/devices/ADDR/driver/unbind`, which the current driver owns.
    Unbind(PciAddress),
    /// `bus/pci/drivers_probe`: asks every driver to probe the written address.
    DriversProbe,
    /// `bus/platform/drivers/DRIVER/unbind`: lets a firmware framebuffer's device go.
    PlatformUnbind(FramebufferDriver),
    /// `bus/platform/drivers/DRIVER/bind`: gives the device back to its driver.
    PlatformBind(FramebufferDriver),
    /// `class/vtconsole/vtconN/bind`: 0 lets the virtual consoles go from a console
    /// driver (the framebuffer console), 1 takes them back.
    VtconsoleBind(u8),
}

/// The platform drivers of the firmware framebuffers: the only platform drivers the binder
/// ever unbinds or binds a device from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramebufferDriver {
    /// efifb's driver, of `efi-framebuffer.N` (drivers/video/fbdev/efifb.c).
    EfiFramebuffer,
    /// vesafb's driver, of `vesa-framebuffer.N`.
    VesaFramebuffer,
    /// simplefb's and simpledrm's driver name alike, of `simple-framebuffer.N`.
    SimpleFramebuffer,
}

impl FramebufferDriver {
    pub const ALL: [FramebufferDriver; 3] = [
        Self::EfiFramebuffer,
        Self::VesaFramebuffer,
        Self::SimpleFramebuffer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EfiFramebuffer => "efi-framebuffer",
            Self::VesaFramebuffer => "vesa-framebuffer",
            Self::SimpleFramebuffer => "simple-framebuffer",
        }
    }

    /// The driver whose devices are named `PREFIX.N`.
    pub fn of_device(device: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|driver| {
            device
                .strip_prefix(driver.name())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|number| {
                    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
                })
        })
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::DriverOverride(address) => {
                write!(f, "bus/pci/devices/{address}/driver_override")
            }
            Attribute::Unbind(address) => write!(f, "bus/pci/devices/{address}/driver/unbind"),
            Attribute::DriversProbe => f.write_str("bus/pci/drivers_probe"),
            Attribute::PlatformUnbind(driver) => {
                write!(f, "bus/platform/drivers/{}/unbind", driver.name())
            }
            Attribute::PlatformBind(driver) => {
                write!(f, "bus/platform/drivers/{}/bind", driver.name())
            }
            Attribute::VtconsoleBind(number) => write!(f, "class/vtconsole/vtcon{number}/bind"),
        }
    }
}

/// What a function is bound to: its override and its driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub driver_override: Option<DriverName>,
    pub driver: Option<DriverName>,
}

impl Binding {
    pub fn is_on(&self, driver: &str) -> bool {
        self.driver.as_deref() == Some(driver)
    }
}

/// A sysfs tree: `/sys`, or a fixture standing in for it, and the `/proc/iomem` read with it.
pub struct Sysfs {
    root: String<ROOT_CAPACITY>,
    real: bool,
    /// `/proc/iomem` for the real `/sys`; for a fixture, only the file a test gives.
    iomem: Option<String<ROOT_CAPACITY>>,
}

/// A platform device's name, e.g. `efi-framebuffer.0`.
pub type DeviceName = String<DRIVER_NAME_CAPACITY>;

/// The most firmware-framebuffer devices kept track of: a machine has one (efifb, vesafb
/// or simplefb, numbered `.0`), rarely a second.
pub const MAX_FRAMEBUFFER_DEVICES: usize = 4;

/// One virtual-console driver slot, `class/vtconsole/vtconN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vtconsole {
    pub number: u8,
    /// The framebuffer console: its `name` says "frame buffer device".
    pub framebuffer: bool,
    /// `bind` reads 1: the console driver holds virtual consoles.
    pub bound: bool,
}

/// The most virtual-console drivers read; the kernel has at most MAX_NR_CON_DRIVER (16).
pub const MAX_VTCONSOLES: usize = 16;

/// How many framebuffers the kernel numbers, `fb0` to `fb31` (FB_MAX in include/linux/fb.h).
const FB_MAX: u8 = 32;

/// Capacity of the buffer an attribute is read into; PCI attributes are a line each.
const ATTRIBUTE_CAPACITY: usize = 64;

impl Sysfs {
    /// `root` must be valid UTF-8 and at most [`ROOT_CAPACITY`] bytes.
    ///
    /// Whether it is the running kernel's sysfs is decided by what it is, not by how it is
    /// spelled: `//sys`, `/sys/`, `/./sys`, a symlink to `/sys` or a second sysfs mount all
    /// reach the kernel when written, so they all count as real (modules get loaded, the
    /// log goes to /dev/kmsg). A fixture tree lives on an ordinary filesystem.
    pub fn new(root: &Path) -> Result<Self, Errno> {
        let text = root.to_str().ok_or(Errno::EINVAL)?;
        let text = text
            .strip_suffix('/')
            .filter(|t| !t.is_empty())
            .unwrap_or(text);
        let mut stored = String::new();
        stored.push_str(text).map_err(|_| Errno::ENAMETOOLONG)?;
        // The running kernel's sysfs by what it is, not how it is spelled (`//sys`).
        let real = is_sysfs(root);
        Ok(Sysfs {
            real,
            root: stored,
            iomem: real.then(|| String::try_from("/proc/iomem").unwrap_or_default()),
        })
    }

    /// Reads the iomem tree from `path` instead (a fixture file, or another copy).
    pub fn with_iomem(mut self, path: &Path) -> Result<Self, Errno> {
        let text = path.to_str().ok_or(Errno::EINVAL)?;
        self.iomem = Some(String::try_from(text).map_err(|_| Errno::ENAMETOOLONG)?);
        Ok(self)
    }

    /// Where the iomem tree is read from; `None` for a fixture given none.
    pub fn iomem_path(&self) -> Option<&str> {
        self.iomem.as_deref()
    }

    /// Reads the iomem tree into `buffer`. `Ok(None)` when there is none to read (a fixture
    /// without one); an iomem larger than `buffer` is `EFBIG`, never read in part.
    pub fn read_iomem<'b>(&self, buffer: &'b mut [u8]) -> Result<Option<&'b str>, Errno> {
        let Some(path) = self.iomem.as_deref() else {
            return Ok(None);
        };
        let fd = open_file(path, OFlag::O_RDONLY)?;
        let mut length = 0;
        // A seq_file hands out a page or so per read(): read to the end.
        loop {
            if length == buffer.len() {
                return Err(Errno::EFBIG);
            }
            match nix::unistd::read(fd.as_fd(), &mut buffer[length..]) {
                Ok(0) => break,
                Ok(read) => length += read,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno),
            }
        }
        core::str::from_utf8(&buffer[..length])
            .map(Some)
            .map_err(|_| Errno::EILSEQ)
    }

    /// The devices bound now to a framebuffer driver (`DRIVER.N` entries of its directory).
    pub fn platform_devices_of(
        &self,
        driver: FramebufferDriver,
    ) -> heapless::Vec<DeviceName, MAX_FRAMEBUFFER_DEVICES> {
        let mut found = heapless::Vec::new();
        let Ok(path) = self.path(format_args!("bus/platform/drivers/{}", driver.name())) else {
            return found;
        };
        let _ = for_each_entry(path.as_str(), |name| {
            let Ok(name) = core::str::from_utf8(name) else {
                return;
            };
            if FramebufferDriver::of_device(name) == Some(driver) {
                if let Ok(name) = DeviceName::try_from(name) {
                    let _ = found.push(name);
                }
            }
        });
        found
    }

    /// Firmware-framebuffer platform devices that no driver holds now.
    pub fn unbound_framebuffer_devices(
        &self,
    ) -> heapless::Vec<DeviceName, MAX_FRAMEBUFFER_DEVICES> {
        let mut found: heapless::Vec<DeviceName, MAX_FRAMEBUFFER_DEVICES> = heapless::Vec::new();
        let Ok(path) = self.path(format_args!("bus/platform/devices")) else {
            return found;
        };
        let _ = for_each_entry(path.as_str(), |name| {
            let Some(name) = core::str::from_utf8(name)
                .ok()
                .filter(|name| FramebufferDriver::of_device(name).is_some())
                .and_then(|name| DeviceName::try_from(name).ok())
            else {
                return;
            };
            let _ = found.push(name);
        });
        found.retain(|name| {
            self.link_name(format_args!("bus/platform/devices/{name}/driver"))
                .is_none()
        });
        found
    }

    /// The virtual-console drivers, in number order.
    pub fn vtconsoles(&self) -> heapless::Vec<Vtconsole, MAX_VTCONSOLES> {
        let mut found = heapless::Vec::new();
        for number in 0..MAX_VTCONSOLES as u8 {
            let read = |name: &str, check: &dyn Fn(&str) -> bool| -> Option<bool> {
                let path = self
                    .path(format_args!("class/vtconsole/vtcon{number}/{name}"))
                    .ok()?;
                let mut buffer = [0u8; ATTRIBUTE_CAPACITY];
                read_attribute(&path, &mut buffer).ok().map(check)
            };
            // `name` reads e.g. "(M) frame buffer device" (drivers/tty/vt/vt.c).
            // Numbers can have gaps when a console driver was unregistered: look at each.
            let Some(framebuffer) = read("name", &|text| text.contains("frame buffer device"))
            else {
                continue;
            };
            let bound = read("bind", &|text| text.trim_end() == "1").unwrap_or(false);
            let _ = found.push(Vtconsole {
                number,
                framebuffer,
                bound,
            });
        }
        found
    }

    /// The device behind the lowest-numbered framebuffer (`class/graphics/fbN/device`):
    /// a PCI address for a GPU driver's framebuffer, `efi-framebuffer.0` for efifb's. The
    /// framebuffer console draws on that one unless told otherwise (`fbcon=map:`), see
    /// drivers/video/fbdev/core/fbcon.c.
    pub fn console_framebuffer_device(&self) -> Option<DeviceName> {
        // The directory lists the framebuffers there are: one listing, then a link read for
        // each of those, rather than one for each of the FB_MAX numbers.
        let path = self.path(format_args!("class/graphics")).ok()?;
        let mut present: u32 = 0;
        for_each_entry(path.as_str(), |name| {
            let number = name
                .strip_prefix(b"fb")
                .and_then(|digits| core::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse::<u8>().ok())
                .filter(|number| *number < FB_MAX);
            if let Some(number) = number {
                present |= 1 << number;
            }
        })
        .ok()?;
        (0..FB_MAX)
            .filter(|number| present & (1 << number) != 0)
            .find_map(|number| self.link_name(format_args!("class/graphics/fb{number}/device")))
    }

    /// Whether this is the running kernel's sysfs (and not a fixture).
    pub fn is_real(&self) -> bool {
        self.real
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// `ROOT/` followed by `relative`, in a fixed buffer.
    pub fn path(&self, relative: fmt::Arguments<'_>) -> Result<PathBuffer, Errno> {
        let mut path = PathBuffer::new();
        write!(path, "{}/{}", self.root, relative).map_err(|_| Errno::ENAMETOOLONG)?;
        Ok(path)
    }

    /// Whether the IOMMU is on: `kernel/iommu_groups` has at least one group.
    pub fn iommu_enabled(&self) -> bool {
        let Ok(path) = self.path(format_args!("kernel/iommu_groups")) else {
            return false;
        };
        has_entry(path.as_str())
    }

    /// Whether the vfio module runs without an IOMMU: its `enable_unsafe_noiommu_mode`
    /// parameter reads `Y` (kernels built with CONFIG_VFIO_NOIOMMU, vfio loaded so).
    pub fn vfio_noiommu_mode(&self) -> bool {
        let mut buffer = [0u8; ATTRIBUTE_CAPACITY];
        self.path(format_args!(
            "module/vfio/parameters/enable_unsafe_noiommu_mode"
        ))
        .ok()
        .and_then(|path| read_attribute(&path, &mut buffer).ok())
        .is_some_and(|value| value.starts_with(['Y', 'y', '1']))
    }

    /// Whether a PCI driver of this name is registered with the kernel.
    pub fn driver_registered(&self, name: &str) -> bool {
        self.path(format_args!("bus/pci/drivers/{name}"))
            .is_ok_and(|path| nix::sys::stat::stat(path.as_str()).is_ok())
    }

    /// Calls `visit` with every PCI function, in directory order. Entries whose names are
    /// not PCI addresses are passed over.
    pub fn for_each_function(&self, visit: impl FnMut(&Function)) -> Result<(), Errno> {
        self.for_each_function_where(|_| true, visit)
    }

    pub fn for_each_function_where(
        &self,
        wanted: impl Fn(PciAddress) -> bool,
        mut visit: impl FnMut(&Function),
    ) -> Result<(), Errno> {
        let path = self.path(format_args!("bus/pci/devices"))?;
        for_each_entry(path.as_str(), |name| {
            let Some(address) = core::str::from_utf8(name)
                .ok()
                .and_then(|name| name.parse::<PciAddress>().ok())
            else {
                return;
            };
            if !wanted(address) {
                return;
            }
            // A device can vanish between the listing and the read: pass it over.
            if let Some(function) = self.read_function(address) {
                visit(&function);
            }
        })
    }

    /// Whether `bus/pci/devices` is there to be read (a `stat`); the error if not, as
    /// listing it would give.
    pub fn devices_listable(&self) -> Result<(), Errno> {
        let path = self.path(format_args!("bus/pci/devices"))?;
        let status = nix::sys::stat::stat(path.as_str())?;
        if status.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR {
            Ok(())
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    /// The driver a function is bound to now (its `driver` link), and nothing else read.
    pub fn driver_of(&self, address: PciAddress) -> Option<DriverName> {
        self.link_name(format_args!("bus/pci/devices/{address}/driver"))
    }

    /// A function's `driver_override` and driver now, for the reads after a write (three
    /// system calls and a readlink, where [`Sysfs::read_function`] makes about twenty);
    /// `None` if the function is gone.
    pub fn binding_of(&self, address: PciAddress) -> Option<Binding> {
        let path = self
            .path(format_args!("bus/pci/devices/{address}/driver_override"))
            .ok()?;
        let mut buffer = [0u8; ATTRIBUTE_CAPACITY];
        let driver_override = match read_attribute(&path, &mut buffer) {
            Ok(text) => Some(text.trim_end())
                .filter(|text| !text.is_empty() && *text != "(null)")
                .and_then(|text| DriverName::try_from(text).ok()),
            Err(Errno::ENOENT | Errno::ENODEV) => return None,
            // Unreadable, not gone: the function is there, its override unknown.
            Err(_) => None,
        };
        Some(Binding {
            driver_override,
            driver: self.driver_of(address),
        })
    }

    /// Reads one function's attributes; `None` if it does not exist.
    pub fn read_function(&self, address: PciAddress) -> Option<Function> {
        let device = self.path(format_args!("bus/pci/devices/{address}")).ok()?;
        if nix::sys::stat::stat(device.as_str()).is_err() {
            return None;
        }
        let read_hex = |name: &str| -> Option<u32> {
            let mut buffer = [0u8; ATTRIBUTE_CAPACITY];
            let path = self
                .path(format_args!("bus/pci/devices/{address}/{name}"))
                .ok()?;
            read_attribute(&path, &mut buffer)
                .ok()
                .and_then(parse_sysfs_hex)
        };
        let pair =
            |vendor: Option<u32>, device: Option<u32>| PciIds::from_attributes(vendor?, device?);
        let ids = pair(read_hex("vendor"), read_hex("device"));
        let subsystem = pair(read_hex("subsystem_vendor"), read_hex("subsystem_device"));
        let class = read_hex("class");
        let driver = self.link_name(format_args!("bus/pci/devices/{address}/driver"));
        let iommu_group = self
            .link_name(format_args!("bus/pci/devices/{address}/iommu_group"))
            .and_then(|name| name.parse().ok());
        let mut buffer = [0u8; ATTRIBUTE_CAPACITY];
        let driver_override = self
            .path(format_args!("bus/pci/devices/{address}/driver_override"))
            .ok()
            .and_then(|path| read_attribute(&path, &mut buffer).ok().map(str::trim_end))
            .filter(|text| !text.is_empty() && *text != "(null)")
            .and_then(|text| DriverName::try_from(text).ok());
        let mut buffer = [0u8; ATTRIBUTE_CAPACITY];
        let boot_vga = self
            .path(format_args!("bus/pci/devices/{address}/boot_vga"))
            .ok()
            .and_then(|path| read_attribute(&path, &mut buffer).ok().map(str::trim_end))
            == Some("1");
        Some(Function {
            address,
            ids,
            subsystem,
            class,
            driver,
            driver_override,
            iommu_group,
            boot_vga,
        })
    }

    /// Every function of a slot or the one function a location names, in address order.
    pub fn functions_at(&self, location: Location) -> heapless::Vec<Function, FUNCTIONS_PER_SLOT> {
        let mut found = heapless::Vec::new();
        let slot = match location {
            Location::Slot(slot) => slot,
            Location::Function(address) => address.slot_address(),
        };
        for address in slot
            .functions()
            .filter(|address| location.contains(*address))
        {
            if let Some(function) = self.read_function(address) {
                let _ = found.push(function);
            }
        }
        found
    }

    /// The target of `bus/pci/devices/ADDR`, e.g.
    /// `../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0`, read into `buffer`.
    pub fn device_link<'b>(
        &self,
        address: PciAddress,
        buffer: &'b mut [u8; PATH_CAPACITY],
    ) -> Option<&'b str> {
        let path = self.path(format_args!("bus/pci/devices/{address}")).ok()?;
        read_link(&path, buffer).ok()
    }

    /// The last component of a symlink's target (e.g. `amdgpu` for a `driver` link).
    fn link_name(&self, relative: fmt::Arguments<'_>) -> Option<DriverName> {
        let path = self.path(relative).ok()?;
        let mut buffer = [0u8; PATH_CAPACITY];
        let target = read_link(&path, &mut buffer).ok()?;
        let name = target.rsplit('/').next()?;
        DriverName::try_from(name).ok()
    }

    /// Writes `value` to an attribute in one `write()`, as `echo value > file` does.
    pub fn write(&self, attribute: Attribute, value: &str) -> Result<(), Errno> {
        let path = self.path(format_args!("{attribute}"))?;
        let fd = open_file(path.as_str(), OFlag::O_WRONLY | OFlag::O_TRUNC)?;
        let written = nix::unistd::write(fd.as_fd(), value.as_bytes())?;
        if written == value.len() {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }
}

/// Whether `path` is on a sysfs mount (`statfs()` reports `SYSFS_MAGIC`).
fn is_sysfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|status| status.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC)
}

/// Calls `visit` with the name of every entry of a directory but `.` and `..`.
///
/// `readdir(3)` directly, because nix's `Dir` iterator copies each name to the heap. The
/// name lent to `visit` lives in the `DIR`'s own buffer until the next `readdir`.
pub fn for_each_entry<P: ?Sized + NixPath>(
    path: &P,
    mut visit: impl FnMut(&[u8]),
) -> Result<(), Errno> {
    struct OpenDir(core::ptr::NonNull<nix::libc::DIR>);
    impl Drop for OpenDir {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful opendir and is closed only here.
            unsafe { nix::libc::closedir(self.0.as_ptr()) };
        }
    }
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    let dir = path.with_nix_path(|c_path| unsafe { nix::libc::opendir(c_path.as_ptr()) })?;
    let dir = OpenDir(core::ptr::NonNull::new(dir).ok_or_else(Errno::last)?);
    loop {
        Errno::clear();
        // SAFETY: `dir` is an open DIR; the entry it returns is valid until the next call on
        // it, and `d_name` is NUL-terminated within the entry.
        let entry = unsafe { nix::libc::readdir(dir.0.as_ptr()) };
        if entry.is_null() {
            return match Errno::last_raw() {
                0 => Ok(()),
                raw => Err(Errno::from_raw(raw)),
            };
        }
        // SAFETY: as above; the borrow ends before the next readdir. The name is reached
        // through a raw pointer, never a reference to the whole `d_name` array: the kernel
        // may back less than the array's declared 256 bytes (a record is as long as its
        // name), so a reference to all of it would claim memory that is not there.
        let name = unsafe {
            let name = core::ptr::addr_of!((*entry).d_name).cast::<core::ffi::c_char>();
            core::ffi::CStr::from_ptr(name)
        }
        .to_bytes();
        if name != b"." && name != b".." {
            visit(name);
        }
    }
}

/// Whether a directory has an entry but `.` and `..`: read until the first one, not to the
/// end (the IOMMU group directory of a large machine takes several reads).
fn has_entry(path: &str) -> bool {
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    let Ok(dir) = path.with_nix_path(|c_path| unsafe { nix::libc::opendir(c_path.as_ptr()) })
    else {
        return false;
    };
    if dir.is_null() {
        return false;
    }
    let mut found = false;
    loop {
        // SAFETY: `dir` is an open DIR; `d_name` is NUL-terminated within the entry, read
        // through a raw pointer as in `for_each_entry`.
        let entry = unsafe { nix::libc::readdir(dir) };
        if entry.is_null() {
            break;
        }
        let name = unsafe {
            let name = core::ptr::addr_of!((*entry).d_name).cast::<core::ffi::c_char>();
            core::ffi::CStr::from_ptr(name)
        }
        .to_bytes();
        if name != b"." && name != b".." {
            found = true;
            break;
        }
    }
    // SAFETY: `dir` came from a successful opendir and is closed once, here.
    unsafe { nix::libc::closedir(dir) };
    found
}

/// Opens a file close-on-exec with `openat(AT_FDCWD, ...)`: musl's `open()` follows every
/// `O_CLOEXEC` open with an `fcntl(F_SETFD)` (for kernels older than 2.6.23), its
/// `openat()` does not, which saves a system call on every attribute read and written.
fn open_file(path: &str, flags: OFlag) -> Result<std::os::fd::OwnedFd, Errno> {
    openat(AT_FDCWD, path, flags | OFlag::O_CLOEXEC, Mode::empty())
}

/// Reads a small attribute file in one `read()` (sysfs returns a whole attribute at once).
pub fn read_attribute<'b>(path: &str, buffer: &'b mut [u8]) -> Result<&'b str, Errno> {
    let fd = open_file(path, OFlag::O_RDONLY)?;
    let length = nix::unistd::read(fd.as_fd(), buffer)?;
    core::str::from_utf8(&buffer[..length]).map_err(|_| Errno::EILSEQ)
}

/// `readlink(2)` into a caller's buffer; nix's own `readlink` returns a heap `OsString`.
fn read_link<'b>(path: &PathBuffer, buffer: &'b mut [u8]) -> Result<&'b str, Errno> {
    let result = path.as_str().with_nix_path(|c_path| {
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and the kernel
        // writes at most `buffer.len()` bytes into `buffer`, which we own mutably.
        unsafe { nix::libc::readlink(c_path.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) }
    })?;
    let length = Errno::result(result)? as usize;
    if length == buffer.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    core::str::from_utf8(&buffer[..length]).map_err(|_| Errno::EILSEQ)
}
