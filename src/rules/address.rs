//! Typed PCI addresses and vendor:device IDs, parsed strictly.
//!
//! Sysfs names a function `DDDD:BB:SS.F` (see the kernel's `pci_setup_device()`, which
//! formats `"%04x:%02x:%02x.%d"`). Domains above 0xffff exist (Intel VMD puts its child
//! buses at 0x10000 and up), so a domain is 4 to 8 hex digits; bus and slot are exactly 2,
//! the function exactly 1. Nothing else parses, which is what keeps text from the command
//! line from ever naming a path outside `/sys/bus/pci/devices/`.
//!
//! A card can also be named by its path below a root bus, in the syntax of the kernel's own
//! `pci=` device specifiers (Documentation/admin-guide/kernel-parameters.txt):
//! `[DDDD:]BB:SS.F/SS.F[/SS.F]...`, the root-bus function followed by the slot and function
//! of each device below it. Bus numbers move when a card is added in an earlier slot; a path
//! does not, which is what tells identical cards apart for good. Parsing a path is pure:
//! [`crate::boot::topology`] walks sysfs to find where it leads.
//!
//! Pure: it reads and writes nothing, and imports only pure modules (`tests/layering.rs`).

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
    /// The subsystem IDs after the device ID are not `SSSS:ssss`.
    Subsystem,
    /// A hop below a path's root is not `SS.F` (or `SS`, last).
    Hop,
    /// A path has more than [`MAX_HOPS`] hops.
    TooManyHops,
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
            AddressError::Subsystem => {
                "the subsystem IDs after VVVV:DDDD must be SSSS:ssss, 4 hex digits each"
            }
            AddressError::Hop => {
                "each hop of a path is SS.F (slot 00-1f, function 0-7); only the last may be a whole slot, SS"
            }
            AddressError::TooManyHops => "a path has at most 8 hops below its root-bus function",
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

/// The highest slot (device) number on a bus: a slot number is 5 bits.
pub const MAX_SLOT: u8 = 0x1f;
/// The highest function number in a slot: a function number is 3 bits.
pub const MAX_FUNCTION: u8 = 7;
/// How many functions a slot has room for (without ARI, which the kernel still names so).
pub const FUNCTIONS_PER_SLOT: usize = MAX_FUNCTION as usize + 1;

/// `text` split at the first `separator`, or all of it and `None`: an optional part, as
/// the `.F` of `BB:SS.F`.
fn split_optional(text: &str, separator: char) -> (&str, Option<&str>) {
    match text.split_once(separator) {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    }
}

/// Writes `separator` and `part` when there is a part: what [`split_optional`] reads.
fn write_optional(
    f: &mut fmt::Formatter<'_>,
    separator: char,
    part: Option<impl fmt::Display>,
) -> fmt::Result {
    match part {
        Some(part) => write!(f, "{separator}{part}"),
        None => Ok(()),
    }
}

/// Parses a two-digit hex slot number, at most [`MAX_SLOT`].
fn parse_slot(text: &str) -> Option<u8> {
    parse_hex(text, 2, 2)
        .filter(|slot| *slot <= u32::from(MAX_SLOT))
        .map(|slot| slot as u8)
}

/// Parses a one-digit function number, at most [`MAX_FUNCTION`].
fn parse_function(text: &str) -> Option<u8> {
    match text.as_bytes() {
        [digit @ b'0'..=b'9'] if digit - b'0' <= MAX_FUNCTION => Some(digit - b'0'),
        _ => None,
    }
}

/// A PCI slot: every function of one card sits in it. `DDDD:BB:SS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotAddress {
    domain: u32,
    bus: u8,
    slot: u8,
}

/// One PCI function, as sysfs names it. `DDDD:BB:SS.F`. Ordered as sysfs lists them:
/// by slot, then function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    slot: SlotAddress,
    function: u8,
}

impl SlotAddress {
    /// `None` when `slot` is above [`MAX_SLOT`].
    pub const fn new(domain: u32, bus: u8, slot: u8) -> Option<Self> {
        if slot > MAX_SLOT {
            return None;
        }
        Some(SlotAddress { domain, bus, slot })
    }

    /// Function `function` of this slot; `None` when it is above [`MAX_FUNCTION`].
    pub const fn function(self, function: u8) -> Option<PciAddress> {
        if function > MAX_FUNCTION {
            return None;
        }
        Some(PciAddress {
            slot: self,
            function,
        })
    }

    /// Every function address the slot has room for, 0 to [`MAX_FUNCTION`].
    pub fn functions(self) -> impl Iterator<Item = PciAddress> {
        (0..=MAX_FUNCTION).filter_map(move |function| self.function(function))
    }

