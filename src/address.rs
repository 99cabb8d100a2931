//! Typed PCI addresses and vendor:device IDs, parsed strictly.
//!
//! Sysfs names a function `DDDD:BB:SS.F` (see the kernel's `pci_setup_device()`, which
//! formats `"%04x:%02x:%02x.%d"`). Domains above 0xffff exist (Intel VMD puts its child
//! buses at 0x10000 and up), so a domain is 4 to 8 hex digits; bus and slot are exactly 2,
//! the function exactly 1. Nothing else parses, which is what keeps text from the command
//! line from ever naming a path outside `/sys/bus/pci/devices/`.

use core::fmt;
use core::str::FromStr;

/// Why an address or ID text was refused. Each variant reads as the end of a sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The domain is not 4 to 8 hex digits.
    Domain,
    /// The bus is not 2 hex digits.
    Bus,
    /// The slot is not 2 hex digits from 00 to 1f.
    Slot,
    /// The function is not one digit from 0 to 7.
    Function,
    /// The text has the wrong number of `:`/`.` separated parts.
    Shape,
    /// The vendor ID is not 4 hex digits.
    Vendor,
    /// The device ID is not 4 hex digits.
    Device,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Domain => "the PCI domain must be 4 hex digits",
            AddressError::Bus => "the bus must be 2 hex digits",
            AddressError::Slot => "the slot must be 2 hex digits from 00 to 1f",
            AddressError::Function => "the function must be one digit from 0 to 7",
            AddressError::Shape => "an address is [DDDD:]BB:SS[.F]",
            AddressError::Vendor => "the vendor ID must be 4 hex digits",
            AddressError::Device => "the device ID must be 4 hex digits",
        })
    }
}

/// Parses exactly `digits_min..=digits_max` ASCII hex digits, nothing else (no sign, no `0x`).
fn parse_hex(text: &str, digits_min: usize, digits_max: usize) -> Option<u32> {
    if text.len() < digits_min || text.len() > digits_max {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// A PCI slot: every function of one card sits in it. `DDDD:BB:SS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotAddress {
    pub domain: u32,
    pub bus: u8,
    pub slot: u8,
}

/// One PCI function, as sysfs names it. `DDDD:BB:SS.F`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl PciAddress {
    pub fn slot_address(&self) -> SlotAddress {
        SlotAddress {
            domain: self.domain,
            bus: self.bus,
            slot: self.slot,
        }
    }
}

impl fmt::Display for SlotAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}", self.domain, self.bus, self.slot)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.slot_address(), self.function)
    }
}

/// Where a rule points: a whole card (slot) or one function of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Slot(SlotAddress),
    Function(PciAddress),
}

impl Location {
    pub fn contains(&self, address: PciAddress) -> bool {
        match self {
            Location::Slot(slot) => address.slot_address() == *slot,
            Location::Function(function) => address == *function,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Slot(slot) => slot.fmt(f),
            Location::Function(function) => function.fmt(f),
        }
    }
}

/// Parses `[DDDD:]BB:SS[.F]`: the grammar of a rule's address, and (with every part present)
/// the name of a sysfs device directory.
impl FromStr for Location {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (slot_text, function_text) = match text.split_once('.') {
            Some((slot, function)) => (slot, Some(function)),
            None => (text, None),
        };
        let mut parts = slot_text.split(':');
        let (first, second, third) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(AddressError::Shape);
        }
        let (domain_text, bus_text, slot_number_text) = match (first, second, third) {
            (Some(domain), Some(bus), Some(slot)) => (Some(domain), bus, slot),
            (Some(bus), Some(slot), None) => (None, bus, slot),
            _ => return Err(AddressError::Shape),
        };
        let domain = match domain_text {
            Some(domain) => parse_hex(domain, 4, 8).ok_or(AddressError::Domain)?,
            None => 0,
        };
        let bus = parse_hex(bus_text, 2, 2).ok_or(AddressError::Bus)? as u8;
        let slot = parse_hex(slot_number_text, 2, 2)
            .filter(|slot| *slot <= 0x1f)
            .ok_or(AddressError::Slot)? as u8;
        let slot = SlotAddress { domain, bus, slot };
        match function_text {
            None => Ok(Location::Slot(slot)),
            Some(function_text) => {
                let function = match function_text.as_bytes() {
                    [digit @ b'0'..=b'7'] => digit - b'0',
                    _ => return Err(AddressError::Function),
                };
                Ok(Location::Function(PciAddress {
                    domain: slot.domain,
                    bus: slot.bus,
                    slot: slot.slot,
                    function,
                }))
            }
        }
    }
}

impl FromStr for PciAddress {
    type Err = AddressError;

    /// Accepts `[DDDD:]BB:SS.F`; the function is required.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<Location>()? {
            Location::Function(address) => Ok(address),
            Location::Slot(_) => Err(AddressError::Function),
        }
    }
}

/// A vendor:device ID pair, as `lspci -nn` and `vfio-pci.ids=` write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
}

impl fmt::Display for PciIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

impl FromStr for PciIds {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (vendor, device) = text.split_once(':').ok_or(AddressError::Vendor)?;
        Ok(PciIds {
            vendor: parse_hex(vendor, 4, 4).ok_or(AddressError::Vendor)? as u16,
            device: parse_hex(device, 4, 4).ok_or(AddressError::Device)? as u16,
        })
    }
}

/// Parses a sysfs hex attribute such as `0x1002\n` or `0x030000\n`.
pub fn parse_sysfs_hex(text: &str) -> Option<u32> {
    let digits = text.trim_end().strip_prefix("0x")?;
    parse_hex(digits, 1, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_names_round_trip() {
        for name in [
            "0000:07:00.1",
            "0000:00:1f.7",
            "10000:e1:00.0",
            "abcd:ff:1f.0",
        ] {
            let address: PciAddress = name.parse().unwrap();
            assert_eq!(address.to_string(), name);
        }
    }

    #[test]
    fn short_forms_take_domain_zero_and_any_case() {
        let location: Location = "0A:1F".parse().unwrap();
        assert_eq!(location.to_string(), "0000:0a:1f");
        assert!(matches!(location, Location::Slot(_)));
        let location: Location = "07:00.1".parse().unwrap();
        assert_eq!(location.to_string(), "0000:07:00.1");
    }

    #[test]
    fn strictness() {
        let cases = [
            ("7:00", AddressError::Bus),
            ("07:0", AddressError::Slot),
            ("07:20", AddressError::Slot),
            ("07:00.8", AddressError::Function),
            ("07:00.", AddressError::Function),
            ("07:00.10", AddressError::Function),
            ("000:07:00", AddressError::Domain),
            ("0:0:07:00", AddressError::Shape),
            ("07", AddressError::Shape),
            ("", AddressError::Shape),
            ("+7:00", AddressError::Bus),
            ("../../x", AddressError::Shape),
            ("0x07:00", AddressError::Bus),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<Location>(), Err(error), "{text:?}");
        }
    }

    #[test]
    fn ids() {
        let ids: PciIds = "1002:AB28".parse().unwrap();
        assert_eq!(ids.to_string(), "1002:ab28");
        assert_eq!("1002:ab2".parse::<PciIds>(), Err(AddressError::Device));
        assert_eq!("102:ab28".parse::<PciIds>(), Err(AddressError::Vendor));
        assert_eq!("1002".parse::<PciIds>(), Err(AddressError::Vendor));
        assert_eq!(parse_sysfs_hex("0x030000\n"), Some(0x030000));
        assert_eq!(parse_sysfs_hex("1002"), None);
    }
}
