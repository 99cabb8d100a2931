//! What one PCI function is, as the binder sees it: its address, identity, class and
//! drivers. Pure data, read by `sysfs` and judged by `plan`, so that planning never
//! depends on how the facts were read.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

use heapless::String;

use crate::rules::address::{PciAddress, PciIds};

/// Longest driver name kept; kernel driver names are far shorter.
pub const DRIVER_NAME_CAPACITY: usize = 48;

/// A driver's name, e.g. `amdgpu`, in a fixed buffer.
pub type DriverName = String<DRIVER_NAME_CAPACITY>;

/// The driver every rule hands functions to.
pub const VFIO_PCI: &str = "vfio-pci";

/// The base class of display controllers (PCI Code and ID Assignment, class 03h).
pub const CLASS_DISPLAY: u8 = 0x03;
/// The base class and subclass of a VGA-compatible display controller (03h, 00h).
pub const CLASS_VGA: u16 = 0x0300;
/// The base class and subclass of a PCI-to-PCI bridge (06h, 04h).
pub const CLASS_PCI_BRIDGE: u16 = 0x0604;
/// The base class and subclass of a CardBus bridge (06h, 07h).
pub const CLASS_CARDBUS_BRIDGE: u16 = 0x0607;

/// The base class and subclass of a `class` attribute, which reads base class, subclass
/// and programming interface a byte each (`0x030000`).
pub fn base_and_subclass(class: u32) -> u16 {
    (class >> 8) as u16
}

/// The base class of a `class` attribute: its top byte of three.
pub fn base_class(class: u32) -> u8 {
    (class >> 16) as u8
}

/// One PCI function as sysfs shows it at the moment it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub address: PciAddress,
    /// `None` when `vendor` or `device` could not be read.
    pub ids: Option<PciIds>,
    /// `subsystem_vendor` and `subsystem_device`; `None` when either could not be read.
    pub subsystem: Option<PciIds>,
    /// `None` when `class` could not be read.
    pub class: Option<u32>,
    /// The bound driver, from the `driver` link.
    pub driver: Option<DriverName>,
    /// `driver_override`, `None` when the kernel shows `(null)`.
    pub driver_override: Option<DriverName>,
    /// The IOMMU group number, from the `iommu_group` link.
    pub iommu_group: Option<u32>,
    /// `boot_vga` reads 1: the firmware's console display.
    pub boot_vga: bool,
}

impl Function {
    /// PCI-to-PCI and CardBus bridges (class 0x0604, 0x0607): vfio-pci refuses them.
    pub fn is_bridge(&self) -> bool {
        self.class.is_some_and(is_bridge_class)
    }

    pub fn is_on(&self, driver: &str) -> bool {
        self.driver.as_deref() == Some(driver)
    }

    pub fn overridden_to(&self, driver: &str) -> bool {
        self.driver_override.as_deref() == Some(driver)
    }
}

/// PCI-to-PCI and CardBus bridges: class 0x0604xx, 0x0607xx.
pub fn is_bridge_class(class: u32) -> bool {
    matches!(
        base_and_subclass(class),
        CLASS_PCI_BRIDGE | CLASS_CARDBUS_BRIDGE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_are_told_by_base_class_and_subclass_whatever_the_interface() {
        assert!(is_bridge_class(0x060400));
        assert!(is_bridge_class(0x060401));
        assert!(is_bridge_class(0x060700));
        assert!(!is_bridge_class(0x060000));
        assert!(!is_bridge_class(0x030000));
        assert!(!is_bridge_class(0x0604));
    }

    #[test]
    fn a_class_attribute_splits_into_base_class_and_subclass() {
        assert_eq!(base_and_subclass(0x030200), 0x0302);
        assert_eq!(base_class(0x030200), CLASS_DISPLAY);
        assert_eq!(base_and_subclass(0x030001), CLASS_VGA);
    }
}