    pub const fn domain(self) -> u32 {
        self.domain
    }

    pub const fn bus(self) -> u8 {
        self.bus
    }

    /// The slot (device) number, 0 to [`MAX_SLOT`].
    pub const fn slot(self) -> u8 {
        self.slot
    }
}

impl PciAddress {
    /// `None` when `slot` is above [`MAX_SLOT`] or `function` above [`MAX_FUNCTION`].
    pub const fn new(domain: u32, bus: u8, slot: u8, function: u8) -> Option<Self> {
        match SlotAddress::new(domain, bus, slot) {
            Some(slot) => slot.function(function),
            None => None,
        }
    }

    pub fn slot_address(&self) -> SlotAddress {
        self.slot
    }

    pub const fn domain(self) -> u32 {
        self.slot.domain
    }

    pub const fn bus(self) -> u8 {
        self.slot.bus
    }

    /// The slot (device) number, 0 to [`MAX_SLOT`].
    pub const fn slot(self) -> u8 {
        self.slot.slot
    }

    /// The function number, 0 to [`MAX_FUNCTION`].
    pub const fn function(self) -> u8 {
        self.function
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
        let (slot_text, function_text) = split_optional(text, '.');
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
        let slot = parse_slot(slot_number_text).ok_or(AddressError::Slot)?;
        let slot = SlotAddress::new(domain, bus, slot).ok_or(AddressError::Slot)?;
        match function_text {
            None => Ok(Location::Slot(slot)),
            Some(function_text) => parse_function(function_text)
                .and_then(|function| slot.function(function))
                .map(Location::Function)
                .ok_or(AddressError::Function),
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
    vendor: u16,
    device: u16,
}

/// Parses a vendor and a device ID, four hex digits each; `vendor_error` or
/// `device_error` names the half that does not parse.
fn parse_ids(
    vendor: &str,
    device: &str,
    vendor_error: AddressError,
    device_error: AddressError,
) -> Result<PciIds, AddressError> {
    let id = |text, error| parse_hex(text, 4, 4).map(|id| id as u16).ok_or(error);
    Ok(PciIds::new(
        id(vendor, vendor_error)?,
        id(device, device_error)?,
    ))
}

impl PciIds {
    pub const fn new(vendor: u16, device: u16) -> Self {
        PciIds { vendor, device }
    }

    pub const fn vendor(self) -> u16 {
        self.vendor
    }

    pub const fn device(self) -> u16 {
        self.device
    }

    /// From the `vendor` and `device` attributes as read (sysfs shows `0x1002`); `None`
    /// when either does not fit 16 bits.
    pub fn from_attributes(vendor: u32, device: u32) -> Option<Self> {
        Some(PciIds::new(
            u16::try_from(vendor).ok()?,
            u16::try_from(device).ok()?,
        ))
    }
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
        parse_ids(vendor, device, AddressError::Vendor, AddressError::Device)
    }
}

/// IDs a rule requires: vendor:device, and optionally the subsystem vendor:device that
/// the `subsystem_vendor`/`subsystem_device` attributes show (as the kernel's
/// `pci:VVVV:DDDD[:SSSS:ssss]` specifier has them). Text: `VVVV:DDDD[:SSSS:ssss]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdGuard {
    pub ids: PciIds,
    pub subsystem: Option<PciIds>,
}

impl IdGuard {
    /// Whether a function with these IDs passes. A function whose IDs could not be read
    /// never does.
    pub fn matches(&self, ids: Option<PciIds>, subsystem: Option<PciIds>) -> bool {
        ids == Some(self.ids)
            && self
                .subsystem
                .is_none_or(|wanted| subsystem == Some(wanted))
    }
}

impl From<PciIds> for IdGuard {
    fn from(ids: PciIds) -> Self {
        IdGuard {
            ids,
            subsystem: None,
        }
    }
}

impl fmt::Display for IdGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ids.fmt(f)?;
        write_optional(f, ':', self.subsystem)
    }
}

impl FromStr for IdGuard {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (vendor, rest) = text.split_once(':').ok_or(AddressError::Vendor)?;
        let (device, subsystem) = split_optional(rest, ':');
        let ids = parse_ids(vendor, device, AddressError::Vendor, AddressError::Device)?;
        let subsystem = match subsystem {
            None => None,
            Some(text) => {
                let (vendor, device) = text.split_once(':').ok_or(AddressError::Subsystem)?;
                Some(parse_ids(
                    vendor,
                    device,
                    AddressError::Subsystem,
                    AddressError::Subsystem,
                )?)
            }
        };
        Ok(IdGuard { ids, subsystem })
    }
}

