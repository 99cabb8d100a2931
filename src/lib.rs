//! vfio-bind: hands chosen PCI functions to vfio-pci at early boot, by address.
//!
//! Pure logic (`address`, `rule`, `cmdline`, `plan`) is kept apart from I/O (`sysfs`,
//! `kmsg`, `apply`), so that everything that decides can be tested without a kernel.

pub mod address;
pub mod cmdline;
pub mod rule;
