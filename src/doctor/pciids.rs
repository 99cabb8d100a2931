//! Vendor, device and class names from the pci.ids database, for `vfio-bind list`.
//!
//! The file (hwdata's or pciutils') lists vendors at the start of a line, their devices
//! after one tab, and at the end classes as `C xx  name` with subclasses after one tab.
//! Only the names of the IDs asked for are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::machine::function::base_and_subclass;
use crate::machine::order;
use crate::rules::address::PciIds;

/// Where distributions install pci.ids.
pub const PCI_IDS_PATHS: [&str; 2] = ["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids"];

#[derive(Debug, Default)]
pub struct PciNames {
    vendors: BTreeMap<u16, String>,
    devices: BTreeMap<PciIds, String>,
    /// Keyed by class and subclass, `0x0300` for a VGA controller.
    classes: BTreeMap<u16, String>,
}

impl PciNames {
    /// Reads the first pci.ids found in [`PCI_IDS_PATHS`], keeping the names of `wanted`.
    pub fn load_installed(wanted: &BTreeSet<PciIds>) -> Option<PciNames> {
        PCI_IDS_PATHS
            .iter()
            .find_map(|path| std::fs::read(Path::new(path)).ok())
            .map(|bytes| PciNames::parse(&String::from_utf8_lossy(&bytes), wanted))
    }

    pub fn parse(text: &str, wanted: &BTreeSet<PciIds>) -> PciNames {
        let wanted_vendors: BTreeSet<u16> = order::set_of(wanted.iter().map(|ids| ids.vendor()));
        let mut names = PciNames::default();
        let mut vendor: Option<u16> = None;
        let mut class: Option<u8> = None;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("C ") {
                vendor = None;
                class = split_hex(rest, 2).map(|(code, _)| code as u8);
                if let Some((code, name)) = split_hex(rest, 2) {
                    names
                        .classes
                        .insert((code as u16) << 8 | 0xff, name.to_string());
                }
            } else if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue; // subsystem or programming-interface lines
                }
                if let (Some(vendor), Some((device, name))) = (vendor, split_hex(rest, 4)) {
                    let ids = PciIds::new(vendor, device as u16);
                    if wanted.contains(&ids) {
                        names.devices.insert(ids, name.to_string());
                    }
                } else if let (Some(class), Some((subclass, name))) = (class, split_hex(rest, 2)) {
                    names
                        .classes
                        .insert(u16::from(class) << 8 | subclass as u16, name.to_string());
                }
            } else if let Some((code, name)) = split_hex(line, 4) {
                class = None;
                let code = code as u16;
                vendor = Some(code);
                if wanted_vendors.contains(&code) {
                    names.vendors.insert(code, name.to_string());
                }
            }
        }
        names
    }

    /// `Vendor Device`, or whichever part is known.
    pub fn describe(&self, ids: PciIds) -> Option<String> {
        match (self.vendors.get(&ids.vendor()), self.devices.get(&ids)) {
            (Some(vendor), Some(device)) => Some(format!("{vendor} {device}")),
            (Some(vendor), None) => Some(vendor.clone()),
            (None, Some(device)) => Some(device.clone()),
            (None, None) => None,
        }
    }

    /// The subclass name for a class code such as 0x030000, else the class name.
    pub fn class_name(&self, class: u32) -> Option<&str> {
        let code = base_and_subclass(class);
        self.classes
            .get(&code)
            .or_else(|| self.classes.get(&(code | 0xff)))
            .map(String::as_str)
    }
}

/// `HHHH  name` with exactly `digits` hex digits, then white space and the name.
fn split_hex(line: &str, digits: usize) -> Option<(u32, &str)> {
    let code = line.get(..digits)?;
    let name = line.get(digits..)?;
    if !code.bytes().all(|b| b.is_ascii_hexdigit()) || !name.starts_with([' ', '\t']) {
        return None;
    }
    Some((u32::from_str_radix(code, 16).ok()?, name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n\
1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\
\t73ff  Navi 23 [Radeon RX 6600/6600 XT/6600M]\n\
\tab28  Navi 21/23 HDMI/DP Audio Controller\n\
\t\t1002 ab28  Subsystem line\n\
10de  NVIDIA Corporation\n\
\t1b80  GP104 [GeForce GTX 1080]\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n\
\t\t00  VGA controller\n\
C 04  Multimedia controller\n\
\t03  Audio device\n";

    #[test]
    fn keeps_wanted_names_and_classes() {
        let wanted: BTreeSet<PciIds> = ["1002:73ff", "10de:9999"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let names = PciNames::parse(SAMPLE, &wanted);
        assert_eq!(
            names.describe("1002:73ff".parse().unwrap()).as_deref(),
            Some("Advanced Micro Devices, Inc. [AMD/ATI] Navi 23 [Radeon RX 6600/6600 XT/6600M]")
        );
        assert_eq!(
            names.describe("10de:9999".parse().unwrap()).as_deref(),
            Some("NVIDIA Corporation")
        );
        assert_eq!(
            names.describe("1002:ab28".parse().unwrap()).as_deref(),
            Some("Advanced Micro Devices, Inc. [AMD/ATI]")
        );
        assert_eq!(
            names.class_name(0x030000),
            Some("VGA compatible controller")
        );
        assert_eq!(names.class_name(0x040300), Some("Audio device"));
        assert_eq!(names.class_name(0x038000), Some("Display controller"));
        assert_eq!(names.class_name(0x0c0330), None);
    }
}