/// How many hops a path may have below its root-bus function. Real machines need 2 to 4
/// (root port, switch upstream and downstream ports, the card); 8 leaves room and keeps a
/// path a fixed size.
pub const MAX_HOPS: usize = 8;

/// One step of a path below a bridge: the slot and function of a device on the bridge's
/// secondary bus. `function: None` (the last hop only) means the whole slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hop {
    pub slot: u8,
    pub function: Option<u8>,
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.slot)?;
        write_optional(f, '.', self.function)
    }
}

impl FromStr for Hop {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (slot, function) = split_optional(text, '.');
        let slot = parse_slot(slot).ok_or(AddressError::Hop)?;
        let function = match function {
            None => None,
            Some(function) => Some(parse_function(function).ok_or(AddressError::Hop)?),
        };
        Ok(Hop { slot, function })
    }
}

/// A device named by where it is plugged in: a root-bus function, then 1 to [`MAX_HOPS`]
/// hops below it. Fixed size, so rules stay `Copy` and the apply path heap-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciPath {
    pub root: PciAddress,
    /// Unused entries stay `Hop::default()`, so that equality compares the used ones only.
    hops: [Hop; MAX_HOPS],
    count: u8,
}

impl PciPath {
    /// `None` when `hops` is empty or longer than [`MAX_HOPS`], or a hop before the last
    /// is a whole slot.
    pub fn new(root: PciAddress, hops: &[Hop]) -> Option<Self> {
        if hops.is_empty() || hops.len() > MAX_HOPS {
            return None;
        }
        if hops[..hops.len() - 1]
            .iter()
            .any(|hop| hop.function.is_none())
        {
            return None;
        }
        let mut stored = [Hop::default(); MAX_HOPS];
        stored[..hops.len()].copy_from_slice(hops);
        Some(PciPath {
            root,
            hops: stored,
            count: hops.len() as u8,
        })
    }

    pub fn hops(&self) -> &[Hop] {
        &self.hops[..usize::from(self.count)]
    }

    /// Whether the path names a whole slot (its last hop has no function).
    pub fn is_slot(&self) -> bool {
        self.hops().last().is_some_and(|hop| hop.function.is_none())
    }

    /// The same path naming the whole slot of its last device.
    pub fn to_slot(&self) -> Self {
        let mut slot = *self;
        slot.hops[usize::from(self.count) - 1].function = None;
        slot
    }
}

impl fmt::Display for PciPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)?;
        for hop in self.hops() {
            write!(f, "/{hop}")?;
        }
        Ok(())
    }
}

/// Parses `[DDDD:]BB:SS.F/SS.F[/SS.F]...`, the last hop optionally `SS`.
impl FromStr for PciPath {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split('/');
        let root: PciAddress = parts.next().unwrap_or_default().parse()?;
        let mut hops = [Hop::default(); MAX_HOPS];
        let mut count = 0;
        let mut last_was_slot = false;
        for part in parts {
            if count == MAX_HOPS {
                return Err(AddressError::TooManyHops);
            }
            if last_was_slot {
                return Err(AddressError::Hop);
            }
            let hop: Hop = part.parse()?;
            last_was_slot = hop.function.is_none();
            hops[count] = hop;
            count += 1;
        }
        PciPath::new(root, &hops[..count]).ok_or(AddressError::Hop)
    }
}

/// Where a rule points: by bus address, or by path below a root bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// `[DDDD:]BB:SS[.F]`: whatever sits at that bus number now.
    Bus(Location),
    /// A path as written, not yet looked up; it selects nothing until resolved.
    Path(PciPath),
    /// A path and the location sysfs showed it leads to. Prints as the path, so that
    /// messages quote the rule as written; parsing never makes one.
    Resolved(PciPath, Location),
}

impl Address {
    pub fn contains(&self, address: PciAddress) -> bool {
        match self {
            Address::Bus(location) | Address::Resolved(_, location) => location.contains(address),
            Address::Path(_) => false,
        }
    }

    /// The concrete location, once known.
    pub fn location(&self) -> Option<Location> {
        match self {
            Address::Bus(location) | Address::Resolved(_, location) => Some(*location),
            Address::Path(_) => None,
        }
    }
}

impl From<Location> for Address {
    fn from(location: Location) -> Self {
        Address::Bus(location)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Bus(location) => location.fmt(f),
            Address::Path(path) | Address::Resolved(path, _) => path.fmt(f),
        }
    }
}

