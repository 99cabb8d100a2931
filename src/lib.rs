//! vfio-bind: hands chosen PCI functions to vfio-pci at early boot, by address.
//!
//! Pure logic (`address`, `rule`, `cmdline`, `plan`) is kept apart from I/O (`sysfs`,
//! `kmsg`, `apply`), so that everything that decides can be tested without a kernel.

pub mod address;
pub mod apply;
pub mod bootfb;
pub mod cmdline;
pub mod doctor;
pub mod host;
pub mod image;
pub mod iomem;
pub mod json;
pub mod kmsg;
pub mod lock;
pub mod modprobe;
pub mod pciids;
pub mod plan;
pub mod report;
pub mod rule;
pub mod sources;
pub mod sysfs;
pub mod topology;
pub mod watchdog;
