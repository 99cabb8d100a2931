//! The kernel side of the boot path: the sysfs writes and module loads `apply`, `bind` and
//! `release` ask for, behind one trait, so that tests can put a simulated kernel there and
//! the supervisor (`watchdog`) a kernel that reports each step it starts.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::boot::modprobe::{ModuleError, MODPROBE_LIMIT};
use crate::machine::function::VFIO_PCI;
use crate::machine::sysfs::{Attribute, Sysfs};
use crate::rules::address::PciAddress;

/// The kernel side of apply: writes to sysfs and module loading. Tests put a simulated
/// kernel here; [`RunningKernel`] is the real one.
pub trait Kernel {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno>;
    /// Loads a module; `Err` carries a short reason.
    fn load_module(&mut self, module: &str) -> Result<(), ModuleError>;
    /// Whether modules may be loaded at all (only on the real /sys).
    fn may_load_modules(&self) -> bool;
}

/// Time kept back from a `modprobe` for giving the cards back after it failed, so that the
/// give-back itself is never what the supervisor's deadline cuts short.
pub const GIVE_BACK_RESERVE: Duration = Duration::from_secs(1);

/// The modprobe binaries tried, in order: kmod's and busybox's usual places.
const MODPROBE_PATHS: [&str; 4] = [
    "/usr/sbin/modprobe",
    "/sbin/modprobe",
    "/usr/bin/modprobe",
    "/bin/modprobe",
];

/// The running kernel: files written for real, modules loaded with modprobe.
pub struct RunningKernel {
    pub modules_allowed: bool,
    /// When the work must be over (the supervisor's deadline): a modprobe is cut short
    /// to end [`GIVE_BACK_RESERVE`] before it. `None`: no deadline but the modprobe's own.
    pub deadline: Option<Instant>,
}

impl RunningKernel {
    /// `MODPROBE_LIMIT`, or less near the deadline.
    fn modprobe_limit(&self) -> Duration {
        match self.deadline {
            Some(deadline) => MODPROBE_LIMIT.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .saturating_sub(GIVE_BACK_RESERVE),
            ),
            None => MODPROBE_LIMIT,
        }
    }
}

impl Kernel for RunningKernel {
    fn write(&mut self, sysfs: &Sysfs, attribute: Attribute, value: &str) -> Result<(), Errno> {
        sysfs.write(attribute, value)
    }

    fn load_module(&mut self, module: &str) -> Result<(), ModuleError> {
        let modprobe = MODPROBE_PATHS
            .iter()
            .find(|path| Path::new(path).exists())
            .ok_or(ModuleError::NoModprobe)?;
        crate::boot::modprobe::run(Path::new(modprobe), module, self.modprobe_limit())
    }

    fn may_load_modules(&self) -> bool {
        self.modules_allowed
    }
}

/// Gives one function back to its own driver: clears its override, unbinds it from
/// vfio-pci if it is there, and probes it so that its own driver (if loaded) takes it. Each
/// step is tried whatever the last; what it reached is for the caller to read back.
pub fn give_back(sysfs: &Sysfs, kernel: &mut dyn Kernel, address: PciAddress) {
    let text = address_text(address);
    let _ = kernel.write(sysfs, Attribute::DriverOverride(address), "\n");
    if sysfs.driver_of(address).as_deref() == Some(VFIO_PCI) {
        let _ = kernel.write(sysfs, Attribute::Unbind(address), &text);
    }
    let _ = kernel.write(sysfs, Attribute::DriversProbe, &text);
}

/// A function's address as sysfs attributes take it, heap-free.
pub fn address_text(address: PciAddress) -> heapless::String<16> {
    let mut text = heapless::String::new();
    let _ = core::fmt::write(&mut text, format_args!("{address}"));
    text
}