/// A `/` makes the text a path; without one it is a bus address, exactly as before.
impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.contains('/') {
            text.parse().map(Address::Path)
        } else {
            text.parse().map(Address::Bus)
        }
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
    fn constructors_refuse_a_slot_or_function_the_hardware_cannot_have() {
        assert_eq!(
            PciAddress::new(0, 0x07, MAX_SLOT, MAX_FUNCTION).map(|a| a.to_string()),
            Some("0000:07:1f.7".to_string())
        );
        assert_eq!(SlotAddress::new(0, 0x07, MAX_SLOT + 1), None);
        assert_eq!(PciAddress::new(0, 0x07, MAX_SLOT + 1, 0), None);
        assert_eq!(PciAddress::new(0, 0x07, 0, MAX_FUNCTION + 1), None);
        let slot = SlotAddress::new(0x1_0000, 0x07, 0).unwrap();
        assert_eq!(slot.function(MAX_FUNCTION + 1), None);
        assert_eq!(slot.function(1), Some("10000:07:00.1".parse().unwrap()));
    }

    #[test]
    fn a_slot_lists_its_eight_functions_in_order() {
        let slot: SlotAddress = match "07:00".parse() {
            Ok(Location::Slot(slot)) => slot,
            other => panic!("{other:?}"),
        };
        let functions: std::vec::Vec<String> = slot.functions().map(|a| a.to_string()).collect();
        assert_eq!(functions.len(), FUNCTIONS_PER_SLOT);
        assert_eq!(functions.first().map(String::as_str), Some("0000:07:00.0"));
        assert_eq!(functions.last().map(String::as_str), Some("0000:07:00.7"));
    }

    #[test]
    fn ids_from_attributes_must_fit_sixteen_bits() {
        assert_eq!(
            PciIds::from_attributes(0x1002, 0x73ff),
            Some(PciIds::new(0x1002, 0x73ff))
        );
        assert_eq!(PciIds::from_attributes(0x1_0000, 0x73ff), None);
        assert_eq!(PciIds::from_attributes(0x1002, 0x1_0000), None);
    }

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

    #[test]
    fn guards_with_subsystem_ids() {
        let guard: IdGuard = "1234:1111:1AF4:1100".parse().unwrap();
        assert_eq!(guard.to_string(), "1234:1111:1af4:1100");
        let ids = "1234:1111".parse().ok();
        assert!(guard.matches(ids, "1af4:1100".parse().ok()));
        assert!(!guard.matches(ids, "1af4:1101".parse().ok()));
        assert!(!guard.matches(ids, None));
        let plain: IdGuard = "1234:1111".parse().unwrap();
        assert!(plain.matches(ids, None));
        assert!(plain.matches(ids, "1af4:1101".parse().ok()));
        for bad in [
            "1234:1111:1af4",
            "1234:1111:1af4:110",
            "1234:1111:1af4:1100:0000",
        ] {
            assert_eq!(
                bad.parse::<IdGuard>(),
                Err(AddressError::Subsystem),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_round_trip_and_keep_bus_forms_apart() {
        for (text, canonical) in [
            ("00:1c.0/00.0", "0000:00:1c.0/00.0"),
            ("00:1C.0/00", "0000:00:1c.0/00"),
            ("0001:80:03.1/00.0/1F.7/00", "0001:80:03.1/00.0/1f.7/00"),
            (
                "00:01.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00",
                "0000:00:01.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00",
            ),
        ] {
            let address: Address = text.parse().unwrap();
            assert!(matches!(address, Address::Path(_)), "{text}");
            assert_eq!(address.to_string(), canonical);
            assert_eq!(canonical.parse::<Address>(), Ok(address));
        }
        assert!(matches!(
            "07:00".parse::<Address>(),
            Ok(Address::Bus(Location::Slot(_)))
        ));
    }

    #[test]
    fn bad_paths_say_why() {
        let nine = "00:01.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0/00.0";
        for (text, error) in [
            (nine, AddressError::TooManyHops),
            ("00:1c/00.0", AddressError::Function),
            ("00:1c.0/", AddressError::Hop),
            ("00:1c.0/00/00.0", AddressError::Hop),
            ("00:1c.0/20.0", AddressError::Hop),
            ("00:1c.0/00.8", AddressError::Hop),
            ("00:1c.0/0.0", AddressError::Hop),
            ("00:1c.0//00.0", AddressError::Hop),
            ("/00.0", AddressError::Shape),
            ("00:1c.0/../x", AddressError::Hop),
        ] {
            assert_eq!(text.parse::<Address>(), Err(error), "{text:?}");
        }
    }
}
